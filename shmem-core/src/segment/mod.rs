//! Named shared-memory segments holding one [`Shared`] value.
//!
//! A [`Segment<T>`] is a named POSIX shared-memory object (`/dev/shm/NAME`
//! on Linux) that starts with a [header] and holds `T`'s shared twin.
//! It dereferences to that twin, so a field is one method call away:
//!
//! ```
//! use shmem::Segment;
//! # let name = format!("doc-segment-{}", std::process::id());
//! let counter = Segment::<u64>::create(&name, &0)?;   // an owner handle
//! counter.fetch_add(1);
//! let other = Segment::<u64>::attach(&name)?;         // e.g. in another process
//! assert_eq!(other.load(), 1);
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! # Anonymous segments
//!
//! [`Segment::create_anonymous`] makes a segment with no name (a sealed
//! memfd): for a program and the children it hands it to, as Python's
//! `Value` and `Array`. Nothing to collide on, nothing left after a crash,
//! and its size cannot be changed by anyone (no `SIGBUS`).
//!
//! # Ownership and lifetime
//!
//! A named segment lives while any process holds a handle to it: the last
//! handle to be dropped, in whichever process, removes the name (unless
//! [`Segment::persist`] was called, by anyone), so processes that come and
//! go with `create_or_attach` always share one segment and never split into
//! two. The kernel-held liveness `flock` decides who is last; a process
//! attaching at that very moment waits for the remover, then finds the name
//! gone ([`Error::NotFound`]; `create_or_attach` then creates it anew).
//! [`unlink`] removes a name explicitly (processes attached keep their
//! mapping). A child forked without exec shares its parent's handles (and
//! their open file descriptions): only one of the two may drop them.
//!
//! # Liveness
//!
//! Every handle holds a shared `flock` on the segment for as long as it
//! lives. The kernel drops it when the process exits or is killed, so
//! [`inspect`] can tell a segment some process still uses from a stale one
//! without guessing from pids.
//!
//! # What is checked on attach
//!
//! Before touching the mapping, `attach` reads the header with `pread`,
//! checks the magic, version, state, sizes (against the file's real size,
//! so a truncated file is an error and not a `SIGBUS`), and then the type
//! name, fingerprint, size and alignment against `T`. Every failure is an
//! [`Error`] variant. A process that truncates a segment *after* others
//! attached can still make them fault: shared memory trusts the processes of
//! its owner's user, as files do.

// Not under loom: it drives locks by hand (`unlock_if_mine`), which the
// models do not.
#[cfg(not(loom))]
pub mod dynamic;
// Not under loom: the containers' word offsets it reads are for the real atomics.
#[cfg(not(loom))]
pub mod decode;
pub mod header;
pub mod name;

use crate::error::{Error, Result};
use crate::layout::{Schema, Shared};
use crate::os;
use crate::sync::liveness::{self, Member, RegisterError};
use header::{Header, HeaderError, STATE_READY};
use memmap2::{MmapOptions, MmapRaw};
use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

pub use name::validate_name;

/// How to create or attach to a segment: permission bits and timeouts.
///
/// ```
/// use shmem::SegmentOptions;
/// use std::time::Duration;
/// # let name = format!("doc-options-{}", std::process::id());
/// let seg = SegmentOptions::new()
///     .mode(0o640)
///     .timeout(Duration::from_millis(200))
///     .create::<[u32; 4]>(&name, &[1, 2, 3, 4])?;
/// assert_eq!(seg[2].load(), 3);
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    mode: u32,
    timeout: Duration,
    /// Users (besides this process's effective user) whose segments
    /// `attach` accepts.
    trusted_owners: std::vec::Vec<u32>,
    /// Whether `attach` accepts a segment of any user.
    any_owner: bool,
    /// Whether `create` replaces a stale segment under the name.
    replace_stale: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions::new()
    }
}

impl SegmentOptions {
    /// Mode `0o600` (only the creating user can attach) and a 5-second timeout.
    pub fn new() -> Self {
        SegmentOptions {
            mode: 0o600,
            timeout: Duration::from_secs(5),
            trusted_owners: Vec::new(),
            any_owner: false,
            replace_stale: false,
        }
    }

    /// Lets `create` (and `create_or_attach`) replace a *stale* segment under
    /// the name: one that no process holds any more (a program that crashed
    /// and left it). A live segment is never replaced. By default `create`
    /// and `create_or_attach` fail on a stale segment with
    /// [`Error::StaleExists`], saying so (`attach` still attaches to it).
    pub fn replace_stale(mut self, yes: bool) -> Self {
        self.replace_stale = yes;
        self
    }

    /// Lets `attach` (and `create_or_attach`) accept a segment owned by the
    /// user `uid`. By default only segments owned by this process's
    /// effective user are accepted: `/dev/shm` is writable by every user,
    /// and a file another user planted under the name could be truncated
    /// under us (a `SIGBUS`) or hold data we did not write.
    ///
    /// Children given such a segment ([`crate::spawn()`],
    /// [`crate::SpawnOptions::command`]) trust its owner too.
    pub fn trust_owner(mut self, uid: u32) -> Self {
        self.trusted_owners.push(uid);
        self
    }

    /// Lets `attach` accept a segment whatever user owns it (see
    /// [`trust_owner`](Self::trust_owner) for why that is not the default).
    pub fn trust_any_owner(mut self) -> Self {
        self.any_owner = true;
        self
    }

