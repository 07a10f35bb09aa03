//! The Rust side of the Python package's interoperability tests
//! (`shmem-py/tests`): a Rust program that opens what Python created, and
//! creates what Python opens. Also a small example of attaching by name.
//!
//! ```text
//! python_peer add NAME N        Segment<i64> NAME: add N, print the new value
//! python_peer add-f64 NAME X    Segment<f64> NAME: add X, print the new value
//! python_peer array NAME        ArraySegment<i32> NAME: add 1 to each, print them
//! python_peer lock NAME         Segment<RawMutex> NAME: lock, print clean|poisoned, unlock
//! python_peer serve NAME        create NAME ([i32; 4] = [1, 2, 3, 4]) and NAME.count (i64),
//!                               print "ready", wait until count is 3, print the array
//! python_peer serve-struct NAME create NAME holding a `Stats` struct, print "ready",
//!                               wait until hits is 3, print its fields
//! python_peer hold-read NAME    attach to NAME as `Stats`, hold a read guard of `limits`,
//!                               print "held", release it when stdin closes
//! python_peer point NAME        attach to NAME as a `Point` (Python declared it), add 1 to
//!                               x and 5 to hist[3], print the fields
//! ```

use shmem::sync::park::Os;
use shmem::sync::raw_mutex::Acquired;
use shmem::{ArraySegment, RawMutex, Segment, Shared};

/// A struct a Python program opens by name, from its schema.
#[derive(Shared, Default)]
struct Stats {
    hits: u64,
    temps: [f32; 3],
    inner: Inner,
    #[shared(lock)]
    log: [u8; 8],
    #[shared(lock)]
    total: u64,
    #[shared(seqlock)]
    pos: [f64; 2],
    #[shared(rwlock)]
    limits: [u32; 2],
    jobs: shmem::Queue<u32, 8>,
    ready: shmem::Event,
    slots: shmem::Semaphore,
    start: shmem::Barrier,
    cache: shmem::Map<u32, u64, 64>,
}

/// A struct a Python program declares and creates (`shmem.Struct.create`).
#[derive(Shared)]
struct Point {
    x: i64,
    y: f64,
    flag: bool,
    hist: [u32; 4],
}

#[derive(Shared, Default)]
struct Inner {
    count: i32,
    on: bool,
}
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, name) = match args.as_slice() {
        [c, n, ..] => (c.as_str(), n.as_str()),
        _ => return Err("usage: python_peer add|add-f64|array|lock|serve NAME [N]".into()),
    };
    match command {
        "add" => {
            let n: i64 = args.get(2).ok_or("add needs N")?.parse()?;
            let v = Segment::<i64>::attach(name)?;
            println!("{}", v.fetch_add(n) + n);
        }
        "add-f64" => {
            let x: f64 = args.get(2).ok_or("add-f64 needs X")?.parse()?;
            let v = Segment::<f64>::attach(name)?;
            println!("{}", v.fetch_add(x) + x);
        }
        "array" => {
            let a = ArraySegment::<i32>::attach(name)?;
            let after: Vec<i32> = a.iter().map(|x| x.fetch_add(1) + 1).collect();
            println!("{after:?}");
        }
        "lock" => {
            let lock = Segment::<RawMutex>::attach(name)?;
            let report = lock.lock_report::<Os>();
            println!("{}", if report == Acquired::OwnerDied { "poisoned" } else { "clean" });
            // SAFETY: a lock on its own (`Segment<RawMutex>`): no guard of a
            // data lock built on it exists.
            unsafe { lock.unlock_if_mine() };
        }
        "serve" => {
            let arr = Segment::<[i32; 4]>::create(name, &[1, 2, 3, 4])?;
            let count = Segment::<i64>::create(&format!("{name}.count"), &0)?;
            println!("ready");
            let start = Instant::now();
            while count.load() < 3 {
                if start.elapsed() > Duration::from_secs(60) {
                    return Err("Python never counted to 3".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let values: Vec<i32> = arr.iter().map(|x| x.load()).collect();
            println!("{values:?}");
        }
        "point" => {
            let p = Segment::<Point>::attach(name)?;
            p.x().fetch_add(1);
            p.hist()[3].fetch_add(5);
            let hist: Vec<u32> = p.hist().iter().map(|h| h.load()).collect();
            println!("x={} y={} flag={} hist={hist:?}", p.x().load(), p.y().load(), p.flag().load());
        }
        "hold-read" => {
            // Holds a read guard of `limits` until its stdin closes.
            let stats = Segment::<Stats>::attach(name)?;
            let guard = stats.limits().read();
            println!("held");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            drop(guard);
        }
        "serve-struct" => {
            let stats = Segment::<Stats>::create(name, &Stats { start: shmem::Barrier::new(2), ..Stats::default() })?;
            stats.pos().write([1.25, -2.5]);
            stats.jobs().try_push(5)?;
            stats.jobs().try_push(6)?;
            stats.ready().set();
            stats.cache().insert(1, 10).map_err(|_| "the cache is full")?;
            println!("ready");
            let start = Instant::now();
            while stats.hits().load() < 3 {
                if start.elapsed() > Duration::from_secs(60) {
                    return Err("Python never counted to 3".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let temps: Vec<f32> = stats.temps().iter().map(|t| t.load()).collect();
            let (log, poisoned) = match stats.log().lock() {
                Ok(g) => (*g, false),
                Err(p) => (*p.into_inner(), true),
            };
            let limits = match stats.limits().read() {
                Ok(g) => *g,
                Err(p) => *p.into_inner(),
            };
            println!(
                "hits={} temps={temps:?} count={} on={} log={:?} poisoned={poisoned} ready={} slots={} limits={limits:?} limits_poisoned={} jobs={:?} cache={:?} cache[2]={:?} cache[3]={:?}",
                stats.hits().load(),
                stats.inner().count().load(),
                stats.inner().on().load(),
                String::from_utf8_lossy(&log),
                stats.ready().is_set(),
                stats.slots().available(),
                stats.limits().is_poisoned(),
                stats.jobs().to_vec(),
                {
                    let mut entries = stats.cache().to_vec();
                    entries.sort_unstable();
                    entries
                },
                stats.cache().get(&2),
                stats.cache().get(&3),
            );
        }
        other => return Err(format!("unknown command {other:?}").into()),
    }
    Ok(())
}
