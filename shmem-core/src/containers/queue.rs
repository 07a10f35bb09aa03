//! `Queue<T, N>`: a bounded multi-producer multi-consumer queue shared by
//! any number of processes — `multiprocessing.Queue` without pickling.
//!
//! ```
//! use shmem::containers::Queue;
//! let q: Queue<u64, 4> = Queue::new();
//! q.try_push(1).unwrap();
//! q.push(2).unwrap();                   // blocks while full
//! assert_eq!(q.pop(), Ok(1));           // blocks while empty
//! q.close();                            // pushes fail from now on...
//! assert!(q.try_push(3).is_err());
//! assert_eq!(q.pop(), Ok(2));           // ...pops drain what is left...
//! assert!(q.pop().is_err());            // ...then report closed
//! ```
//!
//! # Design
//!
//! A ring of `N` slots and two 64-bit counters: `tail` (pushes so far) and
//! `head` (pops so far); `tail - head` items are queued. Producers are
//! serialised by one crash-safe [`RawMutex`], consumers by another, so a
//! producer and a consumer never contend for a lock (the two-lock queue).
//! A push writes its slot, then publishes it with one store to `tail`; a pop
//! copies its slot out, then frees it with one store to `head`. Waiting
//! sleeps in the kernel (a shared futex) on the side's sleeper flag, which
//! the sleeper sets to 1; a push or pop that finds the flag set clears it
//! and wakes that side's sleepers, and `close` clears both flags, so no
//! wake-up is lost (a sleeper killed in its sleep costs one extra wake-up
//! call, after which the flag is clear). Before sleeping,
//! a blocked push or pop re-checks for a short bounded spin (about 25 us),
//! so a reply that comes quickly costs no kernel round trip; the checks are
//! spaced out (every 8 pause hints, ~0.2 us) so that they do not steal the
//! cache line the other side is writing. Each side also keeps its last reading of the other side's
//! counter, and re-reads the real one only when that copy says full (or
//! empty), so a push or pop usually touches only its own side's line and
//! the slot.
//!
//! # Crashes
//!
//! Because each operation takes effect with its single publishing store, a
//! process killed at any point of `push` or `pop` leaves a consistent queue:
//! the item it was pushing is not in the queue, the item it was popping is
//! still there for another consumer. If it died holding a lock, the next
//! producer (or consumer) takes the lock over (see
//! [`liveness`](crate::sync::liveness); usually within a millisecond).
//! Sleepers also wake every 100 ms to re-check, so a process killed between
//! publishing and waking cannot strand them.
//!
//! Layout (for tools): `tail` at offset 0, `head` at 64, the closed flag at
//! 128, the slots from offset 192 (each group on its own cache line).

use crate::sync::park::{futex_of, Os, Park};
use crate::sync::primitive::{fence, AtomicU32, AtomicU64, DataCell, Ordering};
use crate::sync::raw_mutex::RawMutex;
use crate::sync::spin::{spin_then_yield, Site};
use crate::sync::TimedOut;
use bytemuck::Pod;
use std::fmt;
use std::time::{Duration, Instant};

const RECHECK: Duration = Duration::from_millis(100);

/// Where a queue's words are, whatever `T` and `N` (for the schema decoder,
/// [`crate::segment::decode`]): `tail`, `head`, the closed flag, the limit.
#[cfg(not(loom))]
pub(crate) const WORDS: [u64; 4] = [
    (core::mem::offset_of!(QueueRing<u8, [QueueSlot<u8>; 1]>, producers) + core::mem::offset_of!(Side, count)) as u64,
    (core::mem::offset_of!(QueueRing<u8, [QueueSlot<u8>; 1]>, consumers) + core::mem::offset_of!(Side, count)) as u64,
    (core::mem::offset_of!(QueueRing<u8, [QueueSlot<u8>; 1]>, flags) + core::mem::offset_of!(Flags, closed)) as u64,
    (core::mem::offset_of!(QueueRing<u8, [QueueSlot<u8>; 1]>, flags) + core::mem::offset_of!(Flags, limit)) as u64,
];

#[repr(C, align(64))]
struct Side {
    /// `tail` for the producer side, `head` for the consumer side; written
    /// only by this side's lock holder.
    count: AtomicU64,
    /// The other side's counter as this side last read it: a lower bound
    /// (both counters only grow), so a stale copy is safe. It spares a read
    /// of the other side's cache line per operation, which costs more than
    /// the rest of a push or pop when the other side is busy on another core.
    seen: AtomicU64,
    lock: RawMutex,
}

