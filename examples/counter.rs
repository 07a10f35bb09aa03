//! The Python `multiprocessing.Value` example, done right.
//!
//! In Python, two processes doing `counter.value += 1` a million times each
//! lose updates unless every caller remembers `with counter.get_lock():`.
//! Here the field is atomic: the parent creates a segment holding a counter,
//! starts two child processes of this same program, each attaches by name
//! and increments it 1,000,000 times, and the parent prints `hits = 2000000`.
//!
//! Run with `cargo run --release --example counter`.

use shmem::{Segment, Shared};
use std::process::Command;

/// The shared state: one counter.
#[derive(Shared, Default)]
struct Counter {
    /// Increments from all processes.
    hits: u64,
}

/// Set in a child's environment to the segment name it should attach to.
const CHILD_ENV: &str = "SHMEM_COUNTER_SEGMENT";
const CHILDREN: usize = 2;
const INCREMENTS: u64 = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        // Child: attach by name (the layout is checked) and count.
        let counter = Segment::<Counter>::attach(&name)?;
        for _ in 0..INCREMENTS {
            counter.hits().fetch_add(1);
        }
        return Ok(());
    }

    // Parent: create the segment; it is removed when `counter` drops.
    let name = format!("shmem-example-counter-{}", std::process::id());
    let counter = Segment::create(&name, &Counter::default())?;
    let exe = std::env::current_exe()?;
    let children =
        (0..CHILDREN).map(|_| Command::new(&exe).env(CHILD_ENV, &name).spawn()).collect::<Result<Vec<_>, _>>()?;
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a child process failed: {status}").into());
        }
    }
    println!("hits = {}", counter.hits().load());
    Ok(())
}