    /// The permission bits of a created segment (default `0o600`). Applied
    /// exactly: the process umask does not narrow them.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// How long `attach` waits for a segment that is still initialising, and
    /// `create_or_attach` for a racing creator (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates segment `name` holding `initial`.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the name is taken, [`Error::InvalidName`],
    /// [`Error::NoSpace`], [`Error::PermissionDenied`], [`Error::Io`].
    ///
    /// ```
    /// use shmem::SegmentOptions;
    /// # let name = format!("doc-opt-create-{}", std::process::id());
    /// let seg = SegmentOptions::new().mode(0o640).create::<u64>(&name, &7)?;
    /// assert!(matches!(SegmentOptions::new().create::<u64>(&name, &7), Err(shmem::Error::AlreadyExists { .. })));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn create<T: Shared>(&self, name: &str, initial: &T) -> Result<Segment<T>> {
        self.create_with(name, |twin| T::store(twin, initial))
    }

    /// Creates segment `name` with all bytes zero (every integer 0, every
    /// `bool` false, every float 0.0). Builds nothing on the stack, so it
    /// suits types of any size.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    ///
    /// ```
    /// use shmem::SegmentOptions;
    /// # let name = format!("doc-opt-zeroed-{}", std::process::id());
    /// let big = SegmentOptions::new().create_zeroed::<[u64; 1 << 16]>(&name)?; // nothing on the stack
    /// assert_eq!(big[65535].load(), 0);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn create_zeroed<T: Shared>(&self, name: &str) -> Result<Segment<T>> {
        self.create_with(name, |_| {})
    }

    /// Creates segment `name`, zeroed, and runs `init` on the twin before any
    /// other process can see it. Use it for large state that must not be
    /// built on the stack first.
    ///
    /// # Errors
    /// As [`create`](Self::create). If `init` panics, nothing is created.
    pub fn create_with<T: Shared>(&self, name: &str, init: impl FnOnce(&T::Layout)) -> Result<Segment<T>> {
        let parts = self.create_parts(name, &Spec::of::<T>(), typed_init::<T>(init))?;
        Ok(Segment::from_parts(parts, true, false))
    }

    /// Creates segment `name` holding a value of layout `spec`, initialised
    /// by `init` (given the zeroed data) before any other process can see it.
    pub(crate) fn create_parts(&self, name: &str, spec: &Spec, init: impl FnOnce(NonNull<u8>)) -> Result<Parts> {
        crate::spawn::refuse_in_uninitialised_worker(name)?;
        let name = validate_name(name)?;
        let io = |op| move |e| Error::from_io(name, op, e);
        let unnamed = os::create_unnamed(self.mode).map_err(io("create"))?;
        let (map, header) = initialise(&unnamed.file, name, spec, init)?;
        os::hold_liveness_lock(&unnamed.file).map_err(io("lock"))?;
        let member = join_liveness(&unnamed.file, &map, &header, name)?;
        crate::crash_point!("segment.create.registered");
        let unnamed = match unnamed.link_into_place(name) {
            Ok(file) => Ok(file),
            Err((unnamed, e)) if e.kind() == std::io::ErrorKind::AlreadyExists => match inspect(name) {
                Ok(info) if is_stale(&info) && self.replace_stale => {
                    self.remove_stale_if_trusted(name)?;
                    unnamed.link_into_place(name).map_err(|(_, e)| e)
                }
                Ok(info) if is_stale(&info) => {
                    return Err(Error::StaleExists {
                        name: name.to_owned(),
                        creator_pid: info.header.creator_pid,
                        created_unix_ms: info.header.created_unix_ms,
                    })
                }
                _ => Err(e),
            },
            Err((_, e)) => Err(e),
        };
        let file = unnamed.map_err(io("link"))?;
        crate::crash_point!("segment.create.linked");
        Ok(Parts::new(name, file, map, header, member, false))
    }

    /// Creates an *anonymous* segment holding `initial`: shared memory with
    /// no name anywhere, for the parent and the children it hands it to
    /// ([`crate::spawn()`], [`crate::SpawnOptions::command`]; they inherit a
    /// file descriptor). What Python's `Value` and `Array` are:
    ///
    /// - no name to pick, so two copies of one program never collide;
    /// - nothing left behind: the memory is freed when the last process
    ///   holding it exits, however it ends (even `SIGKILL`);
    /// - its size is sealed (`memfd_create` with `F_SEAL_SHRINK`,
    ///   `F_SEAL_GROW` and `F_SEAL_SEAL`): no process can truncate it under
    ///   another and make it fault with `SIGBUS`.
    ///
    /// Other processes can reach it only through a descriptor: a child
    /// given it, or one passed over a Unix socket
    /// ([`attach_fd`](Self::attach_fd)); `shmem ls` does not list it. The
    /// [`mode`](Self::mode) does not apply.
    ///
    /// ```
    /// use shmem::Segment;
    /// let hits = Segment::<u64>::create_anonymous(&0)?;
    /// hits.fetch_add(1);
    /// assert!(Segment::is_anonymous(&hits));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoSpace`], [`Error::Io`] (for example where the kernel has
    /// no `memfd_create`, before Linux 3.17).
    pub fn create_anonymous<T: Shared>(&self, initial: &T) -> Result<Segment<T>> {
        self.create_anonymous_with(|twin| T::store(twin, initial))
    }

    /// [`create_anonymous`](Self::create_anonymous), initialised in place
    /// by `init` as [`create_with`](Self::create_with) does.
    ///
    /// # Errors
    /// As [`create_anonymous`](Self::create_anonymous).
    pub fn create_anonymous_with<T: Shared>(&self, init: impl FnOnce(&T::Layout)) -> Result<Segment<T>> {
        let parts = self.create_anonymous_parts(&Spec::of::<T>(), typed_init::<T>(init))?;
        Ok(Segment::from_parts(parts, true, true))
    }

    /// [`create_parts`](Self::create_parts) for an anonymous segment.
    pub(crate) fn create_anonymous_parts(&self, spec: &Spec, init: impl FnOnce(NonNull<u8>)) -> Result<Parts> {
        crate::spawn::refuse_in_uninitialised_worker(ANONYMOUS)?;
        let name = ANONYMOUS;
        let io = |op| move |e| Error::from_io(name, op, e);
        let file = os::create_memfd(&format!("shmem:{}", spec.type_name)).map_err(io("create"))?;
        let (map, header) = initialise(&file, name, spec, init)?;
        os::seal_size(&file).map_err(io("seal"))?;
        os::hold_liveness_lock(&file).map_err(io("lock"))?;
        let member = join_liveness(&file, &map, &header, name)?;
        Ok(Parts::new(name, file, map, header, member, true))
    }

    /// Attaches to the segment in the file that `fd` refers to: an
    /// anonymous segment (or a named one) whose descriptor this process
    /// received, for example over a Unix socket (`SCM_RIGHTS`). Children
    /// started by [`crate::spawn()`] or [`crate::SpawnOptions::command`] need
    /// not call this: they use [`crate::attach_given`].
    ///
    /// The handle opens the file anew (its own open file description,
    /// through `/proc/self/fd`, so closing `fd` afterwards is fine) and
    /// checks the header and layout as [`attach`](Self::attach) does. The
    /// descriptor is trusted as given: its owner is not checked. A handle
    /// made this way has no name ([`Segment::name`] is [`ANONYMOUS`]): it
    /// never removes one, and does not keep a named segment's name alive
    /// (it keeps its memory, as any mapping does).
    ///
    /// ```
    /// use shmem::{Segment, SegmentOptions};
    /// let seg = Segment::<u64>::create_anonymous(&5)?;
    /// let fd = Segment::share_fd(&seg)?; // e.g. sent over a Unix socket
    /// let other = SegmentOptions::new().attach_fd::<u64>(std::os::fd::AsFd::as_fd(&fd))?;
    /// assert_eq!(other.load(), 5);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`attach`](Self::attach), less [`Error::NotFound`] and
    /// [`Error::ForeignOwner`]; [`Error::Io`] where `/proc` is not mounted
    /// (a copy of `fd` would share the sender's description, and with it
    /// the sender's liveness locks).
    pub fn attach_fd<T: Shared>(&self, fd: std::os::fd::BorrowedFd<'_>) -> Result<Segment<T>> {
        crate::spawn::refuse_in_uninitialised_worker(ANONYMOUS)?;
        let name = ANONYMOUS;
        let file = fresh_description(name, fd)?;
        self.attach_file(name, file, true, false)
    }

    /// [`attach_fd`](Self::attach_fd) for the layout `spec` makes of the header.
    pub(crate) fn attach_fd_parts(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        spec: impl FnOnce(&Header) -> Result<Spec>,
    ) -> Result<Parts> {
        crate::spawn::refuse_in_uninitialised_worker(ANONYMOUS)?;
        let name = ANONYMOUS;
        let file = fresh_description(name, fd)?;
        self.attach_file_parts(name, file, spec, false, true)
    }

    /// Attaches to the segment in `file`, an open descriptor of its own
    /// (`anonymous`: no name of it is ever removed through this handle;
    /// `hold`: the handle holds the liveness `flock`, which keeps a name).
    pub(crate) fn attach_file<T: Shared>(
        &self,
        name: &str,
        file: File,
        anonymous: bool,
        hold: bool,
    ) -> Result<Segment<T>> {
        let parts = self.attach_file_parts(name, file, |_| Ok(Spec::of::<T>()), hold, anonymous)?;
        Ok(Segment::from_parts(parts, false, anonymous))
    }

    /// [`attach_file`](Self::attach_file) for the layout `spec` makes of
    /// the header.
    pub(crate) fn attach_file_parts(
        &self,
        name: &str,
        file: File,
        spec: impl FnOnce(&Header) -> Result<Spec>,
        hold: bool,
        anonymous: bool,
    ) -> Result<Parts> {
        let header = self.wait_ready(name, &file)?;
        check_spec(name, &header, &spec(&header)?)?;
        let map = map(&file, &header, name)?;
        if hold {
            self.hold_shared(name, &file)?;
        }
        let member = join_liveness(&file, &map, &header, name)?;
        Ok(Parts::new(name, file, map, header, member, anonymous))
    }

    /// Attaches to the existing segment `name`, checking that it holds `T`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidName`], [`Error::LayoutMismatch`],
    /// [`Error::VersionMismatch`], [`Error::Truncated`], [`Error::Corrupt`],
    /// [`Error::NotReady`], [`Error::PermissionDenied`], [`Error::Io`].
    ///
    /// ```
    /// use shmem::{Segment, SegmentOptions};
    /// # let name = format!("doc-opt-attach-{}", std::process::id());
    /// let owner = Segment::<[u32; 2]>::create(&name, &[1, 2])?;
    /// let seg = SegmentOptions::new().attach::<[u32; 2]>(&name)?;
    /// assert_eq!(seg[1].load(), 2);
    /// // Another type under the name is refused, with what differs:
    /// assert!(matches!(Segment::<u64>::attach(&name), Err(shmem::Error::LayoutMismatch { .. })));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn attach<T: Shared>(&self, name: &str) -> Result<Segment<T>> {
        self.attach_named(name, false)
    }

    /// [`attach`](Self::attach); with `refuse_stale`, a segment that no
    /// process holds at the moment we take our lock (its creator died) is
    /// reported as [`Error::StaleExists`] (or, with `replace_stale`,
    /// removed and reported as [`Error::NotFound`] so the caller creates
    /// anew) instead of adopted: `create_or_attach`'s check, free of the
    /// window between a first look and the attach.
    fn attach_named<T: Shared>(&self, name: &str, refuse_stale: bool) -> Result<Segment<T>> {
        let parts = self.attach_named_parts(name, |_| Ok(Spec::of::<T>()), refuse_stale)?;
        Ok(Segment::from_parts(parts, false, false))
    }

    /// [`attach_named`](Self::attach_named) for the layout `spec` makes of
    /// the header.
    pub(crate) fn attach_named_parts(
        &self,
        name: &str,
        spec: impl Fn(&Header) -> Result<Spec>,
        refuse_stale: bool,
    ) -> Result<Parts> {
        crate::spawn::refuse_in_uninitialised_worker(name)?;
        let name = validate_name(name)?;
        let file = os::open_existing(name).map_err(|e| Error::from_io(name, "open", e))?;
        self.check_owner(name, &file)?;
        let header = self.wait_ready(name, &file)?;
        // Taking an exclusive lock without waiting succeeds only if no
        // process holds the segment: a creator locks before it links the
        // name, and a last holder that is leaving holds it exclusively.
        // (Nobody holding it, nobody can be setting its persist flag.)
        if refuse_stale
            && header.flags & header::FLAG_PERSIST == 0
            && os::lock_if_unused(&file).map_err(|e| Error::from_io(name, "lock", e))?
        {
            // Holding it exclusively now. A last holder may have removed the
            // name just before (it unlinks, then closes): then this file is
            // an orphan and the name is free or someone else's. And the
            // flags read before the lock may be out of date (persisted since).
            if !os::name_is_file(name, &file) {
                return Err(Error::NotFound { name: name.to_owned() });
            }
            if read_header(name, &file)?.flags & header::FLAG_PERSIST != 0 {
                drop(file); // lets go of the exclusive lock: attach again
                return self.attach_named_parts(name, spec, false);
            }
            if !self.replace_stale {
                return Err(Error::StaleExists {
                    name: name.to_owned(),
                    creator_pid: header.creator_pid,
                    created_unix_ms: header.created_unix_ms,
                });
            }
            return match os::unlink_if_same(name, &file) {
                Ok(()) => Err(Error::NotFound { name: name.to_owned() }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound { name: name.to_owned() }),
                Err(e) => Err(Error::from_io(name, "unlink", e)),
            };
        }
        check_spec(name, &header, &spec(&header)?)?;
        let map = map(&file, &header, name)?;
        self.hold_shared(name, &file)?;
        // A remover (`remove_stale`, `shmem gc`) holds an exclusive lock
        // while it unlinks; if we waited it out, the name may be gone or
        // point elsewhere now: then this file is an orphan, not the segment.
        if !os::name_is_file(name, &file) {
            return Err(Error::NotFound { name: name.to_owned() });
        }
        let member = join_liveness(&file, &map, &header, name)?;
        Ok(Parts::new(name, file, map, header, member, false))
    }

    /// Attaches to segment `name` read-only: the file is opened and mapped
    /// without write permission, so it works for a user who may only read
    /// it (mode `0o644`), and the handle can only read: it dereferences to
    /// the read-only form of `T`'s twin ([`crate::read_only`](mod@crate::read_only)), on which
    /// writing does not compile. Checks as [`attach`](Self::attach) does
    /// (owner, header, layout).
    ///
    /// ```
    /// use shmem::{SegmentOptions, Segment};
    /// # let name = format!("doc-read-only-{}", std::process::id());
    /// let seg = SegmentOptions::new().mode(0o644).create::<[u32; 2]>(&name, &[7, 8])?;
    /// let monitor = SegmentOptions::new().attach_read_only::<[u32; 2]>(&name)?;
    /// seg[1].store(9);
    /// assert_eq!(monitor[1].load(), 9);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_read_only<T: Shared>(&self, name: &str) -> Result<ReadOnlySegment<T>> {
        crate::spawn::refuse_in_uninitialised_worker(name)?;
        let name = validate_name(name)?;
        let file = os::open_read_only(name).map_err(|e| Error::from_io(name, "open", e))?;
        self.check_owner(name, &file)?;
        let header = self.wait_ready(name, &file)?;
        check_spec(name, &header, &Spec::of::<T>())?;
        let map = MmapOptions::new()
            .len(header.file_size as usize)
            .map_raw_read_only(&file)
            .map_err(|e| Error::from_io(name, "map", e))?;
        // A reader that could not remove the name (another user's file in
        // the sticky /dev/shm) does not hold it either: as the last holder it
        // would leave the name behind, stale, for its owner to trip over.
        use std::os::unix::fs::MetadataExt;
        let owner = file.metadata().map_err(|e| Error::from_io(name, "stat", e))?.uid();
        let holds = owner == os::effective_uid() || os::effective_uid() == 0;
        if holds {
            self.hold_shared(name, &file)?;
        }
        if !os::name_is_file(name, &file) {
            return Err(Error::NotFound { name: name.to_owned() });
        }
        let data = data_ptr::<T>(&map, &header);
        Ok(ReadOnlySegment { name: name.to_owned(), file, map, header, data, opener: std::process::id(), holds })
    }

    /// Attaches to segment `name` if it exists, or creates it holding
    /// `initial`. Race-free across processes: when several call this at once,
    /// exactly one creates (its handle's [`is_owner`](Segment::is_owner) is
    /// true) and the others attach to the initialised segment.
    ///
    /// # Errors
    /// As [`attach`](Self::attach) and [`create`](Self::create);
    /// [`Error::NotReady`] if the name kept appearing and disappearing for
    /// the whole timeout.
    ///
    /// ```
    /// use shmem::SegmentOptions;
    /// # let name = format!("doc-opt-coa-{}", std::process::id());
    /// let first = SegmentOptions::new().create_or_attach::<u64>(&name, &0)?;  // creates
    /// let second = SegmentOptions::new().create_or_attach::<u64>(&name, &0)?; // attaches
    /// assert!(shmem::Segment::is_owner(&first) && !shmem::Segment::is_owner(&second));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn create_or_attach<T: Shared>(&self, name: &str, initial: &T) -> Result<Segment<T>> {
        self.create_or_attach_with(name, |twin| T::store(twin, initial))
    }

    /// [`create_or_attach`](Self::create_or_attach) with an initialiser, as
    /// [`create_with`](Self::create_with). `init` runs at most once, when this
    /// call tries to create; if another process wins the race at that moment,
    /// the segment `init` built is discarded and this call attaches to the
    /// winner's.
    ///
    /// # Errors
    /// As [`create_or_attach`](Self::create_or_attach).
    pub fn create_or_attach_with<T: Shared>(&self, name: &str, init: impl FnOnce(&T::Layout)) -> Result<Segment<T>> {
        let start = Instant::now();
        // A stale segment (nobody holds it: its creator crashed) is not
        // silently adopted: replaced if asked, reported otherwise. Checked
        // when the attach takes its lock, not by a look beforehand (the
        // creator could die in between). Any doubt counts as alive: if some
        // other process holds the file at that instant (another caller
        // deciding the same thing, or `shmem ls` probing it), this call
        // attaches to it rather than report or remove it.
        let mut init = Some(init);
        loop {
            match self.attach_named(name, true) {
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
            if let Some(f) = init.take() {
                match self.create_with(name, f) {
                    Err(Error::AlreadyExists { .. }) => {}
                    other => return other,
                }
            } else {
                // Our one initialiser was used by a create that lost the race,
                // and the winner has vanished since: create zeroed is wrong, so
                // wait for someone to recreate it.
                std::thread::sleep(Duration::from_millis(1));
            }
            if start.elapsed() > self.timeout {
                return Err(Error::NotReady { name: name.to_owned(), waited: start.elapsed() });
            }
        }
    }

    /// [`remove_stale`], for a segment of a user this handle trusts only.
    /// A segment someone else removed first counts as removed.
    fn remove_stale_if_trusted(&self, name: &str) -> Result<bool> {
        let file = match os::open_read_only(name) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::from_io(name, "open", e)),
        };
        self.check_owner(name, &file)?;
        remove_stale_file(name, &file)
    }

    /// Takes the shared liveness lock on an attached file, waiting at most
    /// the timeout for a remover's exclusive lock (a process holding one
    /// for long, any reader of the file can, must not hang us).
    fn hold_shared(&self, name: &str, file: &File) -> Result<()> {
        let start = Instant::now();
        loop {
            if os::try_hold_liveness_lock(file).map_err(|e| Error::from_io(name, "lock", e))? {
                return Ok(());
            }
            if start.elapsed() >= self.timeout {
                return Err(Error::NotReady { name: name.to_owned(), waited: start.elapsed() });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Refuses a segment owned by a user this handle does not trust.
    fn check_owner(&self, name: &str, file: &File) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let owner = file.metadata().map_err(|e| Error::from_io(name, "stat", e))?.uid();
        let me = os::effective_uid();
        if owner == me || self.any_owner || self.trusted_owners.contains(&owner) {
            return Ok(());
        }
        Err(Error::ForeignOwner { name: name.to_owned(), owner, me })
    }

    fn wait_ready(&self, name: &str, file: &File) -> Result<Header> {
        let start = Instant::now();
        loop {
            let header = read_header(name, file)?;
            if header.state == STATE_READY {
                return Ok(header);
            }
            if start.elapsed() >= self.timeout {
                return Err(Error::NotReady { name: name.to_owned(), waited: start.elapsed() });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A new open file description of the file behind `fd`, of its own (no
/// lock shared with anyone), numbered 3 or above; an error where `/proc`
/// cannot give one.
fn fresh_description(name: &str, fd: std::os::fd::BorrowedFd<'_>) -> Result<File> {
    use std::os::fd::AsRawFd;
    let (owned, fresh) = os::reopen(fd).map_err(|e| Error::from_io(name, "open", e))?;
    if !fresh {
        return Err(Error::Io {
            name: name.to_owned(),
            op: "open a description of its own (needs /proc mounted)",
            source: std::io::Error::from(std::io::ErrorKind::Unsupported),
        });
    }
    os::dup_cloexec(owned.as_raw_fd()).map_err(|e| Error::from_io(name, "open", e))
}

/// The name shown for an anonymous segment (in errors and by
/// [`Segment::name`]); it cannot be attached to by name.
pub const ANONYMOUS: &str = "(anonymous)";

/// What a segment holds, as its header records it: for a Rust type
/// ([`Spec::of`]) or an array whose length is known only at run time
/// ([`Spec::array`], what `Segment<[T; N]>` attaches to).
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) type_name: String,
    pub(crate) schema: Schema,
    pub(crate) fingerprint: u64,
    pub(crate) size: u64,
    pub(crate) align: u64,
}

impl Spec {
    pub(crate) fn of<T: Shared>() -> Spec {
        Spec {
            type_name: T::type_name(),
            schema: Schema::of::<T>(),
            fingerprint: T::FINGERPRINT,
            size: size_of::<T::Layout>() as u64,
            align: align_of::<T::Layout>() as u64,
        }
    }

    /// Whatever `header` describes (for callers that take any layout).
    #[cfg(not(loom))]
    pub(crate) fn of_header(header: &Header) -> Spec {
        Spec {
            type_name: header.type_name.clone(),
            schema: header.schema.clone(),
            fingerprint: header.fingerprint,
            size: header.data_size,
            align: header.data_align,
        }
    }

    /// `[T; len]`, exactly as `<[T; len] as Shared>` describes itself;
    /// [`Error::NoSpace`] for a length whose size does not fit a mapping
    /// (checked before anything multiplies it).
    pub(crate) fn array<T: Shared>(name: &str, len: usize) -> Result<Spec> {
        let size = (size_of::<T::Layout>() as u64)
            .checked_mul(len as u64)
            .filter(|&s| s <= MAX_DATA_SIZE)
            .ok_or_else(|| Error::NoSpace { name: name.to_owned(), size: u64::MAX })?;
        if size_of::<T::Layout>() == 0 {
            // The length could not be read back from the size on attach.
            return Err(Error::Io {
                name: name.to_owned(),
                op: "create an array of zero-sized elements",
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        Ok(Spec {
            type_name: format!("[{}; {}]", T::type_name(), len),
            schema: Schema::of_array::<T>(len),
            fingerprint: crate::layout::fingerprint::array(T::FINGERPRINT, len),
            size,
            align: align_of::<T::Layout>() as u64,
        })
    }
}

/// The largest data area a segment may have (1 TiB): far below the
/// `isize::MAX` bytes a slice or mapping may span, so no size or offset
/// computed from it overflows.
const MAX_DATA_SIZE: u64 = 1 << 40;

/// The core every read-write handle holds (`Segment`, `ArraySegment`,
/// `DynSegment`): its liveness membership, file, mapping and header; and
/// what dropping it does: the last handle of all removes the name (see
/// [`release_name`]).
pub(crate) struct Parts {
    /// This mapping's entry in the liveness registry. Declared first so it
    /// is dropped first (fields drop in order), before `map` is unmapped.
    pub(crate) _member: Member,
    pub(crate) name: String,
    pub(crate) file: File,
    pub(crate) map: MmapRaw,
    pub(crate) header: Header,
    /// No name (a memfd), or attached through a descriptor: never unlinks.
    pub(crate) anonymous: bool,
    /// The process that opened this handle: a child forked without exec
    /// shares the handle's open file description (and its lock) with it,
    /// so only the opener may decide that it is the last holder.
    pub(crate) opener: u32,
}

impl Parts {
    fn new(name: &str, file: File, map: MmapRaw, header: Header, member: Member, anonymous: bool) -> Parts {
        Parts { _member: member, name: name.to_owned(), file, map, header, anonymous, opener: std::process::id() }
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        if !self.anonymous && std::process::id() == self.opener {
            release_name(&self.name, &self.file, &self.map);
        }
    }
}

/// `init` on the twin of a fresh segment, as a function of its data's address.
fn typed_init<T: Shared>(init: impl FnOnce(&T::Layout)) -> impl FnOnce(NonNull<u8>) {
    move |data| {
        // SAFETY: `initialise` passes the address of `size_of::<T::Layout>()`
        // zeroed bytes (`Spec::of::<T>()`), aligned for it (`data_offset` is a
        // multiple of the alignment in a page-aligned mapping), that stay
        // mapped for the call; zero bytes are a valid `T::Layout` (`Shared`),
        // and the file has no name and no other descriptor yet, so no other
        // process writes it.
        init(unsafe { data.cast::<T::Layout>().as_ref() })
    }
}

/// Fills a new, unnamed, empty segment file: size, header, `init` on the
/// zeroed data, then the header's ready state. Returns the mapping.
fn initialise(file: &File, name: &str, spec: &Spec, init: impl FnOnce(NonNull<u8>)) -> Result<(MmapRaw, Header)> {
    // The mapping is only page-aligned: a type aligned to more than a page
    // would sit misaligned in it (and attachers refuse such headers).
    if spec.align > header::MAX_ALIGN.min(os::page_size()) || spec.size > MAX_DATA_SIZE {
        return Err(Error::Io {
            name: name.to_owned(),
            op: "create (the type is aligned to more than a page, or larger than 1 TiB)",
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    }
    let mut header = Header::new(spec.type_name.clone(), spec.schema.clone(), spec.fingerprint, spec.size, spec.align);
    let io = |op| move |e| Error::from_io(name, op, e);
    os::reserve(file, header.file_size).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EFBIG | libc::ENOMEM) => {
            Error::NoSpace { name: name.to_owned(), size: header.file_size }
        }
        _ => Error::from_io(name, "reserve", e),
    })?;
    crate::crash_point!("segment.create.reserved");
    file.write_all_at(&header.encode(), 0).map_err(io("write header"))?;
    crate::crash_point!("segment.create.header");
    let map = map(file, &header, name)?;
    init(data_addr(&map, &header));
    crate::crash_point!("segment.create.initialised");
    header.state = STATE_READY;
    file.write_all_at(&STATE_READY.to_ne_bytes(), 12).map_err(io("write header"))?;
    Ok((map, header))
}

/// Checks that a segment's header describes the layout `spec`.
fn check_spec(name: &str, header: &Header, spec: &Spec) -> Result<()> {
    if header.fingerprint != spec.fingerprint
        || header.type_name != spec.type_name
        || header.data_size != spec.size
        || header.data_align != spec.align
    {
        return Err(Error::LayoutMismatch {
            name: name.to_owned(),
            expected_type: spec.type_name.clone(),
            expected_fingerprint: spec.fingerprint,
            expected_size: spec.size,
            found_type: header.type_name.clone(),
            found_fingerprint: header.fingerprint,
            found_size: header.data_size,
            differences: header.schema.differences(&spec.schema).into(),
        });
    }
    Ok(())
}

/// Reads and validates the header of an open segment file.
fn read_header(name: &str, file: &File) -> Result<Header> {
    let meta = file.metadata().map_err(|e| Error::from_io(name, "stat", e))?;
    let corrupt = |reason| Error::Corrupt { name: name.to_owned(), reason };
    if !meta.is_file() {
        return Err(corrupt(crate::error::Corruption::NotAFile));
    }
    let read = Header::read(meta.len(), |buf, off| file.read_exact_at(buf, off))
        .map_err(|e| Error::from_io(name, "read header", e))?;
    read.map_err(|e| match e {
        HeaderError::Truncated { expected, found } => Error::Truncated { name: name.to_owned(), expected, found },
        HeaderError::Version(found) => {
            Error::VersionMismatch { name: name.to_owned(), expected: header::VERSION, found }
        }
        HeaderError::Corrupt(reason) => corrupt(reason),
    })
}

/// Claims this process's liveness slot in the segment (see
/// [`crate::sync::liveness`]), before any lock in it can be used.
fn join_liveness(file: &File, map: &MmapRaw, header: &Header, name: &str) -> Result<Member> {
    liveness::register(file, map.as_ptr() as usize, map.len(), header.liveness_offset, header.liveness_slots).map_err(
        |e| match e {
            RegisterError::Full(slots) => Error::TooManyProcesses { name: name.to_owned(), slots },
            RegisterError::Io(e) => Error::from_io(name, "claim a liveness slot", e),
        },
    )
}

fn map(file: &File, header: &Header, name: &str) -> Result<MmapRaw> {
    MmapOptions::new().len(header.file_size as usize).map_raw(file).map_err(|e| Error::from_io(name, "map", e))
}

/// The data's address inside `map`.
fn data_addr(map: &MmapRaw, header: &Header) -> NonNull<u8> {
    debug_assert!(header.data_offset + header.data_size <= map.len() as u64);
    // `wrapping_add` keeps this free of `unsafe`: the offset was validated
    // against the mapping length (`Header::read`: data_offset + data_size ==
    // file_size == map.len()), and the mapping is page-aligned while
    // `data_offset` is a multiple of the data's alignment (`Header::new`
    // for created segments; checked against the expected layout on attach).
    let ptr = map.as_mut_ptr().wrapping_add(header.data_offset as usize);
    NonNull::new(ptr).unwrap_or(NonNull::dangling())
}

/// The twin's address inside `map`.
fn data_ptr<T: Shared>(map: &MmapRaw, header: &Header) -> NonNull<T::Layout> {
    debug_assert_eq!(header.data_offset % align_of::<T::Layout>() as u64, 0);
    data_addr(map, header).cast::<T::Layout>()
}

/// A handle to a named shared-memory segment holding a `T`.
///
/// Dereferences to `T`'s shared twin (`T::Layout`), whose accessors are the
/// only way to read or write the data. See the [module docs](self).
/// Handles are `Send + Sync`: threads may share one.
///
/// Like `Arc`, the handle's own operations are associated functions
/// (`Segment::snapshot(&seg)`, `Segment::name(&seg)`), so they never shadow
/// a field accessor of the same name.
///
/// ```
/// use shmem::{Segment, Shared};
///
/// #[derive(Shared, Default)]
/// struct Stats {
///     hits: u64,
///     per_core: [u32; 4],
/// }
///
/// # let name = format!("doc-segment-type-{}", std::process::id());
/// let stats = Segment::create(&name, &Stats::default())?;   // process A
/// let seen = Segment::<Stats>::attach(&name)?;                 // process B
/// seen.hits().fetch_add(1);                                    // field accessors, through Deref
/// seen.per_core()[2].fetch_add(1);
/// assert_eq!(Segment::snapshot(&stats).per_core, [0, 0, 1, 0]); // handle operations: Segment::...
/// # Ok::<(), shmem::Error>(())
/// ```
pub struct Segment<T: Shared> {
    /// Membership, file, mapping, header; releases the name when dropped.
    core: Parts,
    data: NonNull<T::Layout>,
    owner: bool,
    _type: PhantomData<fn() -> T>,
}

// SAFETY: the handle owns its file and mapping (both Send + Sync); `data`
// points into that mapping, and `T::Layout: Send + Sync` (required by
// `Shared`) governs what may be done through it from any thread.
unsafe impl<T: Shared> Send for Segment<T> {}
// SAFETY: as for `Send`: shared access only goes through `&T::Layout`, which
// is `Sync`.
unsafe impl<T: Shared> Sync for Segment<T> {}

impl<T: Shared> Segment<T> {
    /// The handle made of `parts`, whose layout was checked to be `T`'s.
    pub(crate) fn from_parts(mut parts: Parts, owner: bool, anonymous: bool) -> Self {
        parts.anonymous = anonymous;
        let data = data_ptr::<T>(&parts.map, &parts.header);
        Segment { core: parts, data, owner, _type: PhantomData }
    }

    /// Creates segment `name` holding `initial`, with default [`SegmentOptions`].
    ///
    /// # Errors
    /// See [`SegmentOptions::create`].
    ///
    /// ```
    /// use shmem::{Segment, Shared};
    /// #[derive(Shared, Default)]
    /// struct Stats {
    ///     hits: u64,
    /// }
    /// # let name = format!("doc-seg-create-{}", std::process::id());
    /// let stats = Segment::create(&name, &Stats::default())?; // name removed when the last handle drops
    /// stats.hits().fetch_add(1);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn create(name: &str, initial: &T) -> Result<Self> {
        SegmentOptions::new().create(name, initial)
    }

    /// Creates segment `name` zeroed. See [`SegmentOptions::create_zeroed`].
    ///
    /// # Errors
    /// See [`SegmentOptions::create`].
    pub fn create_zeroed(name: &str) -> Result<Self> {
        SegmentOptions::new().create_zeroed(name)
    }

    /// Creates segment `name` initialised in place. See [`SegmentOptions::create_with`].
    ///
    /// # Errors
    /// See [`SegmentOptions::create`].
    pub fn create_with(name: &str, init: impl FnOnce(&T::Layout)) -> Result<Self> {
        SegmentOptions::new().create_with(name, init)
    }

    /// Creates an anonymous segment holding `initial`, for this process and
    /// the children it hands it to. See [`SegmentOptions::create_anonymous`].
    ///
    /// # Errors
    /// See [`SegmentOptions::create_anonymous`].
    pub fn create_anonymous(initial: &T) -> Result<Self> {
        SegmentOptions::new().create_anonymous(initial)
    }

    /// Creates an anonymous segment initialised in place. See
    /// [`SegmentOptions::create_anonymous_with`].
    ///
    /// # Errors
    /// See [`SegmentOptions::create_anonymous`].
    pub fn create_anonymous_with(init: impl FnOnce(&T::Layout)) -> Result<Self> {
        SegmentOptions::new().create_anonymous_with(init)
    }

    /// Attaches to segment `name`. See [`SegmentOptions::attach`].
    ///
    /// # Errors
    /// See [`SegmentOptions::attach`].
    ///
    /// ```
    /// use shmem::Segment;
    /// # let name = format!("doc-seg-attach-{}", std::process::id());
    /// # let _owner = Segment::<u64>::create(&name, &41)?;
    /// // In another process (same type, same name):
    /// let seen = Segment::<u64>::attach(&name)?;
    /// seen.fetch_add(1);
    /// assert_eq!(seen.load(), 42);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn attach(name: &str) -> Result<Self> {
        SegmentOptions::new().attach(name)
    }

    /// Attaches to segment `name` read-only. See [`SegmentOptions::attach_read_only`].
    ///
    /// # Errors
    /// See [`SegmentOptions::attach`].
    pub fn attach_read_only(name: &str) -> Result<ReadOnlySegment<T>> {
        SegmentOptions::new().attach_read_only(name)
    }

    /// Attaches to or creates segment `name`. See [`SegmentOptions::create_or_attach`].
    ///
    /// # Errors
    /// See [`SegmentOptions::create_or_attach`].
    ///
    /// ```
    /// use shmem::Segment;
    /// # let name = format!("doc-seg-coa-{}", std::process::id());
    /// // Every process runs the same line; exactly one creates.
    /// let counter = Segment::<u64>::create_or_attach(&name, &0)?;
    /// counter.fetch_add(1);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn create_or_attach(name: &str, initial: &T) -> Result<Self> {
        SegmentOptions::new().create_or_attach(name, initial)
    }

    /// The segment's name (without a leading `/`); [`ANONYMOUS`] for an
    /// anonymous segment.
    pub fn name(this: &Self) -> &str {
        &this.core.name
    }

    /// Whether this handle has no name to remove: an anonymous segment
    /// ([`Segment::create_anonymous`]), or one attached through a
    /// descriptor ([`SegmentOptions::attach_fd`]).
    pub fn is_anonymous(this: &Self) -> bool {
        this.core.anonymous
    }

    /// Whether this handle created the segment.
    pub fn is_owner(this: &Self) -> bool {
        this.owner
    }

    /// Keeps the segment's name after the last handle (of any process) is
    /// dropped; remove it later with [`unlink`] or `shmem rm`. Recorded in
    /// the segment, so it holds whichever process lets go last. An anonymous
    /// segment has no name to keep: this does nothing for it.
    ///
    /// ```
    /// use shmem::Segment;
    /// # let name = format!("doc-persist-{}", std::process::id());
    /// let mut seg = Segment::<u64>::create(&name, &1)?;
    /// Segment::persist(&mut seg);
    /// drop(seg);
    /// assert_eq!(Segment::<u64>::attach(&name)?.load(), 1); // still there
    /// shmem::unlink(&name)?;
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn persist(this: &mut Self) {
        persist_flag(&this.core.map).fetch_or(header::FLAG_PERSIST, core::sync::atomic::Ordering::AcqRel);
    }

    /// A new descriptor of the segment's file, for handing the segment to
    /// another process yourself (over a Unix socket with `SCM_RIGHTS`),
    /// which attaches with [`SegmentOptions::attach_fd`]. Children started
    /// by [`crate::spawn()`] and [`crate::SpawnOptions::command`] get one
    /// without this. It is an open file description of its own (through
    /// `/proc/self/fd`), holding no lock: closing it, or anything done with
    /// it, does not affect this handle. Anyone holding it can map the
    /// segment read-write.
    ///
    /// # Errors
    /// [`Error::Io`], for example where `/proc` is not mounted.
    pub fn share_fd(this: &Self) -> Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        Ok(fresh_description(&this.core.name, this.core.file.as_fd())?.into())
    }

    /// The segment's file, with this handle's liveness lock on its description.
    pub(crate) fn file(this: &Self) -> &File {
        &this.core.file
    }

    /// The user id owning the segment's file (`None` if it cannot be read).
    pub fn owner_uid(this: &Self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        this.core.file.metadata().ok().map(|m| m.uid())
    }

    /// The segment's header as read when this handle was opened.
    pub fn header(this: &Self) -> &Header {
        &this.core.header
    }

    /// Reads the whole value, field by field (not one atomic snapshot: fields
    /// written meanwhile may mix old and new values). Builds `T` on the
    /// stack: for very large types read the fields you need instead.
    ///
    /// ```
    /// use shmem::{Segment, Shared};
    /// #[derive(Shared, Default, Debug, PartialEq)]
    /// struct Stats {
    ///     hits: u64,
    ///     ok: bool,
    /// }
    /// let seg = Segment::create_anonymous(&Stats::default())?;
    /// seg.hits().store(3);
    /// assert_eq!(Segment::snapshot(&seg), Stats { hits: 3, ok: false });
    /// Segment::store(&seg, &Stats { hits: 0, ok: true });
    /// assert!(seg.ok().load());
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn snapshot(this: &Self) -> T {
        T::load(this)
    }

    /// Writes the whole value, field by field (not one atomic step).
    pub fn store(this: &Self, value: &T) {
        T::store(this, value)
    }
}

impl<T: Shared> Deref for Segment<T> {
    type Target = T::Layout;

    fn deref(&self) -> &T::Layout {
        // SAFETY: `data` points at a `T::Layout` inside `self.map`, which
        // lives as long as `self`: in bounds and aligned (see `data_ptr`),
        // and initialised, since the creator finished `init` before linking
        // the file and the twin is valid for every bit pattern (`Shared`).
        // Only shared references are ever made; mutation goes through the
        // twin's atomics.
        unsafe { self.data.as_ref() }
    }
}

/// Removes the name of a segment whose handle is being dropped, if no
/// other handle (of any process) holds it and nobody persisted it: our
/// liveness lock turns exclusive only if nobody else holds one (a process
/// attaching right now waits for it, then finds the name gone and reports
/// NotFound, or creates anew).
pub(crate) fn release_name(name: &str, file: &File, map: &MmapRaw) {
    // Relaxed (then a fence): the only load std allows on read-only pages.
    let flags = persist_flag(map).load(core::sync::atomic::Ordering::Relaxed);
    core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
    if flags & header::FLAG_PERSIST != 0 {
        return;
    }
    if os::lock_if_unused(file).unwrap_or(false) {
        let _ = os::unlink_if_same(name, file);
    }
}

/// The header's `flags` word, in the mapping.
fn persist_flag(map: &MmapRaw) -> &core::sync::atomic::AtomicU32 {
    let ptr = map.as_ptr().wrapping_add(header::FLAGS_OFFSET).cast::<core::sync::atomic::AtomicU32>();
    // SAFETY: the mapping covers the whole file, which is at least the
    // 128-byte fixed header (validated); offset 68 is 4-aligned in a
    // page-aligned mapping; the word is only ever accessed atomically once
    // the segment is published (and only loaded through a read-only mapping).
    unsafe { &*ptr }
}

/// A read-only handle to a named segment holding a `T`, from
/// [`Segment::attach_read_only`]: the file is mapped without write
/// permission, and the handle dereferences to the read-only form of `T`'s
/// twin (see [`crate::read_only`](mod@crate::read_only)): loads and seqlock reads, no writes (they
/// do not compile). Like any handle it keeps the segment's name while it
/// lives, and removes it if it is the last of all, except when this process
/// could not remove the name (another user's segment): then it does not
/// hold the name at all.
///
/// ```
/// use shmem::{Segment, Shared};
///
/// #[derive(Shared, Default)]
/// struct Stats {
///     hits: u64,
///     #[shared(seqlock)]
///     pos: [f64; 2],
/// }
///
/// # let name = format!("doc-ro-type-{}", std::process::id());
/// let stats = Segment::create(&name, &Stats::default())?;
/// let monitor = Segment::<Stats>::attach_read_only(&name)?; // mapped read-only
/// stats.hits().store(5);
/// stats.pos().write([1.0, 2.0]);
/// assert_eq!(monitor.hits().load(), 5);
/// assert_eq!(monitor.pos().read().unwrap(), [1.0, 2.0]);
/// # Ok::<(), shmem::Error>(())
/// ```
pub struct ReadOnlySegment<T: Shared> {
    name: String,
    file: File,
    map: MmapRaw,
    header: Header,
    data: NonNull<T::Layout>,
    opener: u32,
    /// Whether this handle holds the liveness lock (keeps the name).
    holds: bool,
}

// SAFETY: as for `Segment`: the handle owns its file and read-only mapping,
// and hands out only shared references to the twin's read-only form, which
// is required to be `Sync` here.
unsafe impl<T: Shared> Send for ReadOnlySegment<T> where <T::Layout as crate::read_only::ReadOnlyForm>::ReadOnly: Sync {}
// SAFETY: as for `Send`.
unsafe impl<T: Shared> Sync for ReadOnlySegment<T> where <T::Layout as crate::read_only::ReadOnlyForm>::ReadOnly: Sync {}

impl<T: Shared> ReadOnlySegment<T> {
    /// The segment's name.
    pub fn name(this: &Self) -> &str {
        &this.name
    }

    /// The segment's header as read when this handle was opened.
    pub fn header(this: &Self) -> &Header {
        &this.header
    }
}

impl<T: Shared> Deref for ReadOnlySegment<T> {
    type Target = <T::Layout as crate::read_only::ReadOnlyForm>::ReadOnly;

    fn deref(&self) -> &Self::Target {
        // SAFETY: as in `Segment::deref`: `data` points at an initialised
        // `T::Layout` inside `self.map`, in bounds and aligned, for as long
        // as `self` lives. The pages are mapped read-only; the reference is
        // shared, and is only used through its read-only form, whose
        // operations never write (`ReadOnlyForm`'s contract).
        crate::read_only::read_only(unsafe { self.data.as_ref() })
    }
}

impl<T: Shared> Drop for ReadOnlySegment<T> {
    fn drop(&mut self) {
        if self.holds && std::process::id() == self.opener {
            release_name(&self.name, &self.file, &self.map);
        }
    }
}

impl<T: Shared> fmt::Debug for ReadOnlySegment<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadOnlySegment")
            .field("name", &self.name)
            .field("type", &self.header.type_name)
            .field("size", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl<T: Shared> fmt::Debug for Segment<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.core.name)
            .field("type", &self.core.header.type_name)
            .field("size", &self.core.map.len())
            .field("owner", &self.owner)
            .field("anonymous", &self.core.anonymous)
            .finish_non_exhaustive()
    }
}

