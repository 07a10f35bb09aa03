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
//! | [`Error::Io`] | any other OS error, with the operation that failed |
//!
//! Errors carry the segment name and, where it helps, both sides of a
//! comparison (expected and found type names, fingerprints and sizes).

use std::io;
use std::time::Duration;

/// Result type of shmem operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a shared-memory segment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No segment exists under this name.
    #[error("no shared-memory segment named `{name}`")]
    NotFound {
        /// The segment name.
        name: String,
    },

    /// `create` was asked for a name that already exists.
    #[error("a shared-memory segment named `{name}` already exists")]
    AlreadyExists {
        /// The segment name.
        name: String,
    },

    /// The name cannot be a segment name.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The segment holds a different type, or a different layout of the same
    /// type (a field added, renamed, reordered or retyped).
    #[error(
        "segment `{name}` holds `{found_type}` (fingerprint {found_fingerprint:#018x}, {found_size} bytes), \
         not `{expected_type}` (fingerprint {expected_fingerprint:#018x}, {expected_size} bytes)"
    )]
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
    },

    /// The segment header has a format version this library does not read.
    #[error("segment `{name}` has header format version {found}; this library reads version {expected}")]
    VersionMismatch {
        /// The segment name.
        name: String,
        /// The version this library writes and reads.
        expected: u32,
        /// The version found in the segment.
        found: u32,
    },

    /// The file is shorter than its header requires.
    #[error("segment `{name}` is truncated: {found} bytes, expected at least {expected}")]
    Truncated {
        /// The segment name.
        name: String,
        /// The size the header (or the header itself) requires.
        expected: u64,
        /// The actual size of the file.
        found: u64,
    },

    /// The file under this name is not a valid shmem segment.
    #[error("segment `{name}` is corrupt: {reason}")]
    Corrupt {
        /// The segment name.
        name: String,
        /// What is wrong with it.
        reason: Corruption,
    },

    /// The segment did not become ready in time.
    #[error("segment `{name}` was not ready after {waited:?}")]
    NotReady {
        /// The segment name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
    },

    /// The operating system denied access.
    #[error("permission denied for segment `{name}`")]
    PermissionDenied {
        /// The segment name.
        name: String,
    },

    /// Not enough shared memory (`/dev/shm` is full or too small).
    #[error("not enough shared memory to create segment `{name}` of {size} bytes")]
    NoSpace {
        /// The segment name.
        name: String,
        /// The size that could not be reserved.
        size: u64,
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

/// Why a segment is considered corrupt.
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

impl Error {
    /// Maps an OS error for segment `name` during `op` to the matching variant.
    pub(crate) fn from_io(name: &str, op: &'static str, err: io::Error) -> Self {
        let name = name.to_owned();
        match err.kind() {
            io::ErrorKind::NotFound => Error::NotFound { name },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { name },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { name },
            _ => Error::Io { name, op, source: err },
        }
    }
}
