//! Who holds a lock, and whether the kernel says that holder is gone.
//!
//! Every cross-process lock in shmem ([`RawMutex`](super::raw_mutex::RawMutex)
//! and what is built on it, and the reader slots of
//! [`RwLock`](super::rwlock::RwLock)) records its holder as an **owner
//! token**: 62 random bits drawn once per process (see [`my_token`]). A
//! token names no pid, so it means the same thing in every PID namespace,
//! needs no `/proc`, and cannot be confused by pid reuse.
//!
//! # How death is decided
//!
//! Every segment has a *liveness table* of
//! [`LIVENESS_SLOTS`](crate::segment::header::LIVENESS_SLOTS) 8-byte slots
//! (see the [header](crate::segment::header)). A process that creates or
//! attaches to a segment claims one slot before it can touch the data:
//!
//! 1. it takes an **OFD write lock** (`F_OFD_SETLK`, `F_WRLCK`) on the slot's
//!    first byte in the segment file, through a close-on-exec descriptor it
//!    keeps for as long as it has the segment open; a slot whose byte is
//!    locked by another open file description is taken, so it tries the next;
//! 2. only then does it write its token into the slot.
//!
//! The kernel drops an OFD lock when the last descriptor of its open file
//! description is closed, which happens when the process exits or is killed,
//! whatever namespace it runs in and whatever its threads do. So a waiter
//! that sees token `t` in a lock word judges `t` like this ([`judge`]):
//!
//! | what the waiter finds | verdict |
//! |---|---|
//! | `t` is its own token (itself, or a process forked from it without exec) | [`Liveness::Alive`] |
//! | the lock is not inside a segment this process has open | [`Liveness::Unknown`] |
//! | a slot holds `t` and `F_OFD_GETLK` says another description locks its byte | [`Liveness::Alive`] |
//! | `F_OFD_GETLK` fails (any error) or a slot changes while it looks | [`Liveness::Unknown`] |
//! | every slot holding `t` is unlocked (and still holds `t` after the check), or no slot holds `t` | [`Liveness::Dead`] |
//!
//! Callers take a lock over only on `Dead`; `Unknown` is treated as alive
//! (they keep waiting and ask again later). A slot is written only by a
//! process that holds its byte lock, and a process never gives up its slot
//! while it has the segment open, so a live holder's token is always in a
//! locked slot: `Dead` needs the kernel to have released that lock.
//! Tokens are never erased: a slot is simply reclaimed (lock, then
//! overwrite) once its byte is free, which is also why "no slot holds `t`"
//! means the holder's lock was released.
//!
//! # Why this design
//!
//! Measured and read facts are in the project's `LIVENESS.md`. In short:
//! reading `/proc/<pid>` answers in the waiter's view of the system (wrong
//! across PID namespaces, under `hidepid`, with a full descriptor table);
//! the kernel's robust-futex list compares namespace-local thread ids and
//! was seen marking a *live* holder dead when a thread with the same number
//! died in another namespace; pidfds resolve pids in the caller's namespace.
//! OFD locks belong to an open file description, not to a pid, are visible
//! from every namespace (`F_OFD_GETLK` reports `l_pid = -1`), and are
//! released by the kernel at the last close.
//!
//! # Limits
//!
//! - A process forked **without exec** gets a token and slots of its own
//!   on its first lock operation: fork handlers take this module's locks
//!   before the fork and release them on both sides (so the child never
//!   inherits one held by a thread it does not have), and clear the child's
//!   token; the child's next call draws one and claims a slot in every
//!   inherited segment through a new description of its own (opened
//!   through `/proc/self/fd`). Every registration locks through a
//!   description of its own, never the one the segment is mapped through,
//!   so an inherited mapping does not keep a dead parent "alive". Until its
//!   first lock operation the child still holds its copy of the parent's
//!   descriptor, which delays the recovery of a parent that dies meanwhile.
//!   If the child cannot open descriptions of its own (no `/proc`), it
//!   keeps its parent's token and they share one identity: a lock held by
//!   one of them when it dies is then recovered only after the other exits
//!   (a delay, never a steal: through one shared description neither can
//!   see the other's lock, so they must not look like two processes). A
//!   guard (of any lock) that the parent held when it forked is copied into
//!   the child but is not the child's: `std::mem::forget` it there, as with
//!   a pthread mutex held across `fork`; dropping it would release (or, for
//!   a read guard, miscount) the parent's lock. After `exec` the
//!   descriptors are closed (close-on-exec) and the new program draws a new
//!   token.
//! - A process that closes its own descriptors (`close_range`, `closefrom`)
//!   while it holds a shmem lock gives its locks away: don't.
//! - At most `LIVENESS_SLOTS` processes can have one segment open at once;
//!   the next attach fails with [`Error::TooManyProcesses`](crate::Error::TooManyProcesses).
//! - Detection is by polling: a waiter asks every
//!   [`OWNER_CHECK_INTERVAL`](super::raw_mutex::OWNER_CHECK_INTERVAL) (a scan
//!   of the 8 KiB table and one `fcntl` per matching slot, about 1 µs).

