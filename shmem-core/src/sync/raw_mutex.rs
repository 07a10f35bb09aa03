//! The crash-safe cross-process lock word.
//!
//! # State
//!
//! One 64-bit atomic word. The low half is the futex word (what sleepers
//! wait on); the high half records who holds the lock, so the owner's
//! identity is claimed in the same compare-exchange as the lock itself:
//!
//! | bits | meaning |
//! |---|---|
//! | 0..=29 | owner pid; 0 = unlocked (and then the whole word is 0) |
//! | 30 | `WAITERS`: some thread may be sleeping on the word |
//! | 31 | reserved, 0 |
//! | 32..=63 | low 32 bits of the owner's process start time |
//!
//! | transition | how |
//! |---|---|
//! | lock, fast path | CAS `0 -> me` (Acquire): two atomic operations for lock + unlock, no syscall |
//! | lock, contended | bounded spin, then set `WAITERS` and `futex_wait`; acquire with CAS `0 -> me \| WAITERS` (others may still sleep) |
//! | unlock | swap to `0` (Release); `futex_wake(1)` only if `WAITERS` was set |
//! | owner died | a sleeper wakes every [`OWNER_CHECK_INTERVAL`], reads the owner from the word and asks the OS whether that (pid, start time) still runs; if not, CAS `word -> me \| WAITERS` and report the death |
//!
//! # Why owner death is detected safely
//!
//! A process killed while holding the lock cannot unlock it. Waiters notice
//! within [`OWNER_CHECK_INTERVAL`] (plus scheduling): the owner's pid is gone
//! from `/proc`, is a zombie, or now belongs to a process with another start
//! time (pid reuse cannot fool the check). The takeover is a CAS from the
//! exact word that named the dead owner: a dead process never locks again, so
//! that word cannot reappear (no ABA), and at most one waiter wins.
//!
//! The futex is on the low half only, so a change in the high half alone
//! wakes no one; every transition also changes the low half (pid or 0).

use super::park::{Park, ProcessId};
use super::primitive::{spin_hint, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PID_MASK: u64 = (1 << 30) - 1;
const WAITERS: u64 = 1 << 30;

/// How often a sleeping waiter checks whether the owner is still alive:
/// the bound on how long a dead owner blocks others (plus scheduling delay).
pub const OWNER_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// Spins before sleeping (each a `spin_loop` hint), as crossbeam's `Backoff`.
/// None under loom, where each spin is a scheduling point.
const SPIN_LIMIT: u32 = if cfg!(loom) { 0 } else { 100 };

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
            Some(who) => write!(f, "RawMutex(locked by pid {})", who.pid),
        }
    }
}

fn encode(who: ProcessId) -> u64 {
    (u64::from(who.start) << 32) | (u64::from(who.pid) & PID_MASK)
}

fn decode(word: u64) -> Option<ProcessId> {
    let pid = (word & PID_MASK) as u32;
    (pid != 0).then_some(ProcessId { pid, start: (word >> 32) as u32 })
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
    fn futex_addr(&self) -> *const u32 {
        super::park::low_half(&self.word as *const AtomicU64)
    }

    /// The current owner, if locked.
    pub fn owner(&self) -> Option<ProcessId> {
        decode(self.word.load(Ordering::Relaxed))
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
        let me = encode(P::me());
        if self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Some(Acquired::Clean);
        }
        self.lock_slow::<P>(me, deadline)
    }

    #[cold]
    fn lock_slow<P: Park>(&self, me: u64, deadline: Option<Instant>) -> Option<Acquired> {
        #[cfg_attr(loom, allow(clippy::reversed_empty_ranges, reason = "no spinning under loom"))]
        for _ in 0..SPIN_LIMIT {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 && self.word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return Some(Acquired::Clean);
            }
            spin_hint();
        }
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Others may be asleep: keep WAITERS so our unlock wakes one.
                match self.word.compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return Some(Acquired::Clean),
                    Err(_) => continue,
                }
            }
            if w & WAITERS == 0
                && self.word.compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            let slice = super::sleep_slice(deadline, Some(OWNER_CHECK_INTERVAL)).ok()?;
            if P::wait(self.futex_addr(), (w | WAITERS) as u32, slice) {
                if let Some(acquired) = self.take_from_dead_owner::<P>(me) {
                    return Some(acquired);
                }
            }
        }
    }

    /// If the owner recorded in the word is dead, takes the lock over.
    fn take_from_dead_owner<P: Park>(&self, me: u64) -> Option<Acquired> {
        let w = self.word.load(Ordering::Relaxed);
        let owner = decode(w)?;
        if P::alive(owner) {
            return None;
        }
        // Keep WAITERS: others may sleep, and the dead owner will never wake them.
        self.word
            .compare_exchange(w, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Acquired::OwnerDied)
    }

    /// Takes the lock if it is free or its owner is dead; never sleeps.
    pub fn try_lock_report<P: Park>(&self) -> Option<Acquired> {
        let me = encode(P::me());
        match self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Some(Acquired::Clean),
            Err(_) => self.take_from_dead_owner::<P>(me),
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The calling process must hold the lock (acquired through this value).
    #[inline]
    pub unsafe fn unlock<P: Park>(&self) {
        let w = self.word.swap(0, Ordering::Release);
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
