//! `syn::DeriveInput` -> the typed AST the later stages match on.

use crate::ctxt::Ctxt;
use crate::symbol::{LOCK, RWLOCK, SEQLOCK, SHARED};
use syn::ext::IdentExt;

/// A struct deriving `Shared`, with its named fields.
pub(crate) struct Container<'a> {
    pub(crate) original: &'a syn::DeriveInput,
    pub(crate) fields: Vec<Field<'a>>,
}

/// One named field.
pub(crate) struct Field<'a> {
    pub(crate) original: &'a syn::Field,
    pub(crate) ident: &'a syn::Ident,
    /// The name without a `r#` prefix, as recorded in schemas.
    pub(crate) name: String,
    pub(crate) ty: &'a syn::Type,
    pub(crate) kind: FieldKind,
}

/// How a field lives in shared memory, decided once from its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// No attribute: the type's own shared form (an atomic, an array of
    /// atomics, or a nested shared struct), through `shmem::Shared`.
    Plain,
    /// `#[shared(lock)]`.
    Lock,
    /// `#[shared(rwlock)]`.
    RwLock,
    /// `#[shared(seqlock)]`.
    SeqLock,
}

impl FieldKind {
    /// The shared type wrapping a locked field's value, `None` for plain fields.
    pub(crate) fn lock_type(self) -> Option<proc_macro2::TokenStream> {
        match self {
            FieldKind::Plain => None,
            FieldKind::Lock => Some(quote::quote!(::shmem::Mutex)),
            FieldKind::RwLock => Some(quote::quote!(::shmem::RwLock)),
            FieldKind::SeqLock => Some(quote::quote!(::shmem::SeqLock)),
        }
    }

    /// The keyword, as recorded in fingerprints.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            FieldKind::Plain => "plain",
            FieldKind::Lock => "lock",
            FieldKind::RwLock => "rwlock",
            FieldKind::SeqLock => "seqlock",
        }
    }
}

/// Parses the input. Returns `None` (with errors in `cx`) when it is not a
/// struct with named fields.
pub(crate) fn container<'a>(cx: &Ctxt, input: &'a syn::DeriveInput) -> Option<Container<'a>> {
    let named = match &input.data {
        syn::Data::Struct(syn::DataStruct { fields: syn::Fields::Named(named), .. }) => named,
        syn::Data::Struct(syn::DataStruct { fields: syn::Fields::Unnamed(_), .. }) => {
            cx.error_spanned_by(
                &input.ident,
                "#[derive(Shared)] needs named fields, and this is a tuple struct; \
                 name the fields (`struct S { a: u32 }`) so the segment schema can describe them",
            );
            return None;
        }
        syn::Data::Struct(syn::DataStruct { fields: syn::Fields::Unit, .. }) => {
            cx.error_spanned_by(
                &input.ident,
                "#[derive(Shared)] needs named fields, and this is a unit struct; write `struct S {}` for an empty one",
            );
            return None;
        }
        syn::Data::Enum(data) => {
            cx.error_spanned_by(
                data.enum_token,
                "#[derive(Shared)] cannot be used on an enum: its layout is not a fixed set of fields; \
                 store the variant in an integer field (e.g. `state: u8` with named constants)",
            );
            return None;
        }
        syn::Data::Union(data) => {
            cx.error_spanned_by(
                data.union_token,
                "#[derive(Shared)] cannot be used on a union: another process cannot know which field is live; \
                 use a struct with named fields",
            );
            return None;
        }
    };
    let fields = named
        .named
        .iter()
        .filter_map(|f| {
            let ident = f.ident.as_ref()?;
            Some(Field { original: f, ident, name: ident.unraw().to_string(), ty: &f.ty, kind: field_kind(cx, f) })
        })
        .collect();
    Some(Container { original: input, fields })
}

/// Reads the `#[shared(...)]` attributes of a field.
fn field_kind(cx: &Ctxt, field: &syn::Field) -> FieldKind {
    let mut kind: Option<(FieldKind, syn::Path)> = None;
    for attr in field.attrs.iter().filter(|a| a.path() == &SHARED) {
        let result = attr.parse_nested_meta(|meta| {
            let found = if meta.path == LOCK {
                FieldKind::Lock
            } else if meta.path == RWLOCK {
                FieldKind::RwLock
            } else if meta.path == SEQLOCK {
                FieldKind::SeqLock
            } else {
                let path = quote::ToTokens::to_token_stream(&meta.path).to_string().replace(' ', "");
                return Err(meta.error(format_args!(
                    "unknown shared option `{path}`; expected `{LOCK}`, `{RWLOCK}` or `{SEQLOCK}`"
                )));
            };
            if let Some((previous, _)) = &kind {
                let msg = if *previous == found {
                    format!("duplicate shared option `{}`", found.keyword())
                } else {
                    format!(
                        "conflicting shared options `{}` and `{}`; a field has one kind of lock",
                        previous.keyword(),
                        found.keyword()
                    )
                };
                cx.error_spanned_by(&meta.path, msg);
            } else {
                kind = Some((found, meta.path.clone()));
            }
            Ok(())
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
    kind.map_or(FieldKind::Plain, |(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn parse(input: syn::DeriveInput) -> (Vec<(String, FieldKind)>, syn::Result<()>) {
        let cx = Ctxt::new();
        let fields = container(&cx, &input)
            .map(|c| c.fields.iter().map(|f| (f.name.clone(), f.kind)).collect())
            .unwrap_or_default();
        (fields, cx.check())
    }

    #[test]
    fn kinds_from_attributes() {
        let (fields, res) = parse(parse_quote! {
            struct S {
                a: u64,
                #[shared(lock)] b: [i64; 4],
                #[shared(rwlock)] c: Config,
                #[shared(seqlock)] r#type: Config,
            }
        });
        assert!(res.is_ok());
        assert_eq!(
            fields,
            vec![
                ("a".into(), FieldKind::Plain),
                ("b".into(), FieldKind::Lock),
                ("c".into(), FieldKind::RwLock),
                ("type".into(), FieldKind::SeqLock),
            ]
        );
    }

    #[test]
    fn every_bad_option_is_reported() {
        let (_, res) = parse(parse_quote! {
            struct S {
                #[shared(mutex)] a: u64,
                #[shared(lock, lock)] b: u64,
                #[shared(lock)] #[shared(seqlock)] c: u64,
            }
        });
        let msgs: Vec<String> = res.unwrap_err().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("unknown shared option `mutex`"));
        assert!(msgs[1].contains("duplicate shared option `lock`"));
        assert!(msgs[2].contains("conflicting shared options `lock` and `seqlock`"));
    }

    #[test]
    fn non_structs_are_rejected() {
        for input in [
            parse_quote! { enum E { A } },
            parse_quote! { union U { a: u32 } },
            parse_quote! { struct T(u32); },
            parse_quote! { struct U; },
        ] {
            let (fields, res) = parse(input);
            assert!(fields.is_empty());
            assert!(res.is_err());
        }
    }
}
