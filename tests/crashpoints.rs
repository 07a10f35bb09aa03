//! Kill at every crash point, one point at a time (issue 12; the SQLite
//! `crashtest` discipline). For each operation the harness runs a real
//! child process with `SHMEM_CRASH_AT=*#k` for k = 1, 2, ...: the child
//! kills itself (`SIGKILL`) at the k-th crash point it passes (see
//! `shmem-core/src/crash.rs`), and this process, with a fresh look at the
//! segment, checks the structure against what was acknowledged before the
//! operation: nothing acknowledged lost, no duplicate, `len` exact, every
//! entry findable, poison exactly where the dead process held a lock with a
//! half-done write, and the structure still usable. The walk ends when the
//! child runs the operation to the end without meeting point k. Printed:
//! points x trials x failures per operation.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, unique_name, wait_output};
use shmem::{Condvar, Map, PopError, Queue, Segment, Shared};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(5);

#[derive(Shared)]
pub struct Arena {
    #[shared(rwlock)]
    pub rw: [u64; 8],
    #[shared(seqlock)]
    pub seq: [u64; 8],
    pub queue: Queue<u64, 16>,
    /// One shard of 8 slots: every key collides, so removals shift.
    pub map: Map<u64, u64, 8>,
    pub sem: shmem::Semaphore,
    pub event: shmem::Event,
    pub barrier: shmem::Barrier,
    #[shared(lock)]
    pub guarded: u64,
    pub cv: Condvar,
}

/// One operation under test.
struct Scenario {
    name: &'static str,
    /// Prepares a fresh segment (the acknowledged state).
    setup: fn(&Segment<Arena>, &str),
    /// What the child does (and dies in).
    op: fn(&Segment<Arena>, &str),
    /// Checks the segment after the child died at `died_at` (None: it finished).
    check: fn(&Segment<Arena>, &str, Option<&str>),
}

fn new_arena(name: &str) -> Segment<Arena> {
    let initial = Arena {
        rw: [0; 8],
        seq: [0; 8],
        queue: Queue::new(),
        map: Map::new(),
        sem: shmem::Semaphore::new(0),
        event: shmem::Event::new(false),
        barrier: shmem::Barrier::new(2),
        guarded: 0,
        cv: Condvar::new(),
    };
    Segment::create(name, &initial).unwrap()
}

// ---------------------------------------------------------------- checks

/// The map's invariants: values are `key * 10` (or `key * 10 + d` for the
/// keys in `bumped`), no duplicate, `len` exact, every entry findable, and
/// every key of `must` present, none outside `may`.
fn check_map(seg: &Segment<Arena>, must: &[u64], may: &[u64], bumped: &[u64]) {
    let m = seg.map();
    let entries = m.to_vec();
    let mut keys: Vec<u64> = entries.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    let before = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), before, "duplicate key in {entries:?}");
    assert_eq!(m.len(), entries.len(), "len {} but {} entries", m.len(), entries.len());
    for (k, v) in &entries {
        let ok = *v == k * 10 || (bumped.contains(k) && (*v == k * 10 + 1 || *v == k * 10 + 3));
        assert!(ok || m.is_poisoned(), "key {k} has value {v}");
        assert_eq!(m.get(k), Some(*v), "key {k} is listed but not findable");
    }
    for k in must {
        assert!(keys.contains(k), "acknowledged key {k} lost: {entries:?}");
    }
    for k in &keys {
        assert!(must.contains(k) || may.contains(k), "unexpected key {k}");
    }
    // Still usable.
    m.insert(99, 990).unwrap();
    assert_eq!(m.remove(&99), Some(990));
}

fn fill_map(seg: &Segment<Arena>, keys: impl IntoIterator<Item = u64>) {
    for k in keys {
        seg.map().insert(k, k * 10).unwrap();
    }
}

/// Pops everything without waiting for items (but for a dead holder's lock).
fn drain(seg: &Segment<Arena>) -> Vec<u64> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        match seg.queue().try_pop() {
            Ok(v) => out.push(v),
            Err(PopError::Empty | PopError::Closed) => return out,
            Err(PopError::Timeout) => assert!(start.elapsed() < DEADLINE, "the pop lock was never recovered"),
        }
    }
}

// ---------------------------------------------------------------- scenarios

