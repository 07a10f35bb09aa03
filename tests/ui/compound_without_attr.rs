use shmem::Shared;

#[derive(Clone, Copy)]
pub struct Config {
    pub retries: u32,
    pub timeout_ms: u32,
}

#[derive(Shared)]
pub struct App {
    pub hits: u64,
    pub config: Config,
}

fn main() {}
