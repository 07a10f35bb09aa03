use shmem::Shared;

#[derive(Shared)]
pub struct Stats {
    #[shared(mutex)]
    pub samples: [i64; 8],
}

fn main() {}
