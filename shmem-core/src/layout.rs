//! The [`Shared`] trait, layout fingerprints and segment schemas.
//!
//! A type that can live in a segment implements [`Shared`]: it names its
//! shared twin ([`Shared::Layout`], a `#[repr(C)]` type made of atomics and
//! cross-process primitives), a compile-time [fingerprint](Shared::FINGERPRINT)
//! of that layout, a [schema](Schema) tools can read without the Rust type,
//! and conversions between a plain value and the twin.
//!
//! It is implemented here for every [`Scalar`] (twin: [`Atomic<T>`]) and for
//! arrays of any `Shared` type (twin: an array of twins), and by
//! `#[derive(Shared)]` for structs. Write the derive, not the impl.

use crate::sync::atomic::{Atomic, Scalar};
use core::sync::atomic::Ordering;
use std::fmt::Write as _;

/// A type whose values can live in shared memory.
///
/// # Safety
///
/// Implement it with `#[derive(Shared)]`, never by hand. The derive and this
/// crate guarantee what segments rely on:
/// - `Layout` is valid for every bit pattern (in particular all zeroes), holds
///   no pointers, and is mutated through `&Layout` only by atomics or
///   cross-process synchronisation primitives;
/// - `FINGERPRINT` changes whenever the layout (type name, field names, field
///   types, offsets, sizes, alignment) changes, so two processes that agree
///   on it agree on every byte;
/// - `describe` reports offsets and sizes inside `Layout`.
///
/// ```
/// use shmem::{Schema, Segment, Shared};
///
/// #[derive(Shared, Default)] // never implement `Shared` by hand
/// struct Point {
///     x: i32,
///     y: i32,
/// }
///
/// println!("{}", Schema::of::<Point>().to_text()); // the layout other processes check
/// let p = Segment::create_anonymous(&Point { x: 1, y: 2 })?;
/// assert_eq!(Segment::snapshot(&p).y, 2);
/// # Ok::<(), shmem::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a plain field of a #[derive(Shared)] struct",
    label = "`{Self}` has no atomic form in shared memory",
    note = "plain fields may be integers up to 64 bits, bool, char, f32, f64, arrays of them, \
            other #[derive(Shared)] structs, shmem::Event, Semaphore, Barrier, Condvar, Queue and Map",
    note = "for a struct of plain data, mark its definition #[shmem::plain] and put the field behind \
            #[shared(lock)], #[shared(rwlock)] or #[shared(seqlock)]; an enum is not plain data: \
            store it as an integer field (`mode: u8`) with named constants"
)]
pub unsafe trait Shared: Sized + 'static {
    /// The `#[repr(C)]` twin that lives in the segment (and its read-only
    /// form, for [`crate::ReadOnlySegment`]).
    type Layout: Send + Sync + 'static + crate::read_only::ReadOnlyForm;

    /// A hash of everything about `Layout` that two processes must agree on.
    const FINGERPRINT: u64;

    /// The type's name as recorded in segment headers (`"Stats"`, `"u64"`,
    /// `"[f64; 4]"`): the bare name, without module path, so that separate
    /// programs defining the same struct agree.
    fn type_name() -> String;

    /// Appends this type's schema entries for a field at `path`, `offset`
    /// bytes into the segment data, repeated `count` times (arrays).
    fn describe(schema: &mut SchemaBuilder, path: &str, offset: usize, count: usize);

    /// Writes `value` into the twin (field by field; not one atomic step).
    fn store(layout: &Self::Layout, value: &Self);

    /// Reads the twin into a plain value (field by field; not one atomic step).
    fn load(layout: &Self::Layout) -> Self;

    #[doc(hidden)]
    fn __only_derive_is_allowed_to_implement_this_trait();
}

macro_rules! scalar_shared {
    ($($t:ty),*) => {$(
        // SAFETY: `Atomic<T>` is `repr(transparent)` over a `core` integer
        // atomic, valid for every bit pattern and free of pointers; the
        // fingerprint hashes the kind name, size and alignment.
        unsafe impl Shared for $t {
            type Layout = Atomic<$t>;
            const FINGERPRINT: u64 = fingerprint::scalar(<$t as Scalar>::KIND, core::mem::size_of::<Atomic<$t>>());
            fn type_name() -> String {
                <$t as Scalar>::KIND.to_owned()
            }
            fn describe(schema: &mut SchemaBuilder, path: &str, offset: usize, count: usize) {
                schema.push(path, offset, core::mem::size_of::<$t>() * count, count, <$t as Scalar>::KIND);
            }
            #[inline]
            fn store(layout: &Atomic<$t>, value: &$t) {
                layout.store_with(*value, Ordering::Relaxed)
            }
            #[inline]
            fn load(layout: &Atomic<$t>) -> $t {
                layout.load_with(Ordering::Acquire)
            }
            fn __only_derive_is_allowed_to_implement_this_trait() {}
        }
    )*};
}

