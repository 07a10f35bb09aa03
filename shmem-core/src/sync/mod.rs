//! Synchronisation that works across processes.
//!
//! - [`Atomic`](atomic::Atomic): the shared form of every primitive scalar field.
//! - [`Mutex`](mutex::Mutex): a crash-safe cross-process lock around plain data
//!   (`#[shared(lock)]`), built on [`RawMutex`](raw_mutex::RawMutex).

pub mod atomic;
pub mod mutex;
pub mod park;
pub(crate) mod primitive;
pub mod raw_mutex;
