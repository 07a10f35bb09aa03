use shmem::Shared;

#[derive(Shared)]
pub struct Slot<T> {
    pub value: T,
}

fn main() {}