scalar_shared!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, bool, char, f32, f64);

// SAFETY: an array of twins is valid for every bit pattern if each element
// is; the fingerprint hashes the element fingerprint and the length.
unsafe impl<T: Shared, const N: usize> Shared for [T; N] {
    type Layout = [T::Layout; N];
    const FINGERPRINT: u64 = fingerprint::array(T::FINGERPRINT, N);
    fn type_name() -> String {
        format!("[{}; {}]", T::type_name(), N)
    }
    fn describe(schema: &mut SchemaBuilder, path: &str, offset: usize, count: usize) {
        T::describe(schema, path, offset, count * N)
    }
    fn store(layout: &Self::Layout, value: &Self) {
        for (l, v) in layout.iter().zip(value) {
            T::store(l, v);
        }
    }
    fn load(layout: &Self::Layout) -> Self {
        core::array::from_fn(|i| T::load(&layout[i]))
    }
    fn __only_derive_is_allowed_to_implement_this_trait() {}
}

/// The coordination primitives are their own shared form: a field of type
/// `Event` is an `Event` in the segment. `store` copies the state in (for
/// `Barrier`, the party count; arrivals start at zero), `load` reads it back.
macro_rules! primitive_shared {
    ($($t:ty: $kind:literal, |$l:ident| $load:expr, |$dst:ident, $src:ident| $store:expr;)*) => {$(
        // SAFETY: `repr(C)` structs of integer atomics: valid for every bit
        // pattern (zero is the default state), no pointers.
        unsafe impl Shared for $t {
            type Layout = $t;
            const FINGERPRINT: u64 = fingerprint::scalar($kind, core::mem::size_of::<$t>());
            fn type_name() -> String {
                $kind.to_owned()
            }
            fn describe(schema: &mut SchemaBuilder, path: &str, offset: usize, count: usize) {
                schema.push(path, offset, core::mem::size_of::<$t>() * count, count, $kind);
            }
            fn store($dst: &$t, $src: &$t) {
                $store
            }
            fn load($l: &$t) -> $t {
                $load
            }
            fn __only_derive_is_allowed_to_implement_this_trait() {}
        }
    )*};
}

primitive_shared! {
    crate::sync::wait::Event: "event", |l| crate::sync::wait::Event::new(l.is_set()), |dst, src| {
        if src.is_set() { dst.set() } else { dst.clear() }
    };
    crate::sync::wait::Semaphore: "semaphore", |l| crate::sync::wait::Semaphore::new(l.available()), |dst, src| {
        while dst.try_acquire() {}
        for _ in 0..src.available() { dst.release() }
    };
    crate::sync::wait::Barrier: "barrier", |l| crate::sync::wait::Barrier::new(l.parties()), |dst, src| {
        dst.reset(src.parties())
    };
    crate::sync::wait::Condvar: "condvar", |_l| crate::sync::wait::Condvar::new(), |_dst, _src| {};
    crate::sync::raw_mutex::RawMutex: "rawmutex", |_l| crate::sync::raw_mutex::RawMutex::new(), |_dst, _src| {};
}

