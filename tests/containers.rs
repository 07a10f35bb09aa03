//! Shared containers across real processes: exactly-once delivery through a
//! Queue, a Map under concurrent random operations, and crash recovery.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, unique_name, wait_output, wait_status};
use shmem::{Error, Map, PopError, Queue, Segment, Shared, Str};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

const IDS: usize = 1 << 18;

#[derive(Shared)]
pub struct Pipeline {
    pub jobs: Queue<u64, 256>,
    pub seen: [u64; IDS / 64],
    pub duplicates: u64,
    pub received: u64,
    pub sum: u64,
}

fn pipeline(tag: &str) -> (String, Segment<Pipeline>) {
    let name = unique_name(tag);
    (name.clone(), Segment::<Pipeline>::create_zeroed(&name).unwrap())
}

fn record(seg: &Segment<Pipeline>, id: u64) {
    let bit = 1u64 << (id % 64);
    if seg.seen()[(id / 64) as usize].fetch_or(bit) & bit != 0 {
        seg.duplicates().fetch_add(1);
    }
    seg.received().fetch_add(1);
    seg.sum().fetch_add(id);
}

const PROCS: u64 = 3;
const SHARED_KEYS: u32 = 40;
const SHARED_BASE: u32 = 1_000_000;

#[derive(Shared)]
pub struct Registry {
    pub entries: Map<u32, u64, 4096>,
    pub increments: u64,
    #[shared(lock)]
    pub last_name: Str<16>,
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

// ---------------------------------------------------------------- children

fn role_producer(args: &[String]) {
    let seg = Segment::<Pipeline>::attach(&args[0]).unwrap();
    let (first, count): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    for id in first..first + count {
        seg.jobs().push(id).unwrap();
    }
}

/// Pushes ids `first..first + count` in batches of 64 (`push_slice`).
fn role_batch_producer(args: &[String]) {
    let seg = Segment::<Pipeline>::attach(&args[0]).unwrap();
    let (first, count): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    let ids: Vec<u64> = (first..first + count).collect();
    for batch in ids.chunks(64) {
        seg.jobs().push_slice(batch).unwrap();
    }
}

/// Pops into a buffer of 64 (`pop_into`) until the queue is closed and drained.
fn role_batch_consumer(args: &[String]) {
    let seg = Segment::<Pipeline>::attach(&args[0]).unwrap();
    let mut buf = [0u64; 64];
    loop {
        match seg.jobs().pop_into(&mut buf) {
            Ok(n) => buf[..n].iter().for_each(|&id| record(&seg, id)),
            Err(PopError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

fn role_consumer(args: &[String]) {
    let seg = Segment::<Pipeline>::attach(&args[0]).unwrap();
    loop {
        match seg.jobs().pop() {
            Ok(id) => record(&seg, id),
            Err(PopError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

fn role_hold_queue_locks(args: &[String]) {
    let seg = Segment::<Pipeline>::attach(&args[0]).unwrap();
    let _held = seg.jobs().hold_locks();
    println!("ready");
    std::thread::sleep(Duration::from_secs(300));
}

fn role_push_forever(args: &[String]) {
    let seg = Segment::<Pipeline>::attach(&args[0]).unwrap();
    println!("ready");
    for id in 0.. {
        seg.jobs().push(id).unwrap();
    }
}

/// Random inserts/removes/updates: on its own keys against a local model
/// (checked at the end), and increments on keys every process shares.
fn role_map_random(args: &[String]) {
    let seg = Segment::<Registry>::attach(&args[0]).unwrap();
    let p: u32 = args[1].parse().unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15 ^ u64::from(p + 1);
    let mut model = HashMap::new();
    let mut increments = 0;
    for step in 0..20_000u64 {
        let r = xorshift(&mut rng);
        if r.is_multiple_of(5) {
            let key = SHARED_BASE + (r >> 8) as u32 % SHARED_KEYS;
            seg.entries().get_or_insert(key, 0).unwrap();
            seg.entries().update(&key, |v| *v += 1).unwrap();
            increments += 1;
            continue;
        }
        let key = p * 10_000 + (r >> 8) as u32 % 300;
        match r % 3 {
            0 => assert_eq!(seg.entries().insert(key, step).unwrap(), model.insert(key, step)),
            1 => assert_eq!(seg.entries().remove(&key), model.remove(&key)),
            _ => {
                let expected = model.get_mut(&key).map(|v| {
                    *v += 7;
                    *v
                });
                assert_eq!(seg.entries().update(&key, |v| *v += 7), expected);
            }
        }
    }
    for key in p * 10_000..p * 10_000 + 300 {
        assert_eq!(seg.entries().get(&key), model.get(&key).copied(), "key {key}");
    }
    seg.increments().fetch_add(increments);
    *seg.last_name().lock().unwrap() = Str::try_from(format!("proc-{p}").as_str()).unwrap();
}

fn role_hold_map_shard(args: &[String]) {
    let seg = Segment::<Registry>::attach(&args[0]).unwrap();
    let _held = seg.entries().hold_shard_dirty(&42);
    println!("ready");
    std::thread::sleep(Duration::from_secs(300));
}

// ---------------------------------------------------------------- tests

fn queue_delivers_every_item_exactly_once() {
    const PRODUCERS: u64 = 3;
    const PER_PRODUCER: u64 = 60_000;
    let (name, seg) = pipeline("queue-mpmc");
    let consumers: Vec<_> = (0..2).map(|_| child("consumer", &[&name]).spawn().unwrap()).collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            child("producer", &[&name, &(p * PER_PRODUCER).to_string(), &PER_PRODUCER.to_string()]).spawn().unwrap()
        })
        .collect();
    for p in producers {
        common::assert_success(&wait_output(p), "producer");
    }
    seg.jobs().close();
    for c in consumers {
        common::assert_success(&wait_output(c), "consumer");
    }
    let total = PRODUCERS * PER_PRODUCER;
    assert_eq!(seg.duplicates().load(), 0);
    assert_eq!(seg.received().load(), total);
    assert_eq!(seg.sum().load(), total * (total - 1) / 2);
    let bits: u32 = seg.seen().iter().map(|w| w.load().count_ones()).sum();
    assert_eq!(bits as u64, total, "every id arrived");
    assert_eq!(seg.jobs().try_pop(), Err(PopError::Closed));
}

/// Batches (`push_slice`, `pop_into`) across processes, mixed with single
/// pushes and pops: every item exactly once.
fn queue_batches_deliver_every_item_exactly_once() {
    const PER_PRODUCER: u64 = 60_000;
    let (name, seg) = pipeline("queue-batches");
    let consumers = [child("batch_consumer", &[&name]).spawn().unwrap(), child("consumer", &[&name]).spawn().unwrap()];
    let producers = [
        child("batch_producer", &[&name, "0", &PER_PRODUCER.to_string()]).spawn().unwrap(),
        child("batch_producer", &[&name, &PER_PRODUCER.to_string(), &PER_PRODUCER.to_string()]).spawn().unwrap(),
        child("producer", &[&name, &(2 * PER_PRODUCER).to_string(), &PER_PRODUCER.to_string()]).spawn().unwrap(),
    ];
    for p in producers {
        common::assert_success(&wait_output(p), "producer");
    }
    seg.jobs().close();
    for c in consumers {
        common::assert_success(&wait_output(c), "consumer");
    }
    let total = 3 * PER_PRODUCER;
    assert_eq!(seg.duplicates().load(), 0);
    assert_eq!(seg.received().load(), total);
    assert_eq!(seg.sum().load(), total * (total - 1) / 2);
    assert_eq!(seg.jobs().try_pop_into(&mut [0; 4]), Err(PopError::Closed));
    assert_eq!(seg.jobs().push_slice(&[1, 2]), Err(shmem::PushError::Closed(0)));
}

fn queue_survives_a_process_killed_holding_its_locks() {
    let (name, seg) = pipeline("queue-kill");
    seg.jobs().push(7).unwrap();
    let mut holder = child("hold_queue_locks", &[&name]).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    holder.kill().unwrap();
    wait_status(&mut holder);
    let start = Instant::now();
    seg.jobs().push_timeout(8, Duration::from_secs(30)).unwrap();
    assert_eq!(seg.jobs().pop_timeout(Duration::from_secs(30)), Ok(7));
    eprintln!("queue recovered from a dead lock holder after {:?}", start.elapsed());
    assert_eq!(seg.jobs().pop(), Ok(8));
    assert!(seg.jobs().is_empty());
}

fn queue_is_consistent_after_a_pusher_is_killed_mid_stream() {
    let (name, seg) = pipeline("queue-midstream");
    for round in 0..5 {
        let mut pusher = child("push_forever", &[&name]).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(pusher.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        // Let it push, and us pop, for a moment; then kill it wherever it is.
        let mut expected = 0;
        let until = Instant::now() + Duration::from_millis(20 + 7 * round);
        while Instant::now() < until {
            if let Ok(id) = seg.jobs().try_pop() {
                assert_eq!(id, expected, "items arrive in order, none lost or torn");
                expected += 1;
            }
        }
        pusher.kill().unwrap();
        wait_status(&mut pusher);
        while let Ok(id) = seg.jobs().pop_timeout(Duration::from_millis(50)) {
            assert_eq!(id, expected);
            expected += 1;
        }
        assert!(expected > 0, "the pusher made progress");
        assert!(seg.jobs().is_empty());
        seg.jobs().push_timeout(1, Duration::from_secs(30)).unwrap();
        assert_eq!(seg.jobs().pop(), Ok(1), "usable after the kill");
    }
}

/// `set_limit` holds pushes of another process at the limit; lifting it
/// lets them fill the queue, in order, none lost.
fn queue_limit_holds_pushers_in_other_processes() {
    let (name, seg) = pipeline("queue-limit");
    seg.jobs().set_limit(3);
    let mut pusher = child("push_forever", &[&name]).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(pusher.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seg.jobs().len() < 3 {
        assert!(Instant::now() < deadline, "the pusher never reached the limit");
        std::thread::yield_now();
    }
    let watch = Instant::now() + Duration::from_millis(200);
    while Instant::now() < watch {
        assert_eq!(seg.jobs().len(), 3, "a push went past the limit");
    }
    seg.jobs().set_limit(0);
    assert_eq!(seg.jobs().limit(), 256);
    while seg.jobs().len() < 256 {
        assert!(Instant::now() < deadline, "the pusher did not fill the queue once the limit was lifted");
        std::thread::yield_now();
    }
    pusher.kill().unwrap();
    wait_status(&mut pusher);
    for expected in 0..256 {
        assert_eq!(seg.jobs().try_pop(), Ok(expected));
    }
}

fn map_random_operations_across_processes() {
    let name = unique_name("map-random");
    let seg = Segment::<Registry>::create_zeroed(&name).unwrap();
    let children: Vec<_> = (0..PROCS).map(|p| child("map_random", &[&name, &p.to_string()]).spawn().unwrap()).collect();
    for c in children {
        common::assert_success(&wait_output(c), "map_random");
    }
    let all = seg.entries().to_hashmap();
    assert_eq!(all.len(), seg.entries().len());
    let shared_total: u64 = (0..SHARED_KEYS).filter_map(|k| all.get(&(SHARED_BASE + k))).sum();
    assert_eq!(shared_total, seg.increments().load(), "no increment on shared keys was lost");
    assert!(all.keys().all(|k| *k >= SHARED_BASE || *k < PROCS as u32 * 10_000), "only keys someone inserted");
    assert!(seg.last_name().lock().unwrap().starts_with("proc-"));
}

fn map_repairs_a_shard_after_its_holder_dies() {
    let name = unique_name("map-kill");
    let seg = Segment::<Registry>::create_zeroed(&name).unwrap();
    for k in 0..100 {
        seg.entries().insert(k, u64::from(k) * 3).unwrap();
    }
    let mut holder = child("hold_map_shard", &[&name]).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    holder.kill().unwrap();
    wait_status(&mut holder);
    assert!(!seg.entries().is_poisoned());
    assert_eq!(seg.entries().get(&42), Some(126), "the shard was taken over and repaired");
    assert!(seg.entries().is_poisoned(), "a dirty shard of a dead holder poisons the map");
    seg.entries().clear_poison();
    assert_eq!(seg.entries().len(), 100);
    for k in 0..100 {
        assert_eq!(seg.entries().remove(&k), Some(u64::from(k) * 3));
    }
    assert!(seg.entries().is_empty());
}

fn container_layouts_are_part_of_the_fingerprint() {
    let name = unique_name("map-fingerprint");
    let _seg = Segment::<Map<Str<32>, u64, 1024>>::create_zeroed(&name).unwrap();
    assert!(matches!(Segment::<Map<Str<16>, u64, 1024>>::attach(&name), Err(Error::LayoutMismatch { .. })));
    assert!(matches!(Segment::<Map<Str<32>, u64, 512>>::attach(&name), Err(Error::LayoutMismatch { .. })));
    assert!(Segment::<Map<Str<32>, u64, 1024>>::attach(&name).is_ok());
    let q = unique_name("queue-fingerprint");
    let _seg = Segment::<Queue<u32, 8>>::create_zeroed(&q).unwrap();
    assert!(matches!(Segment::<Queue<u64, 8>>::attach(&q), Err(Error::LayoutMismatch { .. })));
}

fn main() {
    common::main(
        &[
            ("queue_delivers_every_item_exactly_once", queue_delivers_every_item_exactly_once),
            ("queue_survives_a_process_killed_holding_its_locks", queue_survives_a_process_killed_holding_its_locks),
            ("queue_batches_deliver_every_item_exactly_once", queue_batches_deliver_every_item_exactly_once),
            (
                "queue_is_consistent_after_a_pusher_is_killed_mid_stream",
                queue_is_consistent_after_a_pusher_is_killed_mid_stream,
            ),
            ("queue_limit_holds_pushers_in_other_processes", queue_limit_holds_pushers_in_other_processes),
            ("map_random_operations_across_processes", map_random_operations_across_processes),
            ("map_repairs_a_shard_after_its_holder_dies", map_repairs_a_shard_after_its_holder_dies),
            ("container_layouts_are_part_of_the_fingerprint", container_layouts_are_part_of_the_fingerprint),
        ],
        &[
            ("map_random", role_map_random),
            ("hold_map_shard", role_hold_map_shard),
            ("producer", role_producer),
            ("consumer", role_consumer),
            ("batch_producer", role_batch_producer),
            ("batch_consumer", role_batch_consumer),
            ("hold_queue_locks", role_hold_queue_locks),
            ("push_forever", role_push_forever),
        ],
    );
}
