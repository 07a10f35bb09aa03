use shmem::Shared;

#[derive(Shared)]
pub struct Handler {
    pub callback: Box<dyn Fn(u64)>,
}

fn main() {}
