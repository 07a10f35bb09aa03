//! The atomics the lock state machines use: `core`'s normally, loom's when
//! built with `--cfg loom` so the model checker can explore interleavings
//! (see `shmem-core/tests/loom_lock.rs`). Scalar field atomics that live in
//! a mapping always use `core` directly.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

/// A hint inside a bounded spin; under loom, a yield so the model progresses.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
