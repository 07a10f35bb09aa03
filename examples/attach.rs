//! An unrelated executable attaching to a segment by name.
//!
//! This program creates a segment of live statistics and updates it while
//! `examples/attach_reader.rs`, a separate program that knows only the
//! struct definition, attaches by the name it is given and prints what it
//! reads. The layout fingerprint checks that both programs agree on `Stats`.
//!
//! Run with `cargo build --release --examples && cargo run --release --example attach`.

use shmem::{Segment, Shared, SpawnOptions};
use std::process::Command;
use std::time::Duration;

/// Must match the definition in `attach_reader.rs` field for field.
#[derive(Shared, Default)]
pub struct Stats {
    /// Updates made so far.
    pub ticks: u64,
    /// A value that changes with every tick.
    pub temperature: f64,
    /// Set when the writer is done.
    pub finished: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reader = std::env::current_exe()?.with_file_name("attach_reader");
    if !reader.exists() {
        return Err(format!("{} not found: run `cargo build --release --examples` first", reader.display()).into());
    }
    let name = format!("shmem-example-stats-{}", std::process::id());
    let stats = Segment::create(&name, &Stats { temperature: 20.0, ..Stats::default() })?;
    println!("writer: created segment `{name}`");
    let child = SpawnOptions::new().kill_on_drop(true).command(Command::new(reader), &stats)?;
    for _ in 0..50 {
        stats.ticks().fetch_add(1);
        stats.temperature().fetch_add(0.5);
        std::thread::sleep(Duration::from_millis(4));
    }
    stats.finished().store(true);
    let status = child.join()?;
    println!("writer: reader exited with {status}; final ticks = {}", stats.ticks().load());
    Ok(())
}
