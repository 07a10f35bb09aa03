//! A cross-process reader-writer lock around plain data.
//!
//! `#[shared(rwlock)]`: many readers at once, or one writer.
//!
//! ```
//! use shmem::RwLock;
//! let table = RwLock::new([0u32; 8]);
//! table.write().unwrap()[3] = 7;
//! let a = table.read().unwrap();
//! let b = table.read().unwrap(); // readers share
//! assert_eq!(a[3] + b[3], 14);
//! ```
//!
//! # Protocol
//!
//! A crash-safe [`RawMutex`] is the gate, held by writers. Readers are
//! counted per process, in [`READER_SLOTS`] slots of (owner token, count).
//! A process claims a slot once, under the gate (a slot with no owner, or
//! whose owner the kernel says is dead), and a slot never changes owner
//! while its owner lives. So a reader needs no gate in the common case: it
//! adds 1 to its process's slot and then checks that no writer is waiting
//! or inside (if one is, it takes the 1 back and queues at the gate). A
//! writer takes the gate and keeps it, sets `WRITER_WAITING`, and waits
//! until every slot's count is zero; the two sides' SeqCst handshake means
//! that either the writer sees the reader's count or the reader sees the
//! writer. While a writer waits, new readers queue at the gate, so writers
//! are not starved. If every slot has a live owner, a reader of yet another
//! process reads holding the gate (exclusively, like a writer).
//!
//! | field | meaning |
//! |---|---|
//! | `gate` | the [`RawMutex`]: held by a writer, by a reader claiming its slot (for an instant), or by a reader of a process that found no slot |
//! | `state` bit 0 | `WRITER_WAITING`: a reader whose slot drops to zero bumps `departures` and wakes the writer |
//! | `state` bit 1 | `WRITER_INSIDE`: a writer holds the data (set after the readers drained, cleared before the gate is released) |
//! | `poisoned` | non-zero once a writer panicked or died inside |
//! | `departures` | futex word the waiting writer sleeps on |
//! | `slots[i]` | owner token and count of one process's readers inside |
//!
//! # Crashes
//!
//! - A **writer** killed while holding the lock is detected like a mutex
//!   owner (the gate is a [`RawMutex`]): the next reader or writer gets in
//!   within [`OWNER_CHECK_INTERVAL`] and sees `Err(PoisonError)`.
//! - A **reader** killed at any moment never poisons the lock (a reader
//!   cannot have changed the data): if it died holding the gate, the next
//!   locker takes the gate over without poisoning (`WRITER_INSIDE` was not
//!   set); if it died inside, its slot keeps a count that a waiting writer
//!   clears once the kernel says its owner is dead (see
//!   [`liveness`](super::liveness)), within [`OWNER_CHECK_INTERVAL`].
//! - If all [`READER_SLOTS`] slots have live owners, a reader of another
//!   process reads holding the gate, which excludes writers and other such
//!   readers; its death releases the gate without poisoning.

use super::liveness::Liveness;
use super::park::{futex_of, point, Os, Park};
use super::primitive::{fence, AtomicU32, AtomicU64, Ordering};
use super::raw_mutex::{Acquired, RawMutex, OWNER_CHECK_INTERVAL};
use super::spin::{spin_then_yield, Site};
use super::TimedOut;
use bytemuck::Pod;
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError};
use std::time::{Duration, Instant};

/// Between a SeqCst read-modify-write and the SeqCst load that follows it
/// on either side of the reader/writer handshake. In real builds nothing:
/// SeqCst operations are one total order (C++ `[atomics.order]`), so either
/// the writer's count load sees the reader's increment or the reader's
/// state load sees the writer's flag. Loom models SeqCst operations more
/// weakly than that (as acquire/release), so under loom an explicit SeqCst
/// fence, which it does model, stands in for the total order.
#[inline(always)]
fn dekker_fence() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// How many processes can hold read guards on one [`RwLock`] at once
/// (threads of one process share a slot).
pub const READER_SLOTS: usize = 16;

