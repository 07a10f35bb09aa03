use shmem::Shared;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Shared)]
pub struct Counted {
    pub local: Rc<u64>,
    pub shared: Arc<u64>,
}

fn main() {}
