//! shmem benchmarks: every workload in real separate processes, each figure
//! reported as a ratio to a reference measured in the same run.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml [-- --quick] [--processes N]`
//! writes `bench/results/latest.md` and `bench/results/latest.svg`.
//!
//! References: the hardware floor (a raw `AtomicU64` in a mapped /dev/shm
//! page), process-shared pthread mutexes (plain and robust, via libc), raw
//! `shm_open` + `mmap`, `std::process::Command`, and Python's
//! multiprocessing (scripts in `bench/python/`), `raw_sync`'s mutex and
//! `ipc-channel`. iceoryx2 is not in this driver yet; see the README.

use shmem::{Map, PopError, Queue, Segment, Shared};
use std::ffi::CString;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ------------------------------------------------------------ shared state

#[derive(Shared, Default)]
struct Counter {
    hits: u64,
}

#[derive(Shared)]
struct Locked {
    #[shared(lock)]
    values: [i64; 1024],
}

type Dict = Map<u32, u64, 4096>;

#[derive(Shared)]
struct Pipe {
    data: Queue<u64, 4096>,
}

#[derive(Shared)]
struct PingPong {
    ping: Queue<u64, 16>,
    pong: Queue<u64, 16>,
}

// ------------------------------------------------------------ shmem workers

#[shmem::worker]
fn count(seg: &Segment<Counter>, n: u64) {
    for _ in 0..n {
        seg.hits().fetch_add(1);
    }
}

#[shmem::worker]
fn locked_update(seg: &Segment<Locked>, n: u64) {
    for _ in 0..n {
        let mut values = seg.values().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        values.iter_mut().for_each(|v| *v += 1);
    }
}

#[shmem::worker]
fn dict_worker(seg: &Segment<Dict>, args: [u32; 2]) {
    let [start, rounds] = args;
    for round in 0..u64::from(rounds) {
        for k in start..start + 1000 {
            seg.insert(k, round).expect("room");
            assert_eq!(seg.get(&k), Some(round));
        }
    }
}

#[shmem::worker]
fn produce(seg: &Segment<Pipe>, n: u64) {
    for i in 0..n {
        seg.data().push(i).expect("open");
    }
    seg.data().close();
}

#[shmem::worker]
fn pong(seg: &Segment<PingPong>) {
    while let Ok(v) = seg.ping().pop() {
        seg.pong().push(v).expect("open");
    }
}

#[shmem::worker]
fn noop(_seg: &Segment<Counter>) {}

// ------------------------------------------------------------ raw references

/// A mapped `/dev/shm` file, for the references that bypass shmem.
struct RawMap {
    ptr: *mut u8,
    len: usize,
}

