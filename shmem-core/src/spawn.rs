//! Child processes that share a segment: workers that are plain functions
//! of this program, and other executables.
//!
//! A child is given the segment's file itself, as an inherited descriptor
//! (a new open file description of it, and `SHMEM_SEGMENT_FD` saying which
//! descriptor and which file), so anonymous segments
//! ([`Segment::create_anonymous`]) can be given too, and a named segment's
//! child attaches to the very file its parent holds even if the name was
//! removed or replaced meanwhile. The name, for a named segment, is the
//! fallback where the descriptor cannot be used.
//!
//! # Workers
//!
//! See the `shmem` crate docs ("Processes") for a complete program.
//!
//! `#[shmem::worker]` registers `fn count(seg: &Segment<Counter>, times: u64)`
//! (leaving the function as it is) under the path of its type, and `spawn`
//! takes the function itself, so the call is type-checked: a worker for one
//! segment type cannot be started on another. A function that is not marked
//! is refused with [`Error::NotAWorker`]. The child is
//! this same executable (`/proc/self/exe`: the very binary that is running,
//! even if the file was replaced since), started with the worker's name, the
//! segment and the argument's bytes in its environment. `init()` sees
//! them, removes them from its environment (so the worker's own children,
//! even this program run again, never take themselves for workers),
//! attaches to the segment (checking its layout), runs the function and
//! reports back over a pipe: started, then done, the panic message, or the
//! error. The parent reads that pipe while it waits (a panic message of any
//! size cannot deadlock `join`, and a grandchild that keeps the pipe open
//! cannot hold up `join_timeout`). A worker that ends its process itself
//! (`std::process::exit`) is reported with its exit status: `Ok` for 0,
//! [`Error::WorkerFailed`] otherwise.
//! The argument is any `bytemuck::Pod` value up to [`MAX_ARG_SIZE`] bytes.
//!
//! A program that forgets `shmem::init()` would run its whole `main` in
//! every child; instead `spawn` refuses to run in such a child, and the
//! parent's `join` reports [`Error::WorkerNotStarted`] with the fix.
//!
//! # Other executables
//!
//! [`SpawnOptions::command`] starts any program given the segment (its
//! descriptor, and `SHMEM_SEGMENT` set to its name if it has one); that
//! program calls [`attach_given`].
//!
//! # Supervision
//!
//! [`Child`] has the pid, [`join`](Child::join),
//! [`join_timeout`](Child::join_timeout), [`kill`](Child::kill) and
//! [`is_alive`](Child::is_alive). A panic in a worker is
//! [`Error::WorkerPanicked`] with its message; a child killed by a signal is
//! [`Error::ChildKilled`] with the signal. By default a child is killed
//! when the parent process dies. A worker watches a lifeline pipe whose
//! write end only the parent process holds, so it dies with the *process*,
//! whichever of its threads spawned it and whether or not that thread still
//! runs (a child the parent forked without exec also holds the write end,
//! and keeps the worker alive while it lives). Another executable started
//! with [`SpawnOptions::command`] gets `PR_SET_PDEATHSIG` instead, which
//! Linux ties to the parent *thread* that spawned it: spawn those from a
//! thread that lives as long as you want them to.
//! [`SpawnOptions::kill_on_drop`] also kills a child when its handle is
//! dropped.

