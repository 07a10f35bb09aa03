//! The one error type of shmem.
//!
//! Every failure a caller can meet is a variant of [`Error`], so code can
//! match on what went wrong instead of parsing messages:
//!
//! | variant | meaning |
//! |---|---|
//! | [`Error::NotFound`] | no segment has that name |
//! | [`Error::AlreadyExists`] | `create` found the name taken |
//! | [`Error::InvalidName`] | the name can never be a segment name |
//! | [`Error::LayoutMismatch`] | the segment holds another type (or another layout of it) |
//! | [`Error::VersionMismatch`] | the segment was written by another header format version |
//! | [`Error::Truncated`] | the file is shorter than its header says, or than a header |
//! | [`Error::Corrupt`] | the file is not a shmem segment, or its header is inconsistent |
//! | [`Error::NotReady`] | the segment did not become ready within the timeout |
//! | [`Error::PermissionDenied`] | the OS refused access to the segment |
//! | [`Error::NoSpace`] | not enough shared memory to create the segment |
//! | [`Error::TooManyProcesses`] | every liveness slot of the segment is held by a live process |
//! | [`Error::ForeignOwner`] | the segment's file belongs to a user this handle does not trust |
//! | [`Error::StaleExists`] | `create` found the name taken by a segment no process holds |
//! | [`Error::Io`] | any other OS error, with the operation that failed |
//! | [`Error::WorkerPanicked`] | a spawned worker panicked (with its message) |
//! | [`Error::WorkerFailed`] | a spawned worker could not run (e.g. its segment was not found) |
//! | [`Error::ChildKilled`] | a child process was killed by a signal |
//! | [`Error::WorkerNotStarted`] | the child exited without running its worker (`shmem::init()` missing?) |
//! | [`Error::InitNotCalled`] | a worker child's `main` did not call `shmem::init()` first |
//! | [`Error::JoinTimeout`] | a child did not exit within the timeout |
//! | [`Error::NotAWorker`] | `spawn` was given a function not marked `#[shmem::worker]` |
//! | [`Error::NoSegmentGiven`] | `attach_given` found no segment name in the environment |
//!
//! Errors carry the segment name and, where it helps, both sides of a
//! comparison (expected and found type names, fingerprints and sizes).

use std::io;
use std::time::Duration;

