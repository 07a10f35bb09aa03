//! A loom model of `SeqLock` (`sync/seqlock.rs`): the sequence protocol
//! between writers (serialised by the crash-safe writer lock) and readers
//! that retry, and the death of a writer mid-write.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmem-core --release --test loom_seqlock`
//!
//! The value's words are plain memory that loom does not track, but under
//! loom the copy yields between words, so the model runs readers in the
//! middle of a write: a reader that returns `Ok` with a mix of two writes
//! fails the model (mutation check: without the reader's re-check of the
//! sequence it does). Memory ordering of the value words is not modelled;
//! that of the sequence word is. Waits are yields that report a timeout.
#![cfg(loom)]
#![allow(missing_docs, reason = "test")]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use shmem_core::sync::park::{Liveness, Park};
use shmem_core::sync::seqlock::SeqLock;
use std::cell::Cell;
use std::time::Duration;

loom::thread_local! {
    static TOKEN: Cell<u64> = Cell::new(1);
    static DIE_AT: Cell<Option<&'static str>> = Cell::new(None);
}

loom::lazy_static! {
    static ref DEAD: AtomicU64 = AtomicU64::new(0);
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 200_000;
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    builder.check(move || {
        n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!("explored {} executions", n.load(std::sync::atomic::Ordering::Relaxed));
}

struct Died;

struct Model;

impl Park for Model {
    fn wait(_word: *const u32, _expected: u32, _timeout: Option<Duration>) -> bool {
        loom::thread::yield_now();
        true
    }
    fn wake_one(_word: *const u32) {}
    fn wake_all(_word: *const u32) {}
    fn me() -> u64 {
        TOKEN.with(Cell::get)
    }
    fn liveness(owner: u64, _lock: *const ()) -> Liveness {
        if DEAD.load(Ordering::SeqCst) == owner {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }
    fn crash_point(name: &'static str) {
        if DIE_AT.with(Cell::get) == Some(name) {
            DEAD.store(TOKEN.with(Cell::get), Ordering::SeqCst);
            std::panic::resume_unwind(Box::new(Died));
        }
    }
}

fn as_process(token: u64, die_at: Option<&'static str>, f: impl FnOnce()) {
    TOKEN.with(|t| t.set(token | (7 << 32)));
    DIE_AT.with(|d| d.set(die_at));
    // Only a modelled death ends the "process" quietly: any other panic (a
    // failed assertion) fails the model.
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        if payload.downcast_ref::<Died>().is_none() {
            std::panic::resume_unwind(payload);
        }
    }
}

fn quiet_deaths() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Died>().is_none() {
                default(info);
            }
        }));
    });
}

/// A reader racing a writer gets the old value or the new one, whole.
#[test]
fn readers_never_see_a_mix() {
    model(|| {
        let lock = Arc::new(SeqLock::new([1u64, 1]));
        let writer = {
            let lock = lock.clone();
            loom::thread::spawn(move || as_process(2, None, || lock.write_with::<Model>([2, 2])))
        };
        as_process(1, None, || {
            let v = lock.read_with::<Model>().expect("no writer died");
            assert!(v == [1, 1] || v == [2, 2], "torn read {v:?}");
        });
        writer.join().unwrap();
        assert_eq!(lock.read_with::<Model>().unwrap(), [2, 2]);
    });
}

/// Two writers are serialised: the value ends as one of them, whole.
#[test]
fn writers_are_serialised() {
    model(|| {
        let lock = Arc::new(SeqLock::new([0u64, 0]));
        let other = {
            let lock = lock.clone();
            loom::thread::spawn(move || as_process(2, None, || lock.write_with::<Model>([2, 2])))
        };
        as_process(1, None, || lock.write_with::<Model>([1, 1]));
        other.join().unwrap();
        let v = lock.read_with::<Model>().unwrap();
        assert!(v == [1, 1] || v == [2, 2], "{v:?}");
    });
}

/// A writer that dies mid-write: a reader still returns, with the poison
/// reported exactly when the write was cut, and the next writer gets in.
#[test]
fn a_writer_dying_mid_write_is_recovered() {
    quiet_deaths();
    for (point, poisons) in [("seqlock.write.odd", true), ("seqlock.write.copied", true), ("seqlock.write.even", false)]
    {
        model(move || {
            let lock = Arc::new(SeqLock::new([1u64, 1]));
            let writer = {
                let lock = lock.clone();
                loom::thread::spawn(move || as_process(2, Some(point), || lock.write_with::<Model>([2, 2])))
            };
            writer.join().unwrap();
            as_process(1, None, || {
                let r = lock.read_with::<Model>();
                assert_eq!(r.is_err(), poisons, "{point}");
                lock.write_with::<Model>([3, 3]);
            });
            let v = lock.read_with::<Model>().unwrap_or_else(|p| p.into_inner());
            assert_eq!(v, [3, 3]);
        });
    }
}
