// `#[shmem::plain]` is the one line that makes a struct lockable from a
// crate that depends only on `shmem`; an enum gets a message saying what to
// do instead. (This file must fail only on the enum.)
use shmem::Shared;

#[shmem::plain]
pub struct Config {
    pub retries: u32,
    pub timeout_ms: u32,
}

#[derive(Shared)]
pub struct App {
    #[shared(lock)]
    pub config: Config,
    #[shared(seqlock)]
    pub backup: Config,
}

#[shmem::plain]
pub enum Mode {
    Idle,
    Busy,
}

fn main() {}
