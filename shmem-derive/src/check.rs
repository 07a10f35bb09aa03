//! The layout rules that syntax can see, one function each.
//!
//! What syntax cannot see (a type alias of `String`, a foreign struct) is
//! caught afterwards by the compiler: every plain field type must implement
//! `shmem::Shared`, whose `on_unimplemented` message says what to do.

use crate::ctxt::Ctxt;
use crate::parse::{Container, Field};

/// Runs every rule, recording all violations.
pub(crate) fn check(cx: &Ctxt, cont: &Container) {
    check_generics(cx, cont);
    for field in &cont.fields {
        if !check_no_addresses(cx, field, field.ty) && field.kind == crate::parse::FieldKind::Plain {
            check_plain(cx, field, field.ty);
        }
    }
}

/// Plain (unlocked) fields whose type syntax shows has no shared form:
/// one error that says what to write, instead of the compiler's several
/// copies of "`Shared` is not implemented".
fn check_plain(cx: &Ctxt, field: &Field, ty: &syn::Type) {
    let report = |why: &str, remedy: &str| {
        cx.error_spanned_by(
            ty,
            format_args!("field `{}` has type `{}`, {why}; {remedy}", field.name, type_text(field.ty),),
        );
    };
    match ty {
        syn::Type::Array(a) => check_plain(cx, field, &a.elem),
        syn::Type::Paren(p) => check_plain(cx, field, &p.elem),
        syn::Type::Group(g) => check_plain(cx, field, &g.elem),
        syn::Type::Tuple(t) if t.elems.is_empty() => report("the unit type, which holds nothing", "remove the field"),
        syn::Type::Tuple(_) => report(
            "a tuple, which has no shared form",
            "use a `#[derive(Shared)]` struct with named fields, or an array if the elements have one type",
        ),
        syn::Type::Path(p) => {
            let Some(last) = p.path.segments.last() else { return };
            let generic_args = match &last.arguments {
                syn::PathArguments::AngleBracketed(a) => a.args.len(),
                _ => 0,
            };
            match last.ident.to_string().as_str() {
                "Option" => report(
                    "an `Option`, which has no shared form",
                    "store a `bool` flag beside the value (`has_x: bool, x: u64`), or a value that means \"none\"",
                ),
                "u128" | "i128" => report(
                    "a 128-bit integer, which has no lock-free atomic",
                    "split it into two `u64` fields, or put it behind `#[shared(seqlock)]` or `#[shared(lock)]`",
                ),
                "Str" => report(
                    "a fixed-capacity string, which is read and written as a whole",
                    "put it behind `#[shared(seqlock)]` (readers never block) or `#[shared(lock)]`",
                ),
                "Vec" if generic_args == 2 => report(
                    "a fixed-capacity vector, which is read and written as a whole",
                    "put it behind `#[shared(lock)]`",
                ),
                _ => {}
            }
        }
        _ => {}
    }
}

/// No lifetimes or generic parameters. A lifetime would borrow from one
/// process's memory; a generic parameter would make the layout (and its
/// fingerprint) depend on the caller, which two programs attaching by name
/// cannot agree on.
fn check_generics(cx: &Ctxt, cont: &Container) {
    for param in &cont.original.generics.params {
        match param {
            syn::GenericParam::Lifetime(l) => cx.error_spanned_by(
                l,
                "#[derive(Shared)] structs cannot have lifetime parameters: \
                 data in shared memory cannot borrow from one process's memory; store values inline",
            ),
            syn::GenericParam::Type(_) | syn::GenericParam::Const(_) => cx.error_spanned_by(
                param,
                "#[derive(Shared)] structs cannot have generic parameters: \
                 the layout fingerprint must be fixed at compile time; use concrete types",
            ),
        }
    }
}