/// Where an rwlock's words are, whatever `T` (for the schema decoder,
/// [`crate::segment::decode`]): gate lock word, poison flag, first reader
/// slot, a slot's size, and the reader count inside a slot.
#[cfg(not(loom))]
pub(crate) const WORDS: [u64; 5] = [
    core::mem::offset_of!(RwLock<u8>, gate) as u64,
    core::mem::offset_of!(RwLock<u8>, poisoned) as u64,
    core::mem::offset_of!(RwLock<u8>, slots) as u64,
    size_of::<ReaderSlot>() as u64,
    core::mem::offset_of!(ReaderSlot, count) as u64,
];

const WRITER_WAITING: u32 = 1;
const WRITER_INSIDE: u32 = 2;

/// One process's readers inside an [`RwLock`].
#[repr(C)]
struct ReaderSlot {
    owner: AtomicU64,
    count: AtomicU64,
}

/// Plain data `T` behind a cross-process reader-writer lock. See the
/// [module docs](self).
///
/// ```
/// use shmem::{Segment, Shared};
///
/// #[derive(Shared)]
/// struct Table {
///     #[shared(rwlock)]
///     prices: [u32; 8], // many readers at once, one writer
/// }
///
/// let t = Segment::create_anonymous(&Table { prices: [10; 8] })?;
/// t.prices().write().expect("a writer died")[3] = 12;
/// let a = t.prices().read().unwrap();
/// let b = t.prices().read().unwrap(); // readers share
/// assert_eq!((a[3], b[0]), (12, 10));
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(C)]
pub struct RwLock<T> {
    gate: RawMutex,
    state: AtomicU32,
    poisoned: AtomicU32,
    departures: AtomicU32,
    _reserved: AtomicU32,
    slots: [ReaderSlot; READER_SLOTS],
    pub(crate) value: UnsafeCell<T>,
}

// SAFETY: readers get `&T` only while no writer is inside; a writer gets
// `&mut T` only while it holds the gate and every reader slot is empty.
// `T: Send` because a value written by one thread is read or taken by
// another (and `Pod` alone admits raw pointers).
unsafe impl<T: crate::layout::PlainData + Send + Sync> Sync for RwLock<T> {}
// SAFETY: as above; the lock owns its `T`.
unsafe impl<T: crate::layout::PlainData + Send> Send for RwLock<T> {}

impl<T: Pod> RwLock<T> {
    /// A new, unlocked lock holding `value` (for use outside segments).
    pub fn new(value: T) -> Self {
        RwLock {
            gate: RawMutex::new(),
            state: AtomicU32::new(0),
            poisoned: AtomicU32::new(0),
            departures: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            slots: core::array::from_fn(|_| ReaderSlot { owner: AtomicU64::new(0), count: AtomicU64::new(0) }),
            value: UnsafeCell::new(value),
        }
    }