/// Rarely written words, on a cache line of their own so that reading them
/// on every operation stays a cache hit.
///
/// The sleeper words are flags, not counts: a sleeper sets its side's flag
/// to 1 before it sleeps, and the next operation that could wake it swaps
/// the flag back to 0 and wakes *every* sleeper of that side (they set it
/// again if they sleep again). A sleeper killed in its sleep so costs one
/// extra wake-up call, after which the flag is clear: a count would stay
/// raised for good and make every later operation pay a system call.
#[repr(C, align(64))]
struct Flags {
    closed: AtomicU32,
    /// 1 if pushers may sleep until `head` moves.
    push_sleepers: AtomicU32,
    /// 1 if poppers may sleep until `tail` moves.
    pop_sleepers: AtomicU32,
    /// The most items pushes fill it to (`set_limit`); 0 for `N`. Clamped
    /// to `N` when read, so no value can let a push overwrite an item.
    limit: AtomicU32,
}

/// How long `try_push` and `try_pop` wait for their side's lock when
/// another thread or process holds it (normally for nanoseconds): past
/// this, the holder is stopped or descheduled and they return at once.
pub const TRY_LOCK_WAIT: Duration = Duration::from_micros(200);

/// A bounded MPMC queue of plain data, shared between processes. See the
/// [module docs](self).
///
/// ```
/// use shmem::{Queue, Segment, Shared};
///
/// #[derive(Shared)]
/// struct Jobs {
///     todo: Queue<u64, 1024>, // `multiprocessing.Queue(maxsize=1024)`
/// }
///
/// let jobs = Segment::<Jobs>::create_anonymous_with(|_| {})?;
/// jobs.todo().push(7).unwrap();          // blocks while full
/// assert_eq!(jobs.todo().pop(), Ok(7));  // blocks while empty
/// jobs.todo().close();                   // wakes every waiter; pops drain, then fail
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(transparent)]
pub struct Queue<T, const N: usize>(QueueRing<T, [QueueSlot<T>; N]>);

/// A queue's shared words and its slots, whatever their number:
/// [`Queue<T, N>`](Queue) is one with `N` slots and dereferences to a
/// `QueueRing<T>`, whose methods do the work. A segment opened by schema
/// hands out a `QueueRing<T>` for a queue field of any capacity
/// ([`DynSegment::queue`](crate::segment::dynamic::DynSegment::queue)).
/// The same bytes either way: one implementation of the protocol.
#[repr(C)]
pub struct QueueRing<T, S: ?Sized = [QueueSlot<T>]> {
    producers: Side,
    consumers: Side,
    flags: Flags,
    _item: core::marker::PhantomData<T>,
    slots: S,
}

/// One slot of a queue (public only as [`QueueRing`]'s type parameter:
/// nothing can be done with it).
#[doc(hidden)]
#[repr(transparent)]
pub struct QueueSlot<T>(DataCell<T>);

/// Where a `Queue<T, N>`'s slots start (for schemas).
pub(crate) const fn slots_offset<T, const N: usize>() -> usize {
    core::mem::offset_of!(QueueRing<T, [QueueSlot<T>; N]>, slots)
}

// SAFETY: a slot is written only by the producer holding the push lock while
// it is free (`tail - head < N`), and read only by the consumer holding the
// pop lock after `tail` published it; `T: Pod` is plain data, and `T: Send`
// because an item pushed by one thread is popped by another.
unsafe impl<T: Pod + Send, const N: usize> Sync for Queue<T, N> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send, const N: usize> Send for Queue<T, N> {}
// SAFETY: as above: the same protocol over a run-time number of slots.
unsafe impl<T: Pod + Send> Sync for QueueRing<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Send for QueueRing<T> {}

/// Why a push failed; the item is handed back.
///
/// ```
/// use shmem::{PushError, Queue, Segment};
/// let q = Segment::<Queue<u8, 1>>::create_anonymous_with(|_| {})?;
/// q.try_push(1).unwrap();
/// match q.try_push(2) {
///     Err(PushError::Full(item)) => assert_eq!(item, 2), // `queue.Full`, with the item back
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError<T> {
    /// The queue holds as many items as it may: `N`, or its [`limit`](QueueRing::limit)
    /// (from `try_push` and `try_push_slice`).
    #[error("queue is full")]
    Full(T),
    /// The queue was closed.
    #[error("queue is closed")]
    Closed(T),
    /// The queue stayed full for the whole timeout, or another process
    /// held the push side past the deadline (for `try_push`, past
    /// [`TRY_LOCK_WAIT`]): it is stopped or descheduled.
    #[error("timed out: the queue stayed full, or another process held its push side")]
    Timeout(T),
}

impl<T> PushError<T> {
    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(t) | PushError::Closed(t) | PushError::Timeout(t) => t,
        }
    }
}