/// A segment holding `[T; len]` where `len` is known only at run time (a
/// Python `Array('i', n)`, a size read from a config file): the same
/// segment as a `Segment<[T; N]>` with `N == len`, which a program that
/// knows the length at compile time attaches to, and the other way round.
/// Dereferences to a slice of twins.
///
/// ```
/// use shmem::{ArraySegment, Segment, SegmentOptions};
/// # let name = format!("doc-array-{}", std::process::id());
/// let n = 3; // known at run time
/// let arr = SegmentOptions::new().create_array_with::<i32>(&name, n, |a| a[1].store(7))?;
/// assert_eq!(arr.len(), 3);
/// let fixed = Segment::<[i32; 3]>::attach(&name)?; // the same segment, typed
/// assert_eq!(fixed[1].load(), 7);
/// let again = ArraySegment::<i32>::attach(&name)?; // length from the header
/// again[2].fetch_add(5);
/// assert_eq!(fixed[2].load(), 5);
/// # Ok::<(), shmem::Error>(())
/// ```
pub struct ArraySegment<T: Shared> {
    /// Membership, file, mapping, header; releases the name when dropped.
    core: Parts,
    data: NonNull<T::Layout>,
    len: usize,
    owner: bool,
    _type: PhantomData<fn() -> T>,
}