use crate::os;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

/// What the kernel's evidence says about a lock holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The holder is running (or shares this process's identity).
    Alive,
    /// The kernel released the holder's liveness lock: it exited or was killed.
    Dead,
    /// No evidence either way (a failed lookup, a lock outside any segment):
    /// treated as alive.
    Unknown,
}

/// Bits of a token: bits 30 and 31 are always 0 (the lock word keeps flags
/// there), and bits 0..=29 are never all 0 (so a locked word's low half is
/// never 0).
pub const TOKEN_MASK: u64 = !(3 << 30);
/// The low 30 bits of a token.
pub const TOKEN_LOW_MASK: u64 = (1 << 30) - 1;

/// Whether `token` is a value [`my_token`] can return.
pub fn valid_token(token: u64) -> bool {
    token & !TOKEN_MASK == 0 && token & TOKEN_LOW_MASK != 0
}

/// This process's owner token: 62 random bits, drawn on first use.
///
/// A child forked without exec gets a token of its own on its first lock
/// operation: a `pthread_atfork` child handler clears the inherited one,
/// and the next call draws a new token and claims a slot of its own in
/// every segment the child inherited, through descriptions of its own (see
/// the module docs). Only if that fails (the registry was locked by a
/// parent thread at the moment of the fork) does the child keep its
/// parent's token, sharing its identity.
#[inline]
pub fn my_token() -> u64 {
    let t = TOKEN.load(core::sync::atomic::Ordering::Relaxed);
    if t != 0 {
        return t;
    }
    new_token()
}

static TOKEN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// Serialises drawing a token (a spin flag, so fork handlers can take it).
static DRAWING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn take_drawing() {
    use core::sync::atomic::Ordering;
    while DRAWING.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::thread::yield_now();
    }
}

/// Installs the fork handlers once. They take every lock of this module
/// before `fork` (in the order `new_token`, `register` and `watch` take
/// them), so the child never inherits one held by a thread it does not
/// have, and release them on both sides; the child also forgets its token.
fn install_fork_handlers() {
    use core::sync::atomic::{AtomicBool, Ordering};
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    extern "C" fn prepare() {
        take_drawing();
        MAPPINGS.lock_for_fork();
        WATCHES.lock_for_fork();
    }
    extern "C" fn release() {
        WATCHES.unlock_after_fork();
        MAPPINGS.unlock_after_fork();
        DRAWING.store(false, core::sync::atomic::Ordering::Release);
    }
    extern "C" fn child() {
        TOKEN.store(0, core::sync::atomic::Ordering::Relaxed);
        release();
    }
    os::at_fork(prepare, release, child);
}

