//! A loom model of `Map` (`containers/map.rs`): two processes on one shard,
//! one of which dies at each crash point of an insert or a remove, and the
//! survivor, which finds the shard dirty and repairs it (and may itself die
//! in the repair, leaving it to a third step). Checked at the end: every
//! entry acknowledged before the death is there exactly once and findable,
//! the count is exact, and a structural repair poisons nothing.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmem-core --release --test loom_map`
//!
//! The slots are plain memory guarded by the shard lock (loom checks the
//! lock itself in `loom_lock`); this model checks the logic that must hold
//! whatever order the two processes reach the shard in and wherever the
//! first one dies. Waits are yields that report a timeout.
#![cfg(loom)]
#![allow(missing_docs, reason = "test")]

use loom::sync::Arc;
use shmem_core::containers::Map;

mod loom_support;

use loom_support::{as_process, model, quiet_deaths, spawn_process, Yielding as Model};

/// One shard of 8 slots: every key shares it.
type M = Map<u64, u64, 8>;

/// Checks the map: every key of `must` present once with value `k * 10`,
/// nothing outside `may`, every entry findable, the count exact.
fn check(map: &M, must: &[u64], may: &[u64]) {
    let entries = map.to_vec_with::<Model>();
    let mut keys: Vec<u64> = entries.iter().map(|e| e.0).collect();
    keys.sort_unstable();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "duplicate key in {entries:?}");
    for k in must {
        assert!(keys.contains(k), "acknowledged key {k} lost: {entries:?}");
    }
    for (k, v) in &entries {
        assert!(must.contains(k) || may.contains(k), "unexpected key {k}");
        assert_eq!(*v, k * 10, "key {k}");
    }
    assert_eq!(map.len(), entries.len(), "len drifted");
    assert!(!map.is_poisoned(), "a structural repair poisoned the map");
}

fn filled() -> Arc<M> {
    let map = Arc::new(M::new());
    for k in 1..=4 {
        map.insert_with::<Model>(k, k * 10).unwrap();
    }
    map
}

/// Process 2 removes key 1 (shifting the keys after it) and dies at each
/// point of the removal; process 1 concurrently inserts key 9, then the
/// survivor's state is checked.
#[test]
fn a_death_mid_remove_is_repaired_whatever_the_interleaving() {
    quiet_deaths();
    for point in [
        "map.remove.dirty",
        "map.remove.emptied",
        "map.remove.shift_written",
        "map.remove.shift_copied",
        "map.remove.shift_emptied",
        "map.remove.counted",
    ] {
        model(move || {
            let map = filled();
            let victim = {
                let map = map.clone();
                spawn_process(2, Some(point), move || {
                    map.remove_with::<Model>(&1);
                })
            };
            as_process(1, None, || {
                map.insert_with::<Model>(9, 90).unwrap();
            });
            victim.join().unwrap();
            check(&map, &[2, 3, 4, 9], &[1]);
        });
    }
}

/// Process 2 inserts key 5 and dies at each point of the insert; process 1
/// removes key 2 meanwhile.
#[test]
fn a_death_mid_insert_is_repaired_whatever_the_interleaving() {
    quiet_deaths();
    for point in ["map.insert.dirty", "map.insert.written", "map.insert.published", "map.insert.counted"] {
        model(move || {
            let map = filled();
            let victim = {
                let map = map.clone();
                spawn_process(2, Some(point), move || {
                    let _ = map.insert_with::<Model>(5, 50);
                })
            };
            as_process(1, None, || {
                assert_eq!(map.remove_with::<Model>(&2), Some(20));
            });
            victim.join().unwrap();
            check(&map, &[1, 3, 4], &[5]);
        });
    }
}

/// A remover dies mid-shift; the process that repairs dies at each point of
/// the repair; a third one repairs again: the result is the same.
#[test]
fn repair_is_idempotent_when_the_repairer_dies() {
    quiet_deaths();
    for point in
        ["map.repair.start", "map.repair.dedup", "map.repair.copy_written", "map.repair.moved", "map.repair.counted"]
    {
        model(move || {
            let map = filled();
            as_process(2, Some("map.remove.shift_copied"), || {
                map.remove_with::<Model>(&1);
            });
            let repairer = {
                let map = map.clone();
                spawn_process(3, Some(point), move || {
                    let _ = map.insert_with::<Model>(7, 70);
                })
            };
            as_process(4, None, || {
                map.insert_with::<Model>(8, 80).unwrap();
            });
            repairer.join().unwrap();
            check(&map, &[2, 3, 4, 8], &[1, 7]);
        });
    }
}