// SAFETY: as for `Segment`: the handle owns its file and mapping, and hands
// out only shared references to `T::Layout: Send + Sync`.
unsafe impl<T: Shared> Send for ArraySegment<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Shared> Sync for ArraySegment<T> {}

impl SegmentOptions {
    /// Creates segment `name` holding `[T; len]`, zeroed, and runs `init` on
    /// it before any other process can see it. See [`ArraySegment`].
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_array_with<T: Shared>(
        &self,
        name: &str,
        len: usize,
        init: impl FnOnce(&[T::Layout]),
    ) -> Result<ArraySegment<T>> {
        let parts = self.create_parts(name, &Spec::array::<T>(name, len)?, slice_init::<T>(len, init))?;
        Ok(ArraySegment::from_parts(parts, len, true, false))
    }

    /// An anonymous segment holding `[T; len]` (see
    /// [`create_anonymous`](Self::create_anonymous) and [`ArraySegment`]).
    ///
    /// # Errors
    /// As [`create_anonymous`](Self::create_anonymous).
    pub fn create_anonymous_array_with<T: Shared>(
        &self,
        len: usize,
        init: impl FnOnce(&[T::Layout]),
    ) -> Result<ArraySegment<T>> {
        let parts = self.create_anonymous_parts(&Spec::array::<T>(ANONYMOUS, len)?, slice_init::<T>(len, init))?;
        Ok(ArraySegment::from_parts(parts, len, true, true))
    }