// SAFETY: `Queue` is `repr(C)`: integer atomics, two zero-valid
// `RawMutex`es and `DataCell<T: Pod>` slots (an `UnsafeCell`); all-zero is an
// empty queue.
// The fingerprint covers the item size and alignment and the capacity.
unsafe impl<T: bytemuck::Pod + Send + Sync, const N: usize> Shared for crate::containers::Queue<T, N> {
    type Layout = Self;
    const FINGERPRINT: u64 = fingerprint::int(
        fingerprint::int(
            fingerprint::int(fingerprint::str(fingerprint::new(), "queue"), size_of::<T>() as u64),
            align_of::<T>() as u64,
        ),
        N as u64,
    );
    fn type_name() -> String {
        // Not `type_name::<T>()`: its text may differ between compilers, and
        // two programs must agree. The fingerprint carries the item layout.
        format!("Queue<[{}B], {N}>", size_of::<T>())
    }
    fn describe(schema: &mut SchemaBuilder, path: &str, offset: usize, count: usize) {
        let kind =
            format!("queue item={} cap={N} slots={}", size_of::<T>(), crate::containers::queue::slots_offset::<T, N>());
        schema.push(path, offset, size_of::<Self>() * count, count, &kind);
    }
    fn store(layout: &Self, value: &Self) {
        layout.clear();
        for item in value.to_vec() {
            let _ = layout.try_push(item);
        }
        if value.is_closed() {
            layout.close();
        }
    }
    fn load(layout: &Self) -> Self {
        let copy = Self::new();
        Self::store(&copy, layout);
        copy
    }
    fn __only_derive_is_allowed_to_implement_this_trait() {}
}

// SAFETY: `Map` is `repr(C)`: shards of a zero-valid `RawMutex` and
// integers, slots of a `u64` mark and plain-data key and value; all-zero is
// an empty map. The fingerprint covers key and value sizes and alignments,
// the slot layout and the capacity.
unsafe impl<K, V, const N: usize> Shared for crate::containers::Map<K, V, N>
where
    K: bytemuck::Pod + std::hash::Hash + Eq + Send + Sync,
    V: bytemuck::Pod + Send + Sync,
{
    type Layout = Self;
    const FINGERPRINT: u64 = {
        let h = fingerprint::str(fingerprint::new(), "map");
        let h = fingerprint::int(fingerprint::int(h, size_of::<K>() as u64), align_of::<K>() as u64);
        let h = fingerprint::int(fingerprint::int(h, size_of::<V>() as u64), align_of::<V>() as u64);
        fingerprint::int(fingerprint::int(h, N as u64), size_of::<Self>() as u64)
    };
    fn type_name() -> String {
        format!("Map<[{}B], [{}B], {N}>", size_of::<K>(), size_of::<V>())
    }
    fn describe(schema: &mut SchemaBuilder, path: &str, offset: usize, count: usize) {
        let kind = format!(
            "map key={} value={} cap={N} shards={} slots={} slot={} key_at={} value_at={}",
            size_of::<K>(),
            size_of::<V>(),
            Self::SHARD_COUNT,
            Self::SLOTS_OFFSET,
            Self::SLOT_SIZE,
            Self::KEY_AT,
            Self::VALUE_AT,
        );
        schema.push(path, offset, size_of::<Self>() * count, count, &kind);
    }

    fn store(layout: &Self, value: &Self) {
        layout.clear();
        for (k, v) in value.to_vec() {
            let _ = layout.insert(k, v);
        }
    }
    fn load(layout: &Self) -> Self {
        let copy = Self::new();
        Self::store(&copy, layout);
        copy
    }
    fn __only_derive_is_allowed_to_implement_this_trait() {}
}

/// The shared form of a field marked `#[shared(lock)]` (and, as they land,
/// `rwlock` / `seqlock`): a lock around a plain-data value of type `T`.
///
/// # Safety
/// As for [`Shared::Layout`]: valid for every bit pattern (all zeroes is an
/// unlocked lock holding a zeroed `T`), no pointers, interior mutability only
/// through the lock.
pub unsafe trait LockedField<T>: Send + Sync + Sized + 'static {
    /// The kind recorded in fingerprints and schemas (`"mutex"`).
    const KIND: &'static str;
    /// Where the value starts inside the lock (for schemas and tools).
    const VALUE_OFFSET: usize;
    /// Writes `value` (taking the lock, ignoring poison).
    fn store_value(&self, value: &T);
    /// Reads a copy (taking the lock, ignoring poison).
    fn load_value(&self) -> T;
}

// SAFETY: `Mutex<T>` is `repr(C)`: a zero-valid lock word, a poison flag
// and a `T: Pod`, valid for any bytes.
unsafe impl<T: PlainData + Send + Sync> LockedField<T> for crate::sync::mutex::Mutex<T> {
    const KIND: &'static str = "mutex";
    const VALUE_OFFSET: usize = core::mem::offset_of!(Self, value);
    fn store_value(&self, value: &T) {
        self.set(*value)
    }
    fn load_value(&self) -> T {
        self.get()
    }
}

