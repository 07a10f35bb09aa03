//! The workloads: each returns its rows, the reference first.

use crate::peers::{self, ice};
use crate::raw::{init_pthread_mutex, pthread_lock, pthread_unlock, Gate, RawMap};
use crate::{json, Cfg, Row};
use shmem::bytemuck::{Pod, Zeroable};
use shmem::{Map, PopError, PushError, Queue, Segment, Shared};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn seg_name(tag: &str) -> String {
    format!("shmem-bench-{tag}-{}", std::process::id())
}

/// Waits for every worker; panics with the worker's error if one failed.
fn join_all(workers: Vec<shmem::Child>) {
    for w in workers {
        w.join().unwrap();
    }
}

fn python_row(cfg: &Cfg, workload: &str, variant: &str, script: &str, n: u64) -> Option<Row> {
    let o = cfg.python(script, n)?;
    Some(Row::new(workload, variant, json::get(&o, "ops") as u64, json::get(&o, "seconds")))
}

fn python_missing(workload: &str, variant: &str) -> Row {
    Row::missing(workload, variant, "python3 baseline failed to run (see stderr)")
}

// ------------------------------------------------------------ 1. counter

#[derive(Shared, Default)]
struct Counter {
    hits: u64,
}

#[shmem::worker]
fn count(seg: &Segment<Counter>, n: u64) {
    Gate::arrive();
    for _ in 0..n {
        seg.hits().fetch_add(1);
    }
}

pub fn counter(cfg: &Cfg, gate: &Gate) -> Vec<Row> {
    const W: &str = "counter";
    let (n, p) = (cfg.scale(5_000_000, 20_000), cfg.procs as u64);
    let mut rows = Vec::new();
    {
        let name = seg_name("floor");
        let map = RawMap::open(&name, 4096, true);
        let children = peers::start("floor", &name, n, cfg.procs);
        let t = gate.open_when_ready(p);
        peers::join(children);
        let t = t.elapsed();
        assert_eq!(map.atomic().load(Ordering::SeqCst), p * n);
        RawMap::unlink(&name);
        rows.push(Row::new(W, "raw AtomicU64 in a mapped page (floor)", p * n, t.as_secs_f64()));
    }
    gate.reset();
    {
        let seg = Segment::create(&seg_name("counter"), &Counter::default()).unwrap();
        let ws: Vec<_> = (0..cfg.procs).map(|_| shmem::spawn(&seg, count, n).unwrap()).collect();
        let t = gate.open_when_ready(p);
        join_all(ws);
        let t = t.elapsed();
        assert_eq!(seg.hits().load(), p * n);
        rows.push(Row::new(W, "shmem atomic field", p * n, t.as_secs_f64()));
    }
    let pn = cfg.scale(200_000, 2_000);
    rows.extend(python_row(cfg, W, "Python Value + get_lock()", "counter_locked", pn));
    match cfg.python("counter_unlocked", pn) {
        Some(o) => {
            let lost = json::get(&o, "lost");
            let ops = json::get(&o, "ops");
            rows.push(
                Row::new(W, "Python Value, no lock", ops as u64, json::get(&o, "seconds"))
                    .note(format!("WRONG RESULT: lost {lost} of {ops} updates")),
            );
        }
        None => rows.push(python_missing(W, "Python Value, no lock")),
    }
    rows
}

// ------------------------------------------------------------ 2. locked update

#[derive(Shared)]
struct Locked {
    #[shared(lock)]
    values: [i64; 1024],
}

#[shmem::worker]
fn locked_worker(seg: &Segment<Locked>, n: u64) {
    Gate::arrive();
    for _ in 0..n {
        let mut values = seg.values().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        values.iter_mut().for_each(|v| *v += 1);
    }
}

