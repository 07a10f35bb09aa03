//! `#[shmem::worker]`: registers a function as a worker.
//!
//! The function is left exactly as written. Next to it the macro emits an
//! `inventory` registration: the name (the path of the function's type, as
//! `shmem::spawn` computes it) and a caller that attaches to the segment and
//! runs the function. A child process finds its worker through it.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;

/// Expands the attribute on `item`.
pub(crate) fn expand(attr: TokenStream, item: syn::ItemFn) -> syn::Result<TokenStream> {
    if !attr.is_empty() {
        return Err(syn::Error::new(attr.span(), "#[shmem::worker] takes no options"));
    }
    let sig = &item.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(sig.generics.span(), "a worker cannot be generic: a child finds it by name"));
    }
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new(a.span(), "a worker cannot be async"));
    }
    if !matches!(sig.output, syn::ReturnType::Default) {
        return Err(syn::Error::new(
            sig.output.span(),
            "a worker returns nothing; a panic reports failure to the parent",
        ));
    }
    let usage = "a worker takes `(seg: &Segment<T>)` or `(seg: &Segment<T>, arg: A)` with `A: bytemuck::Pod`";
    let params: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .map(|p| match p {
            syn::FnArg::Typed(t) => Ok(t),
            syn::FnArg::Receiver(r) => Err(syn::Error::new(r.span(), usage)),
        })
        .collect::<syn::Result<_>>()?;
    if params.is_empty() || params.len() > 2 {
        return Err(syn::Error::new(sig.inputs.span(), usage));
    }
    let segment_type = segment_type(&params[0].ty).ok_or_else(|| syn::Error::new(params[0].ty.span(), usage))?;
    let arg_type = params.get(1).map_or_else(
        || quote!(()),
        |p| {
            let ty = &p.ty;
            quote!(#ty)
        },
    );
    let name = &sig.ident;
    Ok(quote! {
        #item

        ::shmem::__private::inventory::submit! {
            ::shmem::__private::WorkerEntry {
                name: || ::shmem::__private::__worker_name(&#name),
                call: |__shmem_segment, __shmem_arg| {
                    ::shmem::__private::__call_worker::<#segment_type, #arg_type, _, _>(__shmem_segment, __shmem_arg, #name)
                },
            }
        }
    })
}

/// `T` from `&Segment<T>` (any path ending in `Segment`).
fn segment_type(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Reference(r) = ty else { return None };
    if r.mutability.is_some() {
        return None;
    }
    let syn::Type::Path(p) = &*r.elem else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Segment" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(t) if args.args.len() == 1 => Some(t),
        _ => None,
    }
}
