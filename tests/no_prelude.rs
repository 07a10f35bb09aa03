//! The derive's output uses absolute paths only: it compiles without the prelude.
#![no_implicit_prelude]
#![allow(missing_docs, reason = "test types")]

#[derive(::shmem::Shared)]
pub struct Plain {
    pub a: u64,
    pub b: [f32; 2],
    pub c: Inner,
}

#[derive(::shmem::Shared)]
pub struct Inner {
    pub flag: bool,
}

#[test]
fn compiles_and_describes() {
    let schema = ::shmem::Schema::of::<Plain>();
    ::std::assert_eq!(schema.entries.len(), 4);
    ::std::assert_eq!(<Plain as ::shmem::Shared>::type_name(), "Plain");
}
