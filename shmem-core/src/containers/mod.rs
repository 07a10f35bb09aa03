//! Fixed-capacity containers that live in shared memory and need no
//! serialisation: [`Str`], [`Vec`], [`Queue`] and
//! [`Map`].
//!
//! `Str<N>` and `Vec<T, N>` are plain data (`bytemuck::Pod`): put them
//! behind `#[shared(lock)]` / `#[shared(seqlock)]`, use them as queue items
//! or map keys and values. `Queue` and `Map` synchronise themselves and are
//! plain fields (or whole segments).

pub mod map;
pub mod queue;
pub mod str;
pub mod vec;

pub use self::map::Map;
pub use self::queue::{PopError, PushError, Queue};
pub use self::str::{Str, StrError};
pub use self::vec::{Full, Vec};