/// Why a pop returned no item.
///
/// ```
/// use shmem::{PopError, Queue, Segment};
/// let q = Segment::<Queue<u8, 4>>::create_anonymous_with(|_| {})?;
/// assert_eq!(q.try_pop(), Err(PopError::Empty)); // `queue.Empty`
/// q.close();
/// assert_eq!(q.pop(), Err(PopError::Closed));    // no more items will come
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    /// The queue is empty (only from `try_pop`).
    #[error("queue is empty")]
    Empty,
    /// The queue is closed and drained.
    #[error("queue is closed and empty")]
    Closed,
    /// The queue stayed empty for the whole timeout, or another process
    /// held the pop side past the deadline (for `try_pop`, past
    /// [`TRY_LOCK_WAIT`]).
    #[error("timed out: the queue stayed empty, or another process held its pop side")]
    Timeout,
}

impl<T: Pod, const N: usize> Queue<T, N> {
    const VALID: () = assert!(N > 0 && N <= u32::MAX as usize, "a Queue holds 1 to 2^32 - 1 items");

    /// An empty queue (for use outside segments; in a segment, a zeroed
    /// queue is empty).
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value, reason = "forces the compile-time capacity check")]
        let () = Self::VALID;
        #[cfg(not(loom))]
        // SAFETY: every field is an integer atomic, a `RawMutex` (zero =
        // unlocked) or a `DataCell<T: Pod>`: all-zero bytes are valid.
        return unsafe { core::mem::zeroed() };
        #[cfg(loom)]
        return Self::new_model();
    }

    /// Loom's atomics carry model state, so they are built, not zeroed.
    #[cfg(loom)]
    fn new_model() -> Self {
        let side = || Side { count: AtomicU64::new(0), seen: AtomicU64::new(0), lock: RawMutex::new() };
        Queue(QueueRing {
            producers: side(),
            consumers: side(),
            flags: Flags {
                closed: AtomicU32::new(0),
                push_sleepers: AtomicU32::new(0),
                pop_sleepers: AtomicU32::new(0),
                limit: AtomicU32::new(0),
            },
            _item: core::marker::PhantomData,
            slots: core::array::from_fn(|_| QueueSlot(DataCell::new(T::zeroed()))),
        })
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }
}

impl<T, const N: usize> core::ops::Deref for Queue<T, N> {
    type Target = QueueRing<T>;
    #[inline(always)]
    fn deref(&self) -> &QueueRing<T> {
        &self.0
    }
}

impl<T: Pod> QueueRing<T> {
    /// The number of slots.
    #[inline(always)]
    fn n(&self) -> u64 {
        self.slots.len() as u64
    }

    /// The capacity (`N` of a [`Queue<T, N>`](Queue)).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Makes pushes find the queue full at `limit` items instead of `N`, as
    /// `multiprocessing.Queue(maxsize)` does (the Python package's `Queue`
    /// sets it); `0`, or anything above `N`, means `N`. Items already past
    /// a lowered limit stay until popped. Every process sees it: it lives in
    /// the queue.
    ///
    /// ```
    /// let q = shmem::Queue::<u32, 64>::new();
    /// q.set_limit(2);
    /// q.try_push(1).unwrap();
    /// q.try_push(2).unwrap();
    /// assert!(matches!(q.try_push(3), Err(shmem::PushError::Full(3))));
    /// assert_eq!((q.limit(), q.capacity()), (2, 64));
    /// ```
    pub fn set_limit(&self, limit: usize) {
        let limit = if limit >= self.capacity() { 0 } else { limit as u32 };
        self.flags.limit.store(limit, Ordering::SeqCst);
        // Pushers asleep on the old limit look again.
        Self::wake_sleepers(&self.flags.push_sleepers);
    }

    /// The most items pushes fill the queue to: [`capacity`](Self::capacity)
    /// unless [`set_limit`](Self::set_limit) lowered it.
    pub fn limit(&self) -> usize {
        self.room_limit() as usize
    }

    /// [`limit`](Self::limit) as the room checks use it: never above `N`.
    #[inline]
    fn room_limit(&self) -> u64 {
        self.room_limit_ordered(Ordering::Relaxed)
    }

    /// [`room_limit`](Self::room_limit) with a chosen load ordering: a
    /// sleeper's check is SeqCst, ordered after its sleep flag as
    /// `set_limit`'s store is before its wake-up, so a raised limit is
    /// never missed by a pusher going to sleep.
    #[inline]
    fn room_limit_ordered(&self, order: Ordering) -> u64 {
        match self.flags.limit.load(order) {
            0 => self.n(),
            l => (l as u64).min(self.n()),
        }
    }

    /// [`len`](Self::len) with `Relaxed` loads (and a fence): safe on a
    /// read-only mapping.
    pub(crate) fn len_relaxed(&self) -> usize {
        let head = self.consumers.count.load(Ordering::Relaxed);
        let tail = self.producers.count.load(Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Acquire);
        (tail.saturating_sub(head) as usize).min(self.capacity())
    }

