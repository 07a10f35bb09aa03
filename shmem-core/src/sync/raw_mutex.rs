//! The crash-safe cross-process lock word.
//!
//! # State
//!
//! One 64-bit atomic word. The low half is the futex word (what sleepers
//! wait on); the word as a whole records who holds the lock, as the
//! holder's owner token (see [`liveness`](super::liveness)), so the owner is
//! claimed in the same compare-exchange as the lock itself:
//!
//! | bits | meaning |
//! |---|---|
//! | 0..=29 | low 30 bits of the owner token, never all 0 for a token; 0 = unlocked (and then the whole word is 0) |
//! | 30 | `WAITERS`: some thread may be sleeping on the word |
//! | 31 | reserved, 0 |
//! | 32..=63 | high 32 bits of the owner token |
//!
//! | transition | how |
//! |---|---|
//! | lock, fast path | CAS `0 -> me` (Acquire): two atomic operations for lock + unlock, no syscall |
//! | lock, contended | bounded spin, then set `WAITERS` and `futex_wait`; acquire with CAS `0 -> me \| WAITERS` (others may still sleep) |
//! | unlock | swap to `0` (Release); `futex_wake(1)` only if `WAITERS` was set |
//! | owner died | a sleeper still waiting after a first 200 µs sleep asks for a death watch ([`liveness::watch`](super::liveness::watch)): a helper thread blocked on the owner's liveness lock, which the kernel grants when the owner dies, wakes it; it also wakes every [`OWNER_CHECK_INTERVAL`]. Either way it asks [`liveness::judge`](super::liveness::judge) about the token in the word, and only on [`Liveness::Dead`] does it CAS `word -> me \| WAITERS` and report the death |
//! | impossible word | a word no process writes (low 30 bits 0 but other bits set, or bit 31 set), left by a buggy or hostile peer: taken over at once and reported as a dead owner (so the data is marked poisoned) |
//!
//! # Why owner death is detected safely
//!
//! A process killed while holding the lock cannot unlock it. The kernel
//! releases its liveness lock (an OFD lock, owned by an open file
//! description, not by a pid), and the next liveness check of a waiter sees
//! that: this works across PID namespaces, with `/proc` hidden or missing,
//! with a full descriptor table, and for holders whose main thread has
//! exited. Any doubt ([`Liveness::Unknown`]) counts as alive. The takeover is
//! a CAS from the exact word that named the dead owner: a dead process never
//! locks again, so that word cannot reappear (no ABA), and at most one
//! waiter wins.
//!
//! The futex is on the low half only, so a change in the high half alone
//! wakes no one; every transition also changes the low half (token or 0).

use super::liveness::{Liveness, TOKEN_MASK};
use super::park::Park;
use super::primitive::{AtomicU64, Ordering};
use super::spin::{spin_then_yield, Site};
use std::time::{Duration, Instant};

const WAITERS: u64 = 1 << 30;

/// How often a sleeping waiter asks whether the owner is still alive
/// (see [`liveness`](super::liveness)): the bound on how long a dead owner
/// blocks others (plus scheduling delay). An idle waiter thus makes 100
/// wake-ups a second, each a futex call, a scan of the segment's 8 KiB
/// liveness table and one `fcntl(F_OFD_GETLK)`.
pub const OWNER_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// The first sleep of a waiter: after it, a holder still inside is holding
/// the lock for long, and the waiter asks the kernel to wake it should that
/// holder die (see [`liveness::watch`](super::liveness::watch)).
const FIRST_SLEEP: Duration = Duration::from_micros(200);

/// What acquiring the lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lock was free or released normally.
    Clean,
    /// The previous owner died holding it: protected data may be inconsistent.
    OwnerDied,
}

/// A cross-process mutual-exclusion lock that survives the death of its
/// owner, with no data. See the [module docs](self) for the protocol.
/// [`Mutex`](super::mutex::Mutex) wraps it with data and poisoning.
///
/// Implements [`lock_api::RawMutex`] (the owner-death report is lost through
/// that interface; use [`RawMutex::lock_report`] to see it).
#[repr(C)]
pub struct RawMutex {
    word: AtomicU64,
}

impl Default for RawMutex {
    fn default() -> Self {
        RawMutex::new()
    }
}

impl std::fmt::Debug for RawMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.owner() {
            None => f.write_str("RawMutex(unlocked)"),
            Some(token) => write!(f, "RawMutex(locked by {token:#x})"),
        }
    }
}

/// The owner token in a locked word (flags stripped), or `None` if unlocked.
pub(crate) fn owner_of(word: u64) -> Option<u64> {
    (word != 0).then_some(word & !WAITERS)
}

/// Whether a non-zero word is one this protocol can produce.
fn possible(word: u64) -> bool {
    super::liveness::valid_token(word & !WAITERS) && word & !(TOKEN_MASK | WAITERS) == 0
}

