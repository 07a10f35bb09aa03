//! The second program of the `attach` example: started with the segment's
//! name in `SHMEM_SEGMENT` (or given it as its first argument), it attaches
//! and prints live values until the writer says it is finished.
//!
//! Run it yourself against a running writer with
//! `cargo run --release --example attach_reader -- NAME`.

use shmem::{Segment, Shared};
use std::time::Duration;

/// Must match the definition in `attach.rs` field for field.
#[derive(Shared, Default)]
pub struct Stats {
    /// Updates made so far.
    pub ticks: u64,
    /// A value that changes with every tick.
    pub temperature: f64,
    /// Set when the writer is done.
    pub finished: bool,
}

fn main() -> Result<(), shmem::Error> {
    let stats = match std::env::args().nth(1) {
        Some(name) => Segment::<Stats>::attach(&name)?,
        None => shmem::attach_given::<Stats>()?,
    };
    let mut last = u64::MAX;
    while !stats.finished().load() {
        let ticks = stats.ticks().load();
        if ticks / 10 != last / 10 {
            println!("reader: ticks = {ticks:>3}, temperature = {:.1}", stats.temperature().load());
            last = ticks;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("reader: writer finished at ticks = {}", stats.ticks().load());
    Ok(())
}