fn no_setup(_: &Segment<Arena>, _: &str) {}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "map_insert",
        setup: |seg, _| fill_map(seg, 1..=5),
        op: |seg, _| {
            seg.map().insert(6, 60).unwrap();
        },
        check: |seg, _, _| check_map(seg, &[1, 2, 3, 4, 5], &[6], &[]),
    },
    Scenario {
        name: "map_remove",
        setup: |seg, _| fill_map(seg, 1..=7),
        op: |seg, _| {
            seg.map().remove(&1);
            seg.map().remove(&3);
        },
        check: |seg, _, _| {
            check_map(seg, &[2, 4, 5, 6, 7], &[1, 3], &[]);
            let keys: Vec<u64> = seg.map().to_vec().iter().map(|e| e.0).collect();
            assert!(keys.contains(&3) || !keys.contains(&1), "3 removed before 1");
        },
    },
    Scenario {
        name: "map_replace",
        setup: |seg, _| fill_map(seg, 1..=5),
        op: |seg, _| {
            seg.map().insert(3, 33).unwrap();
        },
        check: |seg, _, died| {
            // Locking the shard finds the dead writer's mark and repairs.
            let v = seg.map().get_timeout(&3, DEADLINE).expect("map hung").unwrap();
            let poisoned = seg.map().is_poisoned();
            assert_eq!(
                poisoned,
                died.is_some_and(|p| p.starts_with("map.replace")),
                "poison iff a value write was cut"
            );
            assert!(v == 30 || v == 33 || poisoned, "value {v}");
            seg.map().insert(3, 30).unwrap();
            check_map(seg, &[1, 2, 3, 4, 5], &[], &[]);
        },
    },
    Scenario {
        name: "map_update",
        setup: |seg, _| fill_map(seg, 1..=5),
        op: |seg, _| {
            seg.map().update(&4, |v| *v += 1);
        },
        check: |seg, _, died| {
            seg.map().get_timeout(&4, DEADLINE).expect("map hung");
            assert_eq!(seg.map().is_poisoned(), died.is_some_and(|p| p.starts_with("map.update")));
            check_map(seg, &[1, 2, 3, 4, 5], &[], &[4]);
        },
    },
    Scenario {
        name: "map_clear",
        setup: |seg, _| fill_map(seg, 1..=6),
        op: |seg, _| seg.map().clear(),
        check: |seg, _, _| {
            assert!(!seg.map().is_poisoned());
            check_map(seg, &[], &[1, 2, 3, 4, 5, 6], &[]);
        },
    },
    Scenario {
        // A remover killed mid-shift leaves a duplicate and a dirty shard;
        // then the process that repairs it is killed at each of the
        // repair's own points. Repair must be idempotent.
        name: "map_repair",
        setup: |seg, name| {
            fill_map(seg, 1..=7);
            let out = wait_output(
                child("op", &[name, "map_remove"]).env("SHMEM_CRASH_AT", "map.remove.shift_copied").spawn().unwrap(),
            );
            assert_eq!(out.status.signal(), Some(libc::SIGKILL), "the remover should die mid-shift");
        },
        op: |seg, _| {
            let _ = seg.map().get(&2);
        },
        check: |seg, _, _| {
            assert!(!seg.map().is_poisoned(), "a structural repair poisons nothing");
            check_map(seg, &[2, 3, 4, 5, 6, 7], &[1], &[]);
        },
    },
    Scenario {
        name: "queue_push",
        setup: |seg, _| (1..=3).for_each(|v| seg.queue().push(v).unwrap()),
        op: |seg, _| {
            seg.queue().push(4).unwrap();
            seg.queue().push(5).unwrap();
        },
        check: |seg, _, _| {
            let items = drain(seg);
            assert!([vec![1, 2, 3], vec![1, 2, 3, 4], vec![1, 2, 3, 4, 5]].contains(&items), "queue holds {items:?}");
            seg.queue().push(9).unwrap();
            assert_eq!(seg.queue().pop_timeout(DEADLINE), Ok(9));
        },
    },
    Scenario {
        name: "queue_pop",
        setup: |seg, _| (1..=5).for_each(|v| seg.queue().push(v).unwrap()),
        op: |seg, _| {
            seg.queue().pop().unwrap();
            seg.queue().pop().unwrap();
        },
        check: |seg, _, _| {
            let items = drain(seg);
            assert!([vec![1, 2, 3, 4, 5], vec![2, 3, 4, 5], vec![3, 4, 5]].contains(&items), "queue holds {items:?}");
            seg.queue().push(9).unwrap();
            assert_eq!(seg.queue().pop_timeout(DEADLINE), Ok(9));
        },
    },
    Scenario {
        name: "queue_push_slice",
        setup: |seg, _| (1..=3).for_each(|v| seg.queue().push(v).unwrap()),
        op: |seg, _| seg.queue().push_slice(&[4, 5, 6, 7]).unwrap(),
        check: |seg, _, _| {
            // One publication: the whole batch or none of it.
            let items = drain(seg);
            assert!([vec![1, 2, 3], vec![1, 2, 3, 4, 5, 6, 7]].contains(&items), "queue holds {items:?}");
            seg.queue().push_slice(&[8, 9]).unwrap();
            let mut out = [0; 4];
            assert_eq!(seg.queue().pop_into(&mut out), Ok(2));
            assert_eq!(out[..2], [8, 9]);
        },
    },
    Scenario {
        name: "queue_pop_into",
        setup: |seg, _| (1..=5).for_each(|v| seg.queue().push(v).unwrap()),
        op: |seg, _| {
            let mut out = [0; 3];
            assert_eq!(seg.queue().pop_into(&mut out), Ok(3));
        },
        check: |seg, _, _| {
            let items = drain(seg);
            assert!([vec![1, 2, 3, 4, 5], vec![4, 5]].contains(&items), "queue holds {items:?}");
            seg.queue().push(9).unwrap();
            assert_eq!(seg.queue().pop_timeout(DEADLINE), Ok(9));
        },
    },
    Scenario {
        name: "queue_close",
        setup: |seg, _| (1..=2).for_each(|v| seg.queue().push(v).unwrap()),
        op: |seg, _| seg.queue().close(),
        check: |seg, _, _| {
            assert_eq!(drain(seg), vec![1, 2], "close lost or duplicated an accepted item");
            let closed = seg.queue().is_closed();
            assert!(seg.queue().pop_timeout(Duration::from_millis(10)).is_err());
            assert_eq!(seg.queue().try_push(3).is_err(), closed);
        },
    },
    Scenario {
        name: "rwlock_write",
        setup: no_setup,
        op: |seg, _| {
            *seg.rw().write().unwrap() = [7; 8];
        },
        check: |seg, _, died| {
            let g = seg.rw().write_timeout(DEADLINE).expect("writer hung");
            let inside = matches!(died, Some("rwlock.write.inside" | "rwlock.write.leaving"));
            assert_eq!(g.is_err(), inside, "poison iff the writer died inside (died at {died:?})");
            let v = *g.unwrap_or_else(|p| p.into_inner());
            assert!(inside || v == [0; 8] || v == [7; 8], "torn without poison: {v:?}");
        },
    },
    Scenario {
        name: "rwlock_read",
        setup: no_setup,
        op: |seg, _| {
            let g = seg.rw().read().unwrap();
            assert_eq!(*g, [0; 8]);
        },
        check: |seg, _, _| {
            let g = seg.rw().write_timeout(DEADLINE).expect("a dead reader blocked the writer");
            assert!(g.is_ok(), "a dead reader poisoned the lock");
            drop(g);
            assert_eq!(seg.rw().reader_count(), 0);
        },
    },
    Scenario {
        name: "seqlock_write",
        setup: no_setup,
        op: |seg, _| seg.seq().write([5; 8]),
        check: |seg, _, died| {
            let r = seg.seq().read_timeout(DEADLINE).expect("reader hung on a dead writer");
            let cut = matches!(died, Some("seqlock.write.odd" | "seqlock.write.copied"));
            assert_eq!(r.is_err(), cut, "poison iff the write was cut (died at {died:?})");
            if let Ok(v) = r {
                assert!(v == [0; 8] || v == [5; 8], "torn: {v:?}");
            }
            seg.seq().write([6; 8]);
            seg.seq().clear_poison();
            assert_eq!(seg.seq().read().unwrap(), [6; 8]);
        },
    },
    Scenario {
        name: "semaphore_release",
        setup: no_setup,
        op: |seg, _| seg.sem().release(),
        check: |seg, _, _| assert!(seg.sem().acquire_timeout(DEADLINE).is_ok()),
    },
    Scenario {
        name: "event_set",
        setup: no_setup,
        op: |seg, _| seg.event().set(),
        check: |seg, _, _| assert!(seg.event().wait_timeout(DEADLINE).is_ok()),
    },
    Scenario {
        name: "segment_create",
        setup: no_setup,
        op: |_, name| {
            let seg = Segment::<u64>::create(&format!("{name}-new"), &42).unwrap();
            std::mem::forget(seg); // keep the name: this process "crashes" later
        },
        check: |_, name, died| {
            let new = format!("{name}-new");
            match Segment::<u64>::attach(&new) {
                Ok(seg) => {
                    assert_eq!(seg.load(), 42, "a linked segment is fully initialised");
                    // The last handle: dropping it removes the name.
                    drop(seg);
                    assert!(matches!(shmem::unlink(&new), Err(shmem::Error::NotFound { .. })));
                }
                Err(shmem::Error::NotFound { .. }) => {
                    assert_ne!(died, Some("segment.create.linked"), "linked but not found");
                }
                Err(e) => panic!("half-created segment visible: {e}"),
            }
        },
    },
];

