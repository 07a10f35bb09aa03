//! Cross-process locks with real processes: crash safety (SIGKILL while
//! holding), exact results under contention, timeouts and poisoning.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, unique_name, wait_output, wait_status};
use shmem::{Segment, Shared, TimedLockError};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::TryLockError;
use std::time::{Duration, Instant};

#[derive(Shared)]
pub struct Guarded {
    pub rounds: u64,
    #[shared(lock)]
    pub values: [i64; 64],
}

fn new_segment(tag: &str) -> (String, Segment<Guarded>) {
    let name = unique_name(tag);
    let seg = Segment::create(&name, &Guarded { rounds: 0, values: [0; 64] }).unwrap();
    (name, seg)
}

/// Spawns `role` and waits until it prints `ready`.
fn spawn_ready(role: &str, args: &[&str]) -> Child {
    let mut c = child(role, args).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "child {role} did not get ready");
    c
}

fn kill(mut c: Child) {
    c.kill().unwrap();
    let status = wait_status(&mut c);
    assert!(!status.success());
}

// ---------------------------------------------------------------- children

/// Locks, writes half of the array, says ready and sleeps until killed.
fn role_hold_mutex(args: &[String]) {
    let seg = Segment::<Guarded>::attach(&args[0]).unwrap();
    let mut values = seg.values().lock().unwrap();
    values[..32].iter_mut().for_each(|v| *v = -1);
    println!("ready");
    std::thread::sleep(Duration::from_secs(300));
    drop(values);
}

/// Locks and adds 1 to every element, `n` times.
fn role_increment_locked(args: &[String]) {
    let seg = Segment::<Guarded>::attach(&args[0]).unwrap();
    let n: u64 = args[1].parse().unwrap();
    for _ in 0..n {
        let mut values = seg.values().lock().unwrap();
        values.iter_mut().for_each(|v| *v += 1);
        seg.rounds().fetch_add(1);
    }
}

// ---------------------------------------------------------------- tests

fn mutex_owner_killed_poisons_and_recovers() {
    let (name, seg) = new_segment("mutex-kill");
    let holder = spawn_ready("hold_mutex", &[&name]);
    assert!(matches!(seg.values().try_lock(), Err(TryLockError::WouldBlock)), "held by a live process");
    kill(holder);
    let start = Instant::now();
    let err = match seg.values().lock_timeout(Duration::from_secs(30)) {
        Err(TimedLockError::Poisoned(p)) => p,
        other => panic!("expected a poisoned lock, got {:?}", other.map(|g| *g)),
    };
    eprintln!("dead owner detected after {:?}", start.elapsed());
    let mut values = err.into_inner();
    assert_eq!(values[0], -1, "the dead owner's half-done write is visible");
    assert_eq!(values[63], 0);
    values.iter_mut().for_each(|v| *v = 5);
    drop(values);
    assert!(seg.values().is_poisoned());
    seg.values().clear_poison();
    assert_eq!(*seg.values().lock().unwrap(), [5; 64], "usable after clearing the poison");
}

fn mutex_try_lock_takes_over_from_dead_owner() {
    let (name, seg) = new_segment("mutex-try");
    kill(spawn_ready("hold_mutex", &[&name]));
    let first = match seg.values().try_lock() {
        Err(TryLockError::Poisoned(p)) => p.into_inner()[0],
        Err(TryLockError::WouldBlock) => panic!("a dead owner must not block try_lock"),
        Ok(_) => panic!("expected poison"),
    };
    assert_eq!(first, -1);
}

fn mutex_timeout_leaves_it_usable() {
    let (name, seg) = new_segment("mutex-timeout");
    let holder = spawn_ready("hold_mutex", &[&name]);
    let start = Instant::now();
    assert!(matches!(seg.values().lock_timeout(Duration::from_millis(50)), Err(TimedLockError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(50));
    kill(holder);
    let guard = seg.values().lock().unwrap_err().into_inner();
    drop(guard);
}

fn two_processes_locked_increments_are_exact() {
    const N: u64 = 20_000;
    let (name, seg) = new_segment("mutex-stress");
    let n = N.to_string();
    let children: Vec<_> = (0..2).map(|_| child("increment_locked", &[&name, &n]).spawn().unwrap()).collect();
    // The parent contends too.
    for _ in 0..N {
        let mut values = seg.values().lock().unwrap();
        values.iter_mut().for_each(|v| *v += 1);
    }
    for c in children {
        common::assert_success(&wait_output(c), "increment_locked");
    }
    assert_eq!(seg.rounds().load(), 2 * N);
    assert_eq!(*seg.values().lock().unwrap(), [3 * N as i64; 64]);
}

fn panic_while_holding_poisons() {
    let (_name, seg) = new_segment("mutex-panic");
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = seg.values().lock().unwrap();
            panic!("boom");
        })
        .join()
    });
    assert!(result.is_err());
    assert!(seg.values().is_poisoned());
    assert!(seg.values().lock().is_err());
    seg.values().clear_poison();
    assert!(seg.values().lock().is_ok());
}

fn main() {
    common::main(
        &[
            ("mutex_owner_killed_poisons_and_recovers", mutex_owner_killed_poisons_and_recovers),
            ("mutex_try_lock_takes_over_from_dead_owner", mutex_try_lock_takes_over_from_dead_owner),
            ("mutex_timeout_leaves_it_usable", mutex_timeout_leaves_it_usable),
            ("two_processes_locked_increments_are_exact", two_processes_locked_increments_are_exact),
            ("panic_while_holding_poisons", panic_while_holding_poisons),
        ],
        &[("hold_mutex", role_hold_mutex), ("increment_locked", role_increment_locked)],
    );
}
