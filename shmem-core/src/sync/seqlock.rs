//! A sequence lock: wait-free-for-readers snapshots of plain data.
//!
//! `#[shared(seqlock)]` suits values read often and written rarely (a
//! configuration, a position): readers never block a writer and never see a
//! torn value; writers are serialised by a crash-safe [`RawMutex`].
//!
//! ```
//! use shmem::SeqLock;
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

use super::park::{futex_of, point, Os, Park};
use super::primitive::{fence, AtomicU32, Ordering};
use super::raw_mutex::{Acquired, RawMutex, OWNER_CHECK_INTERVAL};
use super::spin::{spin_then_yield, Site};
use super::TimedOut;
use bytemuck::Pod;
use std::cell::UnsafeCell;
use std::fmt;
use std::sync::{LockResult, PoisonError};
use std::time::{Duration, Instant};

/// Plain data `T` behind a sequence lock shared between processes. See the
/// [module docs](self).
///
/// ```
/// use shmem::{Segment, Shared};
///
/// #[derive(Shared)]
/// struct Pose {
///     #[shared(seqlock)]
///     xyz: [f64; 3], // readers never block the writer, and never see a torn value
/// }
///
/// let p = Segment::create_anonymous(&Pose { xyz: [0.0; 3] })?;
/// p.xyz().write([1.0, 2.0, 3.0]);
/// p.xyz().update(|v| v[2] += 1.0);
/// assert_eq!(p.xyz().read().unwrap(), [1.0, 2.0, 4.0]);
/// # Ok::<(), shmem::Error>(())
/// ```
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
unsafe impl<T: crate::layout::PlainData + Send> Sync for SeqLock<T> {}
// SAFETY: as above.
unsafe impl<T: crate::layout::PlainData + Send> Send for SeqLock<T> {}

/// Copies the `T` at `src` out with relaxed atomic loads: whole 8-byte
/// words, then single bytes for a tail shorter than a word. Writers use
/// [`atomic_store`], which splits the value the same way (the split depends
/// only on `size_of::<T>()`), so every byte is only ever accessed atomically
/// at one width.
///
/// `src` must be 8-aligned: the value of a `SeqLock` always is (it follows
/// 16 bytes of words in a `repr(C)` struct aligned to at least 8).
fn atomic_load<T: Pod>(src: *const T) -> T {
    use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
    let mut out = T::zeroed();
    let dst = bytemuck::bytes_of_mut(&mut out);
    let words = dst.len() / 8;
    let (head, tail) = dst.split_at_mut(words * 8);
    for (i, chunk) in head.chunks_exact_mut(8).enumerate() {
        // SAFETY: `src` points at a live `T`, 8-aligned (see above), and
        // `i < size_of::<T>() / 8` keeps the word inside it. Every access
        // to these bytes is an 8-byte atomic (this, or `atomic_store`), so
        // there is no data race.
        let word = unsafe { &*src.cast::<AtomicU64>().wrapping_add(i) };
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        model_switch();
    }
    for (j, byte) in tail.iter_mut().enumerate() {
        // SAFETY: as above, for the byte at `words * 8 + j < size_of::<T>()`,
        // only ever accessed as a 1-byte atomic.
        let b = unsafe { &*src.cast::<AtomicU8>().wrapping_add(words * 8 + j) };
        *byte = b.load(Ordering::Relaxed);
    }
    out
}

/// Copies `value` into the `T` at `dst` with relaxed atomic stores, split as
/// in [`atomic_load`].
fn atomic_store<T: Pod>(dst: *const T, value: &T) {
    use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
    let src = bytemuck::bytes_of(value);
    let words = src.len() / 8;
    let (head, tail) = src.split_at(words * 8);
    for (i, chunk) in head.chunks_exact(8).enumerate() {
        // SAFETY: as in `atomic_load`: in bounds, 8-aligned, same-width atomics only.
        let word = unsafe { &*dst.cast::<AtomicU64>().wrapping_add(i) };
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        model_switch();
    }
    for (j, byte) in tail.iter().enumerate() {
        // SAFETY: as in `atomic_load`, for one tail byte.
        let b = unsafe { &*dst.cast::<AtomicU8>().wrapping_add(words * 8 + j) };
        b.store(*byte, Ordering::Relaxed);
    }
}