    /// Attaches to segment `name` holding `[T; len]` for any `len` (read
    /// from its header, then checked as [`attach`](Self::attach) checks).
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_array<T: Shared>(&self, name: &str) -> Result<ArraySegment<T>> {
        let parts = self.attach_named_parts(name, array_spec::<T>, false)?;
        let len = array_len::<T>(&parts.header);
        Ok(ArraySegment::from_parts(parts, len, false, false))
    }

    /// [`attach_fd`](Self::attach_fd) for `[T; len]` of any `len`.
    ///
    /// # Errors
    /// As [`attach_fd`](Self::attach_fd).
    pub fn attach_array_fd<T: Shared>(&self, fd: std::os::fd::BorrowedFd<'_>) -> Result<ArraySegment<T>> {
        let parts = self.attach_fd_parts(fd, array_spec::<T>)?;
        let len = array_len::<T>(&parts.header);
        Ok(ArraySegment::from_parts(parts, len, false, true))
    }
}

/// The length of the `[T; len]` a header describes (by its data size).
fn array_len<T: Shared>(header: &Header) -> usize {
    match size_of::<T::Layout>() {
        0 => 0,
        elem => (header.data_size / elem as u64) as usize,
    }
}

/// The `[T; len]` layout a header should describe, `len` from its size.
fn array_spec<T: Shared>(header: &Header) -> Result<Spec> {
    Spec::array::<T>(&header.type_name, array_len::<T>(header))
}

