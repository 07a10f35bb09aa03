//! Blocking until something happens in another process: wait/notify on
//! 32-bit atomics, and [`Event`], [`Semaphore`], [`Barrier`] and
//! [`Condvar`] built on it.
//!
//! All of them sleep in the kernel (a shared futex on a word in the
//! segment), never busy-wait, and take a timeout where a wait could last.
//! They are plain field types of a `#[derive(Shared)]` struct (see the
//! `shmem` crate docs), and work on their own too:
//!
//! ```
//! use shmem::{Atomic, Barrier, Event};
//!
//! let ready = Event::new(false);
//! ready.set();                              // wakes every process waiting on it
//! ready.wait();                             // returns at once: it is set
//! assert!(Barrier::new(1).wait().is_leader()); // a barrier of one
//! let stage = Atomic::new(0u32);
//! stage.store(2);
//! stage.notify_all();                       // atomics wake waiters explicitly
//! assert_eq!(stage.wait_until(|s| s >= 2), 2);
//! ```
//!
//! # Crashes
//!
//! A process that dies while *waiting* leaves nothing behind. A process that
//! dies holding semaphore permits leaks them, and one that dies before
//! reaching a barrier leaves the others waiting until their timeout; those
//! are the semantics of the primitives, not states the library can repair.

use super::atomic::{Atomic, Scalar};
use super::mutex::{Mutex, MutexGuard};
use super::park::{Os, Park};
use super::spin::{spin_then_yield, Site};
use super::TimedOut;
use bytemuck::Pod;
use core::sync::atomic::{AtomicU32, Ordering};
use std::fmt;
use std::sync::LockResult;
use std::time::{Duration, Instant};

/// The longest one sleep in [`wait_on`] lasts before the waiter looks at
/// the word again: a notifier killed between its change and its wake-up
/// (a barrier's last arrival, `Event::set`, `Semaphore::release`) then
/// delays its sleepers by at most this much instead of forever. An idle
/// waiter makes 10 wake-ups a second.
const RECHECK: Duration = Duration::from_millis(100);

/// Waits on `word` until `done(value)` returns `Some`, or `deadline` passes.
fn wait_on<R>(
    word: &AtomicU32,
    deadline: Option<Instant>,
    mut done: impl FnMut(u32) -> Option<R>,
) -> Result<R, TimedOut> {
    let mut spun = cfg!(loom); // loom never spins
    loop {
        let v = word.load(Ordering::Acquire);
        if let Some(r) = done(v) {
            return Ok(r);
        }
        let slice = super::sleep_slice(deadline, Some(RECHECK))?;
        if !spun {
            spun = true;
            let mut got = None;
            spin_then_yield(Site::Notify, deadline, || {
                got = done(word.load(Ordering::Acquire));
                got.is_some()
            });
            if let Some(r) = got {
                return Ok(r);
            }
            continue;
        }
        Os::wait(word.as_ptr(), v, slice);
    }
}

use super::deadline_after as deadline;

