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

#[derive(Shared)]
pub struct Published {
    pub done: bool,
    pub release: bool,
    pub reads: u64,
    #[shared(seqlock)]
    pub snapshot: [u64; 256],
    #[shared(rwlock)]
    pub table: [u64; 256],
}

fn new_published(tag: &str) -> (String, Segment<Published>) {
    let name = unique_name(tag);
    let seg = Segment::<Published>::create_zeroed(&name).unwrap();
    (name, seg)
}

fn all_equal(values: &[u64]) -> bool {
    values.iter().all(|v| *v == values[0])
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

/// Writes `[k; 256]` for k = 1..=n into the seqlock, then sets `done`.
fn role_seqlock_writer(args: &[String]) {
    let seg = Segment::<Published>::attach(&args[0]).unwrap();
    let n: u64 = args[1].parse().unwrap();
    for k in 1..=n {
        seg.snapshot().write([k; 256]);
        // Seqlocks are for values written less often than read: leave gaps.
        for _ in 0..500 {
            std::hint::spin_loop();
        }
    }
    seg.done().store(true);
}

/// Reads the seqlock until `done`, checking every read is untorn and that
/// values never go back.
fn role_seqlock_reader(args: &[String]) {
    let seg = Segment::<Published>::attach(&args[0]).unwrap();
    let mut last = 0;
    let mut reads = 0u64;
    loop {
        let done = seg.done().load();
        let v = seg.snapshot().read().unwrap();
        assert!(all_equal(&v), "torn read: {:?}", &v[..8]);
        assert!(v[0] >= last, "went back from {last} to {}", v[0]);
        last = v[0];
        reads += 1;
        if done {
            break;
        }
    }
    seg.reads().fetch_add(reads);
}

/// Starts a seqlock write of `[u64::MAX; 256]`, says ready and sleeps until killed.
fn role_seqlock_die_mid_write(args: &[String]) {
    let seg = Segment::<Published>::attach(&args[0]).unwrap();
    let _open_write = seg.snapshot().begin_write(&[u64::MAX; 256]);
    println!("ready");
    std::thread::sleep(Duration::from_secs(300));
}

/// Takes the rwlock for writing, half-updates, says ready, sleeps until killed.
fn role_rwlock_die_writing(args: &[String]) {
    let seg = Segment::<Published>::attach(&args[0]).unwrap();
    let mut table = seg.table().write().unwrap();
    table[..128].iter_mut().for_each(|v| *v = 9);
    println!("ready");
    std::thread::sleep(Duration::from_secs(300));
}

/// Holds a read lock until the parent sets `release`.
fn role_rwlock_read_until_released(args: &[String]) {
    let seg = Segment::<Published>::attach(&args[0]).unwrap();
    let table = seg.table().read().unwrap();
    println!("ready");
    common::wait_until("release", || seg.release().load());
    assert!(all_equal(&table[..]));
}

/// `n` times: write-lock and add 1 everywhere, then read-lock and check.
fn role_rwlock_mixed(args: &[String]) {
    let seg = Segment::<Published>::attach(&args[0]).unwrap();
    let n: u64 = args[1].parse().unwrap();
    for _ in 0..n {
        seg.table().write().unwrap().iter_mut().for_each(|v| *v += 1);
        let table = seg.table().read().unwrap();
        assert!(all_equal(&table[..]), "a reader saw a half-done write");
    }
}

// ---------------------------------------------------------------- tests

fn seqlock_reader_never_sees_a_torn_value() {
    const WRITES: u64 = 100_000;
    let (name, seg) = new_published("seqlock-torn");
    let reader = child("seqlock_reader", &[&name]).spawn().unwrap();
    let writer = child("seqlock_writer", &[&name, &WRITES.to_string()]).spawn().unwrap();
    common::assert_success(&wait_output(writer), "seqlock_writer");
    common::assert_success(&wait_output(reader), "seqlock_reader");
    assert_eq!(seg.snapshot().read().unwrap(), [WRITES; 256]);
    let reads = seg.reads().load();
    eprintln!("reader checked {reads} reads during {WRITES} writes");
    assert!(reads > 0);
}

fn seqlock_writer_killed_mid_write_poisons_and_recovers() {
    let (name, seg) = new_published("seqlock-kill");
    seg.snapshot().write([1; 256]);
    kill(spawn_ready("seqlock_die_mid_write", &[&name]));
    let start = Instant::now();
    let torn = match seg.snapshot().read() {
        Err(p) => p.into_inner(),
        Ok(_) => panic!("a write that never finished must poison"),
    };
    eprintln!("dead seqlock writer detected after {:?}", start.elapsed());
    assert_eq!(torn, [u64::MAX; 256], "the dead writer's partial value is what is there");
    assert!(seg.snapshot().is_poisoned());
    seg.snapshot().clear_poison();
    seg.snapshot().write([2; 256]);
    assert_eq!(seg.snapshot().read().unwrap(), [2; 256]);
    seg.snapshot().update(|v| v[0] = 3);
    assert_eq!(seg.snapshot().read().unwrap()[..2], [3, 2]);
}

fn rwlock_writer_killed_poisons_and_recovers() {
    let (name, seg) = new_published("rwlock-kill");
    kill(spawn_ready("rwlock_die_writing", &[&name]));
    let start = Instant::now();
    let table = match seg.table().read() {
        Err(p) => p.into_inner(),
        Ok(_) => panic!("a writer that died inside must poison"),
    };
    eprintln!("dead rwlock writer detected after {:?}", start.elapsed());
    assert_eq!((table[0], table[255]), (9, 0));
    drop(table);
    seg.table().clear_poison();
    seg.table().write().unwrap().iter_mut().for_each(|v| *v = 4);
    assert_eq!(*seg.table().read().unwrap(), [4; 256]);
}

fn rwlock_readers_share_and_writers_wait() {
    let (name, seg) = new_published("rwlock-share");
    let reader = spawn_ready("rwlock_read_until_released", &[&name]);
    assert_eq!(seg.table().reader_count(), 1);
    let mine = seg.table().read_timeout(Duration::from_secs(30)).expect("readers share").unwrap();
    drop(mine);
    assert!(seg.table().write_timeout(Duration::from_millis(50)).is_err(), "a reader in another process holds it");
    assert_eq!(seg.table().reader_count(), 1, "the timed-out writer left the lock as it was");
    seg.release().store(true);
    common::assert_success(&wait_output(reader), "rwlock_read_until_released");
    seg.table().write().unwrap()[0] = 1;
    assert_eq!(seg.table().read().unwrap()[0], 1);
}

fn rwlock_two_processes_exact() {
    const N: u64 = 5_000;
    let (name, seg) = new_published("rwlock-stress");
    let n = N.to_string();
    let children: Vec<_> = (0..2).map(|_| child("rwlock_mixed", &[&name, &n]).spawn().unwrap()).collect();
    for c in children {
        common::assert_success(&wait_output(c), "rwlock_mixed");
    }
    assert_eq!(*seg.table().read().unwrap(), [2 * N; 256]);
}

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
            ("seqlock_reader_never_sees_a_torn_value", seqlock_reader_never_sees_a_torn_value),
            (
                "seqlock_writer_killed_mid_write_poisons_and_recovers",
                seqlock_writer_killed_mid_write_poisons_and_recovers,
            ),
            ("rwlock_writer_killed_poisons_and_recovers", rwlock_writer_killed_poisons_and_recovers),
            ("rwlock_readers_share_and_writers_wait", rwlock_readers_share_and_writers_wait),
            ("rwlock_two_processes_exact", rwlock_two_processes_exact),
        ],
        &[
            ("hold_mutex", role_hold_mutex),
            ("increment_locked", role_increment_locked),
            ("seqlock_writer", role_seqlock_writer),
            ("seqlock_reader", role_seqlock_reader),
            ("seqlock_die_mid_write", role_seqlock_die_mid_write),
            ("rwlock_die_writing", role_rwlock_die_writing),
            ("rwlock_read_until_released", role_rwlock_read_until_released),
            ("rwlock_mixed", role_rwlock_mixed),
        ],
    );
}
