//! How lock state machines sleep, wake and judge liveness: the [`Park`]
//! trait, with the futex-and-`/proc` implementation [`Os`].
//!
//! The state machines in [`raw_mutex`](super::raw_mutex) take a `Park` as a
//! type parameter so that the loom model can swap the kernel out.

use std::time::Duration;

/// A process identity that survives pid reuse: pid and start time (clock
/// ticks since boot, low 32 bits; 0 = unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// The process id (at most 2^30 - 1, Linux's `PID_MAX_LIMIT` is 2^22).
    pub pid: u32,
    /// Low 32 bits of the process start time.
    pub start: u32,
}

/// The futex word of a 64-bit atomic: its low 32 bits, which are its first
/// 4 bytes on little-endian targets and its last 4 on big-endian ones.
/// `wrapping_add` stays inside the 8-byte word; the pointer is only handed
/// to the kernel, never dereferenced.
pub(crate) fn low_half<T>(word: *const T) -> *const u32 {
    debug_assert_eq!(core::mem::size_of::<T>(), 8);
    let base = word.cast::<u32>();
    if cfg!(target_endian = "big") {
        base.wrapping_add(1)
    } else {
        base
    }
}

/// Sleeping, waking and liveness for lock state machines.
pub trait Park {
    /// Sleeps while the 32-bit word at `word` holds `expected`, at most
    /// `timeout`. Returns `true` if the timeout elapsed. May return early.
    fn wait(word: *const u32, expected: u32, timeout: Option<Duration>) -> bool;
    /// Wakes one sleeper on `word`.
    fn wake_one(word: *const u32);
    /// Wakes every sleeper on `word`.
    fn wake_all(word: *const u32);
    /// The calling process.
    fn me() -> ProcessId;
    /// Whether `who` is still running.
    fn alive(who: ProcessId) -> bool;
}

/// The real kernel: shared futexes and `/proc`.
#[derive(Debug)]
pub struct Os;

#[cfg(loom)]
impl Park for Os {
    // Under loom the futex cannot see loom's atomics: yield instead and
    // report a timeout, so callers re-check (as after a spurious wake-up).
    fn wait(_word: *const u32, _expected: u32, _timeout: Option<Duration>) -> bool {
        loom::thread::yield_now();
        true
    }
    fn wake_one(_word: *const u32) {}
    fn wake_all(_word: *const u32) {}
    fn me() -> ProcessId {
        ProcessId { pid: crate::os::current_pid(), start: crate::os::current_start_time() as u32 }
    }
    fn alive(who: ProcessId) -> bool {
        crate::os::process_alive(who.pid, u64::from(who.start), true)
    }
}

#[cfg(not(loom))]
impl Park for Os {
    #[inline]
    fn wait(word: *const u32, expected: u32, timeout: Option<Duration>) -> bool {
        crate::os::futex_wait(word, expected, timeout) == crate::os::WaitOutcome::TimedOut
    }
    #[inline]
    fn wake_one(word: *const u32) {
        crate::os::futex_wake(word, 1)
    }
    #[inline]
    fn wake_all(word: *const u32) {
        crate::os::futex_wake(word, u32::MAX)
    }
    #[inline]
    fn me() -> ProcessId {
        ProcessId { pid: crate::os::current_pid(), start: crate::os::current_start_time() as u32 }
    }
    fn alive(who: ProcessId) -> bool {
        crate::os::process_alive(who.pid, u64::from(who.start), true)
    }
}