/// `init` on the `len` twins of a fresh array segment.
fn slice_init<T: Shared>(len: usize, init: impl FnOnce(&[T::Layout])) -> impl FnOnce(NonNull<u8>) {
    move |data| {
        // SAFETY: `initialise` passes the address of `len *
        // size_of::<T::Layout>()` zeroed bytes (`Spec::array::<T>(len)`),
        // aligned for `T::Layout`, mapped for the call; zero bytes are valid
        // twins (`Shared`), and no other process can see the file yet.
        init(unsafe { std::slice::from_raw_parts(data.cast::<T::Layout>().as_ptr(), len) })
    }
}

impl<T: Shared> ArraySegment<T> {
    fn from_parts(mut parts: Parts, len: usize, owner: bool, anonymous: bool) -> Self {
        parts.anonymous = anonymous;
        let data = data_ptr::<T>(&parts.map, &parts.header);
        ArraySegment { core: parts, data, len, owner, _type: PhantomData }
    }

    /// Attaches to segment `name` holding `[T; len]`, any `len`. See
    /// [`SegmentOptions::attach_array`].
    ///
    /// # Errors
    /// As [`SegmentOptions::attach`].
    pub fn attach(name: &str) -> Result<Self> {
        SegmentOptions::new().attach_array(name)
    }

