use shmem::Shared;

#[derive(Shared)]
pub struct Boxed {
    pub value: Box<u64>,
}

fn main() {}