use crate::error::{Error, ErrorKind, Result};
use crate::layout::Shared;
use crate::os;
use crate::segment::Segment;
use bytemuck::Pod;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Environment variable naming the segment a child was given (unset for
/// an anonymous segment).
pub const SEGMENT_ENV: &str = "SHMEM_SEGMENT";
/// Environment variable describing the descriptor a child inherited for
/// its segment: `FD:DEVICE:INODE` (the file it must be, so that a stale
/// value inherited by a grandchild whose descriptor number now names
/// something else is recognised and ignored).
pub const SEGMENT_FD_ENV: &str = "SHMEM_SEGMENT_FD";
const WORKER_ENV: &str = "SHMEM_WORKER";
const ARG_ENV: &str = "SHMEM_WORKER_ARG";
const STATUS_FD_ENV: &str = "SHMEM_WORKER_STATUS_FD";
const LIFELINE_FD_ENV: &str = "SHMEM_WORKER_LIFELINE_FD";
/// The uid owning the segment a child is given, when it is not the child's
/// own user: the parent trusted that owner, so the child does too.
const TRUST_UID_ENV: &str = "SHMEM_TRUST_UID";
/// The segment a worker was given, kept after its environment is cleaned.
static WORKER_GIVEN: std::sync::OnceLock<Given> = std::sync::OnceLock::new();

/// The segment a parent handed to this process: by inherited descriptor
/// (anonymous or named), by name, or both (the name is the fallback).
#[derive(Debug, Clone)]
struct Given {
    name: Option<String>,
    fd: Option<(i32, (u64, u64))>,
    /// The segment owner the parent trusted (`u32::MAX`: none beyond our own user).
    trust_uid: u32,
}

impl Given {
    fn from_env() -> Given {
        let fd = std::env::var(SEGMENT_FD_ENV).ok().and_then(|v| {
            let mut parts = v.splitn(3, ':').map(|p| p.parse::<u64>().ok());
            let (fd, dev, ino) = (parts.next()??, parts.next()??, parts.next()??);
            Some((i32::try_from(fd).ok().filter(|fd| *fd > 2)?, (dev, ino)))
        });
        let trust_uid = std::env::var(TRUST_UID_ENV).ok().and_then(|u| u.parse::<u32>().ok()).unwrap_or(u32::MAX);
        Given { name: std::env::var(SEGMENT_ENV).ok(), fd, trust_uid }
    }

    /// Attaches: through the inherited descriptor if it is still the file
    /// meant, else by name.
    fn attach<T: Shared>(&self) -> Result<Segment<T>> {
        let options = options_for(self.trust_uid);
        let label = self.name.as_deref().unwrap_or(crate::segment::ANONYMOUS);
        if let Some((fd, id)) = self.fd {
            match os::open_inherited(fd, id, false) {
                Ok(file) => {
                    // Verified to be the segment's file: this process's own
                    // children must not inherit it.
                    os::set_cloexec(fd);
                    let seg = options.attach_file(label, file, self.name.is_none(), true)?;
                    // Our handle holds the segment now. The hand-over
                    // description held it for us since the spawn (so nobody
                    // could remove it meanwhile); it lets go, so that it does
                    // not keep the segment after our handles are gone (it
                    // stays open, for later calls).
                    os::unlock_raw(fd);
                    return Ok(seg);
                }
                // The descriptor is gone, or is another file by now (a stale
                // environment inherited by a grandchild): the name, if any,
                // still says which segment.
                Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidData) => {}
                Err(e) => return Err(Error::from_io(label, "open the inherited segment", e)),
            }
        }
        match &self.name {
            Some(name) => options.attach(name),
            None if self.fd.is_some() => Err(Error::Io {
                name: label.to_owned(),
                op: "open the inherited segment descriptor (it is closed or names another file)",
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
            None => Err(Error::NoSegmentGiven { var: SEGMENT_ENV }),
        }
    }
}

/// The first line of a worker's status record once its function runs.
const STARTED: &str = "started";

/// The largest worker argument, in bytes.
pub const MAX_ARG_SIZE: usize = 4096;

static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// A function that can run as a worker on segments of type `T` with an
/// argument of type `A`: `fn(&Segment<T>, A)` or `fn(&Segment<T>)` (then
/// `A = ()`), marked `#[shmem::worker]`. `M` only tells the two forms apart.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot run as a worker on this segment with this argument",
    label = "expected a `#[shmem::worker] fn(&Segment<T>, A)` whose `T` is the segment's type",
    note = "a worker for `Segment<A>` cannot be started on a `Segment<B>`"
)]
pub trait WorkerFn<T: Shared, A: Pod, M>: Copy + 'static {
    /// Runs the function.
    fn run(self, seg: &Segment<T>, arg: A);
}