pub fn locked_update(cfg: &Cfg, gate: &Gate) -> Vec<Row> {
    const W: &str = "locked update";
    let (m, p) = (cfg.scale(100_000, 1_000), cfg.procs as u64);
    let mut rows = Vec::new();
    for robust in [false, true] {
        gate.reset();
        let name = seg_name(if robust { "robust" } else { "pthread" });
        let map = RawMap::open(&name, 64 + 8 * 1024, true);
        init_pthread_mutex(&map, robust);
        let children = peers::start("pthread", &name, m, cfg.procs);
        let t = gate.open_when_ready(p);
        peers::join(children);
        let t = t.elapsed();
        // SAFETY: all children exited; nobody else uses the memory.
        assert!(unsafe { (*map.values()).iter().all(|v| *v == (p * m) as i64) });
        RawMap::unlink(&name);
        let variant =
            if robust { "pthread mutex, process-shared + robust" } else { "pthread mutex, process-shared (reference)" };
        rows.push(Row::new(W, variant, p * m, t.as_secs_f64()));
    }
    gate.reset();
    {
        let name = seg_name("raw-sync");
        let map = RawMap::open(&name, 64 + 8 * 1024, true);
        assert!(<raw_sync::locks::Mutex as raw_sync::locks::LockInit>::size_of(Some(map.ptr)) <= 64);
        // SAFETY: fresh mapping, nobody else uses it yet.
        let (lock, _) =
            unsafe { <raw_sync::locks::Mutex as raw_sync::locks::LockInit>::new(map.ptr, map.values().cast()) }
                .unwrap();
        let children = peers::start("raw_sync", &name, m, cfg.procs);
        let t = gate.open_when_ready(p);
        peers::join(children);
        let t = t.elapsed();
        drop(lock);
        // SAFETY: all children exited.
        assert!(unsafe { (*map.values()).iter().all(|v| *v == (p * m) as i64) });
        RawMap::unlink(&name);
        rows.push(Row::new(W, "raw_sync Mutex", p * m, t.as_secs_f64()));
    }
    gate.reset();
    {
        let seg = Segment::<Locked>::create_zeroed(&seg_name("locked")).unwrap();
        let ws: Vec<_> = (0..cfg.procs).map(|_| shmem::spawn(&seg, locked_worker, m).unwrap()).collect();
        let t = gate.open_when_ready(p);
        join_all(ws);
        let t = t.elapsed();
        assert!(seg.values().lock().unwrap().iter().all(|v| *v == (p * m) as i64));
        rows.push(Row::new(W, "shmem #[shared(lock)] (crash-safe)", p * m, t.as_secs_f64()));
    }
    let am = cfg.scale(2_000, 50);
    rows.extend(python_row(cfg, W, "Python Array + get_lock()", "array_locked", am));
    rows
}

// ------------------------------------------------------------ 3. uncontended lock + unlock

pub fn uncontended(cfg: &Cfg, _gate: &Gate) -> Vec<Row> {
    const W: &str = "uncontended lock+unlock";
    let k = cfg.scale(20_000_000, 100_000);
    let mut rows = Vec::new();
    for robust in [false, true] {
        let name = seg_name("uncontended");
        let map = RawMap::open(&name, 64 + 8 * 1024, true);
        init_pthread_mutex(&map, robust);
        let t = Instant::now();
        for _ in 0..k {
            pthread_lock(&map);
            pthread_unlock(&map);
        }
        let t = t.elapsed();
        RawMap::unlink(&name);
        let variant = if robust { "pthread mutex, robust" } else { "pthread mutex (reference)" };
        rows.push(Row::new(W, variant, k, t.as_secs_f64()));
    }
    {
        let name = seg_name("uncontended-raw-sync");
        let map = RawMap::open(&name, 64 + 8 * 1024, true);
        // SAFETY: fresh mapping, used by this process only.
        let (lock, _) =
            unsafe { <raw_sync::locks::Mutex as raw_sync::locks::LockInit>::new(map.ptr, map.values().cast()) }
                .unwrap();
        let t = Instant::now();
        for _ in 0..k {
            drop(lock.lock().unwrap());
        }
        let t = t.elapsed();
        drop(lock);
        RawMap::unlink(&name);
        rows.push(Row::new(W, "raw_sync Mutex", k, t.as_secs_f64()));
    }
    {
        let seg = Segment::<Locked>::create_zeroed(&seg_name("uncontended-shmem")).unwrap();
        let t = Instant::now();
        for _ in 0..k {
            drop(seg.values().lock());
        }
        rows.push(Row::new(W, "shmem Mutex (crash-safe)", k, t.elapsed().as_secs_f64()));
    }
    rows
}

