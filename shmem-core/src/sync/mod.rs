//! Synchronisation that works across processes.
//!
//! - [`Atomic`](atomic::Atomic): the shared form of every primitive scalar field.
//! - [`Mutex`](mutex::Mutex): a crash-safe cross-process lock around plain data
//!   (`#[shared(lock)]`), built on [`RawMutex`](raw_mutex::RawMutex).
//! - [`RwLock`](rwlock::RwLock) (`#[shared(rwlock)]`) and
//!   [`SeqLock`](seqlock::SeqLock) (`#[shared(seqlock)]`).
//! - [`wait`]: wait/notify on 32-bit atomics, [`Event`](wait::Event),
//!   [`Semaphore`](wait::Semaphore), [`Barrier`](wait::Barrier),
//!   [`Condvar`](wait::Condvar).

pub mod atomic;
pub mod liveness;
pub mod mutex;
pub mod park;
pub(crate) mod primitive;
pub mod raw_mutex;
pub mod rwlock;
pub mod seqlock;
pub(crate) mod spin;
pub mod wait;

/// A wait with a timeout ran out before the condition held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for TimedOut {}

/// The instant `timeout` from now; `None` (no deadline) if that overflows.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(timeout)
}

/// How long one sleep may last: `cap` (`None`: unbounded), shortened to what
/// is left before `deadline`. `Err(TimedOut)` once the deadline has passed.
pub(crate) fn sleep_slice(
    deadline: Option<std::time::Instant>,
    cap: Option<std::time::Duration>,
) -> Result<Option<std::time::Duration>, TimedOut> {
    let Some(deadline) = deadline else { return Ok(cap) };
    match deadline.checked_duration_since(std::time::Instant::now()) {
        Some(left) if !left.is_zero() => Ok(Some(cap.map_or(left, |cap| cap.min(left)))),
        _ => Err(TimedOut),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Single-process checks of the primitives with threads (the
    //! cross-process tests are in the workspace's `tests/`). Small enough to
    //! run under Valgrind in CI.
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    const N: u64 = if cfg!(debug_assertions) { 2_000 } else { 20_000 };

    #[test]
    fn mutex_counts_exactly_across_threads() {
        let m = mutex::Mutex::new([0u64; 8]);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..N {
                        m.lock().unwrap().iter_mut().for_each(|v| *v += 1);
                    }
                });
            }
        });
        assert_eq!(m.get(), [4 * N; 8]);
        assert!(!m.raw().is_locked());
    }

    #[test]
    fn seqlock_reads_are_never_torn() {
        let lock = seqlock::SeqLock::new([0u32; 64]);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for k in 1..=N as u32 {
                    lock.write([k; 64]);
                }
                done.store(true, Ordering::Release);
            });
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    let v = lock.read().unwrap();
                    assert!(v.iter().all(|x| *x == v[0]), "torn read");
                }
            });
        });
        assert_eq!(lock.read().unwrap(), [N as u32; 64]);
        lock.update(|v| v[1] = 7);
        assert_eq!(lock.read().unwrap()[..2], [N as u32, 7]);
    }

    #[test]
    fn seqlock_handles_every_alignment() {
        let bytes = seqlock::SeqLock::new([1u8, 2, 3]);
        bytes.write([4, 5, 6]);
        assert_eq!(bytes.read().unwrap(), [4, 5, 6]);
        let halves = seqlock::SeqLock::new([1u16; 3]);
        halves.write([9; 3]);
        assert_eq!(halves.read().unwrap(), [9; 3]);
        let wide = seqlock::SeqLock::new([1.5f64, -2.0]);
        wide.update(|v| v[1] *= 2.0);
        assert_eq!(wide.read().unwrap(), [1.5, -4.0]);
    }

    #[test]
    fn rwlock_readers_and_writers_across_threads() {
        let lock = rwlock::RwLock::new([0u64; 16]);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..N {
                        lock.write().unwrap().iter_mut().for_each(|v| *v += 1);
                    }
                });
                s.spawn(|| {
                    for _ in 0..N {
                        let r = lock.read().unwrap();
                        assert!(r.iter().all(|x| *x == r[0]));
                    }
                });
            }
        });
        assert_eq!(*lock.read().unwrap(), [2 * N; 16]);
        assert_eq!(lock.reader_count(), 0);
    }

    #[test]
    fn panicking_writer_poisons_rwlock_but_not_a_seqlock_copy() {
        let rw = rwlock::RwLock::new(0u32);
        let seq = seqlock::SeqLock::new(5u32);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _w = rw.write().unwrap();
                panic!("writer panics");
            })
            .join()
        });
        let _ = std::thread::scope(|s| s.spawn(|| seq.update(|_| panic!("update panics"))).join());
        assert!(rw.is_poisoned() && rw.read().is_err());
        rw.clear_poison();
        assert!(rw.read().is_ok());
        // `update`'s closure works on a copy: a panic leaves the old value.
        assert!(!seq.is_poisoned());
        assert_eq!(seq.read().unwrap(), 5);
        seq.write(6);
        assert_eq!(seq.read().unwrap(), 6, "the writer lock was released by the unwinding");
    }

    /// Every completed round of a 2-party barrier has one leader and one
    /// follower, even when parties time out at the same moment the last one
    /// arrives (a leader used to complete a round with a party that had
    /// already left it with `TimedOut`).
    #[test]
    fn barrier_rounds_never_count_a_party_that_left() {
        const ROUNDS: usize = if cfg!(debug_assertions) { 3_000 } else { 30_000 };
        let b = wait::Barrier::new(2);
        let party = || {
            let (mut leaders, mut followers) = (0usize, 0usize);
            for i in 0..ROUNDS {
                match b.wait_timeout(std::time::Duration::from_micros(1 + (i % 7) as u64 * 20)) {
                    Ok(r) if r.is_leader() => leaders += 1,
                    Ok(_) => followers += 1,
                    Err(TimedOut) => {}
                }
            }
            (leaders, followers)
        };
        let ((l1, f1), (l2, f2)) = std::thread::scope(|s| {
            let a = s.spawn(party);
            let b = s.spawn(party);
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(l1 + l2, f1 + f2, "a round had a leader but no follower (or the reverse)");
    }

    #[test]
    fn lock_api_interface() {
        let m: lock_api::Mutex<raw_mutex::RawMutex, u32> = lock_api::Mutex::new(1);
        *m.lock() += 1;
        assert_eq!(*m.try_lock_for(std::time::Duration::from_millis(10)).unwrap(), 2);
    }
}