/// Under loom, a scheduling point between two words of a copy, so the model
/// explores a reader running in the middle of a write (the words themselves
/// are plain memory that loom does not track); nothing otherwise.
#[inline(always)]
fn model_switch() {
    // An operation on a loom object that every copy touches, so loom's
    // partial-order reduction sees reader and writer copies as dependent and
    // explores their interleavings (a yield would bias the scheduler, and an
    // operation on an object nobody else touches would be pruned).
    #[cfg(loom)]
    {
        loom::lazy_static! {
            static ref COPYING: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
        }
        COPYING.fetch_add(1, Ordering::Relaxed);
    }
}

const _: () = assert!(core::mem::offset_of!(SeqLock<u8>, value) % 8 == 0 && align_of::<SeqLock<u8>>() >= 8);

/// Where a seqlock's words are, whatever `T` (for the schema decoder,
/// [`crate::segment::decode`]): sequence, poison flag, writer lock word.
#[cfg(not(loom))]
pub(crate) const WORDS: [u64; 3] = [
    core::mem::offset_of!(SeqLock<u8>, seq) as u64,
    core::mem::offset_of!(SeqLock<u8>, poisoned) as u64,
    core::mem::offset_of!(SeqLock<u8>, writer) as u64,
];

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
        match self.read_until::<Os>(None) {
            Ok(r) => r,
            Err(TimedOut) => unreachable!("no deadline, no timeout"),
        }
    }

    /// [`read`](Self::read), waiting at most `timeout` for a write in
    /// progress to finish (a writer that is stopped, or slow).
    ///
    /// # Errors
    /// `Err(TimedOut)` if every try met a write in progress; `Ok(Err(..))`
    /// as for [`read`](Self::read).
    pub fn read_timeout(&self, timeout: Duration) -> Result<LockResult<T>, TimedOut> {
        self.read_until::<Os>(super::deadline_after(timeout))
    }

    /// [`read_timeout`](Self::read_timeout) that never writes (for a
    /// read-only mapping): a dead writer's half-done write is waited out,
    /// not repaired.
    pub(crate) fn read_only_timeout(&self, timeout: Duration) -> Result<LockResult<T>, TimedOut> {
        self.read_loop::<Os>(super::deadline_after(timeout), false)
    }

    fn read_until<P: Park>(&self, deadline: Option<Instant>) -> Result<LockResult<T>, TimedOut> {
        self.read_loop::<P>(deadline, true)
    }

    fn read_loop<P: Park>(&self, deadline: Option<Instant>, repair: bool) -> Result<LockResult<T>, TimedOut> {
        // Spins left in this read: one per write seen in progress, up to 8
        // (back-to-back writes each get one; a writer that keeps writing
        // sends the reader to its naps). None under loom, which never spins.
        let mut spins_left = if cfg!(loom) { 0 } else { 8 };
        let mut spun_on = None::<u32>;
        let mut naps = 0u32;
        let mut last_check = None::<Instant>;
        loop {
            // Relaxed and a fence, not an Acquire load: the same ordering,
            // and the only load Rust promises never writes (read-only views).
            let s1 = self.seq.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s1 & 1 == 0 {
                let copy = atomic_load(self.value.get());
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s1 {
                    return Ok(if self.poisoned.load(Ordering::Relaxed) != 0 {
                        Err(PoisonError::new(copy))
                    } else {
                        Ok(copy)
                    });
                }
                continue;
            }
            if spins_left > 0 && spun_on != Some(s1) {
                // A write in progress: spin, then yield, for as long as
                // waits here have lately been worth it.
                spins_left -= 1;
                spun_on = Some(s1);
                let _ = spin_then_yield(Site::SeqLock, deadline, || self.seq.load(Ordering::Relaxed) != s1);
                continue;
            }
            // A write is taking long (the writer is descheduled, stopped, or
            // dead): sleep instead of burning the CPU the writer may need,
            // with growing naps (50 us .. 1.6 ms; a futex wait that returns at
            // once if `seq` moves), and check the writer now and then.
            let nap = super::sleep_slice(deadline, Some(Duration::from_micros(50u64 << naps.min(5))))?;
            naps += 1;
            P::wait(futex_of(&self.seq), s1, nap);
            if repair && (cfg!(loom) || last_check.is_none_or(|t| t.elapsed() >= OWNER_CHECK_INTERVAL)) {
                last_check = Some(Instant::now());
                self.recover_from_dead_writer::<P>();
            }
        }
    }

    /// If the writer died mid-write, takes its lock, makes `seq` even and
    /// poisons. Also repairs an odd `seq` that no writer holds the lock for
    /// (a state no writer leaves; a buggy or hostile peer can).
    #[cold]
    fn recover_from_dead_writer<P: Park>(&self) {
        if let Some(acquired) = self.writer.try_lock_report::<P>() {
            if acquired == Acquired::OwnerDied || self.seq.load(Ordering::Relaxed) & 1 == 1 {
                self.finish_dead_write();
            }
            // SAFETY: `try_lock_report` returned `Some`: this process holds it.
            unsafe { self.writer.unlock::<P>() };
        }
    }

    /// With the writer lock taken over: a write left half done (odd `seq`)
    /// is closed and poisons the value; a writer that died after finishing
    /// its write (even `seq`) left a consistent value and poisons nothing.
    fn finish_dead_write(&self) {
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 == 1 {
            self.poisoned.store(1, Ordering::Relaxed);
            self.seq.store(s.wrapping_add(1), Ordering::Release);
        }
    }

    /// Takes the writer lock; recovers a dead writer's odd `seq`.
    fn lock_writer<P: Park>(&self) -> WriteGuard<'_, T, P> {
        if self.writer.lock_report::<P>() == Acquired::OwnerDied {
            self.finish_dead_write();
        }
        WriteGuard { lock: self, _park: core::marker::PhantomData }
    }

    /// Replaces the value. Readers see the old or the new value, never a mix.
    pub fn write(&self, value: T) {
        self.lock_writer::<Os>().set(&value);
    }

    /// Replaces the value with `f` applied to a copy of it, under the writer
    /// lock (so concurrent `update`s do not lose each other's changes). If
    /// `f` panics, the shared value is left as it was (`f` only saw a copy),
    /// so the lock is released without poisoning.
    pub fn update(&self, f: impl FnOnce(&mut T)) {
        let guard = self.lock_writer::<Os>();
        let mut value = atomic_load(self.value.get());
        f(&mut value);
        guard.set(&value);
    }

    /// [`read`](Self::read) with another [`Park`] (for the loom models).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    #[doc(hidden)]
    pub fn read_with<P: Park>(&self) -> LockResult<T> {
        match self.read_until::<P>(None) {
            Ok(r) => r,
            Err(TimedOut) => unreachable!("no deadline, no timeout"),
        }
    }

    /// [`write`](Self::write) with another [`Park`] (for the loom models).
    #[doc(hidden)]
    pub fn write_with<P: Park>(&self, value: T) {
        self.lock_writer::<P>().set(&value);
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
        let guard = self.lock_writer::<Os>();
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s | 1, Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Release);
        atomic_store(self.value.get(), partial);
        guard
    }
}