impl RawMutex {
    /// An unlocked lock (all zero bytes: a zeroed segment holds unlocked locks).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RawMutex { word: AtomicU64::new(0) }
    }

    /// An unlocked lock.
    #[cfg(loom)]
    pub fn new() -> Self {
        RawMutex { word: AtomicU64::new(0) }
    }

    /// The address of the futex half of the word.
    #[cfg(not(loom))]
    fn futex_addr(&self) -> *const u32 {
        super::park::low_half(&self.word as *const AtomicU64)
    }

    /// Under loom the "futex address" is the loom atomic itself, so that a
    /// model's `Park::wait` can read the word the way the kernel would.
    #[cfg(loom)]
    fn futex_addr(&self) -> *const u32 {
        (&self.word as *const AtomicU64).cast()
    }

    /// The current owner's token, if locked (see [`liveness`](super::liveness)).
    pub fn owner(&self) -> Option<u64> {
        owner_of(self.word.load(Ordering::Relaxed))
    }

    /// Whether this process holds the lock (any of its threads).
    #[cfg(not(loom))]
    pub fn is_mine(&self) -> bool {
        let me = owner_of(super::park::Os::me());
        me.is_some() && self.owner() == me
    }

    /// Whether the lock is held (by anyone, alive or dead).
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// Takes the lock, waiting as long as needed, and says whether the
    /// previous owner died holding it.
    #[inline]
    pub fn lock_report<P: Park>(&self) -> Acquired {
        match self.lock_until::<P>(None) {
            Some(acquired) => acquired,
            None => unreachable!("no deadline, no timeout"),
        }
    }

    /// Takes the lock unless `deadline` passes first (`None`: no deadline).
    #[inline]
    pub fn lock_until<P: Park>(&self, deadline: Option<Instant>) -> Option<Acquired> {
        let me = P::me();
        if self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Some(Acquired::Clean);
        }
        self.lock_slow::<P>(me, deadline)
    }

    /// Takes the lock unless `timeout` passes first; the deadline is only
    /// computed if the lock is not free at once (so an uncontended call costs
    /// one compare-exchange, as [`lock_until`](Self::lock_until)).
    #[inline]
    pub fn lock_within<P: Park>(&self, timeout: Duration) -> Option<Acquired> {
        let me = P::me();
        if self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Some(Acquired::Clean);
        }
        self.lock_slow::<P>(me, Some(Instant::now() + timeout))
    }

    #[cold]
    fn lock_slow<P: Park>(&self, me: u64, deadline: Option<Instant>) -> Option<Acquired> {
        let take_free = || {
            self.word.load(Ordering::Relaxed) == 0
                && self.word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
        };
        if spin_then_yield(Site::Lock, deadline, take_free) {
            return Some(Acquired::Clean);
        }
        let futex = self.futex_addr();
        let lock = (self as *const Self).cast::<()>();
        // The owner whose death the kernel will wake us for, if any.
        let mut watching: Option<u64> = None;
        // Whether a sleep ran to its timeout: the holder holds for long.
        let mut held_long = false;
        let acquired = loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Others may be asleep: keep WAITERS so our unlock wakes one.
                match self.word.compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => break Some(Acquired::Clean),
                    Err(_) => continue,
                }
            }
            if !possible(w) {
                if let Some(acquired) = self.take_from_dead_owner::<P>(me) {
                    break Some(acquired);
                }
                continue;
            }
            if w & WAITERS == 0
                && self.word.compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            P::crash_point("raw_mutex.lock.waiters_set");
            let owner = w & !WAITERS;
            if let Some(old) = watching.filter(|&o| o != owner) {
                P::unwatch(old, futex);
                watching = None;
            }
            // A holder that kept the lock through a whole first sleep holds
            // long: ask to be woken if it dies (a table scan and an `fcntl`,
            // once per owner; short holds under contention never get here).
            if held_long && watching.is_none() && P::watch(owner, lock, futex) {
                watching = Some(owner);
            }
            let cap = if held_long { OWNER_CHECK_INTERVAL } else { FIRST_SLEEP };
            // Out of time: judge the holder once more before giving up (the
            // spin and yields may have used the time the first sleep had).
            let Ok(slice) = super::sleep_slice(deadline, Some(cap)) else { break self.take_from_dead_owner::<P>(me) };
            let timed_out = P::wait(futex, (w | WAITERS) as u32, slice);
            held_long |= timed_out;
            // Judge the owner after a timeout, or after a wake-up that left
            // the watched owner in place (the death watch fired, or spurious).
            let same_owner = || self.word.load(Ordering::Relaxed) & !WAITERS == owner;
            if timed_out || (watching.is_some() && same_owner()) {
                if let Some(acquired) = self.take_from_dead_owner::<P>(me) {
                    break Some(acquired);
                }
            }
        };
        if let Some(owner) = watching {
            P::unwatch(owner, futex);
        }
        acquired
    }

    /// If the owner recorded in the word is certainly dead (or the word is
    /// one no owner writes), takes the lock over.
    fn take_from_dead_owner<P: Park>(&self, me: u64) -> Option<Acquired> {
        let w = self.word.load(Ordering::Relaxed);
        let owner = owner_of(w)?;
        if possible(w) && P::liveness(owner, (self as *const Self).cast()) != Liveness::Dead {
            return None;
        }
        // Keep WAITERS: others may sleep, and the dead owner will never wake them.
        let taken = self.word.compare_exchange(w, me | WAITERS, Ordering::Acquire, Ordering::Relaxed).ok();
        P::crash_point("raw_mutex.takeover.taken");
        taken.map(|_| Acquired::OwnerDied)
    }

    /// Takes the lock if it is free or its owner is dead; never sleeps.
    pub fn try_lock_report<P: Park>(&self) -> Option<Acquired> {
        let me = P::me();
        match self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Some(Acquired::Clean),
            Err(_) => self.take_from_dead_owner::<P>(me),
        }
    }

    /// Releases the lock if this process holds it (any of its threads may
    /// release it, as with Python's `Lock`); returns whether it did. For a
    /// lock used on its own (a `Segment<RawMutex>` driven from another
    /// language), where the caller cannot hold a guard to prove it holds
    /// the lock.
    ///
    /// The release is one compare-exchange from the exact word that names
    /// this process, so it never clears a word another process wrote. The
    /// word names a process, not a thread: a late release by one thread
    /// can release a hold that another thread of this process took since
    /// (as with Python's `Lock`, which any thread may release).
    ///
    /// # Safety
    /// No guard of a [`Mutex`](super::mutex::Mutex), [`RwLock`](super::rwlock::RwLock)
    /// or [`SeqLock`](super::seqlock::SeqLock) built on this lock (their
    /// `raw()`) may be alive in this process: releasing under a live guard
    /// would let a second holder alias the data it guards.
    ///
    /// ```
    /// use shmem::{RawMutex, Segment};
    /// let lock = Segment::<RawMutex>::create_anonymous(&RawMutex::new())?;
    /// // SAFETY: a lock on its own: no guard of any data lock built on it exists.
    /// assert!(!unsafe { lock.unlock_if_mine() }); // not held
    /// lock.lock_report::<shmem::sync::park::Os>();
    /// // SAFETY: as above.
    /// assert!(unsafe { lock.unlock_if_mine() });
    /// # Ok::<(), shmem::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub unsafe fn unlock_if_mine(&self) -> bool {
        let Some(me) = owner_of(super::park::Os::me()) else { return false };
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            if owner_of(w) != Some(me) {
                return false;
            }
            match self.word.compare_exchange(w, 0, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                // Only the waiters bit can change under a holder: retry.
                Err(now) => w = now,
            }
        }
        super::park::Os::crash_point("raw_mutex.unlock.released");
        if w & WAITERS != 0 {
            self.unlock_slow::<super::park::Os>();
        }
        true
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The calling process must hold the lock (acquired through this value).
    #[inline]
    pub unsafe fn unlock<P: Park>(&self) {
        // No check that the word names us: it cost 10 ns per queue
        // operation (measured), and the contract above rules the case out.
        // A guard inherited across `fork` is the way to break it: forget
        // such guards in the child (see `liveness`).
        let w = self.word.swap(0, Ordering::Release);
        P::crash_point("raw_mutex.unlock.released");
        if w & WAITERS != 0 {
            self.unlock_slow::<P>();
        }
    }

    #[cold]
    fn unlock_slow<P: Park>(&self) {
        P::wake_one(self.futex_addr());
    }
}

