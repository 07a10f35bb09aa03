//! The Python `multiprocessing.Array` example, done right.
//!
//! Python's `Array('i', range(5))` is raw shared memory: every caller must
//! remember `with arr.get_lock():`. Here the array is behind
//! `#[shared(lock)]`, so the only way to touch it is through the lock. Two
//! child processes each lock it and add 1 to every element, printing what
//! they saw; the parent prints `arr = [2, 3, 4, 5, 6]` last.
//!
//! Run with `cargo run --release --example array`.

use shmem::{Segment, Shared};
use std::process::Command;

/// The shared state: five integers behind a cross-process lock.
#[derive(Shared)]
struct Numbers {
    /// Starts as `[0, 1, 2, 3, 4]`.
    #[shared(lock)]
    arr: [i32; 5],
}

/// Set in a child's environment to the segment name it should attach to.
const CHILD_ENV: &str = "SHMEM_ARRAY_SEGMENT";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        let numbers = Segment::<Numbers>::attach(&name)?;
        let mut arr = numbers.arr().lock().map_err(|_| "the lock is poisoned: a previous holder died")?;
        println!("child {} saw {:?}", std::process::id(), *arr);
        arr.iter_mut().for_each(|x| *x += 1);
        return Ok(());
    }

    let name = format!("shmem-example-array-{}", std::process::id());
    let numbers = Segment::create(&name, &Numbers { arr: [0, 1, 2, 3, 4] })?;
    let exe = std::env::current_exe()?;
    let children = (0..2).map(|_| Command::new(&exe).env(CHILD_ENV, &name).spawn()).collect::<Result<Vec<_>, _>>()?;
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a child process failed: {status}").into());
        }
    }
    let arr = *numbers.arr().lock().map_err(|_| "the lock is poisoned")?;
    println!("arr = {arr:?}");
    Ok(())
}
