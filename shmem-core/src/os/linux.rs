//! Linux implementation of the OS layer.
//!
//! Shared-memory objects are files in `/dev/shm` (a tmpfs), exactly what
//! `shm_open(3)` uses, so a segment named `stats` is `/dev/shm/stats` and is
//! visible to `shm_open("/stats")` from C or `SharedMemory("stats")` from Python.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory that holds POSIX shared-memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The path of the shared-memory object `name` (already validated).
pub(crate) fn shm_path(name: &str) -> PathBuf {
    Path::new(SHM_DIR).join(name)
}

fn cpath(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A new shared-memory file that has no name yet, with exactly `mode` as its
/// permission bits (the umask does not apply).
///
/// Uses `O_TMPFILE`, so a process that dies before [`link_into_place`] leaves
/// nothing behind. Where the kernel or file system lacks `O_TMPFILE`, falls
/// back to a hidden temporary name that is linked and then removed.
pub(crate) fn create_unnamed(mode: u32) -> io::Result<Unnamed> {
    let tmp = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .mode(mode)
        .open(SHM_DIR);
    let (file, temp_path) = match tmp {
        Ok(file) => (file, None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = shm_path(&format!(".shmem-tmp-{}-{}", std::process::id(), n));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_CLOEXEC)
                .mode(mode)
                .open(&path)?;
            (file, Some(path))
        }
        Err(e) => return Err(e),
    };
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(Unnamed { file, temp: TempName(temp_path) })
}

/// A shared-memory file created by [`create_unnamed`], not yet visible under
/// its final name.
pub(crate) struct Unnamed {
    pub(crate) file: File,
    temp: TempName,
}

/// The fallback's temporary name, removed when dropped.
struct TempName(Option<PathBuf>);

impl Drop for TempName {
    fn drop(&mut self) {
        if let Some(temp) = self.0.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

impl Unnamed {
    /// Gives the file its final name, atomically: fails with
    /// `ErrorKind::AlreadyExists` if the name is taken, and never replaces an
    /// existing object.
    pub(crate) fn link_into_place(self, name: &str) -> Result<File, (Unnamed, io::Error)> {
        let target = match cpath(&shm_path(name)) {
            Ok(t) => t,
            Err(e) => return Err((self, e)),
        };
        let result = match &self.temp.0 {
            None => {
                let proc_path = match cpath(Path::new(&format!("/proc/self/fd/{}", self.file.as_raw_fd()))) {
                    Ok(p) => p,
                    Err(e) => return Err((self, e)),
                };
                // SAFETY: both arguments are valid NUL-terminated strings that
                // outlive the call; `linkat` does not retain them.
                let rc = unsafe {
                    libc::linkat(
                        libc::AT_FDCWD,
                        proc_path.as_ptr(),
                        libc::AT_FDCWD,
                        target.as_ptr(),
                        libc::AT_SYMLINK_FOLLOW,
                    )
                };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            Some(temp) => std::fs::hard_link(temp, shm_path(name)),
        };
        if let Err(e) = result {
            return Err((self, e));
        }
        drop(self.temp);
        Ok(self.file)
    }
}

/// Opens the existing shared-memory object `name` for reading and writing.
///
/// `O_NONBLOCK`: a FIFO (or another special file) planted under the name
/// must not block the open; the caller checks with `fstat` that it got a
/// regular file before reading anything.
pub(crate) fn open_existing(name: &str) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(shm_path(name))
}

/// Opens the existing shared-memory object `name` read-only (for tools).
/// `O_NONBLOCK` as for [`open_existing`]: opening a FIFO read-only would
/// otherwise wait for a writer forever.
pub(crate) fn open_read_only(name: &str) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(shm_path(name))
}

/// The names of all entries in the shared-memory directory.
pub(crate) fn list_names() -> io::Result<std::vec::Vec<String>> {
    let mut names = std::vec::Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Reserves `len` bytes of memory for `file` (and sets its size), so that a
/// full `/dev/shm` is an error now instead of a `SIGBUS` on first touch.
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `file` is an open file descriptor owned by `file` for the whole call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // tmpfs before Linux 3.5 and some other file systems: fall back to a
        // plain size change (memory is then reserved lazily).
        libc::EOPNOTSUPP | libc::ENOSYS => file.set_len(len as u64),
        err => Err(io::Error::from_raw_os_error(err)),
    }
}

