//! The keywords of `#[shared(...)]`.

use std::fmt;
use syn::{Ident, Path};

#[derive(Copy, Clone)]
pub(crate) struct Symbol(&'static str);

/// The attribute itself: `#[shared(...)]`.
pub(crate) const SHARED: Symbol = Symbol("shared");
/// `#[shared(lock)]`: the field lives behind a cross-process mutex.
pub(crate) const LOCK: Symbol = Symbol("lock");
/// `#[shared(rwlock)]`: behind a cross-process reader-writer lock.
pub(crate) const RWLOCK: Symbol = Symbol("rwlock");
/// `#[shared(seqlock)]`: behind a sequence lock.
pub(crate) const SEQLOCK: Symbol = Symbol("seqlock");

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