/// Wait and notify on 32-bit atomic fields (`u32`, `i32`, `f32`, `char`).
///
/// Waiting sleeps until a notify; a store alone wakes no one, so writers
/// call [`notify_one`](Atomic::notify_one) or [`notify_all`](Atomic::notify_all)
/// after changing the value. 64-bit and smaller fields cannot be waited on
/// (the kernel's futex is 32-bit): use a `u32` field as the wake-up word.
impl<T: Scalar<Raw = AtomicU32>> Atomic<T> {
    /// Sleeps until `pred(value)` holds, then returns that value.
    pub fn wait_until(&self, mut pred: impl FnMut(T) -> bool) -> T {
        let result = wait_on(self.as_raw(), None, |bits| {
            let v = T::from_bits(bits);
            pred(v).then_some(v)
        });
        result.unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// Like [`wait_until`](Self::wait_until), giving up after `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if the predicate still did not hold.
    pub fn wait_until_timeout(&self, mut pred: impl FnMut(T) -> bool, timeout: Duration) -> Result<T, TimedOut> {
        wait_on(self.as_raw(), deadline(timeout), |bits| {
            let v = T::from_bits(bits);
            pred(v).then_some(v)
        })
    }

    /// Wakes one process or thread waiting on this field.
    pub fn notify_one(&self) {
        Os::wake_one(self.as_raw().as_ptr());
    }

    /// Wakes every process and thread waiting on this field.
    pub fn notify_all(&self) {
        Os::wake_all(self.as_raw().as_ptr());
    }
}

/// A flag processes can wait for: `set` wakes every waiter, `clear` resets
/// it. Python's `multiprocessing.Event`, without a server.
///
/// ```
/// use shmem::{Event, Segment};
/// let ready = Segment::<Event>::create_anonymous(&Event::new(false))?; // `multiprocessing.Event()`
/// ready.set();        // wakes every process in `wait()`
/// ready.wait();       // returns at once: set
/// assert!(ready.is_set());
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(C)]
#[derive(Default)]
pub struct Event {
    state: AtomicU32,
}

impl Event {
    /// A new event, set or not.
    pub fn new(set: bool) -> Self {
        Event { state: AtomicU32::new(u32::from(set)) }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        if self.state.swap(1, Ordering::Release) == 0 {
            crate::crash_point!("event.set.flagged");
            Os::wake_all(self.state.as_ptr());
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.store(0, Ordering::Release);
    }

    /// The state word (for read-only views, which load it themselves).
    pub(crate) fn state_word(&self) -> &AtomicU32 {
        &self.state
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) != 0
    }

    /// Sleeps until the flag is set.
    pub fn wait(&self) {
        let _ = wait_on(&self.state, None, |v| (v != 0).then_some(()));
    }

    /// Sleeps until the flag is set, at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if it was not set in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        wait_on(&self.state, deadline(timeout), |v| (v != 0).then_some(()))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

/// A counting semaphore shared between processes.
///
/// ```
/// use shmem::{Segment, Semaphore};
/// let slots = Segment::<Semaphore>::create_anonymous(&Semaphore::new(2))?; // `multiprocessing.Semaphore(2)`
/// slots.acquire();
/// assert!(slots.try_acquire());
/// assert!(!slots.try_acquire()); // both taken
/// slots.release();
/// assert_eq!(slots.available(), 1);
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(C)]
#[derive(Default)]
pub struct Semaphore {
    permits: AtomicU32,
}

impl Semaphore {
    /// A semaphore with `permits` available.
    pub fn new(permits: u32) -> Self {
        Semaphore { permits: AtomicU32::new(permits) }
    }

    /// Takes a permit if one is available, without waiting.
    pub fn try_acquire(&self) -> bool {
        self.permits.fetch_update(Ordering::Acquire, Ordering::Relaxed, |p| p.checked_sub(1)).is_ok()
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        wait_on(&self.permits, deadline, |_| self.try_acquire().then_some(()))
    }

    /// Takes a permit, sleeping until one is available.
    pub fn acquire(&self) {
        let _ = self.acquire_until(None);
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if none became available in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        self.acquire_until(deadline(timeout))
    }

    /// Returns a permit and wakes one waiter.
    pub fn release(&self) {
        self.permits.fetch_add(1, Ordering::Release);
        crate::crash_point!("semaphore.release.counted");
        Os::wake_one(self.permits.as_ptr());
    }

    /// The permit word (for read-only views, which load it themselves).
    pub(crate) fn permits_word(&self) -> &AtomicU32 {
        &self.permits
    }

    /// The number of permits available now.
    pub fn available(&self) -> u32 {
        self.permits.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("available", &self.available()).finish()
    }
}

