//! A sequence lock: wait-free-for-readers snapshots of plain data.
//!
//! `#[shared(seqlock)]` suits values read often and written rarely (a
//! configuration, a position): readers never block a writer and never see a
//! torn value; writers are serialised by a crash-safe [`RawMutex`].
//!
//! ```
//! use shmem_core::SeqLock;
//! let pos = SeqLock::new([0.0f64, 0.0, 0.0]);
//! pos.write([1.0, 2.0, 3.0]);
//! pos.update(|p| p[2] += 1.0);
//! assert_eq!(pos.read().unwrap(), [1.0, 2.0, 4.0]);
//! ```
//!
//! # Protocol
//!
//! | `seq` | meaning |
//! |---|---|
//! | even | stable: the value is consistent |
//! | odd | a writer is copying a new value in |
//!
//! A writer takes the writer lock, makes `seq` odd, copies the value in
//! with relaxed word-sized atomic stores, and makes `seq` even again
//! (Release). A reader loads `seq` (Acquire), copies the value out with
//! word-sized atomic loads, and keeps the copy if `seq` did not change; it
//! retries otherwise. Copying through atomics (not `ptr::read_volatile`, as
//! crossbeam's seqlock does) keeps the racing reads defined behaviour.
//!
//! # Writer death
//!
//! A writer killed mid-copy leaves `seq` odd and its lock held. A reader
//! that keeps seeing `seq` odd checks the writer (every
//! [`OWNER_CHECK_INTERVAL`] or
//! so); if it is dead, the reader takes the writer lock over, makes `seq`
//! even and marks the lock poisoned: `read` then returns
//! `Err(PoisonError)` carrying the (possibly torn) value until someone calls
//! [`SeqLock::clear_poison`]. The next writer recovers the same way.

use super::park::Os;
use super::raw_mutex::{Acquired, RawMutex, OWNER_CHECK_INTERVAL};
use bytemuck::Pod;
use core::sync::atomic::{AtomicU32, Ordering};
use std::cell::UnsafeCell;
use std::fmt;
use std::sync::{LockResult, PoisonError};
use std::time::Instant;

/// Plain data `T` behind a sequence lock shared between processes. See the
/// [module docs](self).
#[repr(C)]
pub struct SeqLock<T> {
    seq: AtomicU32,
    poisoned: AtomicU32,
    writer: RawMutex,
    pub(crate) value: UnsafeCell<T>,
}

// SAFETY: the value is only copied in and out with atomic word accesses
// (readers) or under the writer lock (writers); `T: Pod` is plain data, and
// `T: Send` because a value written by one thread is copied out by another.
unsafe impl<T: Pod + Send> Sync for SeqLock<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Send for SeqLock<T> {}

