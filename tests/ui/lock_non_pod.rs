use shmem::Shared;

// Not plain data: has padding and no `Pod` impl.
#[derive(Clone, Copy)]
pub struct Config {
    pub retries: u8,
    pub timeout_ms: u32,
}

#[derive(Shared)]
pub struct App {
    #[shared(lock)]
    pub config: Config,
}

fn main() {}
