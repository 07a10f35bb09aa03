//! The `unsafe impl ::shmem::Shared` for the user's struct.

use super::{field_trait, layout_of};
use crate::parse::{Container, Field};
use proc_macro2::TokenStream;
use quote::quote;

/// The field's own fingerprint: the `Shared` fingerprint of its type, or for
/// a locked field the lock kind and the value type as written.
fn field_fingerprint(f: &Field) -> TokenStream {
    let ty = f.ty;
    let trait_ = field_trait(f);
    match f.kind.lock_type() {
        None => quote!(#trait_::FINGERPRINT),
        Some(_) => {
            let text = crate::check::type_text(ty);
            quote!(::shmem::__private::fingerprint::locked(
                #trait_::KIND, #text, ::core::mem::size_of::<#ty>(), ::core::mem::align_of::<#ty>(),
            ))
        }
    }
}

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
        let layout = layout_of(f);
        let field_fp = field_fingerprint(f);
        quote! {
            let __shmem_h = #fp::field(
                __shmem_h, #name, #kind, #field_fp,
                #offset_of!(#twin, #field),
                #size_of::<#layout>(),
                #align_of::<#layout>(),
            );
        }
    });
    let describe = cont.fields.iter().map(|f| {
        let (name, field) = (&f.name, f.ident);
        let trait_ = field_trait(f);
        let path = quote!(&::shmem::__private::std::format!("{}{}", __shmem_prefix, #name));
        let offset = quote!(__shmem_offset + #offset_of!(#twin, #field));
        match f.kind.lock_type() {
            None => quote!(#trait_::describe(__shmem_schema, #path, #offset, 1);),
            Some(_) => {
                let layout = layout_of(f);
                let ty = f.ty;
                let text = crate::check::type_text(ty);
                let value_path = quote!(&::shmem::__private::std::format!("{}{}.value", __shmem_prefix, #name));
                quote! {
                    __shmem_schema.push(#path, #offset, #size_of::<#layout>(), 1, #trait_::KIND);
                    __shmem_schema.push(#value_path, #offset + #trait_::VALUE_OFFSET, #size_of::<#ty>(), 1, #text);
                }
            }
        }
    });
    let store = cont.fields.iter().map(|f| {
        let field = f.ident;
        let trait_ = field_trait(f);
        match f.kind {
            crate::parse::FieldKind::Plain => quote!(#trait_::store(&__shmem_layout.#field, &__shmem_value.#field);),
            _ => quote!(#trait_::store_value(&__shmem_layout.#field, &__shmem_value.#field);),
        }
    });
    let load = cont.fields.iter().map(|f| {
        let field = f.ident;
        let trait_ = field_trait(f);
        match f.kind {
            crate::parse::FieldKind::Plain => quote!(#field: #trait_::load(&__shmem_layout.#field)),
            _ => quote!(#field: #trait_::load_value(&__shmem_layout.#field)),
        }
    });

    quote! {
        // SAFETY: the twin is `#[repr(C)]` and made only of the `Layout`s of
        // `Shared` field types and of `LockedField` locks, so it is valid for
        // every bit pattern, holds no pointers and is mutated only through
        // atomics or locks; the fingerprint hashes the type name and each
        // field's name, kind, fingerprint, offset, size and alignment, then
        // the total size and alignment.
        #[automatically_derived]
        unsafe impl ::shmem::Shared for #ident {
            type Layout = #twin;

            const FINGERPRINT: u64 = {
                let __shmem_h = #fp::start_struct(#type_name);
                #(#fingerprint)*
                #fp::finish_struct(__shmem_h, #size_of::<#twin>(), #align_of::<#twin>())
            };

            fn type_name() -> ::shmem::__private::std::string::String {
                ::shmem::__private::std::borrow::ToOwned::to_owned(#type_name)
            }

            fn describe(
                __shmem_schema: &mut ::shmem::SchemaBuilder,
                __shmem_path: &str,
                __shmem_offset: usize,
                __shmem_count: usize,
            ) {
                let __shmem_prefix = __shmem_schema.enter_struct(
                    __shmem_path, __shmem_offset, #size_of::<#twin>(), __shmem_count, #type_name,
                );
                #(#describe)*
            }

            fn store(__shmem_layout: &#twin, __shmem_value: &Self) {
                #(#store)*
            }

            fn load(__shmem_layout: &#twin) -> Self {
                #ident { #(#load,)* }
            }

            fn __only_derive_is_allowed_to_implement_this_trait() {}
        }
    }
}
