//! A loom model of `RwLock` (`sync/rwlock.rs`): the gate, the per-process
//! reader slots, the gate-free reader path and its handshake with a waiting
//! writer, and the deaths of readers and writers.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmem-core --release --test loom_rwlock`
//!
//! Each loom thread plays a process with its own owner token. The protected
//! data is a loom cell that readers read and writers write while they hold
//! their guards, so loom fails the model if the protocol ever lets a reader
//! and a writer (or two writers) at it without a happens-before order:
//! the SeqCst handshake between a reader's count and a writer's
//! `WRITER_WAITING` is checked, not assumed. Waits are yields that report a
//! timeout (the worst case of spurious wake-ups: every waiter re-checks);
//! lost wake-ups are the `loom_lock` model's business. A "process" dies at a
//! named crash point by recording its token as dead and unwinding out of
//! its thread.
#![cfg(loom)]
#![allow(missing_docs, reason = "test")]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use shmem_core::sync::rwlock::RwLock;

mod loom_support;

use loom_support::{as_process, model, quiet_deaths, spawn_process, Yielding as Model};

struct Shared {
    lock: RwLock<u8>,
    data: UnsafeCell<u32>,
}

fn new_shared() -> Arc<Shared> {
    Arc::new(Shared { lock: RwLock::new(0), data: UnsafeCell::new(0) })
}

/// Reads the data under a read guard; returns (value, poisoned).
fn read(s: &Shared) -> (u32, bool) {
    let (g, poisoned) = match s.lock.read_with::<Model>() {
        Ok(g) => (g, false),
        Err(p) => (p.into_inner(), true),
    };
    // SAFETY: a read guard is held: no writer touches `data` (loom checks).
    let v = s.data.with(|d| unsafe { *d });
    drop(g);
    (v, poisoned)
}

/// Adds 1 to the data under a write guard; returns whether it was poisoned.
fn write(s: &Shared) -> bool {
    let (g, poisoned) = match s.lock.write_with::<Model>() {
        Ok(g) => (g, false),
        Err(p) => (p.into_inner(), true),
    };
    // SAFETY: the write guard is held: nobody else touches `data`.
    s.data.with_mut(|d| unsafe { *d += 1 });
    drop(g);
    poisoned
}

fn data(s: &Shared) -> u32 {
    // SAFETY: all threads joined.
    s.data.with(|d| unsafe { *d })
}

/// A reader and a writer of two processes: never at the data together, and
/// the reader sees the value before or after the write, nothing else.
/// (Mutation check: with the reader's fast path ignoring `WRITER_WAITING`,
/// loom reports concurrent read and write accesses.)
#[test]
fn reader_and_writer_exclude_each_other() {
    model(|| {
        let s = new_shared();
        let reader = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut seen = (9, true);
                // Twice: the first read claims a slot through the gate, the
                // second takes the gate-free path.
                as_process(2, None, || {
                    let _ = read(&s);
                    seen = read(&s);
                });
                seen
            })
        };
        as_process(1, None, || assert!(!write(&s)));
        let (v, poisoned) = reader.join().unwrap();
        assert!(v <= 1 && !poisoned);
        assert_eq!(data(&s), 1);
    });
}

/// Two writers of two processes: serialised.
#[test]
fn writers_exclude_each_other() {
    model(|| {
        let s = new_shared();
        let other = {
            let s = s.clone();
            loom::thread::spawn(move || as_process(2, None, || assert!(!write(&s))))
        };
        as_process(1, None, || assert!(!write(&s)));
        other.join().unwrap();
        assert_eq!(data(&s), 2);
    });
}

/// A reader dies at each point of a read: while claiming its slot (holding
/// the gate) on its first read, or, having read once (so its second read
/// takes the gate-free path), after counting itself in or out. The writer
/// always gets in and is never told of poison (a reader changes nothing).
#[test]
fn a_dead_reader_never_blocks_or_poisons_a_writer() {
    quiet_deaths();
    for point in ["rwlock.read.counted", "rwlock.read.left", "rwlock.read.slot_claimed"] {
        eprintln!("reader dies at {point}");
        model(move || {
            let s = new_shared();
            let reader = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    if point != "rwlock.read.slot_claimed" {
                        as_process(2, None, || {
                            let _ = read(&s);
                        });
                    }
                    as_process(2, Some(point), || {
                        let _ = read(&s);
                    });
                })
            };
            as_process(1, None, || assert!(!write(&s), "{point}: a reader's death poisoned the lock"));
            reader.join().unwrap();
            assert_eq!(data(&s), 1);
        });
    }
}

/// A writer that dies inside poisons the lock for the next reader, which
/// still gets in; one that dies before it is inside poisons nothing.
#[test]
fn a_dead_writer_poisons_only_if_it_was_inside() {
    quiet_deaths();
    for (point, poisons) in [("rwlock.write.inside", true), ("rwlock.write.waiting", false)] {
        model(move || {
            let s = new_shared();
            let writer = {
                let s = s.clone();
                spawn_process(2, Some(point), move || {
                    let _ = write(&s);
                })
            };
            writer.join().unwrap();
            let mut seen = (9, false);
            as_process(1, None, || seen = read(&s));
            assert_eq!(seen.1, poisons, "{point}");
        });
    }
}
