//! Event, Condvar, Barrier, Semaphore and atomic wait/notify across real
//! processes; timeouts return `TimedOut` and leave the primitive usable.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, unique_name, wait_output};
use shmem::{Barrier, Condvar, Event, Segment, Semaphore, Shared, TimedOut};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

#[derive(Shared, Default)]
pub struct Sync4 {
    pub barrier: Barrier,
    pub arrivals: u64,
    pub leaders: u64,
    pub go: Event,
    pub stage: u32,
    pub permits: Semaphore,
    pub inside: u32,
    pub max_inside: u32,
    pub cv: Condvar,
    #[shared(lock)]
    pub mailbox: [u64; 2],
}

fn create(tag: &str, parties: u32, permits: u32) -> (String, Segment<Sync4>) {
    let name = unique_name(tag);
    let seg = Segment::create(
        &name,
        &Sync4 { barrier: Barrier::new(parties), permits: Semaphore::new(permits), ..Default::default() },
    )
    .unwrap();
    (name, seg)
}

fn run_all(role: &str, name: &str, n: usize, extra: &[&str]) {
    let mut args = vec![name];
    args.extend_from_slice(extra);
    let children: Vec<_> = (0..n).map(|_| child(role, &args).spawn().unwrap()).collect();
    for c in children {
        common::assert_success(&wait_output(c), role);
    }
}

// ---------------------------------------------------------------- children

fn role_barrier_rounds(args: &[String]) {
    let seg = Segment::<Sync4>::attach(&args[0]).unwrap();
    let rounds: u64 = args[1].parse().unwrap();
    let parties = u64::from(seg.barrier().parties());
    for round in 0..rounds {
        seg.arrivals().fetch_add(1);
        if seg.barrier().wait_timeout(LONG).expect("barrier").is_leader() {
            seg.leaders().fetch_add(1);
        }
        let arrived = seg.arrivals().load();
        assert!(arrived >= (round + 1) * parties, "round {round}: passed the barrier with only {arrived} arrivals");
        // A second barrier so nobody starts the next round's arrivals early.
        seg.barrier().wait_timeout(LONG).expect("barrier");
    }
}

fn role_wait_event_then_ack(args: &[String]) {
    let seg = Segment::<Sync4>::attach(&args[0]).unwrap();
    seg.go().wait_timeout(LONG).expect("event");
    seg.stage().fetch_add(1);
    seg.stage().notify_all();
}

fn role_semaphore_worker(args: &[String]) {
    let seg = Segment::<Sync4>::attach(&args[0]).unwrap();
    for _ in 0..50 {
        seg.permits().acquire_timeout(LONG).expect("permit");
        let now = seg.inside().fetch_add(1) + 1;
        seg.max_inside().fetch_max(now);
        std::thread::sleep(Duration::from_micros(200));
        seg.inside().fetch_sub(1);
        seg.permits().release();
    }
}

fn role_condvar_consumer(args: &[String]) {
    let seg = Segment::<Sync4>::attach(&args[0]).unwrap();
    let guard = seg.mailbox().lock().unwrap();
    let (mut mail, timed_out) = seg.cv().wait_timeout_while(guard, LONG, |m| m[0] == 0).unwrap();
    assert!(!timed_out, "never notified");
    mail[1] = mail[0] * 2;
    drop(mail);
    seg.cv().notify_all();
}

fn role_atomic_waiter(args: &[String]) {
    let seg = Segment::<Sync4>::attach(&args[0]).unwrap();
    let seen = seg.stage().wait_until_timeout(|s| s >= 1, LONG).expect("stage 1");
    assert_eq!(seen, 1);
    seg.stage().store(2);
    seg.stage().notify_all();
}

// ---------------------------------------------------------------- tests

fn barrier_four_processes_many_rounds() {
    const ROUNDS: u64 = 25;
    let (name, seg) = create("barrier", 4, 0);
    run_all("barrier_rounds", &name, 4, &[&ROUNDS.to_string()]);
    assert_eq!(seg.arrivals().load(), 4 * ROUNDS);
    assert_eq!(seg.leaders().load(), ROUNDS, "exactly one leader per round");
}

