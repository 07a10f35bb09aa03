//! The `unsafe impl ::shmem::Shared` for the user's struct.

use super::shared_of;
use crate::parse::Container;
use proc_macro2::TokenStream;
use quote::quote;

pub(super) fn shared_impl(cont: &Container, twin: &syn::Ident) -> TokenStream {
    let ident = &cont.original.ident;
    let type_name = ident.to_string();
    let fp = quote!(::shmem::__private::fingerprint);
    let size_of = quote!(::core::mem::size_of);
    let align_of = quote!(::core::mem::align_of);
    let offset_of = quote!(::core::mem::offset_of);

    let fingerprint = cont.fields.iter().map(|f| {
        let (name, field) = (&f.name, f.ident);
        let kind = f.kind.keyword();
        let shared = shared_of(f.ty);
        quote! {
            let h = #fp::field(
                h, #name, #kind, #shared::FINGERPRINT,
                #offset_of!(#twin, #field),
                #size_of::<#shared::Layout>(),
                #align_of::<#shared::Layout>(),
            );
        }
    });
    let describe = cont.fields.iter().map(|f| {
        let (name, field) = (&f.name, f.ident);
        let shared = shared_of(f.ty);
        quote! {
            #shared::describe(
                schema,
                &::shmem::__private::std::format!("{}{}", prefix, #name),
                offset + #offset_of!(#twin, #field),
                1,
            );
        }
    });
    let store = cont.fields.iter().map(|f| {
        let field = f.ident;
        let shared = shared_of(f.ty);
        quote!(#shared::store(&layout.#field, &value.#field);)
    });
    let load = cont.fields.iter().map(|f| {
        let field = f.ident;
        let shared = shared_of(f.ty);
        quote!(#field: #shared::load(&layout.#field))
    });

    quote! {
        // SAFETY: the twin is `#[repr(C)]` and made only of the `Layout`s of
        // `Shared` field types, so it is valid for every bit pattern, holds no
        // pointers and is mutated only through their atomics or locks; the
        // fingerprint hashes the type name and each field's name, kind,
        // fingerprint, offset, size and alignment, then the total size and
        // alignment.
        #[automatically_derived]
        unsafe impl ::shmem::Shared for #ident {
            type Layout = #twin;

            const FINGERPRINT: u64 = {
                let h = #fp::start_struct(#type_name);
                #(#fingerprint)*
                #fp::finish_struct(h, #size_of::<#twin>(), #align_of::<#twin>())
            };

            fn type_name() -> ::shmem::__private::std::string::String {
                ::shmem::__private::std::borrow::ToOwned::to_owned(#type_name)
            }

            fn describe(schema: &mut ::shmem::SchemaBuilder, path: &str, offset: usize, count: usize) {
                let prefix = schema.enter_struct(path, offset, #size_of::<#twin>(), count, #type_name);
                #(#describe)*
            }

            fn store(layout: &#twin, value: &Self) {
                #(#store)*
            }

            fn load(layout: &#twin) -> Self {
                #ident { #(#load,)* }
            }

            fn __only_derive_is_allowed_to_implement_this_trait() {}
        }
    }
}