/// A waiter in this process sleeps while the child does `op`; it must be
/// released within its deadline even if the child dies before its wake-up.
const WAKE_SCENARIOS: &[(&str, &str)] =
    &[("barrier", "barrier.leader.advanced"), ("condvar", "condvar.notify.counted")];

// ---------------------------------------------------------------- children

fn role_op(args: &[String]) {
    let (name, scenario) = (&args[0], args[1].as_str());
    let seg = Segment::<Arena>::attach(name).unwrap();
    match scenario {
        "barrier" => {
            seg.barrier().wait();
        }
        "condvar" => {
            *seg.guarded().lock().unwrap() = 1;
            seg.cv().notify_one();
        }
        _ => {
            let s = SCENARIOS.iter().find(|s| s.name == scenario).unwrap();
            (s.op)(&seg, name);
        }
    }
}

// ---------------------------------------------------------------- harness

fn walk(s: &Scenario) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut points = 0;
    for k in 1.. {
        let name = unique_name(s.name);
        let seg = new_arena(&name);
        (s.setup)(&seg, &name);
        let out = wait_output(child("op", &[&name, s.name]).env("SHMEM_CRASH_AT", format!("*#{k}")).spawn().unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let died_at = stderr.lines().find_map(|l| l.strip_prefix("shmem crash point: ")).map(str::to_owned);
        if out.status.success() {
            // Point k does not exist: every point of the operation was walked.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (s.check)(&seg, &name, None)));
            if let Err(e) = result {
                failures.push(format!("{} without a crash: {}", s.name, panic_text(&e)));
            }
            break;
        }
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}: child failed: {stderr}", s.name);
        let point = died_at.unwrap_or_else(|| panic!("{}: killed without naming a point", s.name));
        points += 1;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (s.check)(&seg, &name, Some(&point))));
        if let Err(e) = result {
            failures.push(format!("{} killed at #{k} {point}: {}", s.name, panic_text(&e)));
        }
        assert!(k < 200, "{}: runaway crash point walk", s.name);
    }
    (points, failures)
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

