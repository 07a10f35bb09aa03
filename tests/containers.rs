//! Shared containers across real processes: exactly-once delivery through a
//! Queue, a Map under concurrent random operations, and crash recovery.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, unique_name, wait_output, wait_status};
use shmem::{PopError, Queue, Segment, Shared};
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

// ---------------------------------------------------------------- children

fn role_producer(args: &[String]) {
    let seg = Segment::<Pipeline>::attach(&args[0]).unwrap();
    let (first, count): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    for id in first..first + count {
        seg.jobs().push(id).unwrap();
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

fn main() {
    common::main(
        &[
            ("queue_delivers_every_item_exactly_once", queue_delivers_every_item_exactly_once),
            ("queue_survives_a_process_killed_holding_its_locks", queue_survives_a_process_killed_holding_its_locks),
            (
                "queue_is_consistent_after_a_pusher_is_killed_mid_stream",
                queue_is_consistent_after_a_pusher_is_killed_mid_stream,
            ),
        ],
        &[
            ("producer", role_producer),
            ("consumer", role_consumer),
            ("hold_queue_locks", role_hold_queue_locks),
            ("push_forever", role_push_forever),
        ],
    );
}