impl<T: Shared, A: Pod, F: Fn(&Segment<T>, A) + Copy + 'static> WorkerFn<T, A, (A,)> for F {
    fn run(self, seg: &Segment<T>, arg: A) {
        self(seg, arg)
    }
}

impl<T: Shared, F: Fn(&Segment<T>) + Copy + 'static> WorkerFn<T, (), ()> for F {
    fn run(self, seg: &Segment<T>, _arg: ()) {
        self(seg)
    }
}

/// The name a worker is registered under: the path of its function's type
/// (unique per function, the same in parent and child, which are one binary).
#[doc(hidden)]
pub fn __worker_name<F: 'static>(_f: &F) -> &'static str {
    core::any::type_name::<F>()
}

/// A registered worker: how a child finds its function by name.
#[doc(hidden)]
pub struct WorkerEntry {
    pub name: fn() -> &'static str,
    pub call: fn(segment: &str, arg: &[u8]) -> Result<()>,
}

fn registered(name: &str) -> Option<&'static WorkerEntry> {
    inventory::iter::<WorkerEntry>.into_iter().find(|e| (e.name)() == name)
}

inventory::collect!(WorkerEntry);

/// Used by `#[shmem::worker]`: attaches to `segment` as `T`, decodes the
/// argument and runs `f`.
#[doc(hidden)]
pub fn __call_worker<T: Shared, A: Pod, M, F: WorkerFn<T, A, M>>(segment: &str, arg: &[u8], f: F) -> Result<()> {
    let given = WORKER_GIVEN.get().ok_or(Error::NoSegmentGiven { var: SEGMENT_ENV })?;
    let seg = given.attach::<T>()?;
    let arg: A = bytemuck::try_pod_read_unaligned(arg).map_err(|_| Error::Io {
        name: segment.to_owned(),
        op: "decode worker argument",
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })?;
    f.run(&seg, arg);
    Ok(())
}

/// Lets this program's child processes run their workers. Call it first in
/// `main`: in a worker child it runs the worker and exits the process; in
/// any other process it returns at once.
///
/// ```
/// shmem::init(); // first line of `main`: in a worker child this runs the worker and exits
/// // ... the program ...
/// ```
pub fn init() {
    INIT_CALLED.store(true, Ordering::Relaxed);
    let Ok(worker) = std::env::var(WORKER_ENV) else { return };
    let given = Given::from_env();
    let segment = given.name.clone().unwrap_or_else(|| crate::segment::ANONYMOUS.to_owned());
    let arg = std::env::var(ARG_ENV).ok().and_then(|hex| decode_hex(&hex)).unwrap_or_default();
    let mut status = std::env::var(STATUS_FD_ENV)
        .ok()
        .and_then(|fd| fd.parse::<i32>().ok())
        .filter(|fd| *fd > 2 && os::fd_is_open(*fd))
        .map(|fd| {
            os::set_cloexec(fd);
            // SAFETY: the parent passed this descriptor (the write end of
            // the status pipe) to us alone; it was checked to be open, and
            // nothing else in this process owns it.
            unsafe { std::fs::File::from_raw_fd(fd) }
        });
    let mut report = |record: String| {
        if let Some(file) = status.as_mut() {
            let _ = std::io::Write::write_all(file, record.as_bytes());
        }
    };
    // The worker's own children (it may run this program again, or anything
    // else) must not see these and take themselves for workers.
    let lifeline = std::env::var(LIFELINE_FD_ENV).ok().and_then(|fd| fd.parse::<i32>().ok()).filter(|fd| *fd > 2);
    if let Some((fd, _)) = given.fd {
        os::set_cloexec(fd);
    }
    let _ = WORKER_GIVEN.set(given);
    for var in [WORKER_ENV, ARG_ENV, STATUS_FD_ENV, SEGMENT_ENV, SEGMENT_FD_ENV, LIFELINE_FD_ENV, TRUST_UID_ENV] {
        std::env::remove_var(var);
    }
    if let Some(fd) = lifeline {
        os::set_cloexec(fd);
        os::die_with_lifeline(fd);
    }
    let Some(entry) = registered(&worker) else {
        report(format!("error\n\nno worker named `{worker}` is registered in this executable"));
        std::process::exit(101);
    };
    // From here on the parent knows the worker ran: if no final record
    // follows, the worker ended the process itself (`std::process::exit`).
    report(format!("{STARTED}\n"));
    match std::panic::catch_unwind(|| (entry.call)(&segment, &arg)) {
        Ok(Ok(())) => {
            report("ok\n".into());
            std::process::exit(0);
        }
        Ok(Err(e)) => {
            report(format!("error\n{:?}\n{e}", e.kind()));
            std::process::exit(1);
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            report(format!("panic\n{message}"));
            std::process::exit(101);
        }
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// How to start a child: what happens to it when its handle drops or its
/// parent dies.
///
/// ```
/// use shmem::{Segment, SpawnOptions};
/// use std::process::Command;
///
/// let seg = Segment::<u64>::create_anonymous(&0)?;
/// // Any program, given the segment (it calls `shmem::attach_given`); killed
/// // if its handle is dropped unjoined, and if this process dies.
/// let child = SpawnOptions::new().kill_on_drop(true).command(Command::new("true"), &seg)?;
/// assert!(child.join()?.success());
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    kill_on_drop: bool,
    die_with_parent: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions::new()
    }
}