#[cold]
fn new_token() -> u64 {
    use core::sync::atomic::Ordering;
    install_fork_handlers();
    take_drawing();
    let mut t = TOKEN.load(Ordering::Relaxed);
    if t == 0 {
        t = os::random_u64() & TOKEN_MASK;
        while t & TOKEN_LOW_MASK == 0 {
            t = os::random_u64() & TOKEN_MASK;
        }
        // Registrations made under another token were inherited across
        // `fork` (this process's own are all made under its token): claim
        // slots of our own for them, or keep the token they were made with.
        if let Some(inherited) = reregister_inherited(t) {
            t = inherited;
        }
        TOKEN.store(t, Ordering::Relaxed);
    }
    DRAWING.store(false, Ordering::Release);
    t
}

/// In a fork child: claims a slot with `token` in every inherited segment,
/// through new descriptions of its own, and drops the inherited
/// registrations (whose descriptions are the parent's). All or nothing:
/// on failure the inherited registrations stay and their token is
/// returned, to be shared with the parent. `None`: nothing inherited, or
/// all re-registered.
fn reregister_inherited(token: u64) -> Option<u64> {
    let mut maps = MAPPINGS.write();
    let inherited = maps.iter().map(|m| m.reg.token).find(|&t| t != token)?;
    let mut fresh: Vec<(Arc<Registration>, Arc<Registration>)> = Vec::new();
    for m in maps.iter() {
        if fresh.iter().any(|(old, _)| Arc::ptr_eq(old, &m.reg)) {
            continue;
        }
        // Only a description of our own will do: through a duplicate of the
        // parent's, our slot lock and the parent's would be one lock, which
        // `F_OFD_GETLK` cannot see from either side.
        let Ok((fd, true)) = os::reopen(m.reg.fd.as_fd()) else { return Some(inherited) };
        let Ok(Some(slot)) = claim_slot(&fd, m.table, m.table_offset, m.slots, token) else { return Some(inherited) };
        fresh.push((m.reg.clone(), Arc::new(Registration { dev: m.reg.dev, ino: m.reg.ino, fd, slot, token })));
    }
    for m in maps.iter_mut() {
        if let Some((_, new)) = fresh.iter().find(|(old, _)| Arc::ptr_eq(old, &m.reg)) {
            m.reg = new.clone();
        }
    }
    None
}

/// A reader-writer lock for this module's registries that `fork` handlers
/// can take before the fork and release on both sides after it (std's
/// locks cannot be released without their guard, and parking_lot's may hand
/// a released lock to a thread that the child does not have). Spins with
/// `yield`: every critical section is short (a registry edit, a table scan).
struct ForkSafe<T> {
    /// Bit 31: a writer holds it; bits 0..31: readers inside.
    state: core::sync::atomic::AtomicU32,
    value: core::cell::UnsafeCell<T>,
}

const WRITER: u32 = 1 << 31;

// SAFETY: `value` is reached only through the guards below, which enforce
// many readers or one writer; `T: Send + Sync` for the values kept here.
unsafe impl<T: Send + Sync> Sync for ForkSafe<T> {}

impl<T> ForkSafe<T> {
    const fn new(value: T) -> Self {
        ForkSafe { state: core::sync::atomic::AtomicU32::new(0), value: core::cell::UnsafeCell::new(value) }
    }

    fn read(&self) -> ForkSafeRead<'_, T> {
        use core::sync::atomic::Ordering;
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & WRITER == 0
                && self.state.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return ForkSafeRead(self);
            }
            std::thread::yield_now();
        }
    }

    fn lock_for_fork(&self) {
        use core::sync::atomic::Ordering;
        while self.state.compare_exchange_weak(0, WRITER, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::thread::yield_now();
        }
    }

    fn unlock_after_fork(&self) {
        self.state.store(0, core::sync::atomic::Ordering::Release);
    }

    fn write(&self) -> ForkSafeWrite<'_, T> {
        self.lock_for_fork();
        ForkSafeWrite(self)
    }
}

struct ForkSafeRead<'a, T>(&'a ForkSafe<T>);

