//! Error collector: every error of one derive is reported at once.

use std::cell::RefCell;
use std::fmt::Display;

/// Collects errors while the input is parsed and checked. Like serde's
/// `Ctxt`: dropping it without calling [`Ctxt::check`] is a bug and panics.
pub(crate) struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt { errors: RefCell::new(Some(Vec::new())) }
    }

    /// Records an error spanning the tokens of `node`.
    pub(crate) fn error_spanned_by<T: quote::ToTokens, M: Display>(&self, node: T, msg: M) {
        self.syn_error(syn::Error::new_spanned(node, msg));
    }

    /// Records an error built by syn.
    pub(crate) fn syn_error(&self, err: syn::Error) {
        if let Some(errors) = self.errors.borrow_mut().as_mut() {
            errors.push(err);
        }
    }

    /// All recorded errors, combined into one.
    pub(crate) fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().unwrap_or_default();
        let mut iter = errors.into_iter();
        let Some(mut combined) = iter.next() else { return Ok(()) };
        for rest in iter {
            combined.combine(rest);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("forgot to check for errors");
        }
    }
}
