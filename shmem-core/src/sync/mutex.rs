//! A cross-process mutex holding plain data, that survives its owner's death.
//!
//! `#[shared(lock)]` on a field of a `#[derive(Shared)]` struct puts the
//! field's value in a [`Mutex`], and the field's accessor returns it.
//!
//! ```
//! use shmem::Mutex;
//!
//! let values = Mutex::new([1i64, 2, 3, 4]); // in a segment: `seg.values()`
//! {
//!     let mut values = values.lock().unwrap();
//!     values.iter_mut().for_each(|v| *v *= 10);
//! } // unlocked here
//! assert_eq!(*values.lock().unwrap(), [10, 20, 30, 40]);
//! ```
//!
//! # Poisoning
//!
//! As with `std::sync::Mutex`, a guard dropped while its thread panics
//! poisons the mutex. So does the death of the owning process: if a process
//! is killed while holding the lock, the next locker acquires it (usually
//! within a millisecond: the kernel wakes it through a death watch, and at
//! the latest after [`OWNER_CHECK_INTERVAL`]) and gets `Err(PoisonError)`
//! carrying the guard, because the data may be half updated.
//! [`Mutex::clear_poison`] marks it consistent again. A lock is never taken
//! from a process that is alive: see [`liveness`](super::liveness) for how
//! death is decided, and [`raw_mutex`](super::raw_mutex) for the lock word.

use super::park::Os;
use super::raw_mutex::{Acquired, RawMutex};
use bytemuck::Pod;
use core::sync::atomic::{AtomicU32, Ordering};
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};
use std::time::Duration;

pub use super::raw_mutex::OWNER_CHECK_INTERVAL;

/// A value of plain data `T` behind a cross-process, crash-safe lock.
///
/// `T: Pod` (every bit pattern valid, no pointers): the value may be read by
/// another process, or after its writer died halfway.
///
/// ```
/// use shmem::{Segment, Shared};
///
/// #[derive(Shared)]
/// struct Account {
///     #[shared(lock)]
///     balance: [i64; 2], // checking, savings: always changed together
/// }
///
/// let acct = Segment::create_anonymous(&Account { balance: [100, 0] })?;
/// {
///     let mut b = acct.balance().lock().expect("a holder died"); // `with lock:`
///     b[0] -= 40;
///     b[1] += 40;
/// } // unlocked here
/// assert_eq!(acct.balance().get(), [60, 40]);
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(C)]
pub struct Mutex<T> {
    raw: RawMutex,
    poisoned: AtomicU32,
    pub(crate) value: UnsafeCell<T>,
}

/// Where the poison flag sits in every `Mutex<T>` (after the lock word,
/// before the value, whatever `T`): for readers that know only the schema.
pub(crate) const POISON_OFFSET: u64 = core::mem::offset_of!(Mutex<u8>, poisoned) as u64;
const _: () = assert!(POISON_OFFSET == core::mem::offset_of!(Mutex<[u64; 4]>, poisoned) as u64);
/// Where the lock word is (for the schema decoder, [`crate::segment::decode`]).
#[cfg(not(loom))]
pub(crate) const RAW_OFFSET: u64 = core::mem::offset_of!(Mutex<u8>, raw) as u64;

// SAFETY: the value is only reached through a guard, which exists only while
// the lock is held; `T: Send` (as for `std::sync::Mutex`) because the value
// is handed from thread to thread (`Pod` alone admits raw pointers).
unsafe impl<T: crate::layout::PlainData + Send> Sync for Mutex<T> {}
// SAFETY: as above; a `Mutex` owns its `T` inline.
unsafe impl<T: crate::layout::PlainData + Send> Send for Mutex<T> {}

/// Why [`Mutex::lock_timeout`] failed.
///
/// ```
/// use shmem::{Segment, Shared, TimedLockError};
/// use std::time::Duration;
/// #[derive(Shared)]
/// struct S {
///     #[shared(lock)]
///     n: u64,
/// }
/// let s = Segment::create_anonymous(&S { n: 0 })?;
/// match s.n().lock_timeout(Duration::from_millis(100)) {
///     Ok(mut n) => *n += 1,
///     Err(TimedLockError::Poisoned(e)) => *e.into_inner() += 1, // a holder died: the value may be half-updated
///     Err(TimedLockError::Timeout) => println!("busy"),
/// }
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug)]
pub enum TimedLockError<G> {
    /// The lock was acquired but is poisoned; the guard is inside.
    Poisoned(PoisonError<G>),
    /// The lock was not acquired before the timeout.
    Timeout,
}

impl<G> fmt::Display for TimedLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimedLockError::Poisoned(_) => f.write_str("poisoned lock: another holder panicked or died"),
            TimedLockError::Timeout => f.write_str("timed out waiting for the lock"),
        }
    }
}

impl<G: fmt::Debug> std::error::Error for TimedLockError<G> {}

