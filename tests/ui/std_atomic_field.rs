use shmem::Shared;
use std::sync::atomic::AtomicU64;

#[derive(Shared)]
pub struct Stats {
    pub hits: AtomicU64,
}

fn main() {}
