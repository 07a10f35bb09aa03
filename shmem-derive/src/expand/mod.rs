//! Code generation from the checked AST: the twin struct ([`twin`]) and the
//! `Shared` impl ([`shared_impl`]).
//!
//! Everything is emitted with absolute paths (`::shmem::...`, `::core::...`)
//! so it compiles under `#![no_implicit_prelude]`; impls sit inside
//! `const _: () = { ... };`.

mod shared_impl;
mod twin;

use crate::ctxt::Ctxt;
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
    Ok(quote! {
        #twin
        const _: () = {
            #accessors
            #imp
        };
    })
}

/// The twin's name: `Stats` -> `StatsShared`.
fn twin_ident(ident: &syn::Ident) -> syn::Ident {
    format_ident!("{}Shared", ident)
}

/// `<TY as ::shmem::Shared>`, spanned on the field type so that a type
/// without a shared form is reported on the field.
fn shared_of(ty: &syn::Type) -> TokenStream {
    quote_spanned!(ty.span()=> <#ty as ::shmem::Shared>)
}
