//! Operating-system calls, in one place.
//!
//! Everything that touches the OS directly (opening shared-memory objects,
//! linking them into place, reserving memory, advisory locks, process
//! identity) lives behind this small set of functions. `linux.rs` implements
//! them for Linux (`/dev/shm`, `O_TMPFILE`, `flock`, `/proc`); another
//! platform adds its own file and one `cfg` line here.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
compile_error!("shmem supports Linux only for now; the OS layer lives in shmem-core/src/os/");

pub(crate) use imp::*;
