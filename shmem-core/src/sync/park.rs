//! How lock state machines sleep, wake and judge liveness: the [`Park`]
//! trait, with the futex-and-OFD-lock implementation [`Os`] (see
//! [`liveness`](super::liveness)).
//!
//! The state machines in [`raw_mutex`](super::raw_mutex) take a `Park` as a
//! type parameter so that the loom model can swap the kernel out.

pub use super::liveness::Liveness;
use std::time::Duration;

/// The futex word of a 64-bit atomic: its low 32 bits, which are its first
/// 4 bytes on little-endian targets and its last 4 on big-endian ones.
/// `wrapping_add` stays inside the 8-byte word; the pointer is only handed
/// to the kernel, never dereferenced.
#[cfg_attr(loom, allow(dead_code, reason = "under loom the lock hands out its whole word"))]
pub(crate) fn low_half<T>(word: *const T) -> *const u32 {
    debug_assert_eq!(core::mem::size_of::<T>(), 8);
    let base = word.cast::<u32>();
    if cfg!(target_endian = "big") {
        base.wrapping_add(1)
    } else {
        base
    }
}

/// The futex address of a 32-bit atomic word (under loom, the loom atomic
/// itself, which a model's `Park` may read; `Os` ignores it there).
#[cfg(not(loom))]
#[inline]
pub(crate) fn futex_of(word: &crate::sync::primitive::AtomicU32) -> *const u32 {
    word.as_ptr().cast_const()
}

#[cfg(loom)]
#[inline]
pub(crate) fn futex_of(word: &crate::sync::primitive::AtomicU32) -> *const u32 {
    (word as *const crate::sync::primitive::AtomicU32).cast()
}

/// A crash point inside a state machine generic over `P`: for whole
/// processes in `crashpoints` builds (through `Os`), and for the loom models
/// (through their `Park`). Also a compiler fence, as
/// [`crash_point!`](crate::crash_point) is (the steps around it keep their
/// program order in every build).
#[inline(always)]
pub(crate) fn point<P: Park>(name: &'static str) {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    P::crash_point(name);
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
    /// The calling process's owner token (see
    /// [`liveness::my_token`](super::liveness::my_token)).
    fn me() -> u64;
    /// What the kernel says about `owner`, the holder of the lock at
    /// `lock`. Callers take over only on [`Liveness::Dead`].
    fn liveness(owner: u64, lock: *const ()) -> Liveness;
    /// Asks for sleepers on `futex` to be woken when `owner`, the holder of
    /// the lock at `lock`, dies. Returns whether a watch was set up; if so,
    /// the caller calls [`unwatch`](Self::unwatch) when it stops waiting.
    fn watch(_owner: u64, _lock: *const (), _futex: *const u32) -> bool {
        false
    }
    /// Cancels one [`watch`](Self::watch) of `owner` for `futex`.
    fn unwatch(_owner: u64, _futex: *const u32) {}
    /// A named point inside a lock operation where a model may make the
    /// calling "process" die (the loom models); the real kernel does
    /// nothing here (crash tests of whole processes use
    /// [`crash_point!`](crate::crash_point) instead).
    #[inline(always)]
    fn crash_point(_name: &'static str) {}
}

/// The real kernel: shared futexes and OFD locks.
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
    fn me() -> u64 {
        super::liveness::my_token()
    }
    fn liveness(owner: u64, lock: *const ()) -> Liveness {
        super::liveness::judge(owner, lock)
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
    fn me() -> u64 {
        super::liveness::my_token()
    }
    fn liveness(owner: u64, lock: *const ()) -> Liveness {
        super::liveness::judge(owner, lock)
    }
    fn watch(owner: u64, lock: *const (), futex: *const u32) -> bool {
        super::liveness::watch(owner, lock, futex)
    }
    fn unwatch(owner: u64, futex: *const u32) {
        super::liveness::unwatch(owner, futex)
    }
    #[cfg(feature = "crashpoints")]
    fn crash_point(name: &'static str) {
        crate::crash::hit(name)
    }
}
