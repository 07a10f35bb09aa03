use shmem::{Segment, Shared};

#[derive(Shared, Default)]
pub struct Counter {
    pub hits: u64,
}

#[derive(Shared, Default)]
pub struct Other {
    pub hits: u64,
}

#[shmem::worker]
fn count(seg: &Segment<Counter>, times: u64) {
    seg.hits().fetch_add(times);
}

fn main() {
    shmem::init();
    let seg = Segment::create("ui-worker", &Other::default()).unwrap();
    let _ = shmem::spawn(&seg, count, 1);
}
