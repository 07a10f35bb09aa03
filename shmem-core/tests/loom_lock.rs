//! A loom model of the `RawMutex` state machine (`sync/raw_mutex.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmem-core --release --test loom_lock`
//!
//! Each loom thread plays a process with its own pid. The model's `Park`
//! never sleeps (a wait is a yield that reports a timeout, i.e. the
//! worst case of spurious wake-ups), and a "process" dies by recording its
//! pid as dead and returning without unlocking. Loom explores the
//! interleavings and checks that the protected cell is never accessed
//! concurrently and that every locker gets in.
#![cfg(loom)]
#![allow(missing_docs, reason = "test")]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::Arc;
use shmem_core::sync::park::{Liveness, Park};
use shmem_core::sync::raw_mutex::{Acquired, RawMutex};
use std::cell::Cell;
use std::time::Duration;

loom::thread_local! {
    static PID: Cell<u32> = Cell::new(1);
}

loom::lazy_static! {
    /// The pid of the process that died in this execution (0: none).
    static ref DEAD: AtomicU32 = AtomicU32::new(0);
}

/// `loom::model` with a branch budget that fits the wait loops.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    builder.check(f);
}

struct Model;

impl Park for Model {
    fn wait(_word: *const u32, _expected: u32, _timeout: Option<Duration>) -> bool {
        loom::thread::yield_now();
        true
    }
    fn wake_one(_word: *const u32) {}
    fn wake_all(_word: *const u32) {}
    fn me() -> u64 {
        u64::from(PID.with(Cell::get)) | (7 << 32)
    }
    fn liveness(owner: u64, _lock: *const ()) -> Liveness {
        if u64::from(DEAD.load(Ordering::SeqCst)) | (7 << 32) == owner {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }
}

fn as_process(pid: u32) {
    PID.with(|p| p.set(pid));
}

struct Shared {
    lock: RawMutex,
    data: UnsafeCell<u32>,
}

fn locked_increment(s: &Shared) -> Acquired {
    let acquired = s.lock.lock_report::<Model>();
    s.data.with_mut(|d| {
        // SAFETY: the lock is held, so no other model thread touches `data`;
        // loom checks exactly that.
        unsafe { *d += 1 }
    });
    // SAFETY: acquired just above by this thread.
    unsafe { s.lock.unlock::<Model>() };
    acquired
}

#[test]
fn mutual_exclusion() {
    model(|| {
        let s = Arc::new(Shared { lock: RawMutex::new(), data: UnsafeCell::new(0) });
        let other = {
            let s = s.clone();
            loom::thread::spawn(move || {
                as_process(2);
                assert_eq!(locked_increment(&s), Acquired::Clean);
            })
        };
        as_process(1);
        assert_eq!(locked_increment(&s), Acquired::Clean);
        other.join().unwrap();
        // SAFETY: all threads joined.
        assert_eq!(s.data.with(|d| unsafe { *d }), 2);
        assert!(!s.lock.is_locked());
    });
}

#[test]
fn dead_owner_is_taken_over_exactly_once() {
    model(|| {
        let s = Arc::new(Shared { lock: RawMutex::new(), data: UnsafeCell::new(0) });
        let victim = {
            let s = s.clone();
            loom::thread::spawn(move || {
                as_process(2);
                s.lock.lock_report::<Model>();
                // Dies holding the lock: marked dead, never unlocks.
                DEAD.store(2, Ordering::SeqCst);
            })
        };
        as_process(1);
        let mine = locked_increment(&s);
        victim.join().unwrap();
        // SAFETY: all threads joined.
        assert_eq!(s.data.with(|d| unsafe { *d }), 1, "the survivor got in");
        let deaths_seen = usize::from(mine == Acquired::OwnerDied);
        if s.lock.is_locked() {
            assert_eq!(deaths_seen, 0, "the victim still holds it only if nobody took it over");
        }
    });
}

#[test]
fn try_lock_never_waits_and_never_doubles() {
    model(|| {
        let s = Arc::new(Shared { lock: RawMutex::new(), data: UnsafeCell::new(0) });
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                as_process(2);
                if s.lock.try_lock_report::<Model>().is_some() {
                    s.data.with_mut(|d| {
                        // SAFETY: try_lock succeeded, the lock is held.
                        unsafe { *d += 1 }
                    });
                    // SAFETY: acquired above by this thread.
                    unsafe { s.lock.unlock::<Model>() };
                    1
                } else {
                    0
                }
            })
        };
        as_process(1);
        locked_increment(&s);
        let got = t.join().unwrap();
        // SAFETY: all threads joined.
        assert_eq!(s.data.with(|d| unsafe { *d }), 1 + got);
    });
}
