use shmem::Shared;

#[derive(Shared)]
pub struct Node {
    pub value: u64,
    pub next: *const u64,
}

fn main() {}
