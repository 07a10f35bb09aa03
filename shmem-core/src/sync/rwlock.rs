//! A cross-process reader-writer lock around plain data.
//!
//! `#[shared(rwlock)]`: many readers at once, or one writer.
//!
//! ```
//! use shmem_core::RwLock;
//! let table = RwLock::new([0u32; 8]);
//! table.write().unwrap()[3] = 7;
//! let a = table.read().unwrap();
//! let b = table.read().unwrap(); // readers share
//! assert_eq!(a[3] + b[3], 14);
//! ```
//!
//! # Protocol
//!
//! A crash-safe [`RawMutex`] is the gate. A reader takes the gate, adds
//! itself to `readers`, and releases the gate at once; it leaves by
//! decrementing `readers`. A writer takes the gate and keeps it, then waits
//! until `readers` drains to zero. While a writer waits, new readers queue at
//! the gate, so writers are not starved.
//!
//! | `readers` bits | meaning |
//! |---|---|
//! | 0..=30 | number of readers inside |
//! | 31 | `WRITER_WAITING`: the last reader out must wake the writer |
//!
//! # Crashes
//!
//! A writer killed while holding the lock is detected like a mutex owner
//! (the gate is a [`RawMutex`]): the next reader or writer gets in within
//! [`OWNER_CHECK_INTERVAL`] and
//! sees `Err(PoisonError)`. A *reader* killed while holding a read guard
//! leaks its count: writers then wait until their timeout
//! ([`RwLock::write_timeout`]). Use a [`Mutex`](super::mutex::Mutex) where readers
//! may be killed.

use super::park::{Os, Park};
use super::raw_mutex::{Acquired, RawMutex, OWNER_CHECK_INTERVAL};
use super::TimedOut;
use bytemuck::Pod;
use core::sync::atomic::{AtomicU32, Ordering};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError};
use std::time::{Duration, Instant};

const COUNT: u32 = (1 << 31) - 1;
const WRITER_WAITING: u32 = 1 << 31;

/// Plain data `T` behind a cross-process reader-writer lock. See the
/// [module docs](self).
#[repr(C)]
pub struct RwLock<T> {
    gate: RawMutex,
    readers: AtomicU32,
    poisoned: AtomicU32,
    pub(crate) value: UnsafeCell<T>,
}

// SAFETY: readers get `&T` only while no writer is inside; a writer gets
// `&mut T` only while it holds the gate and `readers` is zero.
unsafe impl<T: Pod> Sync for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Send for RwLock<T> {}

impl<T: Pod> RwLock<T> {
    /// A new, unlocked lock holding `value` (for use outside segments).
    pub fn new(value: T) -> Self {
        RwLock {
            gate: RawMutex::new(),
            readers: AtomicU32::new(0),
            poisoned: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    fn enter_gate(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        match self.gate.lock_until::<Os>(deadline) {
            None => Err(TimedOut),
            Some(Acquired::OwnerDied) => {
                self.poisoned.store(1, Ordering::Relaxed);
                Ok(())
            }
            Some(Acquired::Clean) => Ok(()),
        }
    }

    fn poison_check<G>(&self, guard: G) -> LockResult<G> {
        if self.poisoned.load(Ordering::Relaxed) != 0 {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    fn read_until(&self, deadline: Option<Instant>) -> Result<LockResult<RwLockReadGuard<'_, T>>, TimedOut> {
        self.enter_gate(deadline)?;
        self.readers.fetch_add(1, Ordering::Acquire);
        // SAFETY: `enter_gate` returned Ok: this process holds the gate.
        unsafe { self.gate.unlock::<Os>() };
        Ok(self.poison_check(RwLockReadGuard { lock: self, _not_send: PhantomData }))
    }

    fn write_until(&self, deadline: Option<Instant>) -> Result<LockResult<RwLockWriteGuard<'_, T>>, TimedOut> {
        self.enter_gate(deadline)?;
        loop {
            let r = self.readers.load(Ordering::Acquire);
            if r & COUNT == 0 {
                break;
            }
            if r & WRITER_WAITING == 0
                && self.readers.compare_exchange(r, r | WRITER_WAITING, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            let Ok(slice) = super::sleep_slice(deadline, Some(OWNER_CHECK_INTERVAL)) else {
                self.readers.fetch_and(COUNT, Ordering::Relaxed);
                // SAFETY: we hold the gate (entered above).
                unsafe { self.gate.unlock::<Os>() };
                return Err(TimedOut);
            };
            Os::wait(self.readers.as_ptr(), r | WRITER_WAITING, slice);
        }
        self.readers.fetch_and(COUNT, Ordering::Relaxed);
        Ok(self.poison_check(RwLockWriteGuard { lock: self, _not_send: PhantomData }))
    }

    /// Shared access, waiting as long as a writer holds the lock.
    ///
    /// # Errors
    /// `PoisonError` with the guard if a writer panicked or died inside.
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_until(None).unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// Shared access, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Err(TimedOut)` on timeout; `Ok(Err(PoisonError))` as for [`read`](Self::read).
    pub fn read_timeout(&self, timeout: Duration) -> Result<LockResult<RwLockReadGuard<'_, T>>, TimedOut> {
        self.read_until(super::deadline_after(timeout))
    }

    /// Exclusive access, waiting for readers and writers to leave.
    ///
    /// # Errors
    /// `PoisonError` with the guard if a writer panicked or died inside.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_until(None).unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// Exclusive access, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Err(TimedOut)` on timeout (the lock is left as it was);
    /// `Ok(Err(PoisonError))` as for [`write`](Self::write).
    pub fn write_timeout(&self, timeout: Duration) -> Result<LockResult<RwLockWriteGuard<'_, T>>, TimedOut> {
        self.write_until(super::deadline_after(timeout))
    }

    /// Whether a writer panicked or died inside (and nobody cleared it since).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed) != 0
    }

    /// Marks the data consistent again.
    pub fn clear_poison(&self) {
        self.poisoned.store(0, Ordering::Relaxed);
    }

    /// The gate lock (for tools: held by a writer, or briefly by a reader).
    pub fn raw(&self) -> &RawMutex {
        &self.gate
    }

    /// The number of readers inside.
    pub fn reader_count(&self) -> u32 {
        self.readers.load(Ordering::Relaxed) & COUNT
    }
}

/// Shared access to an [`RwLock`]'s value.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: while a read guard exists, `readers > 0`, so no writer
        // passes its wait; writers only write while holding the gate with
        // `readers == 0`.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: Pod> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        let prev = self.lock.readers.fetch_sub(1, Ordering::Release);
        if prev == WRITER_WAITING | 1 {
            Os::wake_all(self.lock.readers.as_ptr());
        }
    }
}

/// Exclusive access to an [`RwLock`]'s value.
#[must_use = "the write lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds the gate and saw `readers == 0`; readers
        // cannot enter without the gate.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: Pod> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: Pod> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.lock.poisoned.store(1, Ordering::Relaxed);
        }
        // SAFETY: the write guard exists only while this process holds the gate.
        unsafe { self.lock.gate.unlock::<Os>() };
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock")
            .field("readers", &self.reader_count())
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}
