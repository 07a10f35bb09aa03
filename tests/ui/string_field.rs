use shmem::Shared;

#[derive(Shared)]
pub struct User {
    pub id: u32,
    pub name: String,
}

fn main() {}
