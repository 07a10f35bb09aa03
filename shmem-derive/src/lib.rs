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

/// Derives `shmem::Shared` for a struct with named fields, so that it can
/// live in a segment (`shmem::Segment<T>`).
///
/// Generates, beside the struct `Stats`:
/// - `StatsShared`, its `#[repr(C)]` twin in shared memory, which a
///   `Segment<Stats>` dereferences to: one accessor per field, an atomic
///   for each scalar (`seg.hits().fetch_add(1)`), arrays of them, nested
///   twins, and a cross-process lock for a field marked `#[shared(lock)]`,
///   `#[shared(rwlock)]` or `#[shared(seqlock)]`;
/// - `StatsReadOnly`, what a `ReadOnlySegment<Stats>` dereferences to
///   (loads only);
/// - the `Shared` impl: layout fingerprint, schema, load and store.
///
/// The field rules (no pointers, no heap types, no generics) are checked at
/// compile time, each with a message that says what to write instead. The
/// `shmem` crate documentation has the rules in full, with examples.
#[proc_macro_derive(Shared, attributes(shared))]
pub fn derive_shared(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Makes a struct plain data that a lock can hold (`#[shared(lock)]`,
/// `rwlock`, `seqlock`), or a queue or map carry: adds `#[repr(C)]`,
/// `Clone`, `Copy` and bytemuck's `Pod` and `Zeroable` derives through
/// `shmem`'s re-export, so the crate needs no bytemuck dependency.
///
/// ```text
/// #[shmem::plain]
/// pub struct Config {
///     pub retries: u32,
///     pub timeout_ms: u32,
/// }
/// ```
///
/// The struct may hold numbers, arrays and other plain structs, and no
/// padding bytes (order fields from largest to smallest, or add explicit
/// `_pad: [u8; N]` fields); bytemuck's derive says which rule a struct breaks.
#[proc_macro_attribute]
pub fn plain(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    if !attr.is_empty() {
        return syn::Error::new_spanned(attr, "#[shmem::plain] takes no arguments").into_compile_error().into();
    }
    let item = syn::parse_macro_input!(item as syn::DeriveInput);
    if !matches!(item.data, syn::Data::Struct(_)) {
        return syn::Error::new_spanned(
            &item.ident,
            "#[shmem::plain] is for structs: an enum is not plain data (not every bit pattern is a \
             variant); store it as an integer field with named constants",
        )
        .into_compile_error()
        .into();
    }
    quote::quote! {
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::shmem::bytemuck::Pod, ::shmem::bytemuck::Zeroable)]
        #[bytemuck(crate = "::shmem::bytemuck")]
        #[repr(C)]
        #item
    }
    .into()
}

/// Makes `fn name(seg: &Segment<T>, arg: A)` (or `fn name(seg: &Segment<T>)`)
/// a worker that `shmem::spawn` starts in a child process of the same
/// program, type-checked against the segment: `A` is any plain-data value
/// (up to 4 KiB). The program's `main` must call `shmem::init()` first.
/// The `shmem` crate documentation ("Processes") has a complete program.
#[proc_macro_attribute]
pub fn worker(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    worker::expand(attr.into(), item).unwrap_or_else(syn::Error::into_compile_error).into()
}
