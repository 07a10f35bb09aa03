// Plain fields whose type has no shared form: one error each, saying what
// to write instead.
use shmem::Shared;

#[derive(Shared)]
pub struct Misc {
    pub maybe: Option<u64>,
    pub pair: (u32, u32),
    pub big: u128,
    pub label: shmem::Str<16>,
    pub list: shmem::containers::Vec<u8, 4>,
    pub ok: [u64; 2],
}

fn main() {}