    /// [`is_closed`](Self::is_closed) with a `Relaxed` load (and a fence).
    pub(crate) fn is_closed_relaxed(&self) -> bool {
        let closed = self.flags.closed.load(Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Acquire);
        closed != 0
    }

    /// The number of queued items (a snapshot).
    pub fn len(&self) -> usize {
        let head = self.consumers.count.load(Ordering::Acquire);
        let tail = self.producers.count.load(Ordering::Acquire);
        (tail.saturating_sub(head) as usize).min(self.capacity())
    }

    /// Whether the queue is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.flags.closed.load(Ordering::Acquire) != 0
    }

    /// Closes the queue: pushes fail from now on, pops drain what is left
    /// and then fail with [`PopError::Closed`]. Wakes every sleeper.
    ///
    /// The flag is set under the push lock, so every push that returned
    /// `Ok` published its item before the queue closed: pops still see it.
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?; // an empty queue
    /// q.push(1).unwrap();
    /// q.close();
    /// assert!(q.push(2).is_err());  // no more pushes
    /// assert_eq!(q.pop(), Ok(1));   // what was pushed is still delivered
    /// assert_eq!(q.pop(), Err(shmem::PopError::Closed));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn close(&self) {
        self.producers.lock.lock_report::<Os>();
        self.flags.closed.store(1, Ordering::SeqCst);
        crate::crash_point!("queue.close.flagged");
        // SAFETY: locked just above by this process.
        unsafe { self.producers.lock.unlock::<Os>() };
        crate::crash_point!("queue.close.unlocked");
        // Sleepers wait on their flag word while it holds 1: clearing it
        // wakes them, or makes a sleeper that is about to wait return at once.
        self.flags.push_sleepers.store(0, Ordering::SeqCst);
        self.flags.pop_sleepers.store(0, Ordering::SeqCst);
        Os::wake_all(futex_of(&self.flags.push_sleepers));
        Os::wake_all(futex_of(&self.flags.pop_sleepers));
    }

    /// Takes `side`'s lock: at most [`TRY_LOCK_WAIT`] for a `try_` call
    /// (`deadline` is `Err(())`), else until `deadline`. False if it did not.
    fn lock_side(side: &Side, deadline: Result<Option<Instant>, ()>) -> bool {
        match deadline {
            Err(()) => side.lock.lock_within::<Os>(TRY_LOCK_WAIT).is_some(),
            Ok(deadline) => side.lock.lock_until::<Os>(deadline).is_some(),
        }
    }

    /// Wakes the sleepers flagged in `sleepers` (see [`Flags`]).
    #[inline]
    fn wake_sleepers(sleepers: &AtomicU32) {
        fence(Ordering::SeqCst);
        if sleepers.load(Ordering::Relaxed) != 0 && sleepers.swap(0, Ordering::SeqCst) != 0 {
            Os::wake_all(futex_of(sleepers));
        }
    }

    #[inline(always)]
    fn slot(&self, counter: u64) -> &DataCell<T> {
        let n = self.n();
        // A mask for the usual power-of-two capacities; a division else.
        let i = if n.is_power_of_two() { counter & (n - 1) } else { counter % n };
        &self.slots[i as usize].0
    }

    /// Pushes `item` if there is room, without waiting for room (and for
    /// another pusher at most [`TRY_LOCK_WAIT`]).
    ///
    /// # Errors
    /// [`PushError::Full`] or [`PushError::Closed`], with the item;
    /// [`PushError::Timeout`] if another process held the push side for
    /// longer than [`TRY_LOCK_WAIT`] (it is stopped, or descheduled).
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?; // an empty queue
    /// for job in 0..4 {
    ///     q.try_push(job).unwrap();
    /// }
    /// let full = q.try_push(9).unwrap_err();
    /// assert_eq!(full.into_inner(), 9); // the item comes back
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        self.push_once(item, Err(()))
    }

    fn push_once(&self, item: T, deadline: Result<Option<Instant>, ()>) -> Result<(), PushError<T>> {
        if self.is_closed() {
            return Err(PushError::Closed(item));
        }
        if !Self::lock_side(&self.producers, deadline) {
            return Err(PushError::Timeout(item));
        }
        if self.flags.closed.load(Ordering::Relaxed) != 0 {
            // SAFETY: locked just above by this process.
            unsafe { self.producers.lock.unlock::<Os>() };
            return Err(PushError::Closed(item));
        }
        let tail = self.producers.count.load(Ordering::Relaxed);
        let limit = self.room_limit();
        if tail.wrapping_sub(self.producers.seen.load(Ordering::Relaxed)) >= limit {
            let head = self.consumers.count.load(Ordering::Acquire);
            self.producers.seen.store(head, Ordering::Relaxed);
            if tail.wrapping_sub(head) >= limit {
                // SAFETY: locked just above by this process.
                unsafe { self.producers.lock.unlock::<Os>() };
                return Err(PushError::Full(item));
            }
        }
        // SAFETY: slot `tail % N` is free: `tail - head < limit <= N` for the `head`
        // in `seen`, which this or an earlier push-lock holder loaded with
        // Acquire from the consumer's Release store that freed the slot (the
        // lock hand-over orders the two holders); only the push-lock holder
        // writes slots.
        unsafe { self.slot(tail).write(item) };
        crate::crash_point!("queue.push.written");
        self.producers.count.store(tail.wrapping_add(1), Ordering::Release);
        crate::crash_point!("queue.push.published");
        // SAFETY: locked above by this process.
        unsafe { self.producers.lock.unlock::<Os>() };
        Self::wake_sleepers(&self.flags.pop_sleepers);
        Ok(())
    }

    /// Pops the oldest item if there is one, without waiting for one (and
    /// for another popper at most [`TRY_LOCK_WAIT`]).
    ///
    /// # Errors
    /// [`PopError::Empty`], or [`PopError::Closed`] once closed and drained;
    /// [`PopError::Timeout`] if another process held the pop side for longer
    /// than [`TRY_LOCK_WAIT`].
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?; // an empty queue
    /// assert_eq!(q.try_pop(), Err(shmem::PopError::Empty));
    /// q.try_push(1).unwrap();
    /// assert_eq!(q.try_pop(), Ok(1));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn try_pop(&self) -> Result<T, PopError> {
        self.pop_once(Err(()))
    }

    fn pop_once(&self, deadline: Result<Option<Instant>, ()>) -> Result<T, PopError> {
        if !Self::lock_side(&self.consumers, deadline) {
            return Err(PopError::Timeout);
        }
        let head = self.consumers.count.load(Ordering::Relaxed);
        if head == self.consumers.seen.load(Ordering::Relaxed) {
            // `closed` first: `close` sets it under the push lock after every
            // accepted push published `tail`, so once it reads 1 the `tail`
            // read below includes all of them.
            let closed = self.is_closed();
            let tail = self.producers.count.load(Ordering::Acquire);
            self.consumers.seen.store(tail, Ordering::Relaxed);
            if head == tail {
                // SAFETY: locked just above by this process.
                unsafe { self.consumers.lock.unlock::<Os>() };
                return Err(if closed { PopError::Closed } else { PopError::Empty });
            }
        }
        // SAFETY: slot `head % N` is before the `tail` in `seen`, which this
        // or an earlier pop-lock holder loaded with Acquire from the Release
        // store that published it (the lock hand-over orders the holders);
        // only the pop-lock holder reads it and no producer writes it until
        // `head` moves past it.
        let item = unsafe { self.slot(head).read() };
        crate::crash_point!("queue.pop.read");
        self.consumers.count.store(head.wrapping_add(1), Ordering::Release);
        crate::crash_point!("queue.pop.published");
        // SAFETY: locked above by this process.
        unsafe { self.consumers.lock.unlock::<Os>() };
        Self::wake_sleepers(&self.flags.push_sleepers);
        Ok(item)
    }

    /// Pushes as many of `items` as there is room for, in order, with one
    /// lock acquisition and one publication: consumers see all of them or
    /// none, and a process killed in the middle pushed none.
    fn push_slice_once(&self, items: &[T], deadline: Result<Option<Instant>, ()>) -> Result<usize, PushError<()>> {
        if items.is_empty() {
            return Ok(0);
        }
        if self.is_closed() {
            return Err(PushError::Closed(()));
        }
        if !Self::lock_side(&self.producers, deadline) {
            return Err(PushError::Timeout(()));
        }
        if self.flags.closed.load(Ordering::Relaxed) != 0 {
            // SAFETY: locked just above by this process.
            unsafe { self.producers.lock.unlock::<Os>() };
            return Err(PushError::Closed(()));
        }
        let tail = self.producers.count.load(Ordering::Relaxed);
        let limit = self.room_limit();
        let mut used = tail.wrapping_sub(self.producers.seen.load(Ordering::Relaxed));
        if used.saturating_add(items.len() as u64) > limit {
            let head = self.consumers.count.load(Ordering::Acquire);
            self.producers.seen.store(head, Ordering::Relaxed);
            used = tail.wrapping_sub(head);
        }
        let room = limit.saturating_sub(used).min(items.len() as u64);
        if room == 0 {
            // SAFETY: locked just above by this process.
            unsafe { self.producers.lock.unlock::<Os>() };
            return Err(PushError::Full(()));
        }
        for (i, item) in items.iter().take(room as usize).enumerate() {
            // SAFETY: as in `push_once`, for each of the `room` slots from
            // `tail`: `tail + room - head <= limit <= N` for the `head` in `seen`, so
            // all of them are free, and only the push-lock holder writes.
            unsafe { self.slot(tail.wrapping_add(i as u64)).write(*item) };
        }
        crate::crash_point!("queue.push_slice.written");
        self.producers.count.store(tail.wrapping_add(room), Ordering::Release);
        crate::crash_point!("queue.push_slice.published");
        // SAFETY: locked above by this process.
        unsafe { self.producers.lock.unlock::<Os>() };
        Self::wake_sleepers(&self.flags.pop_sleepers);
        Ok(room as usize)
    }

    /// Pops up to `out.len()` of the oldest items into `out`, with one lock
    /// acquisition and one publication; returns how many.
    fn pop_into_once(&self, out: &mut [T], deadline: Result<Option<Instant>, ()>) -> Result<usize, PopError> {
        if out.is_empty() {
            return Ok(0);
        }
        if !Self::lock_side(&self.consumers, deadline) {
            return Err(PopError::Timeout);
        }
        let head = self.consumers.count.load(Ordering::Relaxed);
        let mut avail = self.consumers.seen.load(Ordering::Relaxed).wrapping_sub(head);
        if avail < out.len() as u64 {
            // `closed` before `tail`, as in `pop_once`.
            let closed = self.is_closed();
            let tail = self.producers.count.load(Ordering::Acquire);
            self.consumers.seen.store(tail, Ordering::Relaxed);
            avail = tail.wrapping_sub(head);
            if avail == 0 {
                // SAFETY: locked just above by this process.
                unsafe { self.consumers.lock.unlock::<Os>() };
                return Err(if closed { PopError::Closed } else { PopError::Empty });
            }
        }
        let k = avail.min(out.len() as u64).min(self.n()) as usize;
        for (i, slot) in out.iter_mut().take(k).enumerate() {
            // SAFETY: as in `pop_once`, for each of the `k` slots from `head`:
            // all are before the `tail` in `seen`, published with Release
            // and loaded with Acquire; no producer writes them until `head`
            // moves past them.
            *slot = unsafe { self.slot(head.wrapping_add(i as u64)).read() };
        }
        crate::crash_point!("queue.pop_into.read");
        self.consumers.count.store(head.wrapping_add(k as u64), Ordering::Release);
        crate::crash_point!("queue.pop_into.published");
        // SAFETY: locked above by this process.
        unsafe { self.consumers.lock.unlock::<Os>() };
        Self::wake_sleepers(&self.flags.push_sleepers);
        Ok(k)
    }

    /// Pushes as many of `items` as there is room for now, in order, without
    /// waiting for room: one lock acquisition and one publication for all of
    /// them (consumers see all or none; a process killed in the middle
    /// pushed none). Returns how many it pushed (at least one).
    ///
    /// # Errors
    /// [`PushError::Full`] if there is no room at all, [`PushError::Closed`],
    /// [`PushError::Timeout`] as for [`try_push`](Self::try_push).
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?;
    /// assert_eq!(q.try_push_slice(&[1, 2, 3, 4, 5, 6]), Ok(4)); // room for 4
    /// let mut out = [0; 8];
    /// assert_eq!(q.try_pop_into(&mut out), Ok(4));
    /// assert_eq!(out[..4], [1, 2, 3, 4]);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn try_push_slice(&self, items: &[T]) -> Result<usize, PushError<()>> {
        self.push_slice_once(items, Err(()))
    }

    /// Pushes all of `items`, in order, sleeping while the queue is full;
    /// each time there is room, everything that fits goes in with one lock
    /// acquisition and one publication.
    ///
    /// # Errors
    /// [`PushError::Closed`] with how many were pushed before the queue closed.
    pub fn push_slice(&self, items: &[T]) -> Result<(), PushError<usize>> {
        let mut done = 0;
        while done < items.len() {
            match self.push_slice_once(&items[done..], Ok(None)) {
                Ok(k) => done += k,
                Err(PushError::Full(())) => {
                    let room = || {
                        let tail = self.producers.count.load(Ordering::SeqCst);
                        self.is_closed()
                            || tail.wrapping_sub(self.consumers.count.load(Ordering::SeqCst))
                                < self.room_limit_ordered(Ordering::SeqCst)
                    };
                    // No deadline: sleeping cannot time out.
                    let _ = self.sleep_on(&self.flags.push_sleepers, None, room);
                }
                Err(PushError::Closed(())) => return Err(PushError::Closed(done)),
                Err(PushError::Timeout(())) => return Err(PushError::Timeout(done)),
            }
        }
        Ok(())
    }

    /// Pops up to `out.len()` of the oldest items into `out` without waiting
    /// for items: one lock acquisition and one publication. Returns how many
    /// (at least one).
    ///
    /// # Errors
    /// As [`try_pop`](Self::try_pop).
    pub fn try_pop_into(&self, out: &mut [T]) -> Result<usize, PopError> {
        self.pop_into_once(out, Err(()))
    }

    /// Pops up to `out.len()` items into `out`, sleeping while the queue is
    /// empty; returns how many (at least one, unless `out` is empty).
    ///
    /// # Errors
    /// [`PopError::Closed`] once the queue is closed and drained.
    pub fn pop_into(&self, out: &mut [T]) -> Result<usize, PopError> {
        loop {
            match self.pop_into_once(out, Ok(None)) {
                Err(PopError::Empty) => {}
                other => return other,
            }
            let items = || {
                self.is_closed()
                    || self.producers.count.load(Ordering::SeqCst) != self.consumers.count.load(Ordering::SeqCst)
            };
            let _ = self.sleep_on(&self.flags.pop_sleepers, None, items);
        }
    }

    /// Sleeps until `ready()` may have changed: on the `sleepers` flag word,
    /// while it holds the 1 this sleeper stored (the waker that clears it,
    /// or `close`, wakes every sleeper of the side).
    fn sleep_on(
        &self,
        sleepers: &AtomicU32,
        deadline: Option<Instant>,
        ready: impl Fn() -> bool,
    ) -> Result<(), TimedOut> {
        let slice = crate::sync::sleep_slice(deadline, Some(RECHECK))?;
        if spin_then_yield(Site::Queue, deadline, &ready) {
            return Ok(());
        }
        sleepers.store(1, Ordering::SeqCst);
        if !ready() {
            Os::wait(futex_of(sleepers), 1, slice);
        }
        Ok(())
    }

    fn push_until(&self, mut item: T, deadline: Option<Instant>) -> Result<(), PushError<T>> {
        loop {
            match self.push_once(item, Ok(deadline)) {
                Err(PushError::Full(back)) => item = back,
                other => return other,
            }
            let room = || {
                let tail = self.producers.count.load(Ordering::SeqCst);
                self.is_closed()
                    || tail.wrapping_sub(self.consumers.count.load(Ordering::SeqCst))
                        < self.room_limit_ordered(Ordering::SeqCst)
            };
            if self.sleep_on(&self.flags.push_sleepers, deadline, room).is_err() {
                return Err(PushError::Timeout(item));
            }
        }
    }

    fn pop_until(&self, deadline: Option<Instant>) -> Result<T, PopError> {
        loop {
            match self.pop_once(Ok(deadline)) {
                Err(PopError::Empty) => {}
                other => return other,
            }
            let items = || {
                self.is_closed()
                    || self.producers.count.load(Ordering::SeqCst) != self.consumers.count.load(Ordering::SeqCst)
            };
            if self.sleep_on(&self.flags.pop_sleepers, deadline, items).is_err() {
                return Err(PopError::Timeout);
            }
        }
    }

    /// Pushes `item`, sleeping while the queue is full.
    ///
    /// # Errors
    /// [`PushError::Closed`] with the item if the queue is or gets closed.
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?; // an empty queue
    /// q.push(5).unwrap(); // waits while the queue is full (Python's `q.put(5)`)
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        self.push_until(item, None)
    }

    /// Pushes `item`, sleeping at most `timeout` while the queue is full.
    ///
    /// # Errors
    /// [`PushError::Timeout`] or [`PushError::Closed`], with the item.
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?; // an empty queue
    /// use std::time::Duration;
    /// for job in 0..4 {
    ///     q.push_timeout(job, Duration::from_millis(10)).unwrap();
    /// }
    /// assert!(q.push_timeout(4, Duration::from_millis(10)).is_err()); // full: `queue.Full`
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn push_timeout(&self, item: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_until(item, crate::sync::deadline_after(timeout))
    }

    /// Pops the oldest item, sleeping while the queue is empty.
    ///
    /// # Errors
    /// [`PopError::Closed`] once the queue is closed and drained.
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?; // an empty queue
    /// q.push(3).unwrap();
    /// assert_eq!(q.pop(), Ok(3)); // waits while empty (Python's `q.get()`)
    /// q.close();
    /// assert_eq!(q.pop(), Err(shmem::PopError::Closed));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn pop(&self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    /// Pops the oldest item, sleeping at most `timeout` while empty.
    ///
    /// # Errors
    /// [`PopError::Timeout`], or [`PopError::Closed`] once closed and drained.
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?; // an empty queue
    /// use std::time::Duration;
    /// assert_eq!(q.pop_timeout(Duration::from_millis(10)), Err(shmem::PopError::Timeout)); // `queue.Empty`
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
        self.pop_until(crate::sync::deadline_after(timeout))
    }

    /// A copy of the queued items, oldest first (taken under the pop lock,
    /// so pops wait meanwhile; pushes continue).
    ///
    /// ```
    /// use shmem::{Queue, Segment};
    /// let q = Segment::<Queue<u64, 4>>::create_anonymous_with(|_| {})?; // an empty queue
    /// q.push(1).unwrap();
    /// q.push(2).unwrap();
    /// assert_eq!(q.to_vec(), [1, 2]);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn to_vec(&self) -> std::vec::Vec<T> {
        self.consumers.lock.lock_report::<Os>();
        let head = self.consumers.count.load(Ordering::Relaxed);
        let tail = self.producers.count.load(Ordering::Acquire);
        // Never more than `N` items, whatever a peer wrote into the counters.
        let count = tail.saturating_sub(head).min(self.n());
        let items = (head..head.wrapping_add(count))
            .map(|c| {
                // SAFETY: slots in `head..tail` are published and cannot be
                // overwritten while we hold the pop lock (head cannot move).
                unsafe { self.slot(c).read() }
            })
            .collect();
        // SAFETY: locked above by this process.
        unsafe { self.consumers.lock.unlock::<Os>() };
        items
    }

    /// Removes every queued item (and reopens nothing: a closed queue stays closed).
    pub fn clear(&self) {
        while self.try_pop().is_ok() {}
    }

    /// The sleeper flags `(push, pop)`: 1 while sleepers may wait on that
    /// side (for tests of their self-healing after a killed sleeper).
    #[doc(hidden)]
    pub fn sleeper_flags(&self) -> (u32, u32) {
        (self.flags.push_sleepers.load(Ordering::Relaxed), self.flags.pop_sleepers.load(Ordering::Relaxed))
    }

    /// Holds the push and pop locks until the returned guard drops: for
    /// crash tests (a process killed while holding them dies mid-operation).
    #[doc(hidden)]
    pub fn hold_locks(&self) -> impl Drop + '_ {
        struct Held<'a>(&'a RawMutex, &'a RawMutex);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                // SAFETY: both locked by `hold_locks` in this process.
                unsafe { self.0.unlock::<Os>() };
                // SAFETY: as above.
                unsafe { self.1.unlock::<Os>() };
            }
        }
        self.producers.lock.lock_report::<Os>();
        self.consumers.lock.lock_report::<Os>();
        Held(&self.producers.lock, &self.consumers.lock)
    }
}

