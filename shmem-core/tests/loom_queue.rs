//! A loom model of `Queue` (`containers/queue.rs`): the two locks, the
//! published counters, each side's cached copy of the other's counter, and
//! close.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmem-core --release --test loom_queue`
//!
//! Loom threads play processes. The slots are loom cells under `--cfg loom`,
//! so loom fails the model if a pop could read a slot that its push has not
//! published (or a push overwrite one not yet popped): the Acquire/Release
//! pairs and the lock hand-over that the cached counters rely on are
//! checked, not assumed. Waits are yields that report a timeout (the worst
//! case of spurious wake-ups), so the model checks that every waiter
//! re-checks correctly; it cannot check that a real futex wake is never
//! lost (the multi-process tests and the bounded 100 ms re-check cover that).
#![cfg(loom)]
#![allow(missing_docs, reason = "test")]

use loom::sync::Arc;
use shmem_core::containers::{PopError, PushError, Queue};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 200_000;
    builder.check(f);
}

/// For three threads: one preemption keeps the search to seconds (two take
/// hours), while still covering every interleaving at the atomic operations
/// the threads block or yield at.
fn model3(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 200_000;
    builder.preemption_bound = Some(1);
    builder.check(f);
}

fn push(q: &Queue<u32, 2>, mut v: u32) {
    loop {
        match q.try_push(v) {
            Ok(()) => return,
            // Timeout: the push lock's short wait ran out (real time passes
            // slowly under loom); retry like Full.
            Err(PushError::Full(back) | PushError::Timeout(back)) => v = back,
            Err(e) => panic!("{e}"),
        }
        loom::thread::yield_now();
    }
}

fn pop(q: &Queue<u32, 2>) -> u32 {
    loop {
        match q.try_pop() {
            Ok(v) => return v,
            Err(PopError::Empty | PopError::Timeout) => loom::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Three items through two slots: wrap-around, and the producer's cached
/// `head` refreshed on "full".
#[test]
fn one_to_one_in_order_through_a_full_queue() {
    model(|| {
        let q = Arc::new(Queue::<u32, 2>::new());
        let producer = {
            let q = q.clone();
            loom::thread::spawn(move || (1..=3).for_each(|v| push(&q, v)))
        };
        let got: Vec<u32> = (0..3).map(|_| pop(&q)).collect();
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
    });
}

/// Two consumers share the consumer side's cached `tail`: the second may
/// read a slot on the strength of a `tail` the first one loaded.
#[test]
fn two_consumers_each_get_one_item() {
    model3(|| {
        let q = Arc::new(Queue::<u32, 2>::new());
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                loom::thread::spawn(move || pop(&q))
            })
            .collect();
        push(&q, 1);
        push(&q, 2);
        let mut got: Vec<u32> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert!(q.is_empty());
    });
}

/// Two producers, one consumer: both items arrive exactly once.
#[test]
fn two_producers_deliver_exactly_once() {
    model3(|| {
        let q = Arc::new(Queue::<u32, 2>::new());
        let producers: Vec<_> = (1..=2)
            .map(|v| {
                let q = q.clone();
                loom::thread::spawn(move || push(&q, v))
            })
            .collect();
        let mut got = [pop(&q), pop(&q)];
        producers.into_iter().for_each(|p| p.join().unwrap());
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// A blocking pop (spin, then "sleep") drains what was pushed before
/// `close`, then reports closed; a push after `close` fails.
#[test]
fn blocking_pop_drains_then_sees_close() {
    model(|| {
        let q = Arc::new(Queue::<u32, 2>::new());
        let producer = {
            let q = q.clone();
            loom::thread::spawn(move || {
                q.push(7).unwrap();
                q.close();
                assert_eq!(q.try_push(8), Err(PushError::Closed(8)));
            })
        };
        assert_eq!(q.pop(), Ok(7));
        assert_eq!(q.pop(), Err(PopError::Closed));
        producer.join().unwrap();
    });
}

/// A push racing `close` either fails with `Closed` or its item reaches the
/// consumer, which pops until it is told `Closed`: an accepted item is never
/// stranded behind a close. (The push used to check `closed` before taking
/// its lock, so it could publish after a consumer had already seen the
/// queue empty and closed.)
#[test]
fn push_racing_close_is_never_stranded() {
    model3(|| {
        let q = Arc::new(Queue::<u32, 2>::new());
        let consumer = {
            let q = q.clone();
            loom::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match q.try_pop() {
                        Ok(v) => got.push(v),
                        Err(PopError::Closed) => return got,
                        Err(PopError::Empty | PopError::Timeout) => loom::thread::yield_now(),
                    }
                }
            })
        };
        let pusher = {
            let q = q.clone();
            loom::thread::spawn(move || loop {
                match q.try_push(5) {
                    Ok(()) => return true,
                    Err(PushError::Closed(_)) => return false,
                    Err(_) => loom::thread::yield_now(),
                }
            })
        };
        q.close();
        let pushed = pusher.join().unwrap();
        let got = consumer.join().unwrap();
        assert_eq!(got, if pushed { vec![5] } else { vec![] }, "pushed: {pushed}");
    });
}
