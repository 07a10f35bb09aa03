//! Read-only access to a segment: what a process that may not write sees.
//!
//! [`ReadOnlySegment<T>`](crate::ReadOnlySegment) maps a segment without write permission (it works
//! for a user who can only read the file, mode `0644`) and dereferences to
//! the *read-only form* of `T`'s twin: the same field accessors, returning
//! [`ReadOnly`] wrappers that have only the operations that never write.
//! Writing through it does not compile:
//!
//! ```compile_fail
//! use shmem::Segment;
//! # let name = format!("doc-ro-fail-{}", std::process::id());
//! let seg = Segment::<u64>::create(&name, &1)?;
//! let ro = Segment::<u64>::attach_read_only(&name)?;
//! ro.store(2); // no `store` on a read-only scalar
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! What a read-only handle can do:
//! - scalars: [`load`](ReadOnly::load);
//! - arrays: index them, iterate them;
//! - `#[shared(seqlock)]` fields: [`read`](ReadOnly::read) and
//!   [`read_timeout`](ReadOnly::read_timeout), consistent copies;
//! - events, semaphores, barriers: their state;
//! - queues and maps: their length and capacity.
//!
//! `#[shared(lock)]` and `#[shared(rwlock)]` fields cannot be read: taking a
//! lock writes the lock word. Put what a monitor must read behind
//! `#[shared(seqlock)]`.
//!
//! Every load through a read-only form is a `Relaxed` atomic load followed
//! by an `Acquire` fence: the only atomic load Rust promises never to write
//! (on every target, up to the pointer size: on 32-bit targets, 64-bit
//! fields are not read-only safe).

use crate::sync::atomic::{Atomic, Scalar};
use std::sync::LockResult;
use std::time::Duration;

/// A type with a read-only form: `ReadOnly` has exactly `Self`'s layout and
/// only operations that never write to it.
///
/// # Safety
/// `Self::ReadOnly` must be `#[repr(transparent)]` over `Self` (or an array
/// of such forms over an array of `Self`'s elements), so that a `&Self`
/// can be reinterpreted as a `&Self::ReadOnly`; and no operation of
/// `Self::ReadOnly` may write to its memory, which may be mapped read-only.
/// Implemented here and by `#[derive(Shared)]`; do not implement it by hand.
pub unsafe trait ReadOnlyForm {
    /// The read-only form.
    type ReadOnly;
}

/// A twin inside its generated read-only form (`StatsReadOnly`): opaque, so
/// that safe code reaching the field of that form cannot get at the twin
/// (whose accessors write). Used by `#[derive(Shared)]`.
#[doc(hidden)]
#[repr(transparent)]
pub struct Sealed<T>(T);

impl<T> Sealed<T> {
    /// The twin.
    ///
    /// # Safety
    /// Only for generated read-only accessors: the reference may only be
    /// used to take a field's address and view it with [`read_only`], never
    /// to call anything on it (the memory may be mapped read-only).
    #[doc(hidden)]
    #[inline]
    pub unsafe fn __twin(&self) -> &T {
        &self.0
    }
}

/// One atomic load that never writes: `Relaxed`, then an `Acquire` fence.
macro_rules! load_acquire {
    ($atomic:expr) => {{
        let v = $atomic.load(core::sync::atomic::Ordering::Relaxed);
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        v
    }};
}

/// Views `value` in its read-only form.
#[inline]
pub fn read_only<L: ReadOnlyForm>(value: &L) -> &L::ReadOnly {
    // SAFETY: `ReadOnlyForm`'s contract: `L::ReadOnly` has `L`'s exact
    // layout (repr(transparent)), so the pointer is valid and aligned for
    // it, for the same lifetime.
    unsafe { &*(value as *const L).cast::<L::ReadOnly>() }
}

/// The read-only form of a shared primitive `L` (a scalar's [`Atomic`], a
/// seqlock, an event, a queue, ...): only operations that never write.
///
/// ```
/// # let name = format!("doc-readonly-type-{}", std::process::id());
/// let seg = shmem::Segment::<[u64; 2]>::create(&name, &[1, 2])?;
/// let ro = shmem::Segment::<[u64; 2]>::attach_read_only(&name)?;
/// let second: &shmem::ReadOnly<shmem::Atomic<u64>> = &ro[1];
/// assert_eq!(second.load(), 2);
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(transparent)]
pub struct ReadOnly<L>(L);

impl<L> std::fmt::Debug for ReadOnly<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadOnly(..)")
    }
}

// SAFETY: `ReadOnly<L>` is repr(transparent) over `L`, and every method
// below only loads.
unsafe impl<T: Scalar> ReadOnlyForm for Atomic<T> {
    type ReadOnly = ReadOnly<Atomic<T>>;
}

impl<T: Scalar> ReadOnly<Atomic<T>> {
    /// Reads the value (a `Relaxed` load, then an `Acquire` fence).
    #[inline]
    pub fn load(&self) -> T {
        let v = self.0.load_with(core::sync::atomic::Ordering::Relaxed);
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        v
    }
}