/// Nothing that holds an address: an address means nothing in another
/// process, and a heap pointer would point into the writer's heap.
/// Returns whether it reported anything.
fn check_no_addresses(cx: &Ctxt, field: &Field, ty: &syn::Type) -> bool {
    let report = |what: &str, remedy: &str| {
        cx.error_spanned_by(
            ty,
            format_args!(
                "field `{}` has type `{}`, {what}, which means nothing in another process; {remedy}",
                field.name,
                type_text(field.ty),
            ),
        );
        true
    };
    match ty {
        syn::Type::Reference(_) => report("a reference", "store the value itself"),
        syn::Type::Ptr(_) => report("a raw pointer", "store an index or offset (an integer) instead"),
        syn::Type::BareFn(_) => report("a function pointer", "store an integer that selects the function"),
        syn::Type::TraitObject(_) | syn::Type::ImplTrait(_) => {
            report("a trait object (a pointer to a vtable)", "use a concrete plain-data type")
        }
        syn::Type::Slice(_) => report("a slice (unsized)", "use a fixed-size array `[T; N]`"),
        syn::Type::Array(a) => check_no_addresses(cx, field, &a.elem),
        syn::Type::Paren(p) => check_no_addresses(cx, field, &p.elem),
        syn::Type::Group(g) => check_no_addresses(cx, field, &g.elem),
        syn::Type::Tuple(t) => {
            // Every element is checked (reports all problems), not just up to the first.
            let mut any = false;
            for e in &t.elems {
                any |= check_no_addresses(cx, field, e);
            }
            any
        }
        syn::Type::Path(p) => {
            if p.path.segments.first().is_some_and(|s| s.ident == "shmem") {
                return false;
            }
            let Some(last) = p.path.segments.last() else { return false };
            let generic_args = match &last.arguments {
                syn::PathArguments::AngleBracketed(a) => a.args.len(),
                _ => 0,
            };
            let heap = "a heap pointer";
            // Names users often give their own types are flagged only when
            // written with a std path; a bare `Cell` may be the user's struct
            // (the `Shared` trait bound still catches `std::cell::Cell` imported
            // by `use`).
            let std_path = p.path.segments.len() > 1
                && p.path
                    .segments
                    .first()
                    .is_some_and(|s| matches!(s.ident.to_string().as_str(), "std" | "core" | "alloc"));
            let reported = match last.ident.to_string().as_str() {
                "Box" => report(heap, "store the value inline"),
                "String" | "str" | "OsString" | "CString" | "PathBuf" | "Cow" => {
                    report(heap, "use `shmem::Str<N>` (a fixed-capacity string) behind `#[shared(lock)]` or `#[shared(seqlock)]`")
                }
                "Vec" if generic_args <= 1 => {
                    report(heap, "use a fixed-size array `[T; N]`, or `shmem::containers::Vec<T, N>` behind `#[shared(lock)]`")
                }
                "HashMap" | "HashSet" | "BTreeMap" | "BTreeSet" => {
                    report(heap, "use `shmem::Map<K, V, N>`, a fixed-capacity map shared by all processes")
                }
                "VecDeque" | "LinkedList" | "BinaryHeap" => {
                    report(heap, "use `shmem::Queue<T, N>` or a fixed-size array `[T; N]`")
                }
                "Rc" | "Arc" => {
                    report("a reference-counted pointer", "store the value inline: the segment already shares it")
                }
                "Cell" | "RefCell" | "UnsafeCell" | "Mutex" | "RwLock" | "Weak" | "Path" if std_path => report(
                    "a process-local cell or lock",
                    "store the plain value; scalars are atomic already, and `#[shared(lock)]` gives a cross-process lock",
                ),
                name if name.starts_with("Atomic") && name != "Atomic" => report(
                    "a process-local atomic",
                    "store the plain scalar (e.g. `u64`): every scalar field is atomic in shared memory",
                ),
                _ => false,
            };
            if reported {
                // The outer type is the problem; its arguments need no second report.
                return true;
            }
            let mut any = false;
            if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
                for arg in &args.args {
                    if let syn::GenericArgument::Type(inner) = arg {
                        any |= check_no_addresses(cx, field, inner);
                    }
                }
            }
            any
        }
        _ => false,
    }
}

/// A type as users write it (`Vec<String>`, not `Vec < String >`).
pub(crate) fn type_text(ty: &syn::Type) -> String {
    let raw = quote::ToTokens::to_token_stream(ty).to_string();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let prev = out.chars().last();
        let drop_space = c == ' '
            && (matches!(next, Some('<' | '>' | ',' | ':' | ']' | ')' | ';'))
                || matches!(prev, Some('<' | '&' | ':' | '[' | '(' | '*')));
        if !drop_space {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn errors(input: syn::DeriveInput) -> Vec<String> {
        let cx = Ctxt::new();
        if let Some(cont) = crate::parse::container(&cx, &input) {
            check(&cx, &cont);
        }
        cx.check().err().map(|e| e.into_iter().map(|e| e.to_string()).collect()).unwrap_or_default()
    }

    #[test]
    fn type_text_reads_naturally() {
        assert_eq!(type_text(&parse_quote!(Vec<String>)), "Vec<String>");
        assert_eq!(type_text(&parse_quote!(&'a [u8; 4])), "&'a [u8; 4]");
        assert_eq!(type_text(&parse_quote!(std::rc::Rc<u8>)), "std::rc::Rc<u8>");
    }

    #[test]
    fn all_violations_at_once() {
        let errs = errors(parse_quote! {
            struct S<'a, T> {
                ok: [u64; 4],
                names: Vec<String>,
                r: &'a u8,
                p: *const u8,
                nested: Option<Box<u8>>,
                atomic: std::sync::atomic::AtomicU64,
            own_cell: Cell,
            std_cell: std::cell::Cell<u8>,
                keep: shmem::Vec<u8, 4>,
                t: T,
            }
        });
        assert_eq!(errs.len(), 9, "{errs:#?}");
        assert!(errs[0].contains("lifetime"));
        assert!(errs[1].contains("generic"));
        assert!(errs[2].contains("field `names` has type `Vec<String>`"), "reported once, for the outer type");
        assert!(errs[3].contains("a reference"));
        assert!(errs[4].contains("a raw pointer"));
        assert!(errs[5].contains("field `nested` has type `Option<Box<u8>>`"), "found inside Option");
        assert!(errs[6].contains("process-local atomic"));
        assert!(errs[7].contains("field `std_cell`"), "a user's own `Cell` is fine, std's is not");
        assert!(errs[8].contains("field `keep`") && errs[8].contains("#[shared(lock)]"), "no pointer, but locked only");
    }
}
