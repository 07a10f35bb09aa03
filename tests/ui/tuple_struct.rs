use shmem::Shared;

#[derive(Shared)]
pub struct Pair(u32, u32);

fn main() {}
