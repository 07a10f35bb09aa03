use shmem::Shared;

#[derive(Shared)]
pub struct Everything {
    pub ok: u64,
    pub name: String,
    pub items: Vec<u32>,
    #[shared(spinlock)]
    pub other: u64,
}

fn main() {}