// ------------------------------------------------------------ 3b. read locks and seqlock reads

#[derive(Shared)]
struct Readers {
    #[shared(rwlock)]
    table: [u64; 16],
    #[shared(seqlock)]
    words: [u64; 512],
    #[shared(seqlock)]
    bytes: [u8; 4096],
}

#[shmem::worker]
fn rw_reader_worker(seg: &Segment<Readers>, n: u64) {
    Gate::arrive();
    for _ in 0..n {
        let g = seg.table().read().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::hint::black_box(g[0]);
    }
}

/// RwLock read lock + unlock, alone and with readers in several processes
/// (the per-process reader slots that let a reader die are on this path),
/// and SeqLock reads of 4 KiB as words and as bytes.
pub fn readers(cfg: &Cfg, gate: &Gate) -> Vec<Row> {
    const W: &str = "read lock+unlock";
    let k = cfg.scale(20_000_000, 100_000);
    let mut rows = Vec::new();
    {
        let name = seg_name("rwlock-pthread");
        let map = RawMap::open(&name, 64 + 8 * 1024, true);
        let rw = map.ptr.cast::<libc::pthread_rwlock_t>();
        // SAFETY: fresh mapping used by this process only; the attribute
        // lives on our stack; `pthread_rwlock_t` (56 bytes) fits the 64-byte slot.
        unsafe {
            let mut attr: libc::pthread_rwlockattr_t = std::mem::zeroed();
            libc::pthread_rwlockattr_init(&mut attr);
            libc::pthread_rwlockattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            assert_eq!(libc::pthread_rwlock_init(rw, &attr), 0);
        }
        let t = Instant::now();
        for _ in 0..k {
            // SAFETY: an initialised process-shared rwlock in mapped memory.
            unsafe {
                libc::pthread_rwlock_rdlock(rw);
                libc::pthread_rwlock_unlock(rw);
            }
        }
        let t = t.elapsed();
        RawMap::unlink(&name);
        rows.push(Row::new(W, "pthread rwlock, process-shared, uncontended (reference)", k, t.as_secs_f64()));
    }
    let seg = Segment::<Readers>::create_zeroed(&seg_name("readers")).unwrap();
    {
        let t = Instant::now();
        for _ in 0..k {
            let g = seg.table().read().unwrap();
            std::hint::black_box(g[0]);
        }
        rows.push(Row::new(W, "shmem RwLock read (crash-safe readers), uncontended", k, t.elapsed().as_secs_f64()));
    }
    {
        gate.reset();
        let (m, p) = (cfg.scale(2_000_000, 10_000), cfg.procs as u64);
        let ws: Vec<_> = (0..cfg.procs).map(|_| shmem::spawn(&seg, rw_reader_worker, m).unwrap()).collect();
        let t = gate.open_when_ready(p);
        join_all(ws);
        let variant = format!("shmem RwLock read, readers in {p} processes");
        rows.push(Row::new(W, &variant, p * m, t.elapsed().as_secs_f64()));
    }
    const S: &str = "SeqLock read of 4 KiB";
    let n = cfg.scale(2_000_000, 10_000);
    {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(seg.words().read().unwrap());
        }
        rows.push(Row::new(S, "[u64; 512] (reference)", n, t.elapsed().as_secs_f64()));
    }
    {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(seg.bytes().read().unwrap());
        }
        rows.push(Row::new(S, "[u8; 4096]", n, t.elapsed().as_secs_f64()));
    }
    rows
}

// ------------------------------------------------------------ 4. dict

type Dict = Map<u32, u64, 16384>;

/// The striping reference: the same table behind one lock.
#[derive(Clone, Copy, Pod, Zeroable)]
#[bytemuck(crate = "shmem::bytemuck")]
#[repr(C)]
struct Slot {
    key: u32,
    used: u32,
    value: u64,
}

#[derive(Shared)]
struct OneLock {
    #[shared(lock)]
    slots: [Slot; 16384],
}

fn one_lock_index(slots: &[Slot; 16384], key: u32) -> usize {
    let mut i = (key.wrapping_mul(0x9E37_79B1) >> 18) as usize;
    while slots[i].used != 0 && slots[i].key != key {
        i = (i + 1) % slots.len();
    }
    i
}