    /// The segment's name; [`ANONYMOUS`] for an anonymous segment.
    pub fn name(this: &Self) -> &str {
        &this.core.name
    }

    /// Whether this handle has no name (see [`Segment::is_anonymous`]).
    pub fn is_anonymous(this: &Self) -> bool {
        this.core.anonymous
    }

    /// Whether this handle created the segment.
    pub fn is_owner(this: &Self) -> bool {
        this.owner
    }

    /// The segment's header as read when this handle was opened.
    pub fn header(this: &Self) -> &Header {
        &this.core.header
    }

    /// A new descriptor of the segment's file (see [`Segment::share_fd`]).
    ///
    /// # Errors
    /// [`Error::Io`], for example where `/proc` is not mounted.
    pub fn share_fd(this: &Self) -> Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        Ok(fresh_description(&this.core.name, this.core.file.as_fd())?.into())
    }
}

impl<T: Shared> Deref for ArraySegment<T> {
    type Target = [T::Layout];

    fn deref(&self) -> &[T::Layout] {
        // SAFETY: `data` points at `len` consecutive `T::Layout`s (the
        // header was checked to describe `[T; len]`, and the mapping covers
        // the whole data area), aligned, initialised (the creator finished
        // before linking the name), alive as long as `self`; only shared
        // references are made, and the twins mutate through atomics.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }
}

impl<T: Shared> fmt::Debug for ArraySegment<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArraySegment")
            .field("name", &self.core.name)
            .field("type", &self.core.header.type_name)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Whether a segment is stale: no process holds it and nobody persisted it
/// (a program that crashed left it).
pub(crate) fn is_stale(info: &SegmentInfo) -> bool {
    !info.live && info.header.flags & header::FLAG_PERSIST == 0
}

/// Removes segment `name` if it is stale: no process holds it. Race-free
/// against a process attaching at the same moment (which then reports
/// [`Error::NotFound`] or, with `create_or_attach`, creates anew): the
/// removal holds an exclusive lock that attaching waits for, and an
/// attacher checks afterwards that the name still refers to its file.
/// Returns whether it removed the name.
///
/// # Errors
/// [`Error::NotFound`], [`Error::InvalidName`], [`Error::Corrupt`] (not a
/// shmem segment: left alone), [`Error::PermissionDenied`], [`Error::Io`].
///
/// ```
/// # let name = format!("doc-remove-stale-{}", std::process::id());
/// let seg = shmem::Segment::<u64>::create(&name, &1)?;
/// assert!(!shmem::remove_stale(&name)?); // in use: left alone
/// # Ok::<(), shmem::Error>(())
/// ```
pub fn remove_stale(name: &str) -> Result<bool> {
    let name = validate_name(name)?;
    let file = os::open_read_only(name).map_err(|e| Error::from_io(name, "open", e))?;
    remove_stale_file(name, &file)
}

/// [`remove_stale`] of the file already open as `file`.
fn remove_stale_file(name: &str, file: &File) -> Result<bool> {
    let file = file.try_clone().map_err(|e| Error::from_io(name, "open", e))?;
    read_header(name, &file)?;
    if !os::lock_if_unused(&file).map_err(|e| Error::from_io(name, "lock", e))? {
        return Ok(false);
    }
    // Nobody holds it now, so nobody can persist it any more: read the flag
    // under the lock (a holder may have set it just before leaving).
    if read_header(name, &file)?.flags & header::FLAG_PERSIST != 0 {
        return Ok(false);
    }
    match os::unlink_if_same(name, &file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::from_io(name, "unlink", e)),
    }
}