impl<T> core::ops::Deref for ForkSafeRead<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while the reader count is raised
        // and no writer holds the lock.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> Drop for ForkSafeRead<'_, T> {
    fn drop(&mut self) {
        self.0.state.fetch_sub(1, core::sync::atomic::Ordering::Release);
    }
}

struct ForkSafeWrite<'a, T>(&'a ForkSafe<T>);

impl<T> core::ops::Deref for ForkSafeWrite<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard exists only while this thread holds the
        // writer bit, with no reader inside.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> core::ops::DerefMut for ForkSafeWrite<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for ForkSafeWrite<'_, T> {
    fn drop(&mut self) {
        self.0.unlock_after_fork();
    }
}

/// One segment file this process has claimed a liveness slot in.
struct Registration {
    dev: u64,
    ino: u64,
    /// A descriptor of an open file description of our own (not the one
    /// the segment is mapped through, close-on-exec) that holds the slot's
    /// byte lock.
    fd: OwnedFd,
    /// Our slot.
    slot: u32,
    /// The token written into it.
    token: u64,
}

/// One mapping of a segment in this process.
struct Mapping {
    id: u64,
    start: usize,
    end: usize,
    /// Address of the liveness table inside the mapping.
    table: usize,
    /// File offset of the table (slot `s`'s byte lock is at `table_offset + 8 s`).
    table_offset: u64,
    slots: u32,
    reg: Arc<Registration>,
}

static MAPPINGS: ForkSafe<Vec<Mapping>> = ForkSafe::new(Vec::new());

/// Why a process could not join a segment's liveness table.
#[derive(Debug)]
pub(crate) enum RegisterError {
    /// Every slot is held by a live process.
    Full(u32),
    /// An OS call failed.
    Io(std::io::Error),
}

/// A mapping's membership in the liveness registry; leaves it when dropped.
#[derive(Debug)]
pub(crate) struct Member {
    id: u64,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut maps = MAPPINGS.write();
        maps.retain(|m| m.id != self.id);
        // The last mapping of a file drops its `Arc<Registration>`, which
        // closes the descriptor; the kernel then releases the slot. The
        // token stays in the slot on purpose: see the module docs.
    }
}

fn slot_at(table: usize, s: u32) -> &'static core::sync::atomic::AtomicU64 {
    // Only called with `table` from a live `Mapping` while the registry lock
    // is held (so the mapping cannot go away) and `s < slots`.
    let ptr = (table + 8 * s as usize) as *const core::sync::atomic::AtomicU64;
    // SAFETY: the liveness table lies inside the mapping (validated header:
    // `liveness_offset + 8 * slots <= data_offset <= map len`), 8-aligned
    // (`liveness_offset` is a multiple of 64, the mapping page-aligned), and
    // is only ever accessed atomically. The `'static` is a white lie kept
    // private to this module: callers use the reference only while they
    // hold the registry lock, during which the mapping stays mapped.
    unsafe { &*ptr }
}

