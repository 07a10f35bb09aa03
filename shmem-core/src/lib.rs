//! The runtime of [shmem](https://docs.rs/shmem): named shared-memory
//! segments with layout-checked attach, and atomic scalars in shared memory.
//!
//! Most users depend on the `shmem` facade crate and `#[derive(Shared)]`;
//! this crate holds everything that runs.
//!
//! ```
//! use shmem::Segment;
//! # let name = format!("doc-core-{}", std::process::id());
//! let temps = Segment::<[f64; 4]>::create(&name, &[20.0; 4])?;
//! temps[1].fetch_add(1.5);
//! assert_eq!(Segment::snapshot(&temps), [20.0, 21.5, 20.0, 20.0]);
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! Layers, bottom up: `os` (the only OS-specific code), [`sync`] (atomics),
//! [`layout`] (the [`Shared`] trait, fingerprints, schemas) and [`segment`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod containers;
#[doc(hidden)]
pub mod crash;
pub mod error;
pub mod layout;
mod os;
pub mod read_only;
pub mod segment;
pub mod spawn;
pub mod sync;

/// The plain-data traits locked values need (`bytemuck::Pod`), re-exported
/// so `#[derive(shmem::bytemuck::Pod, shmem::bytemuck::Zeroable)]` works
/// with `#[bytemuck(crate = "shmem::bytemuck")]`.
#[doc(hidden)]
pub use bytemuck;
pub use containers::{Full, Map, PopError, PushError, Queue, Str, StrError};
pub use error::{Corruption, Error, ErrorKind, Result};
pub use layout::{LockedField, Schema, SchemaBuilder, SchemaEntry, Shared};
pub use read_only::{read_only, ReadOnly, ReadOnlyForm};
#[cfg(not(loom))]
pub use segment::decode::{FieldState, LockState, MapState, QueueState};
pub use segment::header::Header;
pub use segment::{
    inspect, list, remove_stale, unlink, validate_name, ArraySegment, ReadOnlySegment, Segment, SegmentInfo,
    SegmentOptions, View,
};
pub use spawn::{attach_given, init, spawn, Child, SpawnOptions, WorkerFn};
pub use sync::atomic::{self, Atomic, Integer, Scalar};
pub use sync::mutex::{Mutex, MutexGuard, TimedLockError};
pub use sync::raw_mutex::RawMutex;
pub use sync::rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use sync::seqlock::SeqLock;
pub use sync::wait::{Barrier, BarrierWaitResult, Condvar, Event, Semaphore};
pub use sync::TimedOut;

/// Items used by code that `#[derive(Shared)]` generates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::layout::{assert_plain, fingerprint};
    pub use crate::read_only::Sealed;
    pub use crate::spawn::{__call_worker, __worker_name, WorkerEntry};
    pub use core;
    pub use inventory;
    pub use std;
}
