//! A loom model of the `RawMutex` state machine (`sync/raw_mutex.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmem-core --release --test loom_lock`
//!
//! Each loom thread plays a process with its own owner token. The model's
//! `Park` behaves like the kernel where it matters:
//!
//! - `wait` sleeps for real (a loom condition variable) while the word
//!   holds the expected value, and only a `wake_*` (or a death, below) ends
//!   a long sleep. The short first sleep of a waiter times out, as the real
//!   200 us one does. So a lost wake-up leaves a thread asleep forever, and
//!   loom fails the model with a deadlock: removing the wake in `unlock`
//!   makes `mutual_exclusion` fail (checked when this model was written).
//! - A "process" dies at a named crash point (`Park::crash_point`) by
//!   recording its token as dead, waking every sleeper (the kernel's death
//!   watch firing) and unwinding out of its thread without unlocking.
//! - Liveness answers `Dead` only for the dead token; the `unknown` test
//!   makes it answer `Unknown` for everyone, and then nothing may ever be
//!   taken over.
#![cfg(loom)]
#![allow(missing_docs, reason = "test")]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use shmem_core::sync::park::{Liveness, Park};
use shmem_core::sync::raw_mutex::{Acquired, RawMutex};
use std::cell::Cell;
use std::time::Duration;

mod loom_support;

use loom_support::{as_process, quiet_deaths, spawn_process, Died, DEAD, DIE_AT, TOKEN};

loom::lazy_static! {
    /// Liveness answers `Unknown` for everyone.
    static ref UNKNOWN: AtomicBool = AtomicBool::new(false);
    /// The kernel's futex wait queue (one word per model).
    static ref SLEEPERS: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
}

/// `loom::model` with a branch budget that fits the wait loops.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    builder.check(move || {
        n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!("explored {} executions", n.load(std::sync::atomic::Ordering::Relaxed));
}

struct Model;

