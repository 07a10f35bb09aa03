//! # shmem: typed state shared between processes
//!
//! Describe the shared state as an ordinary struct, derive [`Shared`], and
//! every process on the machine can create or attach to it by name. Every
//! access is atomic (or, for compound fields, lock-protected): a data race
//! cannot be written in safe code, and nothing is serialised.
//!
//! ```
//! use shmem::{Segment, Shared};
//!
//! #[derive(Shared, Debug, Default, PartialEq)]
//! pub struct Stats {
//!     /// Requests served.
//!     pub hits: u64,
//!     pub temperature: f64,
//!     pub running: bool,
//!     pub per_core: [u32; 4],
//!     pub limits: Limits,
//! }
//!
//! #[derive(Shared, Debug, Default, PartialEq)]
//! pub struct Limits {
//!     pub max_rps: u32,
//! }
//!
//! # let name = format!("doc-stats-{}", std::process::id());
//! // Process A creates the segment (and removes it when `stats` drops).
//! let stats = Segment::create(&name, &Stats { running: true, ..Stats::default() })?;
//!
//! // Process B (here: the same one) attaches by name; the layout is checked.
//! let seen = Segment::<Stats>::attach(&name)?;
//! seen.hits().fetch_add(1);
//! seen.temperature().store(21.5);
//! seen.per_core()[2].fetch_add(7);
//! seen.limits().max_rps().store(1000);
//!
//! assert_eq!(stats.hits().load(), 1);
//! assert!(stats.running().load());
//! assert_eq!(Segment::snapshot(&stats).per_core, [0, 0, 7, 0]);
//! assert_eq!(Segment::snapshot(&stats).limits, Limits { max_rps: 1000 });
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! ## What `#[derive(Shared)]` generates
//!
//! For `struct Stats`, a `#[repr(C)]` twin `StatsShared` (with the struct's
//! visibility) that lives in the segment, and `unsafe impl Shared for Stats`.
//! [`Segment<Stats>`] dereferences to `StatsShared`, which has one accessor
//! per field, named like the field, with the field's visibility and docs:
//!
//! | field type | accessor returns | operations |
//! |---|---|---|
//! | integers (`u8`..`u64`, `i8`..`i64`, `usize`, `isize`) | `&Atomic<T>` | load, store, swap, compare_exchange, fetch_add/sub/and/nand/or/xor/max/min, fetch_update, update |
//! | `f32`, `f64` | `&Atomic<T>` | load, store, swap, compare_exchange (on bits), fetch_add/sub/max/min, update |
//! | `bool` | `&Atomic<bool>` | load, store, swap, compare_exchange, fetch_and/or/xor/nand/not, update |
//! | `char` | `&Atomic<char>` | load, store, swap, compare_exchange, update |
//! | `[T; N]` of the above | `&[Atomic<T>; N]` | index, iterate |
//! | a `#[derive(Shared)]` struct `Inner` | `&InnerShared` | its own accessors |
//!
//! | `#[shared(lock)] T` where `T: bytemuck::Pod` | `&Mutex<T>` | `lock()`, `try_lock()`, `lock_timeout(d)` -> guard; poisoning like std, also on the owner's death |
//! | `#[shared(rwlock)] T` | `&RwLock<T>` | `read()`, `write()`, `read_timeout(d)`, `write_timeout(d)` |
//! | `#[shared(seqlock)] T` | `&SeqLock<T>` | `read()` (a consistent copy, never blocks writers), `write(v)`, `update(f)` |
//!
//! | `Event`, `Semaphore`, `Barrier`, `Condvar` | itself | set/clear/wait; acquire/release; wait; wait/notify with a `Mutex` guard |
//! | `Queue<T, N>` (`T: Pod`) | itself | `push`/`pop` (blocking), `try_*`, `*_timeout`, `close`, `len` |
//! | `Map<K, V, N>` (`K: Pod + Hash + Eq`, `V: Pod`) | itself | `insert`, `get`, `remove`, `update`, `get_or_insert`, `to_hashmap` |
//!
//! `Str<N>` (fixed-capacity string) and `Vec<T, N>` (bounded vector) are
//! plain data: put them behind a lock, or in a queue or map.
//!
//! `u32`, `i32`, `f32` and `char` fields can also be waited on:
//! `wait_until(pred)`, `wait_until_timeout(pred, d)`, `notify_one()`,
//! `notify_all()` (a shared futex: the waiter sleeps in the kernel).
//!
//! Operations default to `SeqCst`; every one has a `*_with` form taking
//! explicit orderings (see [`Atomic`]). The plain struct stays a plain value
//! type: it is what [`Segment::create`] takes and [`Segment::snapshot`]
//! returns.
//!
//! ## Compound fields behind a lock
//!
//! A field that is not a scalar, an array of scalars or a shared struct is
//! kept behind a cross-process lock. Its type must be plain data
//! ([`bytemuck::Pod`]: numbers, arrays of them, and structs of those).
//! Make a struct of your own plain data with one line, [`#[shmem::plain]`](macro@plain),
//! which needs no other dependency:
//!
//! ```
//! use shmem::{Segment, Shared};
//!
//! #[shmem::plain]
//! pub struct Config {
//!     pub retries: u32,
//!     pub timeout_ms: u32,
//! }
//!
//! #[derive(Shared)]
//! pub struct App {
//!     #[shared(rwlock)]
//!     pub config: Config,
//! }
//!
//! let app = Segment::create_anonymous(&App { config: Config { retries: 3, timeout_ms: 500 } })?;
//! app.config().write().unwrap().retries += 1;
//! assert_eq!(app.config().read().unwrap().retries, 4);
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! And with several fields behind one lock:
//!
//! ```
//! use shmem::{Segment, Shared};
//!
//! #[derive(Shared)]
//! pub struct Samples {
//!     pub count: u64,
//!     #[shared(lock)]
//!     pub values: [i64; 4],
//! }
//!
//! # let name = format!("doc-lock-{}", std::process::id());
//! let seg = Segment::create(&name, &Samples { count: 0, values: [1, 2, 3, 4] })?;
//! {
//!     let mut values = seg.values().lock().unwrap();
//!     values.iter_mut().for_each(|v| *v *= 10);
//!     seg.count().fetch_add(1);
//! } // unlocked here
//! assert_eq!(*seg.values().lock().unwrap(), [10, 20, 30, 40]);
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! If a process dies holding the lock, the next `lock()` gets it within
//! [`OWNER_CHECK_INTERVAL`](shmem_core::sync::mutex::OWNER_CHECK_INTERVAL)
//! and returns `Err(PoisonError)` with the guard; see [`Mutex`].
//!
//! ## Coordination without a server
//!
//! ```
//! use shmem::{Barrier, Event, Segment, Shared};
//!
//! #[derive(Shared, Default)]
//! pub struct Control {
//!     pub ready: Event,
//!     pub phase: Barrier,
//!     pub stage: u32,
//! }
//!
//! # let name = format!("doc-control-{}", std::process::id());
//! let seg = Segment::create(&name, &Control { phase: Barrier::new(1), ..Default::default() })?;
//! seg.ready().set();                        // wakes every process waiting on it
//! seg.ready().wait();                       // returns at once: it is set
//! assert!(seg.phase().wait().is_leader());  // a barrier of one
//! seg.stage().store(2);
//! seg.stage().notify_all();
//! assert_eq!(seg.stage().wait_until(|s| s >= 2), 2);
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! ## Processes
//!
//! A worker is a plain function of this program, started in a child
//! process on a segment (see [`mod@spawn`]):
//!
//! ```
//! use shmem::{Segment, Shared};
//!
//! #[derive(Shared, Default)]
//! struct Counter {
//!     hits: u64,
//! }
//!
//! #[shmem::worker]
//! fn count(seg: &Segment<Counter>, times: u64) {
//!     for _ in 0..times {
//!         seg.hits().fetch_add(1);
//!     }
//! }
//!
//! fn main() -> Result<(), shmem::Error> {
//!     shmem::init(); // first line: lets child processes run their worker
//!     // Anonymous: no name, the children inherit it (Python's `Value`).
//!     let seg = Segment::create_anonymous(&Counter::default())?;
//!     let children = [shmem::spawn(&seg, count, 1000)?, shmem::spawn(&seg, count, 1000)?];
//!     for child in children {
//!         child.join()?; // a panic in the child is an Err carrying its message
//!     }
//!     assert_eq!(seg.hits().load(), 2000);
//!     Ok(())
//! }
//! ```
//!
//! ## Layout rules
//!
//! Checked at compile time, with messages that name the field and the fix:
//! only structs with named fields; no lifetimes or generic parameters; no
//! references, raw pointers, `Box`, `String`, `Vec`, `Rc`, `Arc`, trait
//! objects or other address-holding types; a field of a type with no shared
//! form is rejected (the message says to put it behind a lock); unknown
//! `#[shared(...)]` options are errors on the option.
//!
//! ## Large state
//!
//! [`Segment::create_zeroed`] and [`Segment::create_with`] build the value in
//! place in the segment, so a struct holding millions of elements never
//! touches the stack:
//!
//! ```
//! use shmem::{Segment, Shared};
//!
//! #[derive(Shared)]
//! pub struct Histogram {
//!     pub buckets: [u64; 1_000_000],
//!     pub total: u64,
//! }
//!
//! # let name = format!("doc-histogram-{}", std::process::id());
//! let h = Segment::<Histogram>::create_with(&name, |h| h.buckets()[42].store(1))?;
//! assert_eq!(h.buckets()[42].load(), 1);
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! ## Segments
//!
//! See [`segment`] for creation, attach checks, ownership, liveness and the
//! header format, and [`Error`] for every failure.
#![deny(unsafe_op_in_unsafe_fn)]

pub use shmem_core::*;
// bytemuck, which `#[shmem::plain]` derives through: usable as
// `shmem::bytemuck`, but its pages are bytemuck's to show (docs.rs/bytemuck),
// not copied into these.
#[doc(hidden)]
pub use shmem_core::bytemuck;
// The macros' documentation is written once, on their definitions in
// shmem-derive (a doc comment here would be shown before it, twice over).
pub use shmem_derive::{plain, worker, Shared};

/// The README's code blocks, compiled and run as doc tests (`cargo test
/// --doc`), so that what a newcomer copies from it works as written.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