/// The `j`-th key a process visits: its own 1,000 keys from `start`, or
/// (when `stride` > 1) the shared keys `0..1000` in its own order.
fn key(start: u32, stride: u32, j: u32) -> u32 {
    start + (j * stride) % 1000
}

/// `[start, rounds, stride, shared]`: waits at the gate, then calls
/// `op(key, round, shared)` for 1,000 keys per round (see [`key`]); with
/// `shared` other processes may have overwritten a value.
fn for_each_key(args: [u32; 4], mut op: impl FnMut(u32, u64, bool)) {
    let [start, rounds, stride, shared] = args;
    Gate::arrive();
    for round in 0..u64::from(rounds) {
        for j in 0..1000 {
            op(key(start, stride, j), round, shared == 1);
        }
    }
}

/// Set then get each key in the `Map`.
#[shmem::worker]
fn dict_worker(seg: &Segment<Dict>, args: [u32; 4]) {
    for_each_key(args, |k, round, shared| {
        seg.insert(k, round).expect("room");
        let got = seg.get(&k);
        assert!(got == Some(round) || (shared && got.is_some()));
    });
}

/// Set then get each key in the one-lock table.
#[shmem::worker]
fn one_lock_worker(seg: &Segment<OneLock>, args: [u32; 4]) {
    for_each_key(args, |k, round, shared| {
        {
            let mut slots = seg.slots().lock().unwrap();
            let i = one_lock_index(&slots, k);
            slots[i] = Slot { key: k, used: 1, value: round };
        }
        let slots = seg.slots().lock().unwrap();
        let slot = slots[one_lock_index(&slots, k)];
        assert!(slot.used == 1 && (slot.value == round || shared));
    });
}

/// Runs `procs` workers over a fresh segment of `T` with `[start, rounds,
/// stride, shared]` each; returns the time and the number of keys left.
fn run_dict<T: Shared, M>(
    cfg: &Cfg,
    gate: &Gate,
    worker: impl shmem::WorkerFn<T, [u32; 4], M>,
    shared: bool,
    rounds: u32,
    len: impl Fn(&Segment<T>) -> usize,
) -> (f64, usize) {
    gate.reset();
    let seg = Segment::<T>::create_zeroed(&seg_name("dict")).unwrap();
    let ws: Vec<_> = (0..cfg.procs as u32)
        .map(|i| {
            // Strides coprime to 1,000, a different order per process.
            let args = if shared {
                [0, rounds, [1, 7, 11, 13, 17, 19, 23, 29][i as usize % 8], 1]
            } else {
                [i * 1000, rounds, 1, 0]
            };
            shmem::spawn(&seg, worker, args).unwrap()
        })
        .collect();
    let t = gate.open_when_ready(cfg.procs as u64);
    join_all(ws);
    (t.elapsed().as_secs_f64(), len(&seg))
}

pub fn dict(cfg: &Cfg, gate: &Gate) -> Vec<Row> {
    const W: &str = "dict";
    let (rounds, p) = (cfg.scale(200, 2) as u32, cfg.procs);
    let ops = p as u64 * 1000 * u64::from(rounds) * 2;
    let mut rows = Vec::new();
    match cfg.python("dict", cfg.scale(20_000, 2_000)) {
        Some(o) => rows.push(
            Row::new(W, "Python Manager().dict() (reference)", json::get(&o, "ops") as u64, json::get(&o, "seconds"))
                .note("1,000 keys per process"),
        ),
        None => rows.push(python_missing(W, "Python Manager().dict() (reference)")),
    }
    let one_lock_len = |seg: &Segment<OneLock>| seg.slots().lock().unwrap().iter().filter(|s| s.used == 1).count();
    for shared in [false, true] {
        let note = if shared { "all processes on the same 1,000 keys" } else { "1,000 keys per process" };
        let (t, len) = run_dict(cfg, gate, dict_worker, shared, rounds, |seg| seg.len());
        assert_eq!(len, if shared { 1000 } else { p * 1000 });
        let keys = if shared { "shared keys" } else { "own keys" };
        rows.push(Row::new(W, &format!("shmem Map (16 lock stripes), {keys}"), ops, t).note(note));
        let (t, len) = run_dict(cfg, gate, one_lock_worker, shared, rounds, one_lock_len);
        assert_eq!(len, if shared { 1000 } else { p * 1000 });
        rows.push(Row::new(W, &format!("one #[shared(lock)] around a whole table, {keys}"), ops, t).note(note));
    }
    rows
}

