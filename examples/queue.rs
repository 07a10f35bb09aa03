//! `multiprocessing.Queue` done without pickling: one producer process and
//! two consumer processes pass 1,000,000 jobs through a shared `Queue`.
//! Each consumer marks every job it receives in a shared bitmap; the parent
//! checks every job arrived exactly once and prints
//! `received 1000000 of 1000000`.
//!
//! Run with `cargo run --release --example queue`.

use shmem::{PopError, Queue, Segment, Shared};

const JOBS: u64 = 1_000_000;

/// The shared state: the queue and the bookkeeping that proves delivery.
#[derive(Shared)]
struct Jobs {
    /// Job ids in flight.
    queue: Queue<u64, 4096>,
    /// One bit per job id, set by the consumer that received it.
    seen: [u64; (JOBS as usize).div_ceil(64)],
    /// Jobs received, over all consumers.
    received: u64,
    /// Jobs received twice (must stay 0).
    duplicates: u64,
}

/// Pushes every job id, then closes the queue.
#[shmem::worker]
fn produce(jobs: &Segment<Jobs>) {
    for id in 0..JOBS {
        jobs.queue().push(id).expect("the queue closed early");
    }
    jobs.queue().close();
}

/// Pops until the queue is closed and drained.
#[shmem::worker]
fn consume(jobs: &Segment<Jobs>) {
    loop {
        match jobs.queue().pop() {
            Ok(id) => {
                let bit = 1u64 << (id % 64);
                if jobs.seen()[(id / 64) as usize].fetch_or(bit) & bit != 0 {
                    jobs.duplicates().fetch_add(1);
                }
                jobs.received().fetch_add(1);
            }
            Err(PopError::Closed) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

fn main() -> Result<(), shmem::Error> {
    shmem::init();
    let name = format!("shmem-example-queue-{}", std::process::id());
    let jobs = Segment::<Jobs>::create_zeroed(&name)?;
    let workers =
        [shmem::spawn(&jobs, consume, ())?, shmem::spawn(&jobs, consume, ())?, shmem::spawn(&jobs, produce, ())?];
    for worker in workers {
        worker.join()?;
    }
    let distinct: u64 = jobs.seen().iter().map(|w| u64::from(w.load().count_ones())).sum();
    let duplicates = jobs.duplicates().load();
    if duplicates != 0 || distinct != jobs.received().load() {
        eprintln!("{duplicates} duplicates; {distinct} distinct of {} received", jobs.received().load());
        std::process::exit(1);
    }
    println!("received {distinct} of {JOBS}");
    Ok(())
}