impl<T: Pod> Mutex<T> {
    /// A new, unlocked mutex holding `value` (for use outside segments).
    pub fn new(value: T) -> Self {
        Mutex { raw: RawMutex::new(), poisoned: AtomicU32::new(0), value: UnsafeCell::new(value) }
    }

    fn guard(&self, acquired: Acquired) -> LockResult<MutexGuard<'_, T>> {
        if acquired == Acquired::OwnerDied {
            self.poisoned.store(1, Ordering::Relaxed);
        }
        let guard = MutexGuard { mutex: self, _not_send: PhantomData };
        if self.poisoned.load(Ordering::Relaxed) != 0 {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// Locks, waiting as long as needed.
    ///
    /// # Errors
    /// `PoisonError` (holding the guard) if a previous holder panicked or
    /// died while holding the lock.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.raw.lock_report::<Os>())
    }

    /// Locks if that needs no waiting (a dead owner's lock is taken over).
    ///
    /// # Errors
    /// `WouldBlock` if another live process or thread holds it;
    /// `Poisoned` as for [`lock`](Self::lock).
    ///
    /// ```
    /// use shmem::{Segment, Shared};
    /// #[derive(Shared)]
    /// struct S {
    ///     #[shared(lock)]
    ///     n: u64,
    /// }
    /// let s = Segment::create_anonymous(&S { n: 1 })?;
    /// let held = s.n().lock().unwrap();
    /// assert!(s.n().try_lock().is_err()); // held: fails at once
    /// drop(held);
    /// assert_eq!(*s.n().try_lock().unwrap(), 1);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        match self.raw.try_lock_report::<Os>() {
            None => Err(TryLockError::WouldBlock),
            Some(acquired) => self.guard(acquired).map_err(TryLockError::Poisoned),
        }
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedLockError::Timeout`] if the lock stayed busy; `Poisoned` as for
    /// [`lock`](Self::lock). After a timeout the mutex is unchanged.
    ///
    /// ```
    /// use shmem::{Segment, Shared, TimedLockError};
    /// use std::time::Duration;
    /// #[derive(Shared)]
    /// struct S {
    ///     #[shared(lock)]
    ///     n: u64,
    /// }
    /// let s = Segment::create_anonymous(&S { n: 1 })?;
    /// let held = s.n().lock().unwrap();
    /// assert!(matches!(s.n().lock_timeout(Duration::from_millis(5)), Err(TimedLockError::Timeout)));
    /// drop(held);
    /// *s.n().lock_timeout(Duration::from_millis(5)).unwrap() += 1;
    /// assert_eq!(s.n().get(), 2);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, TimedLockError<MutexGuard<'_, T>>> {
        match self.raw.lock_until::<Os>(super::deadline_after(timeout)) {
            None => Err(TimedLockError::Timeout),
            Some(acquired) => self.guard(acquired).map_err(TimedLockError::Poisoned),
        }
    }

    /// Whether a holder panicked or died while holding the lock (and nobody
    /// cleared the poison since).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed) != 0
    }

    /// Marks the data consistent again after a poisoning.
    pub fn clear_poison(&self) {
        self.poisoned.store(0, Ordering::Relaxed);
    }

    /// The raw lock (for tools and for building other primitives).
    pub fn raw(&self) -> &RawMutex {
        &self.raw
    }

    /// A copy of the value, taken under the lock (ignoring poison).
    pub fn get(&self) -> T {
        *self.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the value under the lock (ignoring poison).
    pub fn set(&self, value: T) {
        *self.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(guard) => d.field("data", &*guard),
            Err(TryLockError::Poisoned(p)) => d.field("data", &*p.into_inner()).field("poisoned", &true),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Access to a [`Mutex`]'s value; unlocks when dropped (and poisons the
/// mutex if dropped during a panic). Not `Send`: unlock where you locked.
///
/// ```
/// use shmem::{Segment, Shared};
/// #[derive(Shared)]
/// struct S {
///     #[shared(lock)]
///     pair: [u32; 2],
/// }
/// let s = Segment::create_anonymous(&S { pair: [1, 2] })?;
/// let mut guard = s.pair().lock().unwrap(); // derefs to the value
/// guard.swap(0, 1);
/// drop(guard); // unlocks (also on panic, which poisons)
/// assert_eq!(s.pair().get(), [2, 1]);
/// # Ok::<(), shmem::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> MutexGuard<'a, T> {
    /// The mutex this guard locks (for [`Condvar`](super::wait::Condvar)).
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

// SAFETY: sharing a guard between threads only shares `&T`, hence `T: Sync`.
unsafe impl<T: Pod + Sync> Sync for MutexGuard<'_, T> {}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this process holds the lock, so
        // no one else accesses the value; `T: Pod` is valid for any bytes.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference
        // derived from the guard.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.mutex.poisoned.store(1, Ordering::Relaxed);
        }
        // SAFETY: the guard was created by acquiring the lock in this process.
        unsafe { self.mutex.raw.unlock::<Os>() };
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