impl<T: Pod, const N: usize> Default for Queue<T, N> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<T: Pod + fmt::Debug, const N: usize> fmt::Debug for Queue<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for QueueRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_empty_closed_and_timeouts() {
        let q: Queue<u32, 2> = Queue::new();
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        assert_eq!(q.pop_timeout(Duration::from_millis(10)), Err(PopError::Timeout));
        q.try_push(1).unwrap();
        q.try_push(2).unwrap();
        assert_eq!(q.try_push(3), Err(PushError::Full(3)));
        assert_eq!(q.push_timeout(3, Duration::from_millis(10)), Err(PushError::Timeout(3)));
        assert_eq!((q.len(), q.to_vec()), (2, vec![1, 2]));
        assert_eq!(q.try_pop(), Ok(1), "usable after the timeouts");
        q.close();
        assert_eq!(q.push(9), Err(PushError::Closed(9)));
        assert_eq!(q.pop(), Ok(2));
        assert_eq!(q.pop(), Err(PopError::Closed));
        assert_eq!(q.try_pop(), Err(PopError::Closed));
    }

    #[test]
    fn wraps_around_many_times() {
        let q: Queue<u64, 3> = Queue::new();
        for i in 0..1000 {
            q.push(i).unwrap();
            q.push(i + 1).unwrap();
            assert_eq!(q.pop(), Ok(i));
            assert_eq!(q.pop(), Ok(i + 1));
        }
        assert!(q.is_empty());
    }

    #[test]
    fn blocking_threads_deliver_everything_once() {
        const N: u64 = if cfg!(debug_assertions) { 5_000 } else { 50_000 };
        let q: Queue<u64, 16> = Queue::new();
        let seen = std::sync::Mutex::new(vec![false; 2 * N as usize]);
        std::thread::scope(|s| {
            for p in 0..2 {
                let q = &q;
                s.spawn(move || (0..N).for_each(|i| q.push(p * N + i).unwrap()));
            }
            let consumers: std::vec::Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut n = 0;
                        while let Ok(v) = q.pop() {
                            let mut seen = seen.lock().unwrap();
                            assert!(!seen[v as usize], "{v} delivered twice");
                            seen[v as usize] = true;
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            while !q.is_empty() || seen.lock().unwrap().iter().filter(|s| **s).count() < 2 * N as usize {
                std::thread::yield_now();
            }
            q.close();
            let total: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
            assert_eq!(total, 2 * N);
        });
    }
}