/// Removes the segment name `name`. Processes that have it mapped keep
/// their mapping; new `attach` calls fail with [`Error::NotFound`].
///
/// # Errors
/// [`Error::NotFound`], [`Error::InvalidName`], [`Error::PermissionDenied`], [`Error::Io`].
///
/// ```
/// use shmem::Segment;
/// # let name = format!("doc-unlink-{}", std::process::id());
/// let seg = Segment::<u64>::create(&name, &1)?;
/// shmem::unlink(&name)?;                   // new attaches fail...
/// assert!(Segment::<u64>::attach(&name).is_err());
/// assert_eq!(seg.load(), 1);               // ...handles keep working
/// # Ok::<(), shmem::Error>(())
/// ```
pub fn unlink(name: &str) -> Result<()> {
    let name = validate_name(name)?;
    os::unlink(name).map_err(|e| Error::from_io(name, "unlink", e))
}

/// What [`inspect`] finds about a segment, without knowing its type.
///
/// ```
/// # let name = format!("doc-info-{}", std::process::id());
/// # let _seg = shmem::Segment::<u64>::create(&name, &1)?;
/// let info = shmem::inspect(&name)?;
/// println!("{}: {} bytes of {}, {}", info.name, info.header.data_size, info.header.type_name,
///          if info.live { "in use" } else { "stale" });
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: String,
    /// Its header.
    pub header: Header,
    /// Whether some process still holds a handle to it.
    pub live: bool,
}

/// Reads a segment's header and liveness without its Rust type (for tools).
///
/// # Errors
/// As [`SegmentOptions::attach`], less the layout check.
///
/// ```
/// use shmem::Segment;
/// # let name = format!("doc-inspect-{}", std::process::id());
/// let seg = Segment::<[u16; 3]>::create(&name, &[1, 2, 3])?;
/// let info = shmem::inspect(&name)?;
/// assert!(info.live);
/// assert_eq!(info.header.type_name, "[u16; 3]");
/// # Ok::<(), shmem::Error>(())
/// ```
pub fn inspect(name: &str) -> Result<SegmentInfo> {
    Ok(View::open(name)?.info)
}

/// Every shmem segment in the shared-memory directory, with what
/// [`inspect`] says of it. Files that are not shmem segments (another
/// program's shared memory, garbage: no shmem magic number), anything that
/// is not a regular file (a FIFO, a socket, a link: opened without
/// blocking, then skipped) and hidden names are skipped, and never touched.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be read.
///
/// ```
/// for (name, info) in shmem::list()? {
///     match info {
///         Ok(info) => println!("{name}: {} ({})", info.header.type_name, if info.live { "in use" } else { "stale" }),
///         Err(e) => println!("{name}: {e}"),
///     }
/// }
/// # Ok::<(), shmem::Error>(())
/// ```
pub fn list() -> Result<std::vec::Vec<(String, Result<SegmentInfo>)>> {
    let names = os::list_names().map_err(|e| Error::from_io(os::SHM_DIR, "list", e))?;
    Ok(names
        .into_iter()
        .filter(|name| validate_name(name).is_ok())
        .map(|name| {
            let info = inspect(&name);
            (name, info)
        })
        .filter(|(_, info)| {
            !matches!(
                info,
                Err(Error::Corrupt {
                    reason: crate::error::Corruption::BadMagic | crate::error::Corruption::NotAFile,
                    ..
                })
            )
        })
        .collect())
}

/// A read-only view of a segment's bytes, for tools that know the segment
/// only by its schema. Reads are atomic loads (never a torn scalar, never a
/// write, never a lock).
///
/// ```
/// # let name = format!("doc-view-{}", std::process::id());
/// let seg = shmem::Segment::<[u32; 2]>::create(&name, &[7, 9])?;
/// let view = shmem::View::open(&name)?; // no Rust type needed: for tools
/// assert_eq!(view.read_uint(4, 4), Some(9));
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug)]
pub struct View {
    /// The segment's header and liveness.
    pub info: SegmentInfo,
    map: MmapRaw,
    _file: File,
}

impl View {
    /// Opens segment `name` read-only and validates its header.
    ///
    /// # Errors
    /// As [`SegmentOptions::attach`], less the layout check.
    pub fn open(name: &str) -> Result<View> {
        let name = validate_name(name)?;
        let file = os::open_read_only(name).map_err(|e| Error::from_io(name, "open", e))?;
        let header = read_header(name, &file)?;
        let live = os::has_live_holders(&file).map_err(|e| Error::from_io(name, "lock", e))?;
        let map = MmapOptions::new()
            .len(header.file_size as usize)
            .map_raw_read_only(&file)
            .map_err(|e| Error::from_io(name, "map", e))?;
        Ok(View { info: SegmentInfo { name: name.to_owned(), header, live }, map, _file: file })
    }

    /// Reads an unsigned integer of `size` bytes (1, 2, 4 or 8) at `offset`
    /// into the data, with one atomic load. `None` if out of range or
    /// misaligned.
    pub fn read_uint(&self, offset: u64, size: u64) -> Option<u64> {
        // SAFETY: the mapping is the whole file (`file_size` bytes, header
        // validated), readable, and lives as long as `self`.
        unsafe { load_uint(self.map.as_ptr(), &self.info.header, offset, size) }
    }

    /// Copies `len` bytes at `offset` into the data, byte by byte with
    /// atomic loads (values behind a lock may be mid-update: a copy, not a
    /// snapshot). `None` if out of range.
    pub fn read_bytes(&self, offset: u64, len: u64) -> Option<std::vec::Vec<u8>> {
        if offset.checked_add(len)? > self.info.header.data_size {
            return None;
        }
        (offset..offset + len).map(|o| self.read_uint(o, 1).map(|b| b as u8)).collect()
    }
}

/// One atomic load of an unsigned integer of `size` bytes (1, 2, 4 or 8) at
/// `offset` into the data of the segment mapped at `base` with header `h`.
/// `None` if out of range or misaligned.
///
/// # Safety
/// `base` is the start of a readable mapping of the whole file
/// (`h.file_size` bytes, `h` validated), mapped for the whole call.
pub(crate) unsafe fn load_uint(base: *const u8, h: &Header, offset: u64, size: u64) -> Option<u64> {
    let at = h.data_offset.checked_add(offset)?;
    if !matches!(size, 1 | 2 | 4 | 8) || offset.checked_add(size)? > h.data_size || at % size != 0 {
        return None;
    }
    let ptr = base.wrapping_add(at as usize);
    macro_rules! load {
        ($atomic:ty) => {{
            // SAFETY: `at + size <= data_offset + data_size <= file_size`,
            // the length the caller promises is mapped; `at` is a multiple
            // of `size` and the mapping is page-aligned, so the atomic is in
            // bounds and aligned. The bytes are shared memory that other
            // processes change: scalars with atomic stores, values behind a
            // lock and container items with plain copies under the lock (an
            // atomic load of those may see a value mid-update, which callers
            // treat as a copy, not a snapshot, and never as a reference). A
            // load never writes (fine on read-only pages).
            let atomic = unsafe { &*ptr.cast::<$atomic>() };
            u64::from(atomic.load(core::sync::atomic::Ordering::Acquire))
        }};
    }
    Some(match size {
        1 => load!(core::sync::atomic::AtomicU8),
        2 => load!(core::sync::atomic::AtomicU16),
        4 => load!(core::sync::atomic::AtomicU32),
        _ => load!(core::sync::atomic::AtomicU64),
    })
}