// SAFETY: `RwLock<T>` is `repr(C)`: a zero-valid gate, state, poison and
// departure words, zero-valid reader slots (token, count) and a `T: Pod`.
unsafe impl<T: PlainData + Send + Sync> LockedField<T> for crate::sync::rwlock::RwLock<T> {
    const KIND: &'static str = "rwlock";
    const VALUE_OFFSET: usize = core::mem::offset_of!(Self, value);
    fn store_value(&self, value: &T) {
        *self.write().unwrap_or_else(std::sync::PoisonError::into_inner) = *value;
    }
    fn load_value(&self) -> T {
        *self.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// SAFETY: `SeqLock<T>` is `repr(C)`: a sequence word (0 = stable), a poison
// flag, a zero-valid writer lock and a `T: Pod`.
unsafe impl<T: PlainData + Send + Sync> LockedField<T> for crate::sync::seqlock::SeqLock<T> {
    const KIND: &'static str = "seqlock";
    const VALUE_OFFSET: usize = core::mem::offset_of!(Self, value);
    fn store_value(&self, value: &T) {
        self.write(*value)
    }
    fn load_value(&self) -> T {
        self.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Plain data that a lock can hold: [`bytemuck::Pod`]. Only here for its
/// error message, which says how to make a struct plain data.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not plain data, so it cannot be behind #[shared(lock)], #[shared(rwlock)] or #[shared(seqlock)]",
    label = "`{Self}` does not implement `bytemuck::Pod`",
    note = "mark its definition #[shmem::plain] (it adds #[repr(C)], Clone, Copy, Pod and Zeroable): \
            a struct of numbers, bools-as-u8, arrays and other plain structs, without padding bytes",
    note = "an enum is not plain data: store it as an integer (`mode: u8`) with named constants"
)]
pub trait PlainData: bytemuck::Pod {}
impl<T: bytemuck::Pod> PlainData for T {}

/// Used by `#[derive(Shared)]` on each locked field's type, so that a
/// type that is not plain data gets [`PlainData`]'s message first.
#[doc(hidden)]
pub const fn assert_plain<T: PlainData>() {}

/// Compile-time layout fingerprints: 64-bit FNV-1a over a canonical
/// description of the layout. Used by the derive; public so generated code
/// can call it.
#[doc(hidden)]
pub mod fingerprint {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// The starting state.
    pub const fn new() -> u64 {
        OFFSET
    }

    /// Mixes bytes into the state.
    pub const fn bytes(mut h: u64, b: &[u8]) -> u64 {
        let mut i = 0;
        while i < b.len() {
            h ^= b[i] as u64;
            h = h.wrapping_mul(PRIME);
            i += 1;
        }
        h
    }

    /// Mixes a string, length-prefixed so `("ab","c")` and `("a","bc")` differ.
    pub const fn str(h: u64, s: &str) -> u64 {
        bytes(int(h, s.len() as u64), s.as_bytes())
    }

    /// Mixes an integer.
    pub const fn int(h: u64, v: u64) -> u64 {
        bytes(h, &v.to_le_bytes())
    }

    /// The fingerprint of a scalar.
    pub const fn scalar(kind: &str, size: usize) -> u64 {
        int(str(str(new(), "scalar"), kind), size as u64)
    }

    /// The fingerprint of an array.
    pub const fn array(elem: u64, len: usize) -> u64 {
        int(int(str(new(), "array"), elem), len as u64)
    }

    /// Starts a struct.
    pub const fn start_struct(name: &str) -> u64 {
        str(str(new(), "struct"), name)
    }

    /// Mixes one field of a struct.
    pub const fn field(h: u64, name: &str, kind: &str, ty: u64, offset: usize, size: usize, align: usize) -> u64 {
        let h = str(str(h, name), kind);
        int(int(int(int(h, ty), offset as u64), size as u64), align as u64)
    }

    /// The fingerprint of a locked plain-data value: the lock kind, the value
    /// type as written, and its size and alignment. (Changes inside a `Pod`
    /// struct that keep its name, size and alignment are not seen.)
    pub const fn locked(kind: &str, type_text: &str, size: usize, align: usize) -> u64 {
        int(int(str(str(str(new(), "locked"), kind), type_text), size as u64), align as u64)
    }

    /// Finishes a struct with its total size and alignment.
    pub const fn finish_struct(h: u64, size: usize, align: usize) -> u64 {
        int(int(h, size as u64), align as u64)
    }
}

/// One entry of a [`Schema`]: a field (or array of fields) in segment data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaEntry {
    /// Byte offset from the start of the segment data. For fields inside an
    /// array of structs (path contains `[]`), the offset in element 0; element
    /// `i` is at `offset + i * stride` where `stride` is the array entry's
    /// `size / count`.
    pub offset: u64,
    /// Size in bytes of the whole entry (all `count` elements).
    pub size: u64,
    /// Number of elements: 1 for a single value, N for an array.
    pub count: u64,
    /// What the bytes hold: a scalar kind (`"u64"`, `"f32"`, `"bool"`,
    /// `"char"`, ...), or `"struct NAME"` for a nested struct, whose fields
    /// follow as their own entries.
    pub kind: String,
    /// Dotted path of the field: `hits`, `inner.x`, `points[].y`.
    pub path: String,
}

/// The self-description of a segment's data, stored in its header.
///
/// Its text form (what the header holds) is one line per entry,
/// `offset<TAB>size<TAB>count<TAB>kind<TAB>path`, in field order: readable by
/// a tool in any language.
///
/// ```
/// use shmem::Schema;
/// let schema = Schema::of::<[u32; 4]>();
/// assert_eq!(schema.to_text(), "0\t16\t4\tu32\t\n");
/// assert_eq!(Schema::parse(&schema.to_text()).unwrap(), schema);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    /// The entries, in field order.
    pub entries: Vec<SchemaEntry>,
}

