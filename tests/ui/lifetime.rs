use shmem::Shared;

#[derive(Shared)]
pub struct View<'a> {
    pub len: u64,
    pub data: &'a [u8; 4],
}

fn main() {}