fn barrier_timeout_leaves_it_usable() {
    let (_name, seg) = create("barrier-timeout", 2, 0);
    assert_eq!(seg.barrier().wait_timeout(Duration::from_millis(30)), Err(TimedOut));
    std::thread::scope(|s| {
        let other = s.spawn(|| seg.barrier().wait_timeout(LONG).unwrap().is_leader());
        let me = seg.barrier().wait_timeout(LONG).unwrap().is_leader();
        assert!(me ^ other.join().unwrap(), "one leader: the timed-out wait left the round");
    });
}

fn event_wakes_waiters_in_other_processes() {
    let (name, seg) = create("event", 1, 0);
    assert_eq!(seg.go().wait_timeout(Duration::from_millis(20)), Err(TimedOut));
    let children: Vec<_> = (0..3).map(|_| child("wait_event_then_ack", &[&name]).spawn().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(seg.stage().load(), 0, "nobody passed an unset event");
    seg.go().set();
    assert_eq!(seg.stage().wait_until_timeout(|s| s == 3, LONG), Ok(3));
    for c in children {
        common::assert_success(&wait_output(c), "wait_event_then_ack");
    }
    seg.go().clear();
    assert!(!seg.go().is_set());
    assert_eq!(seg.go().wait_timeout(Duration::from_millis(10)), Err(TimedOut));
}

fn semaphore_limits_concurrency_across_processes() {
    let (name, seg) = create("semaphore", 1, 2);
    run_all("semaphore_worker", &name, 4, &[]);
    let max = seg.max_inside().load();
    assert!((1..=2).contains(&max), "at most 2 inside at once, saw {max}");
    assert_eq!(seg.permits().available(), 2, "every permit returned");
    assert!(seg.permits().try_acquire() && seg.permits().try_acquire());
    assert_eq!(seg.permits().acquire_timeout(Duration::from_millis(20)), Err(TimedOut));
    seg.permits().release();
    assert!(seg.permits().try_acquire(), "usable after the timeout");
}

fn condvar_wakes_a_waiter_in_another_process() {
    let (name, seg) = create("condvar", 1, 0);
    let consumer = child("condvar_consumer", &[&name]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    seg.mailbox().lock().unwrap()[0] = 21;
    seg.cv().notify_all();
    let guard = seg.mailbox().lock().unwrap();
    let (mail, timed_out) = seg.cv().wait_timeout_while(guard, LONG, |m| m[1] == 0).unwrap();
    assert!(!timed_out);
    assert_eq!(*mail, [21, 42]);
    drop(mail);
    common::assert_success(&wait_output(consumer), "condvar_consumer");
    let guard = seg.mailbox().lock().unwrap();
    let (_guard, timed_out) = seg.cv().wait_timeout_while(guard, Duration::from_millis(20), |_| true).unwrap();
    assert!(timed_out, "times out and gives the lock back");
    assert!(seg.mailbox().try_lock().is_err(), "the guard is held again after the timeout");
}

fn atomic_wait_and_notify_across_processes() {
    let (name, seg) = create("atomic-wait", 1, 0);
    let waiter = child("atomic_waiter", &[&name]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    seg.stage().store(1);
    seg.stage().notify_all();
    assert_eq!(seg.stage().wait_until_timeout(|s| s == 2, LONG), Ok(2));
    common::assert_success(&wait_output(waiter), "atomic_waiter");
    assert_eq!(seg.stage().wait_until_timeout(|s| s == 9, Duration::from_millis(10)), Err(TimedOut));
}

fn main() {
    common::main(
        &[
            ("barrier_four_processes_many_rounds", barrier_four_processes_many_rounds),
            ("barrier_timeout_leaves_it_usable", barrier_timeout_leaves_it_usable),
            ("event_wakes_waiters_in_other_processes", event_wakes_waiters_in_other_processes),
            ("semaphore_limits_concurrency_across_processes", semaphore_limits_concurrency_across_processes),
            ("condvar_wakes_a_waiter_in_another_process", condvar_wakes_a_waiter_in_another_process),
            ("atomic_wait_and_notify_across_processes", atomic_wait_and_notify_across_processes),
        ],
        &[
            ("barrier_rounds", role_barrier_rounds),
            ("wait_event_then_ack", role_wait_event_then_ack),
            ("semaphore_worker", role_semaphore_worker),
            ("condvar_consumer", role_condvar_consumer),
            ("atomic_waiter", role_atomic_waiter),
        ],
    );
}
