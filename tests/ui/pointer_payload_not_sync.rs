// A type holding a raw pointer can be declared `Pod` (every bit pattern is
// a valid pointer value), but a lock around one must not be shared between
// threads: the pointer is not `Send`.
use shmem::bytemuck::{Pod, Zeroable};

#[derive(Clone, Copy)]
#[repr(transparent)]
struct Handle(*const u8);
// SAFETY: one pointer-sized field, every bit pattern valid, no padding.
unsafe impl Zeroable for Handle {}
// SAFETY: as above.
unsafe impl Pod for Handle {}

fn assert_sync<T: Sync>() {}

fn main() {
    assert_sync::<shmem::Mutex<Handle>>();
    assert_sync::<shmem::RwLock<Handle>>();
    assert_sync::<shmem::SeqLock<Handle>>();
    assert_sync::<shmem::Queue<Handle, 4>>();
    assert_sync::<shmem::Map<u64, Handle, 4>>();
}
