use shmem::Shared;

#[derive(Shared)]
pub struct Stats {
    #[shared(lock, seqlock)]
    pub samples: [i64; 8],
}

fn main() {}