/// A reusable barrier for `parties` processes (or threads): each `wait`
/// blocks until all have arrived, then all proceed and the barrier resets.
///
/// One 32-bit word holds the round (high 16 bits) and the number arrived
/// (low 16 bits), so a timed-out waiter can leave without racing the last
/// arrival. At most 65,535 parties.
///
/// ```
/// use shmem::{Barrier, Segment};
/// let start = Segment::<Barrier>::create_anonymous(&Barrier::new(1))?; // `multiprocessing.Barrier(n)`
/// assert!(start.wait().is_leader()); // with one party, it passes at once
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(C)]
#[derive(Default)]
pub struct Barrier {
    parties: AtomicU32,
    state: AtomicU32,
}

/// What [`Barrier::wait`] tells each party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one party per round: the last to arrive.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

/// Arrivals in a barrier's state word (the rest counts generations).
pub(crate) const ARRIVED: u32 = 0xFFFF;

/// Where the words of an event, a semaphore and a barrier are (for the
/// schema decoder, [`crate::segment::decode`]): event state, semaphore
/// permits, barrier parties, barrier state.
#[cfg(not(loom))]
pub(crate) const WORDS: [u64; 4] = [
    core::mem::offset_of!(Event, state) as u64,
    core::mem::offset_of!(Semaphore, permits) as u64,
    core::mem::offset_of!(Barrier, parties) as u64,
    core::mem::offset_of!(Barrier, state) as u64,
];

impl Barrier {
    /// A barrier for `parties` (clamped to 1..=65535).
    pub fn new(parties: u32) -> Self {
        Barrier { parties: AtomicU32::new(parties.clamp(1, ARRIVED)), state: AtomicU32::new(0) }
    }

    /// Sets the party count and starts a fresh round (for initialisation,
    /// while nobody waits).
    pub(crate) fn reset(&self, parties: u32) {
        self.parties.store(parties.clamp(1, ARRIVED), Ordering::Relaxed);
        self.state.store(0, Ordering::Release);
    }

    /// [`parties`](Self::parties) with a `Relaxed` load (read-only views).
    pub(crate) fn parties_relaxed(&self) -> u32 {
        self.parties.load(Ordering::Relaxed).clamp(1, ARRIVED)
    }

    /// The number of parties per round.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed).clamp(1, ARRIVED)
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<BarrierWaitResult, TimedOut> {
        let parties = self.parties();
        // Arrive with one compare-exchange. The last arrival moves to the
        // next round in that same step (a fetch_add followed by a separate
        // store would let a timed-out party leave in between, and the
        // leader would complete a round that party had already left).
        let mut s = self.state.load(Ordering::Acquire);
        let round = loop {
            let (round, arrived) = (s >> 16, s & ARRIVED);
            let next = if arrived + 1 >= parties { round.wrapping_add(1) << 16 } else { s + 1 };
            match self.state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) if arrived + 1 >= parties => {
                    crate::crash_point!("barrier.leader.advanced");
                    Os::wake_all(self.state.as_ptr());
                    return Ok(BarrierWaitResult(true));
                }
                Ok(_) => break round,
                Err(now) => s = now,
            }
        };
        crate::crash_point!("barrier.arrived");
        let result = wait_on(&self.state, deadline, |s| (s >> 16 != round).then_some(BarrierWaitResult(false)));
        if result.is_err() {
            // Leave the round, unless it completed meanwhile.
            let left = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s >> 16 == round && s & ARRIVED > 0).then(|| s - 1)
            });
            if left.is_err() {
                return Ok(BarrierWaitResult(false));
            }
        }
        result
    }

    /// Waits until all parties arrived.
    pub fn wait(&self) -> BarrierWaitResult {
        self.wait_until(None).unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// Waits at most `timeout`; on timeout this party leaves the round, so
    /// the barrier stays usable.
    ///
    /// # Errors
    /// [`TimedOut`] if the others did not all arrive in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, TimedOut> {
        self.wait_until(deadline(timeout))
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.load(Ordering::Relaxed);
        f.debug_struct("Barrier").field("parties", &self.parties()).field("arrived", &(s & ARRIVED)).finish()
    }
}