/// Copies `T` between memory and a value with atomic accesses `W` bytes wide.
macro_rules! copy_words {
    ($atomic:ty, $word:ty, $src:expr, $dst:expr, load) => {{
        let (src, dst): (*const T, &mut [u8]) = ($src, $dst);
        let words = dst.len() / core::mem::size_of::<$word>();
        for (i, chunk) in dst.chunks_exact_mut(core::mem::size_of::<$word>()).enumerate().take(words) {
            // SAFETY: `src` points at a live `T` aligned to at least `$word`
            // (the caller picked the width from `align_of::<T>()`), and
            // `i < size_of::<T>() / size_of::<$word>()` keeps the word inside
            // it. All concurrent accesses to these bytes are atomic accesses
            // of this same width, so there is no data race.
            let word = unsafe { &*src.cast::<$atomic>().add(i) };
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
    }};
    ($atomic:ty, $word:ty, $dst:expr, $src:expr, store) => {{
        let (dst, src): (*const T, &[u8]) = ($dst, $src);
        for (i, chunk) in src.chunks_exact(core::mem::size_of::<$word>()).enumerate() {
            // SAFETY: as for loads: in bounds, aligned, same-width atomics only.
            let word = unsafe { &*dst.cast::<$atomic>().add(i) };
            let mut bytes = [0u8; core::mem::size_of::<$word>()];
            bytes.copy_from_slice(chunk);
            word.store(<$word>::from_ne_bytes(bytes), Ordering::Relaxed);
        }
    }};
}

fn atomic_load<T: Pod>(src: *const T) -> T {
    let mut out = T::zeroed();
    let dst = bytemuck::bytes_of_mut(&mut out);
    match core::mem::align_of::<T>() {
        1 => copy_words!(core::sync::atomic::AtomicU8, u8, src, dst, load),
        2 => copy_words!(core::sync::atomic::AtomicU16, u16, src, dst, load),
        4 => copy_words!(core::sync::atomic::AtomicU32, u32, src, dst, load),
        _ => copy_words!(core::sync::atomic::AtomicU64, u64, src, dst, load),
    }
    out
}

fn atomic_store<T: Pod>(dst: *const T, value: &T) {
    let src = bytemuck::bytes_of(value);
    match core::mem::align_of::<T>() {
        1 => copy_words!(core::sync::atomic::AtomicU8, u8, dst, src, store),
        2 => copy_words!(core::sync::atomic::AtomicU16, u16, dst, src, store),
        4 => copy_words!(core::sync::atomic::AtomicU32, u32, dst, src, store),
        _ => copy_words!(core::sync::atomic::AtomicU64, u64, dst, src, store),
    }
}

impl<T: Pod> SeqLock<T> {
    /// A new sequence lock holding `value` (for use outside segments).
    pub fn new(value: T) -> Self {
        SeqLock {
            seq: AtomicU32::new(0),
            poisoned: AtomicU32::new(0),
            writer: RawMutex::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// A consistent copy of the value. Never blocks a writer; retries while
    /// a write is in progress.
    ///
    /// # Errors
    /// `PoisonError` carrying the copy if a writer died mid-write (or a
    /// panicking `update` left it) and the poison was not cleared.
    pub fn read(&self) -> LockResult<T> {
        let mut spins = 0u32;
        let mut last_check = None::<Instant>;
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let copy = atomic_load(self.value.get());
                core::sync::atomic::fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s1 {
                    return if self.poisoned.load(Ordering::Relaxed) != 0 {
                        Err(PoisonError::new(copy))
                    } else {
                        Ok(copy)
                    };
                }
                continue;
            }
            spins += 1;
            if spins < 1_000 {
                core::hint::spin_loop();
                continue;
            }
            std::thread::yield_now();
            if last_check.is_none_or(|t| t.elapsed() >= OWNER_CHECK_INTERVAL) {
                last_check = Some(Instant::now());
                self.recover_from_dead_writer();
            }
        }
    }

    /// If the writer died mid-write, takes its lock, makes `seq` even and poisons.
    #[cold]
    fn recover_from_dead_writer(&self) {
        if let Some(acquired) = self.writer.try_lock_report::<Os>() {
            if acquired == Acquired::OwnerDied {
                self.finish_dead_write();
            }
            // SAFETY: `try_lock_report` returned `Some`: this process holds it.
            unsafe { self.writer.unlock::<Os>() };
        }
    }

    fn finish_dead_write(&self) {
        self.poisoned.store(1, Ordering::Relaxed);
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 == 1 {
            self.seq.store(s.wrapping_add(1), Ordering::Release);
        }
    }

    /// Takes the writer lock; recovers a dead writer's odd `seq`.
    fn lock_writer(&self) -> WriteGuard<'_, T> {
        if self.writer.lock_report::<Os>() == Acquired::OwnerDied {
            self.finish_dead_write();
        }
        WriteGuard { lock: self }
    }

    /// Replaces the value. Readers see the old or the new value, never a mix.
    pub fn write(&self, value: T) {
        self.lock_writer().set(&value);
    }

    /// Replaces the value with `f` applied to a copy of it, under the writer
    /// lock (so concurrent `update`s do not lose each other's changes). If
    /// `f` panics, the shared value is left as it was (`f` only saw a copy),
    /// so the lock is released without poisoning.
    pub fn update(&self, f: impl FnOnce(&mut T)) {
        let guard = self.lock_writer();
        let mut value = atomic_load(self.value.get());
        f(&mut value);
        guard.set(&value);
    }

    /// Whether a writer died mid-write (and nobody cleared the poison since).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed) != 0
    }

    /// Marks the value consistent again.
    pub fn clear_poison(&self) {
        self.poisoned.store(0, Ordering::Relaxed);
    }

    /// The writer lock (for tools).
    pub fn raw(&self) -> &RawMutex {
        &self.writer
    }

    /// Starts a write and holds it open until the returned guard drops:
    /// meant for tests of crash recovery (a process killed while holding it
    /// dies "mid-write"). Prefer [`write`](Self::write) and [`update`](Self::update).
    #[doc(hidden)]
    pub fn begin_write(&self, partial: &T) -> impl Drop + '_ {
        let guard = self.lock_writer();
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s | 1, Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Release);
        atomic_store(self.value.get(), partial);
        guard
    }
}

/// Holds the writer lock; `set` performs one odd-even write.
struct WriteGuard<'a, T: Pod> {
    lock: &'a SeqLock<T>,
}

impl<T: Pod> WriteGuard<'_, T> {
    fn set(&self, value: &T) {
        let seq = &self.lock.seq;
        let s = seq.load(Ordering::Relaxed) | 1;
        seq.store(s, Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Release);
        atomic_store(self.lock.value.get(), value);
        seq.store(s.wrapping_add(1), Ordering::Release);
    }
}

impl<T: Pod> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        let seq = &self.lock.seq;
        let s = seq.load(Ordering::Relaxed);
        if s & 1 == 1 {
            // A write was interrupted by a panic: close it and poison.
            self.lock.poisoned.store(1, Ordering::Relaxed);
            seq.store(s.wrapping_add(1), Ordering::Release);
        }
        // SAFETY: the guard exists only while this process holds the writer lock.
        unsafe { self.lock.writer.unlock::<Os>() };
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SeqLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (value, poisoned) = match self.read() {
            Ok(v) => (v, false),
            Err(p) => (p.into_inner(), true),
        };
        f.debug_struct("SeqLock").field("value", &value).field("poisoned", &poisoned).finish()
    }
}
