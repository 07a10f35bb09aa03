use shmem::Shared;

#[derive(Shared)]
pub struct Samples {
    pub names: Vec<String>,
}

fn main() {}
