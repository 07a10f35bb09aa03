//! Synchronisation that works across processes.
//!
//! [`Atomic`] is the shared form of every primitive scalar field.

pub mod atomic;
