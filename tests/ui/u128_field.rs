use shmem::Shared;

#[derive(Shared)]
pub struct Wide {
    pub big: u128,
}

fn main() {}
