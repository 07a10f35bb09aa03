//! The Python `multiprocessing.Array` example, done right.
//!
//! Python's `Array('i', range(5))` is raw shared memory: every caller must
//! remember `with arr.get_lock():`. Here the array is behind
//! `#[shared(lock)]`, so the only way to touch it is through the lock. Two
//! worker processes each lock it and add 1 to every element, printing what
//! they saw; the parent prints `arr = [2, 3, 4, 5, 6]` last.
//!
//! Run with `cargo run --release --example array`.

use shmem::{Segment, Shared};

/// The shared state: five integers behind a cross-process lock.
#[derive(Shared)]
struct Numbers {
    /// Starts as `[0, 1, 2, 3, 4]`.
    #[shared(lock)]
    arr: [i32; 5],
}

/// Runs in a child process: lock, print, add one everywhere.
#[shmem::worker]
fn add_one(numbers: &Segment<Numbers>) {
    let mut arr = numbers.arr().lock().expect("the lock is poisoned: a previous holder died");
    println!("child {} saw {:?}", std::process::id(), *arr);
    arr.iter_mut().for_each(|x| *x += 1);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmem::init(); // lets the child processes run `add_one`

    // Anonymous, like Python's `Array`: the workers inherit it.
    let numbers = Segment::create_anonymous(&Numbers { arr: [0, 1, 2, 3, 4] })?;
    let workers = [shmem::spawn(&numbers, add_one, ())?, shmem::spawn(&numbers, add_one, ())?];
    for worker in workers {
        worker.join()?;
    }
    let arr = *numbers.arr().lock().map_err(|_| "the lock is poisoned")?;
    println!("arr = {arr:?}");
    Ok(())
}
