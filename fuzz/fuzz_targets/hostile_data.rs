//! Hostile bytes in a segment's data area (issue 12): another process with
//! write access, buggy or malicious, can leave any bytes there. Every
//! library call must then give a correct answer, a typed error (poison, a
//! timeout, `Full`, ...) or garbage values of the declared type: never a
//! panic, an abort, a hang or undefined behaviour.
//!
//! One real segment holds one field of every kind; each input overwrites
//! its data area (not the header, which `attach` validates) and then every
//! operation that has a deadline runs, with 100 us (the blocking ones, such
//! as `SeqLock::write` or `Map::to_vec`, wait for a holder that looks alive
//! by design, and the fuzzer soon learns to write this process's own token
//! into a lock word, which no blocking call can tell from a lock held by
//! another of its threads). A hang shows as a libFuzzer timeout, an abort
//! or panic as a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmem::containers::{Map, Queue, Str, Vec as SVec};
use shmem::{Barrier, Condvar, Event, Segment, Semaphore, Shared};
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Shared)]
pub struct Everything {
    pub count: u64,
    pub small: i16,
    pub flag: bool,
    pub letter: char,
    pub ratio: f64,
    pub arr: [u32; 4],
    #[shared(lock)]
    pub guarded: [u64; 4],
    #[shared(rwlock)]
    pub table: [u64; 4],
    #[shared(seqlock)]
    pub bytes: [u8; 13],
    #[shared(lock)]
    pub name: Str<16>,
    #[shared(lock)]
    pub list: SVec<u32, 8>,
    pub queue: Queue<u64, 8>,
    pub map: Map<u64, u64, 16>,
    pub event: Event,
    pub sem: Semaphore,
    pub barrier: Barrier,
    pub cv: Condvar,
}

const T: Duration = Duration::from_micros(100);

fn segment() -> &'static Segment<Everything> {
    static SEG: OnceLock<Segment<Everything>> = OnceLock::new();
    SEG.get_or_init(|| {
        let name = format!("shmem-fuzz-{}", std::process::id());
        let _ = shmem::unlink(&name);
        let seg = Segment::<Everything>::create_zeroed(&name).expect("create the fuzz segment");
        // The mapping outlives the name: nothing is left in /dev/shm when
        // libFuzzer exits without running destructors.
        shmem::unlink(&name).expect("unlink the fuzz segment's name");
        seg
    })
}

fn exercise(s: &EverythingShared) {
    // Scalars: any bits are a value of the type.
    let _ = (s.count().load(), s.small().load(), s.flag().load(), s.letter().load(), s.ratio().load());
    s.count().fetch_add(1);
    s.flag().fetch_nand(true);
    s.letter().update(|c| c);
    let _ = s.arr()[3].fetch_max(7);
    // Locks: taken over, timed out, or poisoned; never a hang.
    match s.guarded().lock_timeout(T) {
        Ok(mut g) => g[0] = g[0].wrapping_add(1),
        Err(shmem::TimedLockError::Poisoned(p)) => drop(p.into_inner()),
        Err(shmem::TimedLockError::Timeout) => {}
    }
    s.guarded().clear_poison();
    let _ = s.guarded().try_lock();
    if let Ok(r) = s.table().read_timeout(T) {
        let _ = r.map(|g| g[1]).unwrap_or_else(|p| p.into_inner()[1]);
    }
    if let Ok(w) = s.table().write_timeout(T) {
        let mut g = w.unwrap_or_else(|p| p.into_inner());
        g[2] = g[2].wrapping_add(1);
    }
    let _ = s.table().reader_count();
    let _ = s.bytes().read_timeout(T);
    s.bytes().clear_poison();
    // Containers behind a lock: any length field is clamped.
    if let Ok(g) = s.name().lock_timeout(T) {
        let _ = g.as_str().len();
    }
    if let Ok(mut g) = s.list().lock_timeout(T) {
        let _ = g.iter().count();
        let _ = g.push(5);
        let _ = g.pop();
    }
    // Queue: counters and flags of any value.
    let q = s.queue();
    let _ = (q.len(), q.is_empty(), q.is_closed());
    let _ = q.try_push(1);
    let _ = q.push_timeout(2, T);
    let _ = q.try_pop();
    let _ = q.pop_timeout(T);
    // Map: slots, lengths and dirty marks of any value (repair runs).
    let m = s.map();
    let _ = (m.len(), m.is_poisoned());
    let _ = m.get_timeout(&3, T);
    let _ = m.insert_timeout(3, 9, T);
    let _ = m.update_timeout(&3, T, |v| *v = v.wrapping_add(1));
    let _ = m.remove_timeout(&3, T);
    let _ = m.get_timeout(&u64::MAX, Duration::ZERO);
    m.clear_poison();
    // Coordination.
    let _ = s.event().wait_timeout(T);
    let _ = s.sem().acquire_timeout(T);
    s.sem().release();
    let _ = s.barrier().wait_timeout(T);
    s.cv().notify_all();
}

fuzz_target!(|data: &[u8]| {
    let seg = segment();
    let twin: &EverythingShared = seg;
    let len = core::mem::size_of::<EverythingShared>().min(data.len());
    // SAFETY: the twin is plain bytes behind atomics and cells (valid for
    // every bit pattern, by `Shared`'s contract); nothing else in this
    // process touches it during the copy (libFuzzer runs one input at a
    // time), as another process's writes would.
    unsafe {
        core::ptr::copy_nonoverlapping(data.as_ptr(), (twin as *const EverythingShared).cast_mut().cast::<u8>(), len)
    };
    exercise(twin);
});