impl Schema {
    /// The schema of `T` as the whole content of a segment.
    pub fn of<T: Shared>() -> Schema {
        let mut builder = SchemaBuilder { schema: Schema::default() };
        T::describe(&mut builder, "", 0, 1);
        builder.schema
    }

    /// The schema of `[T; len]` (as `Schema::of::<[T; len]>()`, for a length
    /// known only at run time).
    pub fn of_array<T: Shared>(len: usize) -> Schema {
        let mut builder = SchemaBuilder { schema: Schema::default() };
        T::describe(&mut builder, "", 0, len);
        builder.schema
    }

    /// The text form stored in segment headers.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let _ = writeln!(out, "{}\t{}\t{}\t{}\t{}", e.offset, e.size, e.count, e.kind, e.path);
        }
        out
    }

    /// Parses the text form.
    ///
    /// # Errors
    /// A message naming the first malformed line.
    pub fn parse(text: &str) -> Result<Schema, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let bad = || format!("line {}: {line:?}", n + 1);
            let mut parts = line.splitn(5, '\t');
            let mut num = || parts.next().and_then(|p| p.parse::<u64>().ok()).ok_or_else(bad);
            let (offset, size, count) = (num()?, num()?, num()?);
            let kind = parts.next().filter(|k| !k.is_empty()).ok_or_else(bad)?.to_owned();
            let path = parts.next().ok_or_else(bad)?.to_owned();
            entries.push(SchemaEntry { offset, size, count, kind, path });
        }
        Ok(Schema { entries })
    }
}

impl Schema {
    /// How this schema (a segment's) differs from `expected` (this
    /// program's type), one sentence per field, in field order: what
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) reports.
    ///
    /// ```
    /// use shmem::Schema;
    /// let found = Schema::of::<[u64; 2]>();
    /// let expected = Schema::of::<[i64; 2]>();
    /// assert_eq!(
    ///     found.differences(&expected),
    ///     ["the value: the segment has [u64; 2] at offset 0, this program expects [i64; 2] at offset 0"],
    /// );
    /// ```
    pub fn differences(&self, expected: &Schema) -> Vec<String> {
        let label = |path: &str| if path.is_empty() { "the value".to_owned() } else { format!("field `{path}`") };
        let mut out = Vec::new();
        for found in &self.entries {
            match expected.entries.iter().find(|e| e.path == found.path) {
                Some(exp) if exp == found => {}
                Some(exp) => out.push(format!(
                    "{}: the segment has {}, this program expects {}",
                    label(&found.path),
                    found.describe(),
                    exp.describe()
                )),
                None => out.push(format!(
                    "{}: the segment has {}, this program has no such field",
                    label(&found.path),
                    found.describe()
                )),
            }
        }
        for exp in &expected.entries {
            if !self.entries.iter().any(|f| f.path == exp.path) {
                out.push(format!(
                    "{}: this program expects {}, the segment has no such field",
                    label(&exp.path),
                    exp.describe()
                ));
            }
        }
        out
    }
}

