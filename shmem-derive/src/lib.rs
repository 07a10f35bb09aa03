//! `#[derive(Shared)]`: the proc macro of [shmem](https://docs.rs/shmem).
//!
//! Use it through the `shmem` facade crate, which documents it. The macro
//! runs in three stages: `parse` turns the input into a typed AST,
//! `check` enforces the layout rules (all violations reported at once,
//! each on the offending token), and `expand` emits the `#[repr(C)]`
//! shared twin and the `shmem::Shared` impl.
#![deny(unsafe_op_in_unsafe_fn)]

mod check;
mod ctxt;
mod expand;
mod parse;
mod symbol;
mod worker;

use proc_macro::TokenStream;

/// Derives `shmem::Shared` for a struct with named fields. See the `shmem`
/// crate for the field rules and the generated API.
#[proc_macro_derive(Shared, attributes(shared))]
pub fn derive_shared(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Makes a function a worker that `shmem::spawn` can start in a child
/// process. See `shmem::spawn` for the rules and an example.
#[proc_macro_attribute]
pub fn worker(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    worker::expand(attr.into(), item).unwrap_or_else(syn::Error::into_compile_error).into()
}