#[cfg(not(loom))]
// SAFETY: `lock` returns only once this process holds the word exclusively
// (CAS from 0, or from a dead owner's word), and `unlock` releases it.
unsafe impl lock_api::RawMutex for RawMutex {
    #[allow(clippy::declare_interior_mutable_const, reason = "lock_api's required initialiser")]
    const INIT: RawMutex = RawMutex::new();
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        self.lock_report::<super::park::Os>();
    }

    fn try_lock(&self) -> bool {
        self.try_lock_report::<super::park::Os>().is_some()
    }

    unsafe fn unlock(&self) {
        // SAFETY: lock_api only calls `unlock` while the lock is held.
        unsafe { RawMutex::unlock::<super::park::Os>(self) }
    }

    fn is_locked(&self) -> bool {
        RawMutex::is_locked(self)
    }
}

#[cfg(not(loom))]
// SAFETY: as for `RawMutex`; the timed variants give up at the deadline
// without holding the lock.
unsafe impl lock_api::RawMutexTimed for RawMutex {
    type Duration = Duration;
    type Instant = Instant;

    fn try_lock_for(&self, timeout: Duration) -> bool {
        self.lock_until::<super::park::Os>(super::deadline_after(timeout)).is_some()
    }

    fn try_lock_until(&self, deadline: Instant) -> bool {
        self.lock_until::<super::park::Os>(Some(deadline)).is_some()
    }
}