impl SchemaEntry {
    /// `u64 at offset 8`, `[u32; 4] at offset 16`, `struct Inner at offset 0`.
    fn describe(&self) -> String {
        let scalar = !self.kind.contains(' ');
        if self.count > 1 && scalar {
            format!("[{}; {}] at offset {}", self.kind, self.count, self.offset)
        } else if self.count > 1 {
            format!("{} x {} at offset {} ({} bytes)", self.count, self.kind, self.offset, self.size)
        } else {
            format!("{} at offset {}", self.kind, self.offset)
        }
    }
}

/// Collects [`SchemaEntry`]s; passed to [`Shared::describe`].
#[derive(Debug)]
pub struct SchemaBuilder {
    schema: Schema,
}

impl SchemaBuilder {
    /// Adds an entry.
    pub fn push(&mut self, path: &str, offset: usize, size: usize, count: usize, kind: &str) {
        self.schema.entries.push(SchemaEntry {
            offset: offset as u64,
            size: size as u64,
            count: count as u64,
            kind: kind.to_owned(),
            path: path.to_owned(),
        });
    }

    /// Adds the entry of a nested struct (none for the top-level struct,
    /// whose path is empty) and returns the path prefix for its fields.
    #[doc(hidden)]
    pub fn enter_struct(&mut self, path: &str, offset: usize, size: usize, count: usize, name: &str) -> String {
        if path.is_empty() && count == 1 {
            return String::new();
        }
        self.push(path, offset, size * count, count, &format!("struct {name}"));
        if count == 1 {
            format!("{path}.")
        } else {
            format!("{path}[].")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_fingerprints_differ_by_kind_and_array_length() {
        assert_ne!(<u64 as Shared>::FINGERPRINT, <i64 as Shared>::FINGERPRINT);
        assert_ne!(<u64 as Shared>::FINGERPRINT, <f64 as Shared>::FINGERPRINT);
        assert_ne!(<u32 as Shared>::FINGERPRINT, <u64 as Shared>::FINGERPRINT);
        assert_ne!(<[u8; 4] as Shared>::FINGERPRINT, <[u8; 5] as Shared>::FINGERPRINT);
        assert_ne!(<[u8; 4] as Shared>::FINGERPRINT, <[i8; 4] as Shared>::FINGERPRINT);
        assert_ne!(<[[u8; 2]; 3] as Shared>::FINGERPRINT, <[[u8; 3]; 2] as Shared>::FINGERPRINT);
    }

    #[test]
    fn field_fingerprint_sees_every_input() {
        use fingerprint::*;
        let base = field(start_struct("S"), "a", "plain", 1, 0, 8, 8);
        assert_ne!(base, field(start_struct("T"), "a", "plain", 1, 0, 8, 8));
        assert_ne!(base, field(start_struct("S"), "b", "plain", 1, 0, 8, 8));
        assert_ne!(base, field(start_struct("S"), "a", "lock", 1, 0, 8, 8));
        assert_ne!(base, field(start_struct("S"), "a", "plain", 2, 0, 8, 8));
        assert_ne!(base, field(start_struct("S"), "a", "plain", 1, 8, 8, 8));
        assert_ne!(base, field(start_struct("S"), "a", "plain", 1, 0, 4, 8));
        assert_ne!(base, field(start_struct("S"), "a", "plain", 1, 0, 8, 4));
        assert_ne!(str(new(), "ab"), str(str(new(), "a"), "b"));
    }

    #[test]
    fn schema_text_round_trips() {
        let schema = Schema::of::<[[f64; 2]; 3]>();
        assert_eq!(schema.entries.len(), 1);
        assert_eq!(schema.entries[0].count, 6);
        assert_eq!(schema.entries[0].size, 48);
        assert_eq!(Schema::parse(&schema.to_text()).unwrap(), schema);
        assert!(Schema::parse("0\t8\t1\n").is_err());
        assert!(Schema::parse("x\t8\t1\tu64\ta\n").is_err());
        assert!(Schema::parse("0\t8\t1\t\ta\n").is_err());
    }
}