/// Holds the writer lock; `set` performs one odd-even write.
struct WriteGuard<'a, T: Pod, P: Park> {
    lock: &'a SeqLock<T>,
    _park: core::marker::PhantomData<fn() -> P>,
}

impl<T: Pod, P: Park> WriteGuard<'_, T, P> {
    fn set(&self, value: &T) {
        let seq = &self.lock.seq;
        let s = seq.load(Ordering::Relaxed) | 1;
        seq.store(s, Ordering::Relaxed);
        fence(Ordering::Release);
        point::<P>("seqlock.write.odd");
        atomic_store(self.lock.value.get(), value);
        point::<P>("seqlock.write.copied");
        seq.store(s.wrapping_add(1), Ordering::Release);
        point::<P>("seqlock.write.even");
    }
}

impl<T: Pod, P: Park> Drop for WriteGuard<'_, T, P> {
    fn drop(&mut self) {
        let seq = &self.lock.seq;
        let s = seq.load(Ordering::Relaxed);
        if s & 1 == 1 {
            // A write was interrupted by a panic: close it and poison.
            self.lock.poisoned.store(1, Ordering::Relaxed);
            seq.store(s.wrapping_add(1), Ordering::Release);
        }
        // SAFETY: the guard exists only while this process holds the writer lock.
        unsafe { self.lock.writer.unlock::<P>() };
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
