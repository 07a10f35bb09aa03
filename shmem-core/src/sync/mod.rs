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
pub mod mutex;
pub mod park;
pub(crate) mod primitive;
pub mod raw_mutex;
pub mod rwlock;
pub mod seqlock;
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
