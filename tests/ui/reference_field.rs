use shmem::Shared;

static LIMIT: u64 = 10;

#[derive(Shared)]
pub struct Config {
    pub limit: &'static u64,
}

fn main() {
    let _ = &LIMIT;
}