impl RawMap {
    fn open(name: &str, len: usize, create: bool) -> RawMap {
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

    fn unlink(name: &str) {
        let cname = CString::new(format!("/{name}")).unwrap();
        // SAFETY: valid C string.
        unsafe { libc::shm_unlink(cname.as_ptr()) };
    }

    fn atomic(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned, at least 8 bytes, and lives as long as `self`.
        unsafe { &*self.ptr.cast::<AtomicU64>() }
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.ptr.cast()
    }

    fn values(&self) -> *mut [i64; 1024] {
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

fn init_pthread_mutex(map: &RawMap, robust: bool) {
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

fn pthread_lock(map: &RawMap) {
    // SAFETY: an initialised process-shared mutex in mapped memory.
    let rc = unsafe { libc::pthread_mutex_lock(map.mutex()) };
    if rc == libc::EOWNERDEAD {
        // SAFETY: as above; we own it now.
        unsafe { libc::pthread_mutex_consistent(map.mutex()) };
    }
}

fn pthread_unlock(map: &RawMap) {
    // SAFETY: locked by `pthread_lock` in this thread.
    unsafe { libc::pthread_mutex_unlock(map.mutex()) };
}

/// Children of the raw references: `--child KIND NAME N`.
fn child_main(args: &[String]) {
    let (kind, name, n) = (args[0].as_str(), args[1].as_str(), args[2].parse::<u64>().unwrap());
    match kind {
        "floor" => {
            let map = RawMap::open(name, 4096, false);
            for _ in 0..n {
                map.atomic().fetch_add(1, Ordering::SeqCst);
            }
        }
        "pthread" => {
            let map = RawMap::open(name, 64 + 8 * 1024, false);
            for _ in 0..n {
                pthread_lock(&map);
                // SAFETY: the mutex is held.
                unsafe { (*map.values()).iter_mut().for_each(|v| *v += 1) };
                pthread_unlock(&map);
            }
        }
        "raw_sync" => {
            let map = RawMap::open(name, 64 + 8 * 1024, false);
            // SAFETY: the parent initialised a raw_sync mutex at the start of
            // the mapping, guarding the array after it.
            let (lock, _) = unsafe {
                <raw_sync::locks::Mutex as raw_sync::locks::LockInit>::from_existing(map.ptr, map.values().cast())
            }
            .unwrap();
            for _ in 0..n {
                let guard = lock.lock().unwrap();
                // SAFETY: the lock is held; the data pointer is the array.
                unsafe { (*(*guard).cast::<[i64; 1024]>()).iter_mut().for_each(|v| *v += 1) };
            }
        }
        "ipc_producer" => {
            let tx = ipc_channel::ipc::IpcSender::<u64>::connect(name.to_owned()).unwrap();
            for i in 0..n {
                tx.send(i).unwrap();
            }
        }
        "ipc_pong" => {
            let (ping_tx, ping_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
            let (pong_tx, pong_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
            let boot = ipc_channel::ipc::IpcSender::connect(name.to_owned()).unwrap();
            boot.send((ping_tx, pong_rx)).unwrap();
            while let Ok(v) = ping_rx.recv() {
                pong_tx.send(v).unwrap();
            }
        }
        "noop" => {}
        _ => panic!("unknown child {kind}"),
    }
}

fn run_children(kind: &str, name: &str, n: u64, procs: usize) -> Duration {
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let children: Vec<_> =
        (0..procs).map(|_| Command::new(&exe).args(["--child", kind, name, &n.to_string()]).spawn().unwrap()).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    start.elapsed()
}

// ------------------------------------------------------------ results

struct Row {
    workload: &'static str,
    variant: String,
    ops: u64,
    seconds: f64,
    note: String,
}

impl Row {
    fn ns_per_op(&self) -> f64 {
        self.seconds * 1e9 / self.ops as f64
    }
}

fn python(workload: &str, n: u64) -> Option<serde_like::Obj> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/baselines.py");
    let out = Command::new("python3").args([script, workload, &n.to_string()]).output().ok()?;
    if !out.status.success() {
        eprintln!("python {workload} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_like::parse(String::from_utf8_lossy(&out.stdout).trim())
}

/// Just enough JSON reading for the Python scripts' flat objects of numbers.
mod serde_like {
    pub type Obj = Vec<(String, f64)>;
    pub fn parse(s: &str) -> Option<Obj> {
        let body = s.strip_prefix('{')?.strip_suffix('}')?;
        body.split(',')
            .map(|kv| {
                let (k, v) = kv.split_once(':')?;
                Some((k.trim().trim_matches('"').to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }
    pub fn get(o: &Obj, k: &str) -> f64 {
        o.iter().find(|(key, _)| key == k).map_or(f64::NAN, |(_, v)| *v)
    }
}

fn seg_name(tag: &str) -> String {
    format!("shmem-bench-{tag}-{}", std::process::id())
}

fn main() {
    shmem::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child_main(&args[1..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let procs: usize =
        args.iter().position(|a| a == "--processes").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(2);
    let scale = |full: u64, small: u64| if quick { small } else { full };
    let mut rows: Vec<Row> = Vec::new();
    let p = procs as u64;

    // 1. counter
    let n = scale(5_000_000, 20_000);
    {
        let name = seg_name("floor");
        let map = RawMap::open(&name, 4096, true);
        let t = run_children("floor", &name, n, procs);
        assert_eq!(map.atomic().load(Ordering::SeqCst), p * n);
        RawMap::unlink(&name);
        rows.push(Row {
            workload: "counter",
            variant: "raw AtomicU64 in a mapped page (floor)".into(),
            ops: p * n,
            seconds: t.as_secs_f64(),
            note: String::new(),
        });
    }
    {
        let seg = Segment::create(&seg_name("counter"), &Counter::default()).unwrap();
        let t = Instant::now();
        let ws: Vec<_> = (0..procs).map(|_| shmem::spawn(&seg, count, n).unwrap()).collect();
        ws.into_iter().for_each(|w| {
            w.join().unwrap();
        });
        let t = t.elapsed();
        assert_eq!(seg.hits().load(), p * n);
        rows.push(Row {
            workload: "counter",
            variant: "shmem atomic field".into(),
            ops: p * n,
            seconds: t.as_secs_f64(),
            note: String::new(),
        });
    }
    let pn = scale(200_000, 2_000);
    if let Some(o) = python("counter_locked", pn) {
        rows.push(Row {
            workload: "counter",
            variant: "Python Value + get_lock()".into(),
            ops: 2 * pn,
            seconds: serde_like::get(&o, "seconds"),
            note: String::new(),
        });
    }
    if let Some(o) = python("counter_unlocked", pn) {
        let lost = serde_like::get(&o, "lost");
        rows.push(Row {
            workload: "counter",
            variant: "Python Value, no lock".into(),
            ops: 2 * pn,
            seconds: serde_like::get(&o, "seconds"),
            note: format!("lost {lost} of {} updates", 2 * pn),
        });
    }

    // 2. locked update of [i64; 1024]
    let m = scale(100_000, 1_000);
    for robust in [false, true] {
        let name = seg_name(if robust { "robust" } else { "pthread" });
        let map = RawMap::open(&name, 64 + 8 * 1024, true);
        init_pthread_mutex(&map, robust);
        let t = run_children("pthread", &name, m, procs);
        // SAFETY: all children exited; nobody else uses the memory.
        assert!(unsafe { (*map.values()).iter().all(|v| *v == (p * m) as i64) });
        RawMap::unlink(&name);
        let variant =
            if robust { "pthread mutex, process-shared + robust" } else { "pthread mutex, process-shared (reference)" };
        rows.push(Row {
            workload: "locked update",
            variant: variant.into(),
            ops: p * m,
            seconds: t.as_secs_f64(),
            note: String::new(),
        });
    }
    {
        let name = seg_name("raw-sync");
        let map = RawMap::open(&name, 64 + 8 * 1024, true);
        assert!(<raw_sync::locks::Mutex as raw_sync::locks::LockInit>::size_of(Some(map.ptr)) <= 64);
        // SAFETY: fresh mapping, nobody else uses it yet.
        let (lock, _) =
            unsafe { <raw_sync::locks::Mutex as raw_sync::locks::LockInit>::new(map.ptr, map.values().cast()) }
                .unwrap();
        let t = run_children("raw_sync", &name, m, procs);
        drop(lock);
        // SAFETY: all children exited.
        assert!(unsafe { (*map.values()).iter().all(|v| *v == (p * m) as i64) });
        RawMap::unlink(&name);
        rows.push(Row {
            workload: "locked update",
            variant: "raw_sync Mutex".into(),
            ops: p * m,
            seconds: t.as_secs_f64(),
            note: String::new(),
        });
    }
    {
        let seg = Segment::<Locked>::create_zeroed(&seg_name("locked")).unwrap();
        let t = Instant::now();
        let ws: Vec<_> = (0..procs).map(|_| shmem::spawn(&seg, locked_update, m).unwrap()).collect();
        ws.into_iter().for_each(|w| {
            w.join().unwrap();
        });
        let t = t.elapsed();
        assert!(seg.values().lock().unwrap().iter().all(|v| *v == (p * m) as i64));
        rows.push(Row {
            workload: "locked update",
            variant: "shmem #[shared(lock)]".into(),
            ops: p * m,
            seconds: t.as_secs_f64(),
            note: String::new(),
        });
    }
    let am = scale(2_000, 50);
    if let Some(o) = python("array_locked", am) {
        rows.push(Row {
            workload: "locked update",
            variant: "Python Array + get_lock()".into(),
            ops: 2 * am,
            seconds: serde_like::get(&o, "seconds"),
            note: String::new(),
        });
    }

    // 3. uncontended lock + unlock
    let k = scale(20_000_000, 100_000);
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
        rows.push(Row {
            workload: "uncontended lock+unlock",
            variant: variant.into(),
            ops: k,
            seconds: t.as_secs_f64(),
            note: String::new(),
        });
    }
    {
        let seg = Segment::<Locked>::create_zeroed(&seg_name("uncontended-shmem")).unwrap();
        let t = Instant::now();
        for _ in 0..k {
            drop(seg.values().lock());
        }
        rows.push(Row {
            workload: "uncontended lock+unlock",
            variant: "shmem Mutex (crash-safe)".into(),
            ops: k,
            seconds: t.elapsed().as_secs_f64(),
            note: String::new(),
        });
    }

    // 4. dict: set + get over 1,000 keys per process
    let rounds = scale(200, 2) as u32;
    let mut dict_rows = Vec::new();
    if let Some(o) = python("dict", scale(20_000, 2_000)) {
        dict_rows.push(Row {
            workload: "dict",
            variant: "Python Manager().dict() (reference)".into(),
            ops: serde_like::get(&o, "ops") as u64,
            seconds: serde_like::get(&o, "seconds"),
            note: String::new(),
        });
    }
    {
        let seg = Segment::<Dict>::create_zeroed(&seg_name("dict")).unwrap();
        let t = Instant::now();
        let ws: Vec<_> =
            (0..procs as u32).map(|i| shmem::spawn(&seg, dict_worker, [i * 1000, rounds]).unwrap()).collect();
        ws.into_iter().for_each(|w| {
            w.join().unwrap();
        });
        let t = t.elapsed();
        assert_eq!(seg.len(), procs * 1000);
        dict_rows.push(Row {
            workload: "dict",
            variant: "shmem Map".into(),
            ops: p * 1000 * u64::from(rounds) * 2,
            seconds: t.as_secs_f64(),
            note: String::new(),
        });
    }
    rows.extend(dict_rows);

    // 5. queue throughput, 1 producer -> 1 consumer
    let q = scale(1_000_000, 20_000);
    let mut queue_rows = Vec::new();
    for (script, label) in [("queue", "Python multiprocessing.Queue (reference)"), ("pipe", "Python Pipe")] {
        if let Some(o) = python(script, scale(200_000, 2_000)) {
            queue_rows.push(Row {
                workload: "queue 1->1",
                variant: label.into(),
                ops: serde_like::get(&o, "ops") as u64,
                seconds: serde_like::get(&o, "seconds"),
                note: String::new(),
            });
        }
    }
    {
        let (server, server_name) = ipc_channel::ipc::IpcOneShotServer::<u64>::new().unwrap();
        let exe = std::env::current_exe().unwrap();
        let t = Instant::now();
        let mut child =
            Command::new(&exe).args(["--child", "ipc_producer", &server_name, &q.to_string()]).spawn().unwrap();
        let (rx, first) = server.accept().unwrap();
        let mut sum = first;
        for _ in 1..q {
            sum += rx.recv().unwrap();
        }
        assert!(child.wait().unwrap().success());
        let t = t.elapsed();
        assert_eq!(sum, q * (q - 1) / 2);
        queue_rows.push(Row {
            workload: "queue 1->1",
            variant: "ipc-channel".into(),
            ops: q,
            seconds: t.as_secs_f64(),
            note: format!("{:.1} M msg/s", q as f64 / t.as_secs_f64() / 1e6),
        });
    }
    {
        let seg = Segment::<Pipe>::create_zeroed(&seg_name("queue")).unwrap();
        let t = Instant::now();
        let producer = shmem::spawn(&seg, produce, q).unwrap();
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
        producer.join().unwrap();
        let t = t.elapsed();
        assert_eq!((got, sum), (q, q * (q - 1) / 2));
        queue_rows.push(Row {
            workload: "queue 1->1",
            variant: "shmem Queue".into(),
            ops: q,
            seconds: t.as_secs_f64(),
            note: format!("{:.1} M msg/s", q as f64 / t.as_secs_f64() / 1e6),
        });
    }
    rows.extend(queue_rows);

    // 6. ping-pong latency
    let rt = scale(100_000, 1_000);
    let mut pp_rows = Vec::new();
    if let Some(o) = python("pingpong_pipe", scale(20_000, 500)) {
        let (med, p99) = (serde_like::get(&o, "median"), serde_like::get(&o, "p99"));
        pp_rows.push(Row {
            workload: "ping-pong round trip",
            variant: "Python Pipe (reference)".into(),
            ops: 1,
            seconds: med,
            note: format!("median {:.1} us, p99 {:.1} us", med * 1e6, p99 * 1e6),
        });
    }
    {
        type Pair = (ipc_channel::ipc::IpcSender<u64>, ipc_channel::ipc::IpcReceiver<u64>);
        let (server, server_name) = ipc_channel::ipc::IpcOneShotServer::<Pair>::new().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(&exe).args(["--child", "ipc_pong", &server_name, "0"]).spawn().unwrap();
        let (_boot, (ping, pong)) = server.accept().unwrap();
        ping.send(0).unwrap();
        pong.recv().unwrap();
        let mut rtts: Vec<f64> = (0..rt)
            .map(|i| {
                let t = Instant::now();
                ping.send(i).unwrap();
                assert_eq!(pong.recv().unwrap(), i);
                t.elapsed().as_secs_f64()
            })
            .collect();
        drop(ping);
        assert!(child.wait().unwrap().success());
        rtts.sort_by(f64::total_cmp);
        let (med, p99) = (rtts[rtts.len() / 2], rtts[rtts.len() * 99 / 100]);
        pp_rows.push(Row {
            workload: "ping-pong round trip",
            variant: "ipc-channel".into(),
            ops: 1,
            seconds: med,
            note: format!("median {:.1} us, p99 {:.1} us", med * 1e6, p99 * 1e6),
        });
    }
    {
        let seg = Segment::<PingPong>::create_zeroed(&seg_name("pingpong")).unwrap();
        let child = shmem::spawn(&seg, pong, ()).unwrap();
        seg.ping().push(0).unwrap();
        seg.pong().pop().unwrap();
        let mut rtts: Vec<f64> = (0..rt)
            .map(|i| {
                let t = Instant::now();
                seg.ping().push(i).unwrap();
                assert_eq!(seg.pong().pop(), Ok(i));
                t.elapsed().as_secs_f64()
            })
            .collect();
        seg.ping().close();
        child.join().unwrap();
        rtts.sort_by(f64::total_cmp);
        let (med, p99) = (rtts[rtts.len() / 2], rtts[rtts.len() * 99 / 100]);
        pp_rows.push(Row {
            workload: "ping-pong round trip",
            variant: "shmem Queue (blocking pop)".into(),
            ops: 1,
            seconds: med,
            note: format!("median {:.1} us, p99 {:.1} us", med * 1e6, p99 * 1e6),
        });
    }
    rows.extend(pp_rows);

    // 7. spawn a worker until it has run, then join
    let s = scale(200, 10);
    {
        let exe = std::env::current_exe().unwrap();
        let t = Instant::now();
        for _ in 0..s {
            assert!(Command::new(&exe).args(["--child", "noop", "-", "0"]).status().unwrap().success());
        }
        rows.push(Row {
            workload: "spawn + join",
            variant: "std Command of the same binary (reference)".into(),
            ops: s,
            seconds: t.elapsed().as_secs_f64(),
            note: String::new(),
        });
    }
    {
        let seg = Segment::create(&seg_name("spawn"), &Counter::default()).unwrap();
        let t = Instant::now();
        for _ in 0..s {
            shmem::spawn(&seg, noop, ()).unwrap().join().unwrap();
        }
        rows.push(Row {
            workload: "spawn + join",
            variant: "shmem::spawn worker (attach + run)".into(),
            ops: s,
            seconds: t.elapsed().as_secs_f64(),
            note: String::new(),
        });
    }
    if let Some(o) = python("spawn", scale(50, 3)) {
        rows.push(Row {
            workload: "spawn + join",
            variant: "Python Process (spawn)".into(),
            ops: serde_like::get(&o, "ops") as u64,
            seconds: serde_like::get(&o, "seconds"),
            note: String::new(),
        });
    }

    // 8. attach
    let a = scale(20_000, 200);
    {
        let name = seg_name("attach-raw");
        drop(RawMap::open(&name, 4096, true));
        let t = Instant::now();
        for _ in 0..a {
            drop(RawMap::open(&name, 4096, false));
        }
        RawMap::unlink(&name);
        rows.push(Row {
            workload: "attach",
            variant: "raw shm_open + mmap (reference)".into(),
            ops: a,
            seconds: t.elapsed().as_secs_f64(),
            note: String::new(),
        });
    }
    {
        let name = seg_name("attach");
        let _owner = Segment::create(&name, &Counter::default()).unwrap();
        let t = Instant::now();
        for _ in 0..a {
            drop(Segment::<Counter>::attach(&name).unwrap());
        }
        rows.push(Row {
            workload: "attach",
            variant: "shmem attach (validates header + layout)".into(),
            ops: a,
            seconds: t.elapsed().as_secs_f64(),
            note: String::new(),
        });
    }

    report(&rows, quick, procs);
}

fn report(rows: &[Row], quick: bool, procs: usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Machine: {cores} cores, {cpu}. Processes per workload: {procs}.{}",
        if quick { " QUICK MODE (tiny N, numbers meaningless)." } else { "" }
    );
    let _ = writeln!(
        md,
        "Ratio = time per operation / the first (reference) row of the same workload: below 1 is faster.\n"
    );
    let _ = writeln!(md, "| workload | variant | ops | ns/op | ops/s | ratio | note |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---|");
    let mut svg_rows = Vec::new();
    let mut reference = None;
    let mut last = "";
    for r in rows {
        if r.workload != last {
            reference = Some(r.ns_per_op());
            last = r.workload;
        }
        let ratio = r.ns_per_op() / reference.unwrap_or(f64::NAN);
        let ratio_text =
            if ratio < 0.5 { format!("{ratio:.4} ({:.0}x faster)", 1.0 / ratio) } else { format!("{ratio:.3}") };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.0} | {} | {} |",
            r.workload,
            r.variant,
            r.ops,
            r.ns_per_op(),
            1e9 / r.ns_per_op(),
            ratio_text,
            r.note
        );
        svg_rows.push((format!("{}: {}", r.workload, r.variant), ratio));
    }
    print!("{md}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/results");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/latest.md"), &md).unwrap();
    std::fs::write(format!("{dir}/latest.svg"), svg(&svg_rows)).unwrap();
    eprintln!("wrote {dir}/latest.md and latest.svg");
}

/// A horizontal bar chart of ratios on a log scale (1 = the reference).
fn svg(rows: &[(String, f64)]) -> String {
    let (w, bar, left) = (900.0, 22.0, 430.0);
    let h = 40.0 + bar * rows.len() as f64;
    let scale = |r: f64| (r.max(1e-4).log10() + 4.0) / 6.0 * (w - left - 20.0);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n"
    );
    let one = left + scale(1.0);
    let _ = writeln!(s, "<text x='{left}' y='14'>ratio to reference, log scale (line = 1; left is faster)</text>");
    for (i, (label, ratio)) in rows.iter().enumerate() {
        let y = 24.0 + bar * i as f64;
        let x = scale(*ratio);
        let colour = if *ratio <= 1.0 { "#3a7" } else { "#c84" };
        let _ = writeln!(
            s,
            "<text x='{}' y='{}' text-anchor='end'>{}</text>",
            left - 6.0,
            y + 14.0,
            label.replace('&', "and").replace('<', "&lt;")
        );
        let _ = writeln!(
            s,
            "<rect x='{left}' y='{}' width='{:.1}' height='{}' fill='{colour}'/>",
            y + 3.0,
            x.max(1.0),
            bar - 6.0
        );
        let _ = writeln!(s, "<text x='{:.1}' y='{}'>{:.3}</text>", left + x + 4.0, y + 14.0, ratio);
    }
    let _ = writeln!(s, "<line x1='{one:.1}' y1='20' x2='{one:.1}' y2='{h}' stroke='black'/>\n</svg>");
    s
}