/// Result type of shmem operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a shared-memory segment.
///
/// `Display` is one sentence that says what happened and, where there is
/// one, what to do. `Debug` (what `?` in `main` prints) starts with the same
/// sentence, then the variant's name, so a program that forgets to handle
/// an error still tells its user what to do.
///
/// ```
/// let err = shmem::Segment::<u64>::attach("no-such-segment-anywhere").unwrap_err();
/// assert!(matches!(err, shmem::Error::NotFound { .. }));
/// assert!(format!("{err:?}").starts_with("no shared-memory segment named `no-such-segment-anywhere`"));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No segment exists under this name.
    #[error(
        "no shared-memory segment named `{}`: check the name (`shmem ls` lists them), \
         create it first, or use create_or_attach",
        short(.name)
    )]
    NotFound {
        /// The segment name.
        name: String,
    },

    /// `create` was asked for a name that already exists.
    #[error(
        "a shared-memory segment named `{}` already exists: attach to it, use create_or_attach, \
         or pick another name (`shmem show {}` says who created it)",
        short(.name), short(.name)
    )]
    AlreadyExists {
        /// The segment name.
        name: String,
    },

    /// The name cannot be a segment name.
    #[error("invalid segment name {:?}: {reason}", short(.name))]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The segment holds a different type, or a different layout of the same
    /// type (a field added, renamed, reordered or retyped).
    #[error("{}", layout_message(self))]
    LayoutMismatch {
        /// The segment name.
        name: String,
        /// The type the caller asked for.
        expected_type: String,
        /// Its layout fingerprint.
        expected_fingerprint: u64,
        /// Its size in bytes.
        expected_size: u64,
        /// The type name recorded in the segment.
        found_type: String,
        /// The fingerprint recorded in the segment.
        found_fingerprint: u64,
        /// The data size recorded in the segment.
        found_size: u64,
        /// How the segment's layout differs from the caller's type, one
        /// sentence per field (`field `count`: the segment has u64 at
        /// offset 8, this program expects i64 at offset 8`); the message
        /// names the first ones.
        differences: Box<[String]>,
    },

    /// The segment header has a format version this library does not read.
    #[error(
        "segment `{}` has header format version {found}; this library reads version {expected}: \
         build both programs with the same shmem version",
        short(.name)
    )]
    VersionMismatch {
        /// The segment name.
        name: String,
        /// The version this library writes and reads.
        expected: u32,
        /// The version found in the segment.
        found: u32,
    },

    /// The file is shorter than its header requires.
    #[error(
        "segment `{}` is truncated: {found} bytes, expected at least {expected} (not written by shmem, \
         or cut short by another program); `shmem rm {}` removes it",
        short(.name), short(.name)
    )]
    Truncated {
        /// The segment name.
        name: String,
        /// The size the header (or the header itself) requires.
        expected: u64,
        /// The actual size of the file.
        found: u64,
    },

    /// The file under this name is not a valid shmem segment.
    #[error("segment `{}` is corrupt: {reason}; it is not usable as a shmem segment", short(.name))]
    Corrupt {
        /// The segment name.
        name: String,
        /// What is wrong with it.
        reason: Corruption,
    },

    /// The segment did not become ready in time.
    #[error(
        "segment `{}` was not ready after {waited:?}: its creator is still initialising it or died doing so \
         (`shmem gc` removes abandoned segments); SegmentOptions::timeout waits longer",
        short(.name)
    )]
    NotReady {
        /// The segment name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
    },

    /// The operating system denied access.
    #[error(
        "permission denied for segment `{}`: its file's mode does not let this user open it this way \
         (create it with SegmentOptions::mode, e.g. 0o660, or attach_read_only where reading is enough)",
        short(.name)
    )]
    PermissionDenied {
        /// The segment name.
        name: String,
    },

    /// Not enough shared memory (`/dev/shm` is full or too small).
    #[error(
        "not enough shared memory to create segment `{}` of {size} bytes: /dev/shm is full or too small \
         (`df -h /dev/shm`; `shmem gc` removes abandoned segments; in Docker, raise --shm-size)",
        short(.name)
    )]
    NoSpace {
        /// The segment name.
        name: String,
        /// The size that could not be reserved.
        size: u64,
    },

    /// `create` found the name taken by a stale segment: one no process
    /// holds any more (a program that crashed and left it).
    #[error(
        "a stale segment named `{name}` already exists (no process holds it; created by pid {creator_pid}, \
         {created_unix_ms} ms after the Unix epoch): remove it with `shmem rm {name}` or \
         shmem::remove_stale, or create with SegmentOptions::new().replace_stale(true)"
    )]
    StaleExists {
        /// The segment name.
        name: String,
        /// The pid (in its creator's PID namespace) that created it.
        creator_pid: u32,
        /// When it was created, in milliseconds since the Unix epoch.
        created_unix_ms: u64,
    },

    /// The segment's file belongs to another user, whom this handle does
    /// not trust (see [`SegmentOptions::trust_owner`](crate::SegmentOptions::trust_owner)).
    #[error(
        "segment `{name}` is owned by uid {owner}, not by this process's uid {me}: another user may have \
         planted it under the name; if you trust that user, attach with SegmentOptions::new().trust_owner({owner})"
    )]
    ForeignOwner {
        /// The segment name.
        name: String,
        /// The uid that owns the file.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },

    /// Every liveness slot of the segment is held by a live process, so one
    /// more process cannot join it (see [`crate::sync::liveness`]).
    #[error(
        "segment `{name}` already has {slots} processes attached, its limit; \
         detach one (drop its `Segment`) or share one handle between threads"
    )]
    TooManyProcesses {
        /// The segment name.
        name: String,
        /// How many slots the segment has.
        slots: u32,
    },

    /// A worker process panicked; `message` is its panic message.
    #[error("worker `{worker}` (pid {pid}) panicked: {message}")]
    WorkerPanicked {
        /// The worker's name (its function's path).
        worker: String,
        /// The child's pid.
        pid: u32,
        /// The panic message.
        message: String,
    },

    /// A worker process could not run its function, e.g. because attaching
    /// to the segment failed in the child.
    #[error("worker `{worker}` (pid {pid}) failed: {message}")]
    WorkerFailed {
        /// The worker's name.
        worker: String,
        /// The child's pid.
        pid: u32,
        /// The kind of the child's error, if it was a shmem [`Error`].
        kind: Option<ErrorKind>,
        /// The child's error message.
        message: String,
    },

    /// A child process was killed by a signal.
    #[error("child `{child}` (pid {pid}) was killed by signal {signal}{}", signal_name(*.signal))]
    ChildKilled {
        /// The worker name or program.
        child: String,
        /// The child's pid.
        pid: u32,
        /// The signal number (9 = SIGKILL).
        signal: i32,
    },

    /// A worker child exited without running its worker function: its
    /// `main` most likely does not call `shmem::init()` first.
    #[error(
        "worker `{worker}` (pid {pid}) never ran ({status}): call `shmem::init()` at the top of `main` \
         so that child processes can run their worker"
    )]
    WorkerNotStarted {
        /// The worker's name.
        worker: String,
        /// The child's pid.
        pid: u32,
        /// How the child exited.
        status: std::process::ExitStatus,
    },

    /// This process was started as a worker, but its `main` did not call
    /// `shmem::init()` first: it is running `main` instead of the worker.
    /// Returned by every create, attach and spawn in such a process.
    #[error(
        "this process was started to run a shmem worker, but its `main` did not call `shmem::init()` \
         first (segment `{}`): add `shmem::init();` as the first line of `main`",
        short(.name)
    )]
    InitNotCalled {
        /// The segment the call was about.
        name: String,
    },

    /// A child did not exit within the timeout; its handle is still usable.
    #[error("child `{child}` (pid {pid}) still running after {waited:?}: join again, or kill() it")]
    JoinTimeout {
        /// The worker name or program.
        child: String,
        /// The child's pid.
        pid: u32,
        /// How long the caller waited.
        waited: Duration,
    },

    /// `spawn` was given a function not marked `#[shmem::worker]` (or a closure).
    #[error("`{function}` is not a worker: mark the function `#[shmem::worker]` (closures cannot be workers)")]
    NotAWorker {
        /// The function's path.
        function: String,
    },

    /// This process was not given a segment name (`SHMEM_SEGMENT` unset).
    #[error(
        "no segment was given to this process: the {var} environment variable is not set \
         (start this program with shmem::SpawnOptions::command, which gives it one)"
    )]
    NoSegmentGiven {
        /// The environment variable that should name the segment.
        var: &'static str,
    },

    /// Any other operating-system error.
    #[error("{op} failed for segment `{name}`: {source}")]
    Io {
        /// The segment name.
        name: String,
        /// The operation that failed (`"open"`, `"map"`, ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The variant, as a plain value (for passing across processes and
    /// for matching without the details).
    ///
    /// ```
    /// use shmem::{ErrorKind, Segment};
    /// let err = Segment::<u64>::attach("no-such-segment-here").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::InvalidName { .. } => ErrorKind::InvalidName,
            Error::LayoutMismatch { .. } => ErrorKind::LayoutMismatch,
            Error::VersionMismatch { .. } => ErrorKind::VersionMismatch,
            Error::Truncated { .. } => ErrorKind::Truncated,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::NotReady { .. } => ErrorKind::NotReady,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::NoSpace { .. } => ErrorKind::NoSpace,
            Error::TooManyProcesses { .. } => ErrorKind::TooManyProcesses,
            Error::ForeignOwner { .. } => ErrorKind::ForeignOwner,
            Error::StaleExists { .. } => ErrorKind::StaleExists,
            Error::Io { .. } => ErrorKind::Io,
            Error::WorkerPanicked { .. } => ErrorKind::WorkerPanicked,
            Error::WorkerFailed { .. } => ErrorKind::WorkerFailed,
            Error::ChildKilled { .. } => ErrorKind::ChildKilled,
            Error::WorkerNotStarted { .. } => ErrorKind::WorkerNotStarted,
            Error::InitNotCalled { .. } => ErrorKind::InitNotCalled,
            Error::JoinTimeout { .. } => ErrorKind::JoinTimeout,
            Error::NoSegmentGiven { .. } => ErrorKind::NoSegmentGiven,
            Error::NotAWorker { .. } => ErrorKind::NotAWorker,
        }
    }
}