/// Takes a shared `flock` on `file` without blocking. Every handle to a
/// segment holds one for as long as it lives; the kernel drops it when the
/// process dies, so "can someone take an exclusive lock?" answers "is any
/// process still attached?" without guessing from pids.
///
/// Blocking: a tool's liveness probe holds an exclusive lock for an instant,
/// and an attach must wait that instant out rather than fail.
pub(crate) fn hold_liveness_lock(file: &File) -> io::Result<()> {
    flock(file, libc::LOCK_SH)
}

/// [`hold_liveness_lock`] without waiting: `Ok(false)` while another
/// description holds an exclusive lock (a remover, a liveness probe).
pub(crate) fn try_hold_liveness_lock(file: &File) -> io::Result<bool> {
    match flock(file, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether any process still holds a liveness lock on `file` (probes with a
/// non-blocking exclusive lock, released at once).
pub(crate) fn has_live_holders(file: &File) -> io::Result<bool> {
    match flock(file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {
            flock(file, libc::LOCK_UN)?;
            Ok(false)
        }
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(true),
        Err(e) => Err(e),
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: `file` owns an open descriptor for the whole call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Removes the name `name`; the memory lives on while anyone has it mapped.
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    std::fs::remove_file(shm_path(name))
}

/// Removes `name` only if it still names the same object as `file` (so an
/// owner never removes a segment that someone else created under the name
/// after an explicit unlink).
pub(crate) fn unlink_if_same(name: &str, file: &File) -> io::Result<()> {
    let ours = file.metadata()?;
    let theirs = std::fs::symlink_metadata(shm_path(name))?;
    if ours.dev() == theirs.dev() && ours.ino() == theirs.ino() {
        unlink(name)
    } else {
        Ok(())
    }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), which together with the pid identifies a process even
/// after its pid is reused. `None` if the process does not exist.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain
    // spaces or parentheses; fields after the last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg_attr(loom, allow(dead_code, reason = "the loom build parks without futexes"))]
/// The result of [`futex_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// Woken, or the word no longer held `expected`, or a signal: re-check.
    Woken,
    /// The timeout elapsed.
    TimedOut,
}

#[cfg_attr(loom, allow(dead_code, reason = "the loom build parks without futexes"))]
/// Sleeps while the 32-bit word at `word` holds `expected`, for at most
/// `timeout` (`None`: no limit). A shared futex (no `FUTEX_PRIVATE_FLAG`),
/// so waiters and wakers may be in different processes mapping the same
/// memory. Spurious wake-ups are possible: callers re-check their condition.
///
/// `word` is only handed to the kernel, never dereferenced here: it may be
/// the low half of a 64-bit atomic (see `sync::raw_mutex`).
pub(crate) fn futex_wait(word: *const u32, expected: u32, timeout: Option<std::time::Duration>) -> WaitOutcome {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: the kernel reads `word` atomically and fails with EFAULT (not
    // UB) if it is not mapped; callers pass the address of a live, aligned
    // atomic. `ts_ptr` is null or points at `ts`, which outlives the call.
    // FUTEX_WAIT takes a relative timeout.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAIT, expected, ts_ptr) };
    if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        WaitOutcome::TimedOut
    } else {
        WaitOutcome::Woken
    }
}

#[cfg_attr(loom, allow(dead_code, reason = "the loom build parks without futexes"))]
/// Wakes at most `n` threads (in any process) sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake(word: *const u32, n: u32) {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: FUTEX_WAKE only uses the address as a key; it does not access
    // the memory.
    unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, n) };
}