/// Takes the first free slot (OFD write lock on its byte through `fd`, then
/// the token store). `Ok(None)` if every slot is held.
fn claim_slot(fd: &OwnedFd, table: usize, table_offset: u64, slots: u32, token: u64) -> std::io::Result<Option<u32>> {
    let first = (token % u64::from(slots)) as u32;
    for i in 0..slots {
        let s = (first + i) % slots;
        if os::ofd_try_lock_byte(fd.as_raw_fd(), table_offset + 8 * u64::from(s))? {
            slot_at(table, s).store(token, core::sync::atomic::Ordering::SeqCst);
            // Pairs with the fence in `judge`: a waiter that sees our token
            // in a lock word sees it in the table too.
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Claims a liveness slot for this process in the segment `file`, mapped at
/// `map_start..map_start + map_len` with its table at `table_offset`.
/// Reuses this process's slot if it already has the file open.
pub(crate) fn register(
    file: &File,
    map_start: usize,
    map_len: usize,
    table_offset: u64,
    slots: u32,
) -> Result<Member, RegisterError> {
    use std::os::unix::fs::MetadataExt;
    static NEXT_ID: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);
    let meta = file.metadata().map_err(RegisterError::Io)?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let table = map_start + table_offset as usize;
    // Before the registry lock: in a fork child this re-registers.
    let me = my_token();
    let mut maps = MAPPINGS.write();
    let reg = match maps.iter().find(|m| m.reg.dev == dev && m.reg.ino == ino && m.reg.token == me) {
        Some(m) => m.reg.clone(),
        None => {
            let (fd, _fresh) = os::reopen(file.as_fd()).map_err(RegisterError::Io)?;
            let slot = claim_slot(&fd, table, table_offset, slots, me)
                .map_err(RegisterError::Io)?
                .ok_or(RegisterError::Full(slots))?;
            Arc::new(Registration { dev, ino, fd, slot, token: me })
        }
    };
    let id = NEXT_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    maps.push(Mapping { id, start: map_start, end: map_start + map_len, table, table_offset, slots, reg });
    Ok(Member { id })
}

/// What the kernel's evidence says about the holder `owner` of the lock at
/// `addr`. See the module docs for the rules; `Dead` is certain.
pub fn judge(owner: u64, addr: *const ()) -> Liveness {
    use core::sync::atomic::Ordering;
    if owner == my_token() {
        return Liveness::Alive;
    }
    if !valid_token(owner) {
        // No process ever writes such a value: nobody holds it.
        return Liveness::Dead;
    }
    let maps = MAPPINGS.read();
    let addr = addr as usize;
    let Some(m) = maps.iter().find(|m| m.start <= addr && addr < m.end) else {
        return Liveness::Unknown;
    };
    core::sync::atomic::fence(Ordering::SeqCst);
    for s in 0..m.slots {
        let slot = slot_at(m.table, s);
        if slot.load(Ordering::Acquire) != owner {
            continue;
        }
        if s == m.reg.slot {
            // Another token in our own slot: a peer wrote the table. Our
            // own lock would read as free here, so we cannot tell.
            return Liveness::Unknown;
        }
        match os::ofd_byte_held_by_other(m.reg.fd.as_raw_fd(), m.table_offset + 8 * u64::from(s)) {
            Err(_) => return Liveness::Unknown,
            Ok(true) => return Liveness::Alive,
            Ok(false) if slot.load(Ordering::Acquire) != owner => return Liveness::Unknown,
            Ok(false) => {}
        }
    }
    Liveness::Dead
}

/// The number of liveness slots of the segment mapped at `addr` whose byte
/// lock is held by some process (this one included), for tests and tools.
/// `None` if `addr` is in no segment this process has open.
pub fn live_slots(addr: *const ()) -> Option<usize> {
    use core::sync::atomic::Ordering;
    let me = my_token(); // before the registry lock: it may re-register
    let maps = MAPPINGS.read();
    let addr = addr as usize;
    let m = maps.iter().find(|m| m.start <= addr && addr < m.end)?;
    let mut n = 0;
    for s in 0..m.slots {
        let token = slot_at(m.table, s).load(Ordering::Relaxed);
        if token == me
            || (token != 0
                && os::ofd_byte_held_by_other(m.reg.fd.as_raw_fd(), m.table_offset + 8 * u64::from(s)).unwrap_or(true))
        {
            n += 1;
        }
    }
    Some(n)
}

/// One death watch: a helper thread blocked on a slot's liveness lock.
struct Watch {
    dev: u64,
    ino: u64,
    slot: u32,
    owner: u64,
    /// Futex words to wake when the owner dies (one entry per waiter).
    futexes: Vec<usize>,
    /// The process that started the helper (a forked child has no helpers).
    pid: u32,
}

static WATCHES: ForkSafe<Vec<Watch>> = ForkSafe::new(Vec::new());

/// Asks for the sleepers on `futex` to be woken as soon as `owner`, the
/// holder of the lock at `lock`, dies: a helper thread (one per watched
/// slot, shared by every waiter on it) blocks in `F_OFD_SETLKW` for a read
/// lock on the owner's slot byte, which the kernel grants only once the
/// owner's write lock is gone, then wakes every futex registered with it.
/// Returns false (the caller then relies on polling) if there is nothing to
/// watch: the owner is this process, the lock is outside any segment, or
/// no locked slot holds the owner's token.
///
/// A helper whose owner lives on stays blocked (it costs a sleeping thread
/// with a 64 KiB stack and an open descriptor of the segment file, which
/// keeps the file's memory allocated even after the name is removed) until
/// that owner exits; at most one exists per slot of a segment.
pub fn watch(owner: u64, lock: *const (), futex: *const u32) -> bool {
    use core::sync::atomic::Ordering;
    if owner == my_token() || !valid_token(owner) {
        return false;
    }
    let maps = MAPPINGS.read();
    let addr = lock as usize;
    let Some(m) = maps.iter().find(|m| m.start <= addr && addr < m.end) else {
        return false;
    };
    // A slot of the owner's that another description holds now (not a
    // stale one it left, not one since reclaimed, never our own).
    let held = |s: u32| {
        s != m.reg.slot
            && slot_at(m.table, s).load(Ordering::Acquire) == owner
            && os::ofd_byte_held_by_other(m.reg.fd.as_raw_fd(), m.table_offset + 8 * u64::from(s)).unwrap_or(false)
    };
    let Some(slot) = (0..m.slots).find(|&s| held(s)) else {
        return false;
    };
    let (dev, ino) = (m.reg.dev, m.reg.ino);
    let pid = std::process::id();
    let mut watches = WATCHES.write();
    if let Some(w) = watches.iter_mut().find(|w| w.dev == dev && w.ino == ino && w.slot == slot && w.owner == owner) {
        if w.pid == pid {
            w.futexes.push(futex as usize);
            return true;
        }
    }
    // Forked copies of the list have no helper threads: forget them.
    watches.retain(|w| w.pid == pid);
    // A description of the helper's own: blocking through ours would pin
    // it (and so our slot) for as long as the watched owner lives.
    let Ok((fd, _fresh)) = os::reopen(m.reg.fd.as_fd()) else { return false };
    let offset = m.table_offset + 8 * u64::from(slot);
    let helper = std::thread::Builder::new().name("shmem-death-watch".into()).stack_size(64 << 10).spawn(move || {
        // Signals go to the application's other threads, so the wait below
        // is not cut short by one.
        os::block_signals_in_this_thread();
        // Blocks until the owner's description is closed (it exited or was
        // killed); an error ends the watch early, leaving the waiters to
        // their periodic checks.
        let fired = os::ofd_wait_byte(fd.as_raw_fd(), offset).is_ok();
        let mut watches = WATCHES.write();
        if let Some(i) = watches
            .iter()
            .position(|w| w.dev == dev && w.ino == ino && w.slot == slot && w.owner == owner && w.pid == pid)
        {
            let w = watches.swap_remove(i);
            if fired {
                for f in w.futexes {
                    os::futex_wake(f as *const u32, u32::MAX);
                }
            }
        }
    });
    if helper.is_err() {
        return false;
    }
    watches.push(Watch { dev, ino, slot, owner, futexes: vec![futex as usize], pid });
    true
}

/// Cancels one [`watch`] of `owner` for `futex` (the helper thread stays
/// until the owner dies, then wakes nobody for this waiter).
pub fn unwatch(owner: u64, futex: *const u32) {
    let mut watches = WATCHES.write();
    for w in watches.iter_mut().filter(|w| w.owner == owner) {
        if let Some(i) = w.futexes.iter().position(|&f| f == futex as usize) {
            w.futexes.swap_remove(i);
            return;
        }
    }
}