/// The variants of [`Error`] without their data.
///
/// ```
/// use shmem::{ErrorKind, Segment};
/// match Segment::<u64>::attach("maybe-there") {
///     Ok(seg) => println!("{}", seg.load()),
///     Err(e) if e.kind() == ErrorKind::NotFound => println!("not created yet"),
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs, reason = "each mirrors the Error variant of the same name")]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidName,
    LayoutMismatch,
    VersionMismatch,
    Truncated,
    Corrupt,
    NotReady,
    PermissionDenied,
    NoSpace,
    TooManyProcesses,
    ForeignOwner,
    StaleExists,
    Io,
    WorkerPanicked,
    WorkerFailed,
    ChildKilled,
    WorkerNotStarted,
    InitNotCalled,
    JoinTimeout,
    NoSegmentGiven,
    NotAWorker,
}

impl ErrorKind {
    const ALL: [ErrorKind; 22] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InvalidName,
        ErrorKind::LayoutMismatch,
        ErrorKind::VersionMismatch,
        ErrorKind::Truncated,
        ErrorKind::Corrupt,
        ErrorKind::NotReady,
        ErrorKind::PermissionDenied,
        ErrorKind::NoSpace,
        ErrorKind::TooManyProcesses,
        ErrorKind::ForeignOwner,
        ErrorKind::StaleExists,
        ErrorKind::Io,
        ErrorKind::WorkerPanicked,
        ErrorKind::WorkerFailed,
        ErrorKind::ChildKilled,
        ErrorKind::WorkerNotStarted,
        ErrorKind::InitNotCalled,
        ErrorKind::JoinTimeout,
        ErrorKind::NoSegmentGiven,
        ErrorKind::NotAWorker,
    ];

    /// Parses the `Debug` name of a kind (how kinds cross process boundaries).
    pub(crate) fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| format!("{k:?}") == name)
    }
}