/// The executable of this very process: exec'ing it runs the same binary
/// image even if the file on disk was replaced since this process started.
pub(crate) const SELF_EXE: &str = "/proc/self/exe";

/// Prepares a freshly forked child before `exec`: keeps the descriptors in
/// `keep_fds` open across the exec, and optionally asks the kernel to
/// SIGKILL it when the thread that forked it dies (`PR_SET_PDEATHSIG`).
///
/// # Safety
/// Must only be called between `fork` and `exec` (in `CommandExt::pre_exec`),
/// where only async-signal-safe functions may run: this calls `fcntl`,
/// `prctl`, `getppid` and nothing that allocates or locks.
pub(crate) unsafe fn prepare_child(keep_fds: [Option<i32>; 3], die_with_parent: bool, parent: u32) -> io::Result<()> {
    for fd in keep_fds.into_iter().flatten() {
        // SAFETY: fcntl on an inherited descriptor is async-signal-safe.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    if die_with_parent {
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before prctl: then we were reparented.
        // SAFETY: getppid is async-signal-safe and cannot fail.
        if unsafe { libc::getppid() } as u32 != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// This process's lifeline: a pipe whose write end only this process
/// holds (close-on-exec, never passed on), so that a child given the read
/// end sees end-of-file exactly when this whole process is gone, whichever
/// of its threads spawned it. Created on first use; `None` if it cannot be.
pub(crate) fn lifeline_read_end() -> Option<i32> {
    static LIFELINE: std::sync::OnceLock<Option<(std::io::PipeReader, std::io::PipeWriter)>> =
        std::sync::OnceLock::new();
    LIFELINE.get_or_init(|| std::io::pipe().ok()).as_ref().map(|(r, _)| r.as_raw_fd())
}

/// In a child given a lifeline (see [`lifeline_read_end`]): a thread that
/// kills this process (SIGKILL, as `PR_SET_PDEATHSIG` would) when the
/// parent process is gone.
pub(crate) fn die_with_lifeline(fd: i32) {
    let watch = move || {
        block_signals_in_this_thread();
        let mut byte = [0u8; 1];
        loop {
            // SAFETY: `byte` is one writable byte; `fd` is the inherited
            // read end, owned by this thread for the life of the process.
            let n = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) };
            if n == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // End of file (or an error): the parent process is gone.
            let me = std::process::id() as libc::pid_t;
            // SAFETY: kill on our own pid with a valid signal.
            unsafe { libc::kill(me, libc::SIGKILL) };
        }
    };
    if std::thread::Builder::new().name("shmem-lifeline".into()).stack_size(64 << 10).spawn(watch).is_err() {
        // Without the thread we cannot watch: better to stop now than to
        // outlive the parent unnoticed.
        let me = std::process::id() as libc::pid_t;
        // SAFETY: kill on our own pid with a valid signal.
        unsafe { libc::kill(me, libc::SIGKILL) };
    }
}