    fn enter_gate<P: Park>(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        match self.gate.lock_until::<P>(deadline) {
            None => Err(TimedOut),
            Some(Acquired::OwnerDied) => {
                // Only a dead *writer* can have left the data half-written.
                if self.state.fetch_and(!(WRITER_INSIDE | WRITER_WAITING), Ordering::Relaxed) & WRITER_INSIDE != 0 {
                    self.poisoned.store(1, Ordering::Relaxed);
                }
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

    /// Whether the owner of a slot with readers inside is certainly dead.
    fn owner_dead<P: Park>(&self, owner: u64) -> bool {
        P::liveness(owner, (self as *const Self).cast()) == Liveness::Dead
    }

    /// This process's slot, if it has one (no lock needed: only this
    /// process writes a slot's owner while it lives).
    #[inline]
    fn find_mine(&self, me: u64) -> Option<usize> {
        let first = (me % READER_SLOTS as u64) as usize;
        (0..READER_SLOTS)
            .map(|i| (first + i) % READER_SLOTS)
            .find(|&i| self.slots[i].owner.load(Ordering::Relaxed) == me)
    }

    /// With the gate held: this process's slot, claiming one that has no
    /// owner or whose owner is dead if needed. A slot never changes owner
    /// while its owner lives, which is what lets readers count themselves
    /// in without the gate. `None` if every slot has a live owner.
    fn my_slot<P: Park>(&self, me: u64) -> Option<usize> {
        if let Some(i) = self.find_mine(me) {
            return Some(i);
        }
        let first = (me % READER_SLOTS as u64) as usize;
        let probe = || (0..READER_SLOTS).map(move |i| (first + i) % READER_SLOTS);
        let free = probe().find(|&i| self.slots[i].owner.load(Ordering::Relaxed) == 0).or_else(|| {
            probe().find(|&i| {
                let slot = &self.slots[i];
                let dead = self.owner_dead::<P>(slot.owner.load(Ordering::Relaxed));
                if dead {
                    // Its readers died inside: they changed nothing.
                    slot.count.store(0, Ordering::Relaxed);
                }
                dead
            })
        })?;
        self.slots[free].owner.store(me, Ordering::Relaxed);
        point::<P>("rwlock.read.slot_claimed");
        Some(free)
    }

    /// Counts a reader in on slot `i` without the gate; backs out if a
    /// writer is waiting or inside.
    #[inline]
    fn enter_fast<P: Park>(&self, i: usize) -> bool {
        // SeqCst: pairs with the writer's `state` update and count loads:
        // either the writer sees this count or this sees the writer.
        self.slots[i].count.fetch_add(1, Ordering::SeqCst);
        point::<P>("rwlock.read.counted");
        dekker_fence();
        if self.state.load(Ordering::SeqCst) & (WRITER_WAITING | WRITER_INSIDE) == 0 {
            return true;
        }
        self.leave::<P>(i);
        false
    }

    /// Counts a reader out of slot `i`, waking a waiting writer if it was
    /// the slot's last.
    #[inline]
    fn leave<P: Park>(&self, i: usize) {
        // SeqCst: as in `enter_fast`.
        let prev = self.slots[i].count.fetch_sub(1, Ordering::SeqCst);
        point::<P>("rwlock.read.left");
        dekker_fence();
        if prev == 1 && self.state.load(Ordering::SeqCst) & WRITER_WAITING != 0 {
            self.departures.fetch_add(1, Ordering::SeqCst);
            P::wake_all(futex_of(&self.departures));
        }
    }

    fn read_until<P: Park>(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LockResult<RwLockReadGuard<'_, T, P>>, TimedOut> {
        let me = P::me();
        // Fast path: our own slot, no writer about.
        if let Some(i) = self.find_mine(me) {
            if self.enter_fast::<P>(i) {
                return Ok(self.poison_check(RwLockReadGuard {
                    lock: self,
                    slot: Some(i),
                    _not_send: PhantomData,
                    _park: PhantomData,
                }));
            }
        }
        // Through the gate: wait out the writer, claim a slot if needed.
        self.enter_gate::<P>(deadline)?;
        match self.my_slot::<P>(me) {
            Some(i) => {
                // No writer can be waiting or inside: we hold the gate.
                self.slots[i].count.fetch_add(1, Ordering::SeqCst);
                point::<P>("rwlock.read.counted");
                // SAFETY: `enter_gate` returned Ok: this process holds the gate.
                unsafe { self.gate.unlock::<P>() };
                Ok(self.poison_check(RwLockReadGuard {
                    lock: self,
                    slot: Some(i),
                    _not_send: PhantomData,
                    _park: PhantomData,
                }))
            }
            // Every slot has a live owner: read holding the gate (as
            // exclusive as a writer, without poisoning anything if we die).
            None => Ok(self.poison_check(RwLockReadGuard {
                lock: self,
                slot: None,
                _not_send: PhantomData,
                _park: PhantomData,
            })),
        }
    }

    fn write_until<P: Park>(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LockResult<RwLockWriteGuard<'_, T, P>>, TimedOut> {
        self.enter_gate::<P>(deadline)?;
        let me = P::me();
        let futex = futex_of(&self.departures);
        let lock = (self as *const Self).cast::<()>();
        // The reader process whose death the kernel will wake us for.
        let mut watching: Option<u64> = None;
        let mut check_owners = false;
        let mut judged_unwatchable = false;
        let mut spun = cfg!(loom); // loom never spins
        let outcome = loop {
            let seen = self.departures.load(Ordering::SeqCst);
            self.state.fetch_or(WRITER_WAITING, Ordering::SeqCst);
            point::<P>("rwlock.write.waiting");
            dekker_fence();
            let mut busy = None;
            for slot in &self.slots {
                if slot.count.load(Ordering::SeqCst) == 0 {
                    continue;
                }
                let owner = slot.owner.load(Ordering::Relaxed);
                if check_owners && self.owner_dead::<P>(owner) {
                    // Its readers died inside: they changed nothing.
                    slot.count.store(0, Ordering::Relaxed);
                    continue;
                }
                busy = Some(owner);
            }
            let Some(owner) = busy else { break Ok(()) };
            if watching.is_none() && owner != me {
                if P::watch(owner, lock, futex) {
                    watching = Some(owner);
                } else if !judged_unwatchable {
                    // No live holder of that reader's slot to watch: it is
                    // most likely dead already. Judge the owners now rather
                    // than after a whole check interval.
                    judged_unwatchable = true;
                    check_owners = true;
                    continue;
                }
            }
            let Ok(slice) = super::sleep_slice(deadline, Some(OWNER_CHECK_INTERVAL)) else { break Err(TimedOut) };
            if !spun {
                // Readers leave soon, as a rule: spin, then yield, for as
                // long as waits here have lately been worth it.
                // Then look again either way: the spin took time, so the
                // slice above is stale.
                spun = true;
                let _ = spin_then_yield(Site::Drain, deadline, || self.departures.load(Ordering::SeqCst) != seen);
                continue;
            }
            // Check the readers' owners after a timeout or any wake-up: a
            // wake-up is a reader leaving or, with a watch, one dying.
            let timed_out = P::wait(futex, seen, slice);
            check_owners = timed_out || watching.is_some();
        };
        if let Some(owner) = watching {
            P::unwatch(owner, futex);
        }
        if outcome.is_err() {
            self.state.fetch_and(!WRITER_WAITING, Ordering::Relaxed);
            // SAFETY: we hold the gate (entered above).
            unsafe { self.gate.unlock::<P>() };
            return Err(TimedOut);
        }
        // Acquire: the readers' Release decrements happen before our access.
        fence(Ordering::Acquire);
        self.state.store(WRITER_INSIDE, Ordering::Relaxed);
        point::<P>("rwlock.write.inside");
        Ok(self.poison_check(RwLockWriteGuard { lock: self, _not_send: PhantomData, _park: PhantomData }))
    }

    /// Shared access, waiting as long as a writer holds the lock.
    ///
    /// # Errors
    /// `PoisonError` with the guard if a writer panicked or died inside.
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_until::<Os>(None).unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// Shared access, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Err(TimedOut)` on timeout; `Ok(Err(PoisonError))` as for [`read`](Self::read).
    pub fn read_timeout(&self, timeout: Duration) -> Result<LockResult<RwLockReadGuard<'_, T>>, TimedOut> {
        self.read_until::<Os>(super::deadline_after(timeout))
    }

    /// Exclusive access, waiting for readers and writers to leave.
    ///
    /// # Errors
    /// `PoisonError` with the guard if a writer panicked or died inside.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_until::<Os>(None).unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// Exclusive access, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Err(TimedOut)` on timeout (the lock is left as it was);
    /// `Ok(Err(PoisonError))` as for [`write`](Self::write).
    pub fn write_timeout(&self, timeout: Duration) -> Result<LockResult<RwLockWriteGuard<'_, T>>, TimedOut> {
        self.write_until::<Os>(super::deadline_after(timeout))
    }

    /// [`read`](Self::read) with another [`Park`] (for the loom models).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    #[doc(hidden)]
    pub fn read_with<P: Park>(&self) -> LockResult<RwLockReadGuard<'_, T, P>> {
        self.read_until::<P>(None).unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// [`write`](Self::write) with another [`Park`] (for the loom models).
    ///
    /// # Errors
    /// As [`write`](Self::write).
    #[doc(hidden)]
    pub fn write_with<P: Park>(&self) -> LockResult<RwLockWriteGuard<'_, T, P>> {
        self.write_until::<P>(None).unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// Takes the write lock and keeps it past this call, for a binding that
    /// cannot hold a guard across its caller's code (the Python package's
    /// `with s.locked(name)`): `Ok(poisoned)`, released by
    /// [`release_detached_write`](Self::release_detached_write).
    #[cfg(not(loom))]
    pub(crate) fn write_detached(&self, deadline: Option<Instant>) -> Result<bool, TimedOut> {
        let guard = self.write_until::<Os>(deadline)?;
        let poisoned = guard.is_err();
        core::mem::forget(guard.unwrap_or_else(PoisonError::into_inner));
        Ok(poisoned)
    }

    /// Whether this process holds the write lock: the gate, with a writer
    /// inside (a reader of this process passing the gate sets no writer).
    #[cfg(not(loom))]
    pub(crate) fn written_by_me(&self) -> bool {
        self.gate.is_mine() && self.state.load(Ordering::Relaxed) == WRITER_INSIDE
    }

    /// Releases the write lock as a write guard's drop does.
    ///
    /// # Safety
    /// This process holds the write lock ([`written_by_me`](Self::written_by_me))
    /// through [`write_detached`](Self::write_detached), and no write guard
    /// for it is alive in this process.
    #[cfg(not(loom))]
    pub(crate) unsafe fn release_detached_write(&self) {
        self.state.store(0, Ordering::Release);
        // SAFETY: the caller holds the write lock, hence the gate.
        unsafe { self.gate.unlock::<Os>() };
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

    /// The number of readers inside (in all processes).
    pub fn reader_count(&self) -> u64 {
        self.slots.iter().map(|s| s.count.load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }
}

/// Shared access to an [`RwLock`]'s value.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: Pod, P: Park = Os> {
    lock: &'a RwLock<T>,
    /// Our reader slot, or `None` for a reader that holds the gate (every
    /// slot had a live owner).
    slot: Option<usize>,
    _not_send: PhantomData<*const ()>,
    _park: PhantomData<fn() -> P>,
}

impl<T: Pod, P: Park> Deref for RwLockReadGuard<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: while a read guard exists its slot's count is > 0 (so no
        // writer passes its wait) or it holds the gate (so no writer gets
        // in); writers only write while holding the gate with every count
        // at zero and `WRITER_INSIDE` set, which sends fast-path readers
        // back to the gate.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: Pod, P: Park> Drop for RwLockReadGuard<'_, T, P> {
    fn drop(&mut self) {
        match self.slot {
            Some(i) => self.lock.leave::<P>(i),
            // SAFETY: a slotless read guard exists only while this process
            // holds the gate (taken in `read_until`).
            None => unsafe { self.lock.gate.unlock::<P>() },
        }
    }
}

/// Exclusive access to an [`RwLock`]'s value.
#[must_use = "the write lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: Pod, P: Park = Os> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
    _park: PhantomData<fn() -> P>,
}

impl<T: Pod, P: Park> Deref for RwLockWriteGuard<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds the gate and saw every reader count at
        // zero; readers cannot enter without the gate.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: Pod, P: Park> DerefMut for RwLockWriteGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: Pod, P: Park> Drop for RwLockWriteGuard<'_, T, P> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.lock.poisoned.store(1, Ordering::Relaxed);
        }
        point::<P>("rwlock.write.leaving");
        self.lock.state.store(0, Ordering::Release);
        point::<P>("rwlock.write.left");
        // SAFETY: the write guard exists only while this process holds the gate.
        unsafe { self.lock.gate.unlock::<P>() };
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