impl Park for Model {
    fn wait(word: *const u32, expected: u32, timeout: Option<Duration>) -> bool {
        if timeout.is_some_and(|t| t <= Duration::from_millis(1)) {
            // The short first sleep: it times out. No yield here, so the
            // model also explores the waiter going straight on to its long
            // sleep while the holder still holds (a yield would let the
            // holder run first every time and hide a lost wake-up).
            return true;
        }
        // SAFETY: under loom, `RawMutex` hands out the address of its loom
        // `AtomicU64` word (see `futex_addr`), alive for the whole wait.
        let atom = unsafe { &*word.cast::<AtomicU64>() };
        let guard = SLEEPERS.0.lock().unwrap();
        let word = atom.load(Ordering::SeqCst);
        if word as u32 != expected {
            return false;
        }
        // The waiter asked for a death watch before this long sleep; on an
        // owner that is already dead it fires at once.
        let dead = DEAD.load(Ordering::SeqCst);
        if dead != 0 && word & !(1 << 30) == dead {
            return false;
        }
        drop(SLEEPERS.1.wait(guard).unwrap());
        false
    }
    fn wake_one(_word: *const u32) {
        let _g = SLEEPERS.0.lock().unwrap();
        SLEEPERS.1.notify_one();
    }
    fn wake_all(_word: *const u32) {
        let _g = SLEEPERS.0.lock().unwrap();
        SLEEPERS.1.notify_all();
    }
    fn me() -> u64 {
        TOKEN.with(Cell::get)
    }
    fn liveness(owner: u64, _lock: *const ()) -> Liveness {
        if UNKNOWN.load(Ordering::SeqCst) {
            Liveness::Unknown
        } else if DEAD.load(Ordering::SeqCst) == owner {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }
    fn watch(_owner: u64, _lock: *const (), _futex: *const u32) -> bool {
        true
    }
    fn crash_point(name: &'static str) {
        if DIE_AT.with(Cell::get) == Some(name) {
            die();
        }
    }
}

/// This "process" dies: the kernel marks it dead and fires the death
/// watches, and the thread unwinds without running any more lock code.
fn die() -> ! {
    DEAD.store(TOKEN.with(Cell::get), Ordering::SeqCst);
    {
        let _g = SLEEPERS.0.lock().unwrap();
        SLEEPERS.1.notify_all();
    }
    std::panic::resume_unwind(Box::new(Died))
}

struct Shared {
    lock: RawMutex,
    data: UnsafeCell<u32>,
}

fn new_shared() -> Arc<Shared> {
    Arc::new(Shared { lock: RawMutex::new(), data: UnsafeCell::new(0) })
}

/// Locks, adds 1, unlocks; returns how it got the lock and the count it found.
fn locked_increment(s: &Shared) -> (Acquired, u32) {
    let acquired = s.lock.lock_report::<Model>();
    let before = s.data.with_mut(|d| {
        // SAFETY: the lock is held, so no other model thread touches `data`;
        // loom checks exactly that.
        let d = unsafe { &mut *d };
        *d += 1;
        *d - 1
    });
    if DIE_AT.with(Cell::get) == Some("holding") {
        die();
    }
    // SAFETY: acquired just above by this thread.
    unsafe { s.lock.unlock::<Model>() };
    (acquired, before)
}

fn data(s: &Shared) -> u32 {
    // SAFETY: all threads joined.
    s.data.with(|d| unsafe { *d })
}

#[test]
fn mutual_exclusion() {
    model(|| {
        let s = new_shared();
        let other = {
            let s = s.clone();
            loom::thread::spawn(move || as_process(2, None, || assert_eq!(locked_increment(&s).0, Acquired::Clean)))
        };
        as_process(1, None, || assert_eq!(locked_increment(&s).0, Acquired::Clean));
        other.join().unwrap();
        assert_eq!(data(&s), 2);
        assert!(!s.lock.is_locked());
    });
}

/// A process dies at each point of lock and unlock in turn; the survivor
/// always gets in, exactly once, and is told of the death exactly when the
/// victim died holding the lock.
#[test]
fn death_at_every_step() {
    quiet_deaths();
    for point in ["holding", "raw_mutex.unlock.released", "raw_mutex.lock.waiters_set"] {
        model(move || {
            DEAD.store(0, Ordering::SeqCst);
            let s = new_shared();
            let victim = {
                let s = s.clone();
                spawn_process(2, Some(point), move || {
                    let _ = locked_increment(&s);
                })
            };
            let mut mine = None;
            as_process(1, None, || mine = Some(locked_increment(&s)));
            victim.join().unwrap();
            let (mine, before) = mine.expect("the survivor never dies");
            let total = data(&s);
            assert!(total == 1 || total == 2, "{point}: {total} increments");
            if mine == Acquired::OwnerDied {
                assert_eq!(point, "holding", "{point}: takeover although the victim held nothing");
                assert!(DEAD.load(Ordering::SeqCst) != 0);
            }
            if point == "holding" && before == 1 {
                // The victim got in first and died inside: the survivor
                // must have been told.
                assert_eq!(mine, Acquired::OwnerDied, "{point}: death not reported");
            }
        });
    }
}

/// With liveness unknown, a holder is never taken over: the waiter gets in
/// only after the unlock, and never hears of a death.
#[test]
fn unknown_liveness_never_steals() {
    model(|| {
        UNKNOWN.store(true, Ordering::SeqCst);
        let s = new_shared();
        let other = {
            let s = s.clone();
            loom::thread::spawn(move || as_process(2, None, || assert_eq!(locked_increment(&s).0, Acquired::Clean)))
        };
        as_process(1, None, || assert_eq!(locked_increment(&s).0, Acquired::Clean));
        other.join().unwrap();
        assert_eq!(data(&s), 2);
        UNKNOWN.store(false, Ordering::SeqCst);
    });
}

#[test]
fn try_lock_never_waits_and_never_doubles() {
    model(|| {
        let s = new_shared();
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut got = 0;
                as_process(2, None, || {
                    if s.lock.try_lock_report::<Model>().is_some() {
                        s.data.with_mut(|d| {
                            // SAFETY: try_lock succeeded, the lock is held.
                            unsafe { *d += 1 }
                        });
                        // SAFETY: acquired above by this thread.
                        unsafe { s.lock.unlock::<Model>() };
                        got = 1;
                    }
                });
                got
            })
        };
        as_process(1, None, || {
            let _ = locked_increment(&s);
        });
        let got = t.join().unwrap();
        assert_eq!(data(&s), 1 + got);
    });
}