/// Marks `fd` close-on-exec again (a worker child does so with its status
/// pipe, so its own children do not hold it open).
pub(crate) fn set_cloexec(fd: i32) {
    // SAFETY: fcntl on a descriptor number; on a bad descriptor it fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Whether `fd` is an open descriptor of this process.
pub(crate) fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Takes an OFD (open-file-description) write lock on the one byte at
/// `offset` of `file`, without waiting: `Ok(true)` if taken (or already held
/// through this same description), `Ok(false)` if another description holds
/// it. The kernel drops the lock at the last close of the description, and
/// so when the process that holds it dies, in any PID namespace.
pub(crate) fn ofd_try_lock_byte(fd: i32, offset: u64) -> io::Result<bool> {
    match ofd_setlk(fd, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short, offset) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until no other description holds a write lock on the byte at
/// `offset`, by taking a read lock on it (`F_OFD_SETLKW`), and releases that
/// read lock again at once. Returns when the holder is gone; `Err` on a
/// signal or another error.
pub(crate) fn ofd_wait_byte(fd: i32, offset: u64) -> io::Result<()> {
    ofd_setlk(fd, libc::F_OFD_SETLKW, libc::F_RDLCK as libc::c_short, offset)?;
    ofd_setlk(fd, libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short, offset)
}

/// Whether a description other than `fd`'s holds a lock on the byte at
/// `offset` (`F_OFD_GETLK`). An error means "cannot tell".
pub(crate) fn ofd_byte_held_by_other(fd: i32, offset: u64) -> io::Result<bool> {
    let mut fl = flock_for(libc::F_WRLCK as libc::c_short, offset)?;
    // SAFETY: `fl` is a valid, initialised `struct flock` that lives across
    // the call; F_OFD_GETLK only reads and writes it.
    let rc = unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl as *mut libc::flock) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

fn flock_for(kind: libc::c_short, offset: u64) -> io::Result<libc::flock> {
    let start = libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `struct flock` is plain data; all-zero bytes are a valid value
    // (and `l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { core::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    Ok(fl)
}

fn ofd_setlk(fd: i32, cmd: libc::c_int, kind: libc::c_short, offset: u64) -> io::Result<()> {
    let fl = flock_for(kind, offset)?;
    loop {
        // SAFETY: `fl` is a valid `struct flock` that outlives the call; the
        // kernel only reads it for SETLK/SETLKW.
        let rc = unsafe { libc::fcntl(fd, cmd, &fl as *const libc::flock) };
        if rc != -1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted || cmd == libc::F_OFD_SETLKW {
            return Err(err);
        }
    }
}

/// A new open file description of the file behind `fd`, read-write and
/// close-on-exec (`open("/proc/self/fd/N")`, which works for tmpfs files
/// and memfds alike). OFD locks taken through it belong to it alone: they
/// are not kept alive by a mapping of the file or by a forked copy of `fd`.
/// Where `/proc` is not mounted, falls back to a duplicate of `fd`, which
/// shares its description; the flag says which (`true`: a new one).
pub(crate) fn reopen(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<(std::os::fd::OwnedFd, bool)> {
    use std::os::fd::AsRawFd as _;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(&path) {
        Ok(file) => Ok((file.into(), true)),
        // `try_clone_to_owned` duplicates with F_DUPFD_CLOEXEC.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            Ok((fd.try_clone_to_owned()?, false))
        }
        Err(e) => Err(e),
    }
}

/// Registers fork handlers (`pthread_atfork`): `prepare` runs in the
/// forking thread before `fork`, `parent` and `child` after it on each side.
/// `child` may only do async-signal-safe things.
pub(crate) fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: registers plain function pointers that live for the whole
    // program; the handlers take and release process-local locks and store
    // atomics, nothing that allocates in the child.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// 64 random bits from the kernel (`getrandom`), or, if that fails, a
/// mix of the clock, the pid and an address (unique enough to tell
/// processes apart; never relied on for secrecy).
pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is 8 writable bytes that outlive the call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        return u64::from_ne_bytes(buf);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let mut x = t ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Blocks every blockable signal in the calling thread (for helper threads
/// that must not receive the application's signals).
pub(crate) fn block_signals_in_this_thread() {
    // SAFETY: sigset_t is plain data; all-zero bytes are a valid (empty) set.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigfillset(&mut set) };
    // SAFETY: `set` is initialised; a null old-set pointer is allowed; only
    // the calling thread's mask changes.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut()) };
}

/// Makes `fd` non-blocking (`O_NONBLOCK`).
pub(crate) fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; on a bad one it fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sleeps until `fd` (if any) is readable or hung up, or `timeout` passes.
pub(crate) fn wait_readable(fd: Option<i32>, timeout: std::time::Duration) {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    match fd {
        Some(fd) => {
            let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: `p` is one valid pollfd that outlives the call.
            unsafe { libc::poll(&mut p, 1, ms) };
        }
        None => std::thread::sleep(timeout),
    }
}

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether the name `name` still refers to the same file as `file` (an
/// attach that waited for a remover's lock checks it had not been removed
/// or replaced meanwhile).
pub(crate) fn name_is_file(name: &str, file: &File) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(shm_path(name))) {
        (Ok(ours), Ok(theirs)) => ours.dev() == theirs.dev() && ours.ino() == theirs.ino(),
        _ => false,
    }
}

/// Takes an exclusive `flock` on `file` if no process holds a liveness
/// lock on it (none attached): `Ok(true)` then, and the lock stays until
/// `file` is closed; `Ok(false)` if some process holds it.
pub(crate) fn lock_if_unused(file: &File) -> io::Result<bool> {
    match flock(file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A new anonymous shared-memory file (`memfd_create`): no name in any
/// directory, gone when the last descriptor and mapping of it are, and
/// sealable. `label` only shows in `/proc/PID/fd` and `/proc/PID/maps`.
pub(crate) fn create_memfd(label: &str) -> io::Result<File> {
    use std::os::fd::FromRawFd;
    let label = CString::new(label.replace('\0', "?")).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `label` is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Seals a memfd's size for good: it can neither shrink (so no process
/// holding a mapping of it can be made to fault with `SIGBUS`) nor grow,
/// and no further seal can be added (so nobody can forbid writable
/// mappings to the processes it is handed to).
pub(crate) fn seal_size(file: &File) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor `file` owns, with an integer argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `(device, inode)` of an open file, to recognise it across processes.
pub(crate) fn file_id(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// Opens, as a new open file description of its own, the file that this
/// process inherited as descriptor `fd`, checking first (with `fstat` on
/// the number, before opening anything) that it is the file
/// `(device, inode)` the parent meant: a stale descriptor number from an
/// inherited environment may name anything by now, a terminal or a device
/// that opening would disturb. Read-write unless `read_only`,
/// close-on-exec. Through `/proc/self/fd/N`; where `/proc` is not mounted,
/// a duplicate of `fd` (sharing its description, which the parent made for
/// this child alone and holds no byte lock on).
///
/// Errors of kind `NotFound` or `InvalidData` mean "not the file meant".
pub(crate) fn open_inherited(fd: i32, id: (u64, u64), read_only: bool) -> io::Result<File> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `struct stat` into `st` and touches nothing
    // else; on a number that is not open it fails with EBADF.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } == -1 {
        return Err(io::Error::new(io::ErrorKind::NotFound, "the inherited descriptor is not open"));
    }
    // SAFETY: fstat succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // `st_dev` and `st_ino` are not `u64` on every target.
    #[allow(clippy::unnecessary_cast)]
    let found = (st.st_dev as u64, st.st_ino as u64);
    if (st.st_mode & libc::S_IFMT) != libc::S_IFREG || found != id {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the inherited descriptor is not the segment given"));
    }
    let path = format!("/proc/self/fd/{fd}");
    let flags = libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    let file = match OpenOptions::new().read(true).write(!read_only).custom_flags(flags).open(&path) {
        Ok(file) => file,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => dup_cloexec(fd)?,
        Err(e) => return Err(e),
    };
    // The number could have been reused between the fstat and the open.
    if file_id(&file)? != id {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the inherited descriptor is not the segment given"));
    }
    Ok(file)
}

/// A close-on-exec duplicate of `fd` numbered 3 or higher (never standard
/// input, output or error, which a child may be given otherwise).
pub(crate) fn dup_cloexec(fd: i32) -> io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor number only creates a new
    // descriptor (or fails with EBADF); nothing is borrowed.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a descriptor this call just created and owns.
    Ok(unsafe { File::from_raw_fd(dup) })
}

/// Drops the `flock` held through descriptor number `fd` (a child's
/// inherited hand-over description, once its own handle holds the segment).
pub(crate) fn unlock_raw(fd: i32) {
    // SAFETY: flock on a descriptor number; on anything but an open file it
    // fails with EBADF, and unlocking a description without a lock is a no-op.
    unsafe { libc::flock(fd, libc::LOCK_UN) };
}

/// The size of a memory page (what every mapping is aligned to).
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}
