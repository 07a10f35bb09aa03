//! The references that bypass shmem: raw mapped pages, process-shared
//! pthread mutexes, and the start gate every timed workload goes through.

use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A mapped `/dev/shm` file, for the references that bypass shmem.
pub struct RawMap {
    pub ptr: *mut u8,
    len: usize,
}

impl RawMap {
    pub fn open(name: &str, len: usize, create: bool) -> RawMap {
        let cname = CString::new(format!("/{name}")).unwrap();
        let flags = if create { libc::O_CREAT | libc::O_RDWR | libc::O_EXCL } else { libc::O_RDWR };
        // SAFETY: plain libc calls with a valid C string; results checked.
        unsafe {
            let fd = libc::shm_open(cname.as_ptr(), flags, 0o600);
            assert!(fd >= 0, "shm_open {name}");
            if create {
                assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
            }
            let ptr =
                libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
            assert_ne!(ptr, libc::MAP_FAILED);
            libc::close(fd);
            RawMap { ptr: ptr.cast(), len }
        }
    }

    pub fn unlink(name: &str) {
        let cname = CString::new(format!("/{name}")).unwrap();
        // SAFETY: valid C string.
        unsafe { libc::shm_unlink(cname.as_ptr()) };
    }

    /// The `AtomicU64` at byte `offset` (a multiple of 8 inside the mapping).
    pub fn atomic_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); the
        // mapping lives as long as `self`; other processes only use it atomically.
        unsafe { &*self.ptr.add(offset).cast::<AtomicU64>() }
    }

    pub fn atomic(&self) -> &AtomicU64 {
        self.atomic_at(0)
    }

    pub fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.ptr.cast()
    }

    pub fn values(&self) -> *mut [i64; 1024] {
        // The array sits after the 64-byte mutex slot.
        self.ptr.wrapping_add(64).cast()
    }
}

impl Drop for RawMap {
    fn drop(&mut self) {
        // SAFETY: unmapping what `open` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub fn init_pthread_mutex(map: &RawMap, robust: bool) {
    // SAFETY: the attribute lives on our stack; the mutex memory is mapped
    // and not yet used by anyone.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        if robust {
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        }
        assert_eq!(libc::pthread_mutex_init(map.mutex(), &attr), 0);
        libc::pthread_mutexattr_destroy(&mut attr);
    }
}

pub fn pthread_lock(map: &RawMap) {
    // SAFETY: an initialised process-shared mutex in mapped memory.
    let rc = unsafe { libc::pthread_mutex_lock(map.mutex()) };
    if rc == libc::EOWNERDEAD {
        // SAFETY: as above; we own it now.
        unsafe { libc::pthread_mutex_consistent(map.mutex()) };
    }
}

pub fn pthread_unlock(map: &RawMap) {
    // SAFETY: locked by `pthread_lock` in this thread.
    unsafe { libc::pthread_mutex_unlock(map.mutex()) };
}

/// The start line: children say they are ready and wait for the parent's
/// go, so no figure includes starting a process (about 1 ms for ours and
/// 50 ms for Python's, which would swamp short workloads).
pub struct Gate {
    map: RawMap,
    name: String,
}

const READY: usize = 0;
const GO: usize = 64;

impl Gate {
    fn name_for(pid: u32) -> String {
        format!("shmem-bench-gate-{pid}")
    }

    /// The driver's gate, found by its children through their parent pid.
    pub fn create() -> Gate {
        let name = Gate::name_for(std::process::id());
        RawMap::unlink(&name);
        Gate { map: RawMap::open(&name, 4096, true), name }
    }

    /// Closes the gate for the next workload.
    pub fn reset(&self) {
        self.map.atomic_at(READY).store(0, Ordering::SeqCst);
        self.map.atomic_at(GO).store(0, Ordering::SeqCst);
    }

    /// Waits until `n` children are ready, opens the gate, returns the start.
    pub fn open_when_ready(&self, n: u64) -> Instant {
        let give_up = Instant::now() + Duration::from_secs(120);
        while self.map.atomic_at(READY).load(Ordering::SeqCst) < n {
            assert!(Instant::now() < give_up, "children never reached the start gate");
            std::thread::yield_now();
        }
        let start = Instant::now();
        self.map.atomic_at(GO).store(1, Ordering::SeqCst);
        start
    }

    /// In a child: report ready, wait for the go.
    pub fn arrive() {
        // SAFETY: getppid cannot fail.
        let parent = unsafe { libc::getppid() } as u32;
        let map = RawMap::open(&Gate::name_for(parent), 4096, false);
        map.atomic_at(READY).fetch_add(1, Ordering::SeqCst);
        while map.atomic_at(GO).load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        RawMap::unlink(&self.name);
    }
}
