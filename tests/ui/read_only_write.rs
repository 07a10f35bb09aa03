// A read-only handle cannot write: not a scalar, not an array element, not
// a seqlock, not a lock.
use shmem::{ReadOnlySegment, Shared};

#[derive(Shared)]
struct Stats {
    hits: u64,
    recent: [u32; 4],
    #[shared(seqlock)]
    pos: [f64; 2],
    #[shared(lock)]
    log: [u8; 16],
}

fn monitor(ro: &ReadOnlySegment<Stats>) {
    ro.hits().store(1);
    ro.recent()[0].fetch_add(1);
    ro.pos().write([0.0, 0.0]);
    let _guard = ro.log().lock();
    // Not through the generated read-only struct's field either.
    ro.0.hits().store(1);
    let _ = Stats::load(&ro.0);
}

fn main() {}