impl SpawnOptions {
    /// Children die with their parent; dropping a handle leaves the child running.
    pub fn new() -> Self {
        SpawnOptions { kill_on_drop: false, die_with_parent: true }
    }

    /// Kill the child (SIGKILL) when its [`Child`] handle is dropped without
    /// being joined (default: no).
    pub fn kill_on_drop(mut self, yes: bool) -> Self {
        self.kill_on_drop = yes;
        self
    }

    /// Have the kernel kill the child when the parent dies (default: yes),
    /// so a crashed parent leaves no orphans holding segments.
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.die_with_parent = yes;
        self
    }

    /// Starts `worker` in a child process of this same executable, on `seg`, with `arg`.
    ///
    /// # Errors
    /// [`Error::Io`] if the process cannot be started, or if called in a
    /// worker child whose `main` did not call [`init`] (to stop a
    /// runaway chain of children).
    pub fn spawn<T: Shared, A: Pod, M>(
        &self,
        seg: &Segment<T>,
        worker: impl WorkerFn<T, A, M>,
        arg: A,
    ) -> Result<Child> {
        refuse_in_uninitialised_worker(Segment::name(seg))?;
        let worker_name = __worker_name(&worker);
        if registered(worker_name).is_none() {
            return Err(Error::NotAWorker { function: worker_name.to_owned() });
        }
        let bytes = bytemuck::bytes_of(&arg);
        if bytes.len() > MAX_ARG_SIZE {
            return Err(Error::Io {
                name: Segment::name(seg).to_owned(),
                op: "spawn (worker argument larger than 4096 bytes)",
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        let io = |op| move |e| Error::Io { name: Segment::name(seg).to_owned(), op, source: e };
        let (reader, writer) = std::io::pipe().map_err(io("create status pipe"))?;
        let mut cmd = Command::new(os::SELF_EXE);
        cmd.env(WORKER_ENV, worker_name)
            .env(ARG_ENV, encode_hex(bytes))
            .env(STATUS_FD_ENV, writer.as_raw_fd().to_string());
        let handoff = hand_over(&mut cmd, seg)?;
        // A worker dies with this *process* through a lifeline pipe that it
        // watches (PR_SET_PDEATHSIG would tie it to the spawning thread).
        let lifeline = if self.die_with_parent { os::lifeline_read_end() } else { None };
        if let Some(fd) = lifeline {
            cmd.env(LIFELINE_FD_ENV, fd.to_string());
        }
        let keep = [Some(writer.as_raw_fd()), lifeline, handoff.as_ref().map(AsRawFd::as_raw_fd)];
        self.prepare(&mut cmd, keep, lifeline.is_none() && self.die_with_parent);
        let child = cmd.spawn().map_err(io("spawn worker"))?;
        drop((writer, handoff));
        // Read while waiting, never blocking: a large panic message must not
        // fill the pipe while we wait for the exit, and a grandchild that
        // keeps the pipe open must not hold up `join`.
        os::set_nonblocking(reader.as_raw_fd()).map_err(io("configure status pipe"))?;
        Ok(Child {
            label: worker_name.to_owned(),
            inner: Some(child),
            status: Some(reader),
            is_worker: true,
            record: Vec::new(),
            kill_on_drop: self.kill_on_drop,
        })
    }

    /// Starts `cmd` (any executable) given `seg`: it inherits a descriptor
    /// of the segment's file ([`SEGMENT_FD_ENV`]) and, for a named segment,
    /// its name ([`SEGMENT_ENV`]), so it can call [`attach_given`]. Anonymous
    /// segments ([`Segment::create_anonymous`]) can be given this way too.
    ///
    /// Until the program calls [`attach_given`], the inherited descriptor
    /// holds the segment (keeps its name, and an anonymous segment's
    /// memory) and is passed on to the program's own children: a program
    /// that never attaches holds the segment for as long as it and the
    /// children it started with that descriptor run.
    ///
    /// # Errors
    /// [`Error::Io`] if the program cannot be started.
    pub fn command<T: Shared>(&self, mut cmd: Command, seg: &Segment<T>) -> Result<Child> {
        refuse_in_uninitialised_worker(Segment::name(seg))?;
        let handoff = hand_over(&mut cmd, seg)?;
        self.prepare(&mut cmd, [None, None, handoff.as_ref().map(AsRawFd::as_raw_fd)], self.die_with_parent);
        let label = cmd.get_program().to_string_lossy().into_owned();
        let child =
            cmd.spawn().map_err(|e| Error::Io { name: Segment::name(seg).to_owned(), op: "spawn", source: e })?;
        drop(handoff);
        Ok(Child {
            label,
            inner: Some(child),
            status: None,
            is_worker: false,
            record: Vec::new(),
            kill_on_drop: self.kill_on_drop,
        })
    }

    fn prepare(&self, cmd: &mut Command, keep_fds: [Option<i32>; 3], pdeathsig: bool) {
        let parent = std::process::id();
        let setup = move || {
            // SAFETY: `pre_exec` runs this between fork and exec, which is
            // what `prepare_child` requires.
            unsafe { os::prepare_child(keep_fds, pdeathsig, parent) }
        };
        // SAFETY: `setup` only calls `os::prepare_child`, which is
        // async-signal-safe (fcntl, prctl, getppid; no allocation or locks).
        unsafe { cmd.pre_exec(setup) };
    }
}

/// In a worker child whose `main` did not call [`init`]: refuses to create,
/// attach or spawn (that `main` is running where the worker should, and
/// would otherwise fail later with a misleading error, or start children
/// of its own without end).
pub(crate) fn refuse_in_uninitialised_worker(segment: &str) -> Result<()> {
    if !INIT_CALLED.load(Ordering::Relaxed) && std::env::var_os(WORKER_ENV).is_some() {
        return Err(Error::InitNotCalled { name: segment.to_owned() });
    }
    Ok(())
}

/// Starts `worker` on `seg` with `arg` in a child process, with default
/// [`SpawnOptions`]. See the [module docs](self).
///
/// # Errors
/// As [`SpawnOptions::spawn`].
///
/// ```
/// use shmem::{Segment, Shared};
///
/// #[derive(Shared, Default)]
/// struct Counter {
///     hits: u64,
/// }
///
/// #[shmem::worker]
/// fn count(seg: &Segment<Counter>, times: u64) {
///     for _ in 0..times {
///         seg.hits().fetch_add(1);
///     }
/// }
///
/// fn main() -> Result<(), shmem::Error> {
///     shmem::init();
///     let seg = Segment::create_anonymous(&Counter::default())?;
///     let workers = [shmem::spawn(&seg, count, 500)?, shmem::spawn(&seg, count, 500)?];
///     for w in workers {
///         w.join()?; // a panic in the worker is an Err with its message
///     }
///     assert_eq!(seg.hits().load(), 1000);
///     Ok(())
/// }
/// ```
pub fn spawn<T: Shared, A: Pod, M>(seg: &Segment<T>, worker: impl WorkerFn<T, A, M>, arg: A) -> Result<Child> {
    SpawnOptions::new().spawn(seg, worker, arg)
}

/// Attaches to the segment this process was given by its parent
/// ([`SpawnOptions::command`]): the very file the parent holds, through
/// the descriptor it inherited ([`SEGMENT_FD_ENV`]), named or anonymous;
/// by name ([`SEGMENT_ENV`]) if that descriptor is gone. May be called more
/// than once.
///
/// # Errors
/// [`Error::NoSegmentGiven`], or any error of [`Segment::attach`].
///
/// ```
/// use shmem::Segment;
/// // In a program started with `SpawnOptions::command(cmd, &seg)`:
/// match shmem::attach_given::<u64>() {
///     Ok(seg) => println!("given {}", seg.load()),
///     Err(shmem::Error::NoSegmentGiven { .. }) => println!("started by hand: no segment"),
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), shmem::Error>(())
/// ```
pub fn attach_given<T: Shared>() -> Result<Segment<T>> {
    match WORKER_GIVEN.get() {
        Some(given) => given.attach(),
        None => Given::from_env().attach(),
    }
}

/// Puts what a child needs to attach to `seg` into `cmd`'s environment
/// (replacing whatever this process itself was given), and returns the
/// descriptor it is to inherit (the caller keeps it open until the child is
/// started, and lists it in `prepare`'s `keep_fds`).
///
/// The descriptor is a new open file description of the segment's file
/// (through `/proc/self/fd`), numbered 3 or above, not a copy of the
/// handle's: the handle's liveness `flock` lives on its description, and
/// must not be kept by the child. It carries a shared `flock` of its own,
/// so the child counts as holding the segment from the spawn on (nobody can
/// remove the name, or call it stale, before the child has attached); the
/// child drops that lock once its own handle holds one. Without `/proc` a
/// named segment is given by name only, and an anonymous one cannot be
/// given (a shared description would merge the two processes' liveness).
fn hand_over<T: Shared>(cmd: &mut Command, seg: &Segment<T>) -> Result<Option<std::fs::File>> {
    use std::os::fd::AsFd;
    let name = Segment::name(seg);
    let io = |op| move |e| Error::Io { name: name.to_owned(), op, source: e };
    for var in [SEGMENT_ENV, SEGMENT_FD_ENV, TRUST_UID_ENV] {
        cmd.env_remove(var);
    }
    if !Segment::is_anonymous(seg) {
        cmd.env(SEGMENT_ENV, name);
    }
    if let Some(uid) = foreign_owner(seg) {
        cmd.env(TRUST_UID_ENV, uid.to_string());
    }
    let (fd, fresh) = os::reopen(Segment::file(seg).as_fd()).map_err(io("open segment for the child"))?;
    if !fresh {
        if Segment::is_anonymous(seg) {
            return Err(Error::Io {
                name: name.to_owned(),
                op: "hand the anonymous segment to a child (needs /proc mounted, to give the child \
                     a file description of its own)",
                source: std::io::Error::from(std::io::ErrorKind::Unsupported),
            });
        }
        return Ok(None);
    }
    let file = os::dup_cloexec(fd.as_raw_fd()).map_err(io("open segment for the child"))?;
    drop(fd);
    os::hold_liveness_lock(&file).map_err(io("lock"))?;
    let (dev, ino) = os::file_id(&file).map_err(io("stat"))?;
    cmd.env(SEGMENT_FD_ENV, format!("{}:{dev}:{ino}", file.as_raw_fd()));
    Ok(Some(file))
}

/// Attach options that trust `uid` (the owner of a segment the parent
/// handed over), unless it is `u32::MAX`.
fn options_for(uid: u32) -> crate::segment::SegmentOptions {
    let options = crate::segment::SegmentOptions::new();
    if uid == u32::MAX {
        options
    } else {
        options.trust_owner(uid)
    }
}

/// The owner of `seg`'s file if it is not this process's user (so a child
/// given the segment trusts it as the parent did).
fn foreign_owner<T: Shared>(seg: &Segment<T>) -> Option<u32> {
    let owner = Segment::owner_uid(seg)?;
    (owner != os::effective_uid()).then_some(owner)
}

/// A handle to a child process started by [`spawn`] or [`SpawnOptions::command`].
///
/// ```
/// use shmem::{Segment, Shared};
/// use std::time::Duration;
///
/// #[derive(Shared, Default)]
/// struct Flag {
///     done: bool,
/// }
///
/// #[shmem::worker]
/// fn finish(seg: &Segment<Flag>) {
///     seg.done().store(true);
/// }
///
/// fn main() -> Result<(), shmem::Error> {
///     shmem::init();
///     let seg = Segment::create_anonymous(&Flag::default())?;
///     let mut child = shmem::spawn(&seg, finish, ())?; // `Process(target=finish).start()`
///     println!("started pid {}", child.pid());
///     child.join_timeout(Duration::from_secs(30))?;    // `p.join(30)`
///     assert!(seg.done().load());
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Child {
    label: String,
    inner: Option<std::process::Child>,
    /// The read end of a worker's status pipe (non-blocking), until EOF.
    status: Option<std::io::PipeReader>,
    /// Whether this is a worker (it has a status record).
    is_worker: bool,
    /// What the worker wrote so far.
    record: Vec<u8>,
    kill_on_drop: bool,
}

impl Child {
    fn process(&mut self) -> &mut std::process::Child {
        self.inner.as_mut().unwrap_or_else(|| unreachable!("taken only by join, which consumes the handle"))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.inner.as_ref().map_or(0, std::process::Child::id)
    }

    /// Whether the child is still running.
    pub fn is_alive(&mut self) -> bool {
        // Keep the status pipe flowing: a worker writing a large report
        // would otherwise block on a full pipe and never end.
        self.drain();
        matches!(self.process().try_wait(), Ok(None))
    }

    /// Kills the child (SIGKILL). Joining it afterwards reports the signal.
    ///
    /// # Errors
    /// [`Error::Io`] if the signal could not be sent.
    pub fn kill(&mut self) -> Result<()> {
        let label = self.label.clone();
        match self.process().kill() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()), // already exited
            Err(e) => Err(Error::Io { name: label, op: "kill", source: e }),
        }
    }

    /// Waits for the child to exit.
    ///
    /// # Errors
    /// For a worker: [`Error::WorkerPanicked`], [`Error::WorkerFailed`],
    /// [`Error::WorkerNotStarted`]; for any child: [`Error::ChildKilled`],
    /// or [`Error::Io`] if waiting failed. A program started with
    /// [`SpawnOptions::command`] returns `Ok` with its exit status, whatever
    /// its exit code.
    ///
    /// ```
    /// use shmem::{Error, Segment};
    ///
    /// #[shmem::worker]
    /// fn fail(_seg: &Segment<u64>) {
    ///     panic!("out of cheese");
    /// }
    ///
    /// fn main() -> Result<(), shmem::Error> {
    ///     shmem::init();
    ///     let seg = Segment::create_anonymous(&0u64)?;
    ///     match shmem::spawn(&seg, fail, ())?.join() {
    ///         Err(Error::WorkerPanicked { message, .. }) => assert_eq!(message, "out of cheese"),
    ///         other => panic!("{other:?}"),
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn join(mut self) -> Result<ExitStatus> {
        self.wait_until(None)
    }

    /// Waits at most `timeout` for the child to exit (also when the child
    /// left a process of its own holding its status pipe).
    ///
    /// # Errors
    /// [`Error::JoinTimeout`] if it is still running (the handle stays
    /// usable); otherwise as [`join`](Self::join).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Reads what the worker wrote so far, without blocking; drops the pipe
    /// at its end.
    fn drain(&mut self) {
        let Some(pipe) = self.status.as_mut() else { return };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => {
                    self.status = None;
                    return;
                }
                // A well-formed record is small; keep at most 1 MiB of it.
                Ok(n) if self.record.len() < (1 << 20) => self.record.extend_from_slice(&buf[..n]),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: nothing more for now
            }
        }
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<ExitStatus> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            self.drain();
            let label = self.label.clone();
            if self.status.is_none() && deadline.is_none() {
                // Nothing left to read (or not a worker): just wait.
                let status = self.process().wait().map_err(|e| Error::Io { name: label, op: "wait", source: e })?;
                return self.finish(status);
            }
            match self.process().try_wait() {
                Ok(Some(status)) => {
                    self.drain();
                    return self.finish(status);
                }
                Ok(None) => {}
                Err(e) => return Err(Error::Io { name: label, op: "wait", source: e }),
            }
            let mut nap = pause;
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::JoinTimeout { child: label, pid: self.pid(), waited: start.elapsed() });
                }
                nap = nap.min(deadline - now);
            }
            // Sleeps until the pipe has data or the nap ends (an exit is
            // seen at the next `try_wait`).
            os::wait_readable(self.status.as_ref().map(|p| p.as_raw_fd()), nap);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Turns an exit status (and the worker's report) into the result.
    fn finish(&mut self, status: ExitStatus) -> Result<ExitStatus> {
        let pid = self.pid();
        let label = self.label.clone();
        let record = String::from_utf8_lossy(&std::mem::take(&mut self.record)).into_owned();
        self.status = None;
        self.inner = None;
        let started_line = format!("{STARTED}\n");
        let (started, record) = match record.strip_prefix(&started_line) {
            Some(rest) => (true, rest.to_owned()),
            None => (false, record),
        };
        let mut parts = record.splitn(2, '\n');
        match (parts.next(), parts.next()) {
            (Some("ok"), _) => return Ok(status),
            (Some("panic"), rest) => {
                return Err(Error::WorkerPanicked { worker: label, pid, message: rest.unwrap_or_default().to_owned() })
            }
            (Some("error"), rest) => {
                let (kind, message) = rest.unwrap_or_default().split_once('\n').unwrap_or(("", ""));
                return Err(Error::WorkerFailed {
                    worker: label,
                    pid,
                    kind: ErrorKind::from_name(kind),
                    message: message.to_owned(),
                });
            }
            _ => {}
        }
        if let Some(signal) = status.signal() {
            return Err(Error::ChildKilled { child: label, pid, signal });
        }
        if self.is_worker && started {
            // The worker's function ended the process itself.
            return if status.success() {
                Ok(status)
            } else {
                Err(Error::WorkerFailed {
                    worker: label,
                    pid,
                    kind: None,
                    message: format!("the worker ended its process itself, with {status}, before returning"),
                })
            };
        }
        if self.is_worker {
            return Err(Error::WorkerNotStarted { worker: label, pid, status });
        }
        Ok(status)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(child) = self.inner.as_mut() {
            if self.kill_on_drop {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
