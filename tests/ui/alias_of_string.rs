use shmem::Shared;

// An alias hides the type from the macro; the trait bound still catches it.
type Name = String;

#[derive(Shared)]
pub struct User {
    pub name: Name,
}

fn main() {}