/// A condition variable paired with a [`Mutex`] in shared memory: wait
/// releases the lock and sleeps until notified.
#[repr(C)]
#[derive(Default)]
pub struct Condvar {
    seq: AtomicU32,
}

impl Condvar {
    /// A new condition variable.
    pub fn new() -> Self {
        Condvar { seq: AtomicU32::new(0) }
    }

    /// Releases `guard`'s lock, sleeps until notified (or spuriously), and
    /// locks again. Use [`wait_while`](Self::wait_while) to loop on a condition.
    ///
    /// # Errors
    /// `PoisonError` if the mutex was poisoned when it was locked again.
    pub fn wait<'a, T: Pod>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        match self.wait_inner(guard, None) {
            Ok((g, _)) => Ok(g),
            Err(p) => Err(std::sync::PoisonError::new(p.into_inner().0)),
        }
    }

    fn wait_inner<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Option<Duration>,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        let seq = self.seq.load(Ordering::Acquire);
        let mutex: &'a Mutex<T> = guard.mutex();
        drop(guard);
        // At most RECHECK at a time (a spurious wake-up, which callers
        // handle): a notifier killed between its change and its notify
        // then costs a sleeper at most that much.
        let slice = timeout.map_or(RECHECK, |t| t.min(RECHECK));
        let timed_out = Os::wait(self.seq.as_ptr(), seq, Some(slice)) && timeout.is_some_and(|t| t <= RECHECK);
        match mutex.lock() {
            Ok(g) => Ok((g, timed_out)),
            Err(p) => Err(std::sync::PoisonError::new((p.into_inner(), timed_out))),
        }
    }

    /// Waits while `condition` holds, releasing the lock while asleep.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Like [`wait_while`](Self::wait_while), giving up after `timeout`.
    /// Returns the guard and whether the timeout elapsed with the condition
    /// still holding. As with `std::sync::Condvar`, the lock is taken again
    /// before returning, which waits for its holder (the deadline covers
    /// the waiting for a notification, not a mutex held by a stopped process).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        let end = deadline(timeout);
        while condition(&mut *guard) {
            let Ok(remaining) = super::sleep_slice(end, None) else { return Ok((guard, true)) };
            guard = self.wait_inner(guard, remaining)?.0;
        }
        Ok((guard, false))
    }

    /// The notification count: for waiting on a condition variable without
    /// a [`Mutex`] guard (a lock driven from another language). Read it
    /// while holding the lock, release the lock, then
    /// [`wait_change`](Self::wait_change) from it and take the lock again.
    pub fn sequence(&self) -> u32 {
        self.seq.load(Ordering::Acquire)
    }

    /// Sleeps until a notification after [`sequence`](Self::sequence)
    /// returned `seq`, or `timeout` passes (at most 100 ms at a time, so a
    /// spurious return is possible): whether a notification came.
    ///
    /// ```
    /// use shmem::{Condvar, Segment};
    /// use std::time::Duration;
    /// let cv = Segment::<Condvar>::create_anonymous(&Condvar::new())?;
    /// let seq = cv.sequence();
    /// assert!(!cv.wait_change(seq, Duration::from_millis(5)));
    /// cv.notify_all();
    /// assert!(cv.wait_change(seq, Duration::from_millis(5)));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn wait_change(&self, seq: u32, timeout: Duration) -> bool {
        if self.seq.load(Ordering::Acquire) != seq {
            return true;
        }
        Os::wait(self.seq.as_ptr(), seq, Some(timeout.min(RECHECK)));
        self.seq.load(Ordering::Acquire) != seq
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        crate::crash_point!("condvar.notify.counted");
        Os::wake_one(self.seq.as_ptr());
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        crate::crash_point!("condvar.notify.counted");
        Os::wake_all(self.seq.as_ptr());
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Condvar")
    }
}
