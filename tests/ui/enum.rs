use shmem::Shared;

#[derive(Shared)]
pub enum State {
    Idle,
    Busy(u32),
}

fn main() {}
