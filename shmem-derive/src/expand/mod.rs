//! Code generation from the checked AST: the twin struct ([`twin`]) and the
//! `Shared` impl ([`shared_impl`]).
//!
//! Everything is emitted with absolute paths (`::shmem::...`, `::core::...`)
//! so it compiles under `#![no_implicit_prelude]`; impls sit inside
//! `const _: () = { ... };`.

mod shared_impl;
mod twin;

use crate::ctxt::Ctxt;
use crate::parse::Field;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

/// The whole derive: parse, check, expand.
pub(crate) fn derive(input: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let cont = crate::parse::container(&cx, input);
    if let Some(cont) = &cont {
        crate::check::check(&cx, cont);
    }
    cx.check()?;
    let Some(cont) = cont else {
        return Err(syn::Error::new_spanned(&input.ident, "#[derive(Shared)] needs a struct with named fields"));
    };
    let twin_ident = twin_ident(&cont.original.ident);
    let twin = twin::twin(&cont, &twin_ident);
    let imp = shared_impl::shared_impl(&cont, &twin_ident);
    let accessors = twin::accessors(&cont, &twin_ident);
    let ro_ident = format_ident!("{}ReadOnly", cont.original.ident);
    let ro_struct = twin::read_only_struct(&cont, &twin_ident, &ro_ident);
    let ro_impl = twin::read_only_impl(&cont, &twin_ident, &ro_ident);
    // A locked field's type must be plain data: checked first, with a
    // message that says how (`#[shmem::plain]`).
    let plain_checks = cont.fields.iter().filter(|f| f.kind.lock_type().is_some()).map(|f| {
        let ty = f.ty;
        quote_spanned!(ty.span()=> ::shmem::__private::assert_plain::<#ty>();)
    });
    Ok(quote! {
        const _: () = {
            #(#plain_checks)*
        };
        #twin
        #ro_struct
        const _: () = {
            #accessors
            #ro_impl
            #imp
        };
    })
}

/// The twin's name: `Stats` -> `StatsShared`.
fn twin_ident(ident: &syn::Ident) -> syn::Ident {
    format_ident!("{}Shared", ident)
}

/// The type of a field inside the twin: `<TY as ::shmem::Shared>::Layout`
/// for a plain field, `::shmem::Mutex<TY>` (or `RwLock`, `SeqLock`) for a
/// locked one. Spanned on the field type so that errors land on the field.
fn layout_of(field: &Field) -> TokenStream {
    let ty = field.ty;
    match field.kind.lock_type() {
        None => quote_spanned!(ty.span()=> <#ty as ::shmem::Shared>::Layout),
        Some(lock) => quote_spanned!(ty.span()=> #lock<#ty>),
    }
}

/// The trait through which generated code reaches a field's shared form:
/// `<TY as ::shmem::Shared>` or `<::shmem::Mutex<TY> as ::shmem::LockedField<TY>>`.
fn field_trait(field: &Field) -> TokenStream {
    let ty = field.ty;
    match field.kind.lock_type() {
        None => quote_spanned!(ty.span()=> <#ty as ::shmem::Shared>),
        Some(lock) => quote_spanned!(ty.span()=> <#lock<#ty> as ::shmem::LockedField<#ty>>),
    }
}
