//! The atomics and data cells the lock and queue state machines use:
//! `core`'s normally, loom's when built with `--cfg loom` so the model
//! checker can explore interleavings (see `shmem-core/tests/loom_lock.rs`
//! and `loom_queue.rs`). Scalar field atomics that live in a mapping always
//! use `core` directly.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Plain data that several threads or processes read and write under a
/// protocol of their own (a lock, a published counter). Under loom the
/// model checker verifies that protocol: an access it cannot order after
/// the last conflicting one fails the model.
#[repr(transparent)]
pub(crate) struct DataCell<T>(#[cfg(not(loom))] core::cell::UnsafeCell<T>, #[cfg(loom)] loom::cell::UnsafeCell<T>);

impl<T: Copy> DataCell<T> {
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        DataCell(loom::cell::UnsafeCell::new(value))
    }

    /// A copy of the value.
    ///
    /// # Safety
    /// No write to this cell may happen concurrently.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn read(&self) -> T {
        // SAFETY: the caller rules out concurrent writes; `T: Copy` is
        // plain data and the cell is aligned for `T`.
        unsafe { self.0.get().read() }
    }

    /// Overwrites the value.
    ///
    /// # Safety
    /// No other access to this cell may happen concurrently.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn write(&self, value: T) {
        // SAFETY: the caller rules out concurrent access; aligned for `T`.
        unsafe { self.0.get().write(value) }
    }

    /// A copy of the value.
    ///
    /// # Safety
    /// No write to this cell may happen concurrently (loom checks it).
    #[cfg(loom)]
    pub(crate) unsafe fn read(&self) -> T {
        // SAFETY: as the caller promises; loom fails the model otherwise.
        self.0.with(|p| unsafe { p.read() })
    }

    /// Overwrites the value.
    ///
    /// # Safety
    /// No other access to this cell may happen concurrently (loom checks it).
    #[cfg(loom)]
    pub(crate) unsafe fn write(&self, value: T) {
        // SAFETY: as the caller promises; loom fails the model otherwise.
        self.0.with_mut(|p| unsafe { p.write(value) })
    }
}