/// Why a segment is considered corrupt.
///
/// ```
/// # let name = format!("doc-corrupt-{}", std::process::id());
/// std::fs::write(format!("/dev/shm/{name}"), b"not a segment")?;
/// match shmem::Segment::<u64>::attach(&name) {
///     Err(shmem::Error::Truncated { .. } | shmem::Error::Corrupt { .. }) => {}
///     other => panic!("{other:?}"),
/// }
/// # std::fs::remove_file(format!("/dev/shm/{name}"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file does not start with the shmem magic number: it is not a
    /// shmem segment (a foreign or garbage file under the name).
    #[error("not a shmem segment (bad magic number)")]
    BadMagic,
    /// The init state word holds a value no writer produces.
    #[error("unknown init state {0}")]
    BadState(u32),
    /// Header fields contradict each other or the file.
    #[error("inconsistent header: {0}")]
    Inconsistent(&'static str),
    /// The file is not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The type name is not valid UTF-8.
    #[error("type name is not valid UTF-8")]
    BadTypeName,
    /// The schema text cannot be parsed.
    #[error("malformed schema: {0}")]
    BadSchema(String),
}

impl std::fmt::Debug for Error {
    /// The message first (as `anyhow` prints errors), then the variant and,
    /// for OS errors, the cause: `?` in `main` shows the user what to do.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}\n\n(shmem::Error::{:?})", self.kind())?;
        if let Error::LayoutMismatch { differences, .. } = self {
            if differences.len() > 1 {
                f.write_str("\n\nAll differences:")?;
                for d in differences {
                    write!(f, "\n    {d}")?;
                }
            }
        }
        if let Error::Io { source, .. } = self {
            write!(f, "\n\nCaused by:\n    {source:?}")?;
        }
        Ok(())
    }
}

/// A name as shown in messages: in full up to 64 characters, else its
/// start and length (a 300-character mistake need not fill the screen).
fn short(name: &str) -> String {
    const MAX: usize = 64;
    if name.chars().count() <= MAX {
        return name.to_owned();
    }
    let head: String = name.chars().take(48).collect();
    format!("{head}... ({} characters)", name.chars().count())
}

/// The message of [`Error::LayoutMismatch`].
fn layout_message(e: &Error) -> String {
    let Error::LayoutMismatch {
        name,
        expected_type,
        expected_fingerprint,
        expected_size,
        found_type,
        found_fingerprint,
        found_size,
        differences,
    } = e
    else {
        return String::new();
    };
    let name = short(name);
    let mut m = if found_type == expected_type {
        format!("segment `{name}` holds another layout of `{found_type}` than this program's")
    } else {
        format!("segment `{name}` holds `{found_type}`, not `{expected_type}`")
    };
    match &differences[..] {
        [] => m.push_str(&format!(
            " (fingerprint {found_fingerprint:#018x}, {found_size} bytes in the segment; \
             {expected_fingerprint:#018x}, {expected_size} bytes here)"
        )),
        [first] => m.push_str(&format!(": {first}")),
        [first, rest @ ..] => {
            m.push_str(&format!(": {first} (and {} more; see Error::LayoutMismatch's `differences`)", rest.len()))
        }
    }
    m.push_str(&format!(". Rebuild the programs that share it from the same definition, or see `shmem show {name}`"));
    m
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

impl Error {
    /// Maps an OS error for segment `name` during `op` to the matching variant.
    pub(crate) fn from_io(name: &str, op: &'static str, err: io::Error) -> Self {
        let name = name.to_owned();
        match err.kind() {
            io::ErrorKind::NotFound => Error::NotFound { name },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { name },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { name },
            // A socket (ENXIO) or a symbolic link (ELOOP, with O_NOFOLLOW)
            // under the name: not a segment.
            _ if matches!(err.raw_os_error(), Some(libc::ENXIO | libc::ELOOP)) => {
                Error::Corrupt { name, reason: Corruption::NotAFile }
            }
            _ => Error::Io { name, op, source: err },
        }
    }
}