// SAFETY: an array of repr(transparent) forms has the array's layout.
unsafe impl<L: ReadOnlyForm, const N: usize> ReadOnlyForm for [L; N] {
    type ReadOnly = [L::ReadOnly; N];
}

// SAFETY: repr(transparent); `read` and `read_timeout` only load (they
// never repair a dead writer's sequence, which a writer does).
unsafe impl<T: crate::layout::PlainData + Send> ReadOnlyForm for crate::sync::seqlock::SeqLock<T> {
    type ReadOnly = ReadOnly<crate::sync::seqlock::SeqLock<T>>;
}

impl<T: bytemuck::Pod + Send> ReadOnly<crate::sync::seqlock::SeqLock<T>> {
    /// A consistent copy of the value, waiting while a write is in
    /// progress. A read-only process cannot repair a writer that died in
    /// the middle of a write: then this waits until a process that can
    /// write touches the lock. Use [`read_timeout`](Self::read_timeout)
    /// where that matters.
    ///
    /// # Errors
    /// `PoisonError` carrying the copy if a writer died mid-write earlier.
    pub fn read(&self) -> LockResult<T> {
        loop {
            if let Ok(r) = self.0.read_only_timeout(Duration::from_secs(3600)) {
                return r;
            }
        }
    }

    /// [`read`](Self::read), waiting at most `timeout` for a write in progress.
    ///
    /// # Errors
    /// `Err(TimedOut)` if every try met a write in progress.
    pub fn read_timeout(&self, timeout: Duration) -> Result<LockResult<T>, crate::sync::TimedOut> {
        self.0.read_only_timeout(timeout)
    }
}

/// Locks cannot be taken without writing their lock word: a read-only
/// form with no operations.
macro_rules! opaque {
    ($($t:ident :: $path:path),*) => {$(
        // SAFETY: repr(transparent), and no operations at all.
        unsafe impl<T: crate::layout::PlainData + Send + Sync> ReadOnlyForm for $path {
            type ReadOnly = ReadOnly<$path>;
        }
    )*};
}
opaque!(Mutex::crate::sync::mutex::Mutex<T>, RwLock::crate::sync::rwlock::RwLock<T>);

// SAFETY: repr(transparent); the methods below only load.
unsafe impl ReadOnlyForm for crate::sync::wait::Event {
    type ReadOnly = ReadOnly<crate::sync::wait::Event>;
}

impl ReadOnly<crate::sync::wait::Event> {
    /// Whether the event is set.
    pub fn is_set(&self) -> bool {
        load_acquire!(self.0.state_word()) != 0
    }
}

// SAFETY: repr(transparent); the methods below only load.
unsafe impl ReadOnlyForm for crate::sync::wait::Semaphore {
    type ReadOnly = ReadOnly<crate::sync::wait::Semaphore>;
}

impl ReadOnly<crate::sync::wait::Semaphore> {
    /// The permits available now.
    pub fn available(&self) -> u32 {
        load_acquire!(self.0.permits_word())
    }
}

// SAFETY: repr(transparent); the methods below only load.
unsafe impl ReadOnlyForm for crate::sync::wait::Barrier {
    type ReadOnly = ReadOnly<crate::sync::wait::Barrier>;
}

impl ReadOnly<crate::sync::wait::Barrier> {
    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.0.parties_relaxed()
    }
}

// SAFETY: repr(transparent), and no operations at all.
unsafe impl ReadOnlyForm for crate::sync::raw_mutex::RawMutex {
    type ReadOnly = ReadOnly<crate::sync::raw_mutex::RawMutex>;
}

// SAFETY: repr(transparent), and no operations at all.
unsafe impl ReadOnlyForm for crate::sync::wait::Condvar {
    type ReadOnly = ReadOnly<crate::sync::wait::Condvar>;
}

// SAFETY: repr(transparent); the methods below only load.
unsafe impl<T: bytemuck::Pod + Send + Sync, const N: usize> ReadOnlyForm for crate::containers::Queue<T, N> {
    type ReadOnly = ReadOnly<crate::containers::Queue<T, N>>;
}

impl<T: bytemuck::Pod + Send + Sync, const N: usize> ReadOnly<crate::containers::Queue<T, N>> {
    /// The number of queued items (a snapshot).
    pub fn len(&self) -> usize {
        self.0.len_relaxed()
    }

    /// Whether the queue is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed_relaxed()
    }
}

// SAFETY: repr(transparent); the methods below only load.
unsafe impl<K, V, const N: usize> ReadOnlyForm for crate::containers::Map<K, V, N>
where
    K: bytemuck::Pod + std::hash::Hash + Eq + Send + Sync,
    V: bytemuck::Pod + Send + Sync,
{
    type ReadOnly = ReadOnly<crate::containers::Map<K, V, N>>;
}

impl<K, V, const N: usize> ReadOnly<crate::containers::Map<K, V, N>>
where
    K: bytemuck::Pod + std::hash::Hash + Eq + Send + Sync,
    V: bytemuck::Pod + Send + Sync,
{
    /// The number of entries (a snapshot).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the map is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }
}