fn every_operation_survives_a_kill_at_every_point() {
    let mut total_points = 0;
    let mut failures = Vec::new();
    for s in SCENARIOS {
        let (points, f) = walk(s);
        println!("{:<18} {points:>3} points x 1 trial, {} failures", s.name, f.len());
        assert!(points > 0, "{}: no crash point was reached", s.name);
        total_points += points;
        failures.extend(f);
    }
    println!("crash points: {total_points} points walked, {} failures", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The notifier (last barrier party, condvar notifier) dies after its
/// change but before its wake-up: the sleeper here still gets out.
fn a_dead_notifier_does_not_strand_its_sleeper() {
    for (what, point) in WAKE_SCENARIOS {
        let name = unique_name(what);
        let seg = new_arena(&name);
        let start = Instant::now();
        std::thread::scope(|scope| {
            let sleeper = scope.spawn(|| match *what {
                "barrier" => seg.barrier().wait_timeout(DEADLINE).map(|r| !r.is_leader()).unwrap_or(false),
                _ => {
                    let g = seg.guarded().lock().unwrap();
                    let (g, timed_out) = seg.cv().wait_timeout_while(g, DEADLINE, |v| *v == 0).unwrap();
                    !timed_out && *g == 1
                }
            });
            std::thread::sleep(Duration::from_millis(50));
            let out = wait_output(child("op", &[&name, what]).env("SHMEM_CRASH_AT", *point).spawn().unwrap());
            assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{what}: the notifier should die at {point}");
            assert!(sleeper.join().unwrap(), "{what}: the sleeper did not see the completed change");
        });
        println!("{what}: notifier killed at {point}, sleeper released after {:?}", start.elapsed());
    }
}

fn main() {
    common::main(
        &[
            ("every_operation_survives_a_kill_at_every_point", every_operation_survives_a_kill_at_every_point),
            ("a_dead_notifier_does_not_strand_its_sleeper", a_dead_notifier_does_not_strand_its_sleeper),
        ],
        &[("op", role_op)],
    );
}