// ------------------------------------------------------------ 5. queue 1 -> 1

#[derive(Shared)]
struct Pipe {
    data: Queue<u64, 4096>,
}

#[shmem::worker]
fn produce(seg: &Segment<Pipe>, n: u64) {
    Gate::arrive();
    for i in 0..n {
        seg.data().push(i).expect("open");
    }
    seg.data().close();
}

/// Pushes `0..n` in batches of 64 (`push_slice`: one lock and one
/// publication per batch), then closes.
#[shmem::worker]
fn produce_batches(seg: &Segment<Pipe>, n: u64) {
    Gate::arrive();
    let mut batch = [0u64; 64];
    let mut next = 0;
    while next < n {
        let k = (n - next).min(64) as usize;
        for (i, slot) in batch[..k].iter_mut().enumerate() {
            *slot = next + i as u64;
        }
        seg.data().push_slice(&batch[..k]).expect("open");
        next += k as u64;
    }
    seg.data().close();
}

pub fn queue(cfg: &Cfg, gate: &Gate) -> Vec<Row> {
    const W: &str = "queue 1->1";
    let q = cfg.scale(1_000_000, 20_000);
    let pq = cfg.scale(200_000, 2_000);
    let mut rows = Vec::new();
    for (script, label) in [("queue", "Python multiprocessing.Queue (reference)"), ("pipe", "Python Pipe")] {
        match cfg.python(script, pq) {
            Some(o) => rows.push(Row::new(W, label, json::get(&o, "ops") as u64, json::get(&o, "seconds")).msg_rate()),
            None => rows.push(python_missing(W, label)),
        }
    }
    gate.reset();
    {
        let (server, server_name) = ipc_channel::ipc::IpcOneShotServer::<u64>::new().unwrap();
        let children = peers::start("ipc_producer", &server_name, q, 1);
        let t = gate.open_when_ready(1);
        let (rx, first) = server.accept().unwrap();
        let mut sum = first;
        for _ in 1..q {
            sum += rx.recv().unwrap();
        }
        let t = t.elapsed();
        peers::join(children);
        assert_eq!(sum, q * (q - 1) / 2);
        rows.push(Row::new(W, "ipc-channel", q, t.as_secs_f64()).msg_rate());
    }
    gate.reset();
    {
        let name = format!("shmem-bench/queue-{}", std::process::id());
        let node = ice::node();
        let port = ice::service(&node, &name, ice::QUEUE_BUFFER);
        let subscriber = port.subscriber_builder().create().unwrap();
        let children = peers::start("iceoryx_producer", &name, q, 1);
        let t = gate.open_when_ready(1);
        let (mut got, mut sum) = (0, 0);
        while got < q {
            match subscriber.receive().unwrap() {
                Some(sample) => {
                    sum += *sample.payload();
                    got += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
        let t = t.elapsed();
        peers::join(children);
        assert_eq!(sum, q * (q - 1) / 2);
        rows.push(
            Row::new(W, "iceoryx2 publish-subscribe (lossless)", q, t.as_secs_f64())
                .note(format!("{:.1} M msg/s; subscriber polls", q as f64 / t.as_secs_f64() / 1e6)),
        );
    }
    gate.reset();
    {
        let seg = Segment::<Pipe>::create_zeroed(&seg_name("queue")).unwrap();
        let producer = shmem::spawn(&seg, produce, q).unwrap();
        let t = gate.open_when_ready(1);
        let (mut got, mut sum) = (0u64, 0u64);
        loop {
            match seg.data().pop() {
                Ok(v) => {
                    got += 1;
                    sum += v;
                }
                Err(PopError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let t = t.elapsed();
        producer.join().unwrap();
        assert_eq!((got, sum), (q, q * (q - 1) / 2));
        rows.push(Row::new(W, "shmem Queue (blocking push/pop)", q, t.as_secs_f64()).msg_rate());
    }
    gate.reset();
    {
        // u64 items in batches of 64: push_slice / pop_into.
        let n = q * 8;
        let seg = Segment::<Pipe>::create_zeroed(&seg_name("queue-batch")).unwrap();
        let producer = shmem::spawn(&seg, produce_batches, n).unwrap();
        let t = gate.open_when_ready(1);
        let (mut got, mut sum) = (0u64, 0u64);
        let mut buf = [0u64; 64];
        loop {
            match seg.data().pop_into(&mut buf) {
                Ok(k) => {
                    got += k as u64;
                    sum += buf[..k].iter().sum::<u64>();
                }
                Err(PopError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let t = t.elapsed();
        producer.join().unwrap();
        assert_eq!((got, sum), (n, n * (n - 1) / 2));
        rows.push(Row::new(W, "shmem Queue, batches of 64 (push_slice/pop_into)", n, t.as_secs_f64()).msg_rate());
    }
    rows
}

// ------------------------------------------------------------ 6. queue P -> P

#[derive(Shared)]
struct Work {
    data: Queue<u64, 4096>,
    producers_done: u64,
    received: u64,
    sum: u64,
}

/// `[first, count, producers]`.
#[shmem::worker]
fn mpmc_produce(seg: &Segment<Work>, args: [u64; 3]) {
    let [first, count, producers] = args;
    Gate::arrive();
    for i in first..first + count {
        seg.data().push(i).expect("open");
    }
    if seg.producers_done().fetch_add(1) + 1 == producers {
        seg.data().close();
    }
}

#[shmem::worker]
fn mpmc_consume(seg: &Segment<Work>) {
    Gate::arrive();
    let (mut n, mut sum) = (0, 0);
    while let Ok(v) = seg.data().pop() {
        n += 1;
        sum += v;
    }
    seg.received().fetch_add(n);
    seg.sum().fetch_add(sum);
}

pub fn queue_mpmc(cfg: &Cfg, gate: &Gate) -> Vec<Row> {
    let w = &format!("queue {0}->{0}", cfg.procs);
    let p = cfg.procs as u64;
    let q = cfg.scale(1_000_000, 20_000) / p * p;
    let mut rows = Vec::new();
    match cfg.python("queue_mpmc", cfg.scale(200_000, 2_000)) {
        Some(o) => rows.push(
            Row::new(
                w,
                "Python multiprocessing.Queue (reference)",
                json::get(&o, "ops") as u64,
                json::get(&o, "seconds"),
            )
            .msg_rate(),
        ),
        None => rows.push(python_missing(w, "Python multiprocessing.Queue (reference)")),
    }
    rows.push(Row::missing(w, "Python Pipe", "point to point: one reader and one writer per end"));
    rows.push(Row::missing(w, "ipc-channel", "a receiver cannot be shared by several processes"));
    rows.push(Row::missing(
        w,
        "iceoryx2 publish-subscribe",
        "every subscriber gets every sample (broadcast, not a work queue)",
    ));
    gate.reset();
    {
        let seg = Segment::<Work>::create_zeroed(&seg_name("mpmc")).unwrap();
        let mut ws: Vec<_> = (0..cfg.procs).map(|_| shmem::spawn(&seg, mpmc_consume, ()).unwrap()).collect();
        ws.extend((0..p).map(|i| shmem::spawn(&seg, mpmc_produce, [i * (q / p), q / p, p]).unwrap()));
        let t = gate.open_when_ready(2 * p);
        join_all(ws);
        let t = t.elapsed();
        assert_eq!((seg.received().load(), seg.sum().load()), (q, q * (q - 1) / 2));
        rows.push(Row::new(w, "shmem Queue (blocking push/pop)", q, t.as_secs_f64()).msg_rate());
    }
    rows
}

// ------------------------------------------------------------ 7. ping-pong

#[derive(Shared)]
struct PingPong {
    ping: Queue<u64, 16>,
    pong: Queue<u64, 16>,
    turn: u32,
}

/// `spin` 1: poll with try_pop; 0: blocking pop.
#[shmem::worker]
fn pong(seg: &Segment<PingPong>, spin: u32) {
    loop {
        let v = if spin == 1 {
            match seg.ping().try_pop() {
                Ok(v) => v,
                Err(PopError::Empty) => {
                    std::hint::spin_loop();
                    continue;
                }
                Err(_) => return,
            }
        } else {
            match seg.ping().pop() {
                Ok(v) => v,
                Err(_) => return,
            }
        };
        let mut item = v;
        while let Err(PushError::Full(back)) = seg.pong().try_push(item) {
            item = back;
        }
    }
}

/// Answers odd turns with the next even one, sleeping in the kernel between.
#[shmem::worker]
fn pong_futex(seg: &Segment<PingPong>) {
    let mut expect = 1;
    loop {
        let turn = seg.turn().wait_until(|t| t >= expect);
        if turn == u32::MAX {
            return;
        }
        seg.turn().store(turn + 1);
        seg.turn().notify_one();
        expect = turn + 2;
    }
}

/// Median and p99 of `rt` timed round trips of `one(i)`.
fn round_trips(rt: u64, mut one: impl FnMut(u64)) -> (f64, f64) {
    for i in 0..rt / 10 {
        one(i); // warm up
    }
    let mut rtts: Vec<f64> = (0..rt)
        .map(|i| {
            let t = Instant::now();
            one(i);
            t.elapsed().as_secs_f64()
        })
        .collect();
    rtts.sort_by(f64::total_cmp);
    (rtts[rtts.len() / 2], rtts[rtts.len() * 99 / 100])
}

fn latency_row(w: &str, variant: &str, (median, p99): (f64, f64)) -> Row {
    Row::new(w, variant, 1, median).note(format!("median {:.2} us, p99 {:.2} us", median * 1e6, p99 * 1e6))
}

pub fn ping_pong(cfg: &Cfg, _gate: &Gate) -> Vec<Row> {
    const W: &str = "ping-pong round trip";
    let rt = cfg.scale(100_000, 1_000);
    let mut rows = Vec::new();
    match cfg.python("pingpong_pipe", cfg.scale(20_000, 500)) {
        Some(o) => rows.push(latency_row(
            W,
            "Python Pipe (reference; kernel)",
            (json::get(&o, "median"), json::get(&o, "p99")),
        )),
        None => rows.push(python_missing(W, "Python Pipe (reference; kernel)")),
    }
    {
        use std::io::{Read, Write};
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(&exe)
            .args(["--child", "pipe_pong", "-", "0"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (mut to, mut from) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let stats = round_trips(rt, |i| {
            to.write_all(&i.to_le_bytes()).unwrap();
            let mut back = [0u8; 8];
            from.read_exact(&mut back).unwrap();
            assert_eq!(u64::from_le_bytes(back), i);
        });
        drop(to);
        assert!(child.wait().unwrap().success());
        rows.push(latency_row(W, "pipe between two Rust processes (kernel)", stats));
    }
    {
        type Pair = (ipc_channel::ipc::IpcSender<u64>, ipc_channel::ipc::IpcReceiver<u64>);
        let (server, server_name) = ipc_channel::ipc::IpcOneShotServer::<Pair>::new().unwrap();
        let child = peers::start("ipc_pong", &server_name, 0, 1);
        let (_boot, (ping, pong)) = server.accept().unwrap();
        let stats = round_trips(rt, |i| {
            ping.send(i).unwrap();
            assert_eq!(pong.recv().unwrap(), i);
        });
        drop(ping);
        peers::join(child);
        rows.push(latency_row(W, "ipc-channel (kernel)", stats));
    }
    {
        let seg = Segment::<PingPong>::create_zeroed(&seg_name("pp-futex")).unwrap();
        let child = shmem::spawn(&seg, pong_futex, ()).unwrap();
        let stats = round_trips(rt, |_| {
            let next = seg.turn().load() + 1;
            seg.turn().store(next);
            seg.turn().notify_one();
            seg.turn().wait_until(|t| t == next + 1);
        });
        seg.turn().store(u32::MAX);
        seg.turn().notify_one();
        child.join().unwrap();
        rows.push(latency_row(W, "shmem wait/notify on a u32 field (spins, then futex)", stats));
    }
    {
        let name = format!("shmem-bench/pp-{}", std::process::id());
        let node = ice::node();
        let ping = ice::service(&node, &format!("{name}/ping"), ice::PING_BUFFER);
        let pong = ice::service(&node, &format!("{name}/pong"), ice::PING_BUFFER);
        let subscriber = pong.subscriber_builder().create().unwrap();
        let child = peers::start_piped("iceoryx_pong", &name, 0);
        let publisher = ice::publisher(&ping);
        let stats = round_trips(rt, |i| {
            assert_eq!(publisher.send_copy(i).unwrap(), 1);
            loop {
                if let Some(sample) = subscriber.receive().unwrap() {
                    assert_eq!(*sample.payload(), i);
                    break;
                }
                std::hint::spin_loop();
            }
        });
        publisher.send_copy(u64::MAX).unwrap();
        peers::join(vec![child]);
        rows.push(latency_row(W, "iceoryx2 publish-subscribe (both spin)", stats));
    }
    for (spin, variant) in
        [(1, "shmem Queue, try_pop (both spin)"), (0, "shmem Queue, blocking pop (spins ~25 us, then futex)")]
    {
        let seg = Segment::<PingPong>::create_zeroed(&seg_name("pingpong")).unwrap();
        let child = shmem::spawn(&seg, pong, spin).unwrap();
        let stats = round_trips(rt, |i| {
            seg.ping().push(i).unwrap();
            if spin == 1 {
                loop {
                    match seg.pong().try_pop() {
                        Ok(v) => break assert_eq!(v, i),
                        Err(_) => std::hint::spin_loop(),
                    }
                }
            } else {
                assert_eq!(seg.pong().pop(), Ok(i));
            }
        });
        seg.ping().close();
        child.join().unwrap();
        rows.push(latency_row(W, variant, stats));
    }
    rows
}

// ------------------------------------------------------------ 8. spawn

#[shmem::worker]
fn noop(_seg: &Segment<Counter>) {}

pub fn spawn(cfg: &Cfg, _gate: &Gate) -> Vec<Row> {
    const W: &str = "spawn + join";
    let s = cfg.scale(200, 10);
    let mut rows = Vec::new();
    {
        let exe = std::env::current_exe().unwrap();
        let t = Instant::now();
        for _ in 0..s {
            assert!(Command::new(&exe).args(["--child", "noop", "-", "0"]).status().unwrap().success());
        }
        rows.push(Row::new(W, "std Command of the same binary (reference)", s, t.elapsed().as_secs_f64()));
    }
    {
        let seg = Segment::create(&seg_name("spawn"), &Counter::default()).unwrap();
        let t = Instant::now();
        for _ in 0..s {
            shmem::spawn(&seg, noop, ()).unwrap().join().unwrap();
        }
        rows.push(Row::new(W, "shmem::spawn worker (attach + run)", s, t.elapsed().as_secs_f64()));
    }
    rows.extend(python_row(cfg, W, "Python Process (spawn start method)", "spawn", cfg.scale(50, 3)));
    rows
}

// ------------------------------------------------------------ 9. attach

pub fn attach(cfg: &Cfg, _gate: &Gate) -> Vec<Row> {
    const W: &str = "attach";
    let a = cfg.scale(20_000, 200);
    let mut rows = Vec::new();
    {
        let name = seg_name("attach-raw");
        drop(RawMap::open(&name, 4096, true));
        let t = Instant::now();
        for _ in 0..a {
            drop(RawMap::open(&name, 4096, false));
        }
        RawMap::unlink(&name);
        rows.push(Row::new(W, "raw shm_open + mmap (reference)", a, t.elapsed().as_secs_f64()));
    }
    {
        let name = seg_name("attach");
        let _owner = Segment::create(&name, &Counter::default()).unwrap();
        let t = Instant::now();
        for _ in 0..a {
            drop(Segment::<Counter>::attach(&name).unwrap());
        }
        rows.push(Row::new(W, "shmem attach (validates header + layout)", a, t.elapsed().as_secs_f64()));
    }
    rows
}
