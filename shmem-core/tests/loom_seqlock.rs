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

use loom::sync::Arc;
use shmem_core::sync::seqlock::SeqLock;

mod loom_support;

use loom_support::{as_process, model, quiet_deaths, Yielding as Model};

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
