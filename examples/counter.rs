//! The Python `multiprocessing.Value` example, done right.
//!
//! In Python, two processes doing `counter.value += 1` a million times each
//! lose updates unless every caller remembers `with counter.get_lock():`.
//! Here the field is atomic: the parent creates a segment holding a counter,
//! starts two worker processes, each increments it 1,000,000 times, and the
//! parent prints `hits = 2000000`.
//!
//! Run with `cargo run --release --example counter`.

use shmem::{Segment, Shared};

/// The shared state: one counter.
#[derive(Shared, Default)]
struct Counter {
    /// Increments from all processes.
    hits: u64,
}

/// Runs in a child process: attach (done by shmem) and count.
#[shmem::worker]
fn count(counter: &Segment<Counter>, times: u64) {
    for _ in 0..times {
        counter.hits().fetch_add(1);
    }
}

fn main() -> Result<(), shmem::Error> {
    shmem::init(); // lets the child processes run `count`

    // Anonymous, like Python's `Value`: no name to pick or collide on, and
    // nothing left behind however the program ends. The workers inherit it.
    let counter = Segment::create_anonymous(&Counter::default())?;
    let workers = [shmem::spawn(&counter, count, 1_000_000)?, shmem::spawn(&counter, count, 1_000_000)?];
    for worker in workers {
        worker.join()?;
    }
    println!("hits = {}", counter.hits().load());
    Ok(())
}
