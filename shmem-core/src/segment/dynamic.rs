//! Segments opened without their Rust type: fields found by name in the
//! schema their header carries, read and written atomically.
//!
//! What tools and other languages use (the Python package's
//! `shmem.attach(name)` for a `#[derive(Shared)]` struct): a
//! [`DynSegment`] maps any valid segment and offers each scalar field (and
//! each element of an array of scalars) as a [`DynField`] with atomic
//! `load`, `store`, `fetch_add` and `compare_exchange`, exactly the
//! operations the typed accessors use, on the same bytes.
//!
//! ```
//! use shmem::{segment::dynamic::DynValue, Segment, SegmentOptions, Shared};
//!
//! #[derive(Shared, Default)]
//! struct Stats {
//!     hits: u64,
//!     temps: [f32; 3],
//! }
//!
//! # let name = format!("doc-dyn-{}", std::process::id());
//! let typed = Segment::create(&name, &Stats::default())?;
//! let seg = SegmentOptions::new().attach_dyn(&name)?; // no type needed
//! let hits = seg.field("hits").unwrap();
//! seg.fetch_add(&hits, 0, DynValue::Int(2));
//! assert_eq!(typed.hits().load(), 2);
//! let temps = seg.field("temps").unwrap();
//! seg.store(&temps, 1, DynValue::Float(21.5));
//! assert_eq!(typed.temps()[1].load(), 21.5);
//! # Ok::<(), shmem::Error>(())
//! ```
//!
//! The schema comes from the file. `attach_dyn` refuses a schema whose
//! scalar, lock and locked-value ranges overlap (so this process never
//! mixes atomic widths on the same bytes), and every access is an atomic of
//! the field's size, in bounds and aligned, on the mapping. A lying schema
//! can still make values nonsense, and what another process does with the
//! bytes is outside this process's memory model. A value behind a lock is
//! only reachable through that lock ([`DynSegment::locked_field`]).

use super::{Parts, Spec};

/// The words of every `RwLock<T>`, whatever `T` (the value comes last).
type RwHeader = crate::sync::rwlock::RwLock<[u8; 0]>;

/// The waiters [`DynSegment`] hands out by reference: `repr(C)` structs of
/// 32-bit atomics, valid for every bit pattern.
trait Waiter {}
impl Waiter for crate::Event {}
impl Waiter for crate::Semaphore {}
impl Waiter for crate::Barrier {}
use crate::error::Result;
use crate::layout::SchemaEntry;
use crate::sync::atomic::Atomic;

/// The scalar kinds a [`DynField`] can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs, reason = "each is the Rust type of the same name")]
pub enum DynKind {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    Bool,
    Char,
}

impl DynKind {
    /// The kind a schema entry names (`"u64"`, `"f32"`, `"bool"`, ...).
    pub fn parse(kind: &str) -> Option<DynKind> {
        Some(match kind {
            "i8" => DynKind::I8,
            "u8" => DynKind::U8,
            "i16" => DynKind::I16,
            "u16" => DynKind::U16,
            "i32" => DynKind::I32,
            "u32" => DynKind::U32,
            "i64" | "isize" => DynKind::I64,
            "u64" | "usize" => DynKind::U64,
            "f32" => DynKind::F32,
            "f64" => DynKind::F64,
            "bool" => DynKind::Bool,
            "char" => DynKind::Char,
            _ => return None,
        })
    }

    /// The Rust type's name (what schemas and fingerprints record).
    pub fn rust_name(self) -> &'static str {
        match self {
            DynKind::I8 => "i8",
            DynKind::U8 => "u8",
            DynKind::I16 => "i16",
            DynKind::U16 => "u16",
            DynKind::I32 => "i32",
            DynKind::U32 => "u32",
            DynKind::I64 => "i64",
            DynKind::U64 => "u64",
            DynKind::F32 => "f32",
            DynKind::F64 => "f64",
            DynKind::Bool => "bool",
            DynKind::Char => "char",
        }
    }

    /// The size in bytes of one value.
    pub fn size(self) -> u64 {
        match self {
            DynKind::I8 | DynKind::U8 | DynKind::Bool => 1,
            DynKind::I16 | DynKind::U16 => 2,
            DynKind::I32 | DynKind::U32 | DynKind::F32 | DynKind::Char => 4,
            DynKind::I64 | DynKind::U64 | DynKind::F64 => 8,
        }
    }
}

/// A value read from or written to a [`DynField`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DynValue {
    /// Any integer kind (stores wrap to the field's width).
    Int(i128),
    /// `f32` or `f64`.
    Float(f64),
    /// `bool`.
    Bool(bool),
    /// `char`.
    Char(char),
}

/// A scalar field, or an array of scalars, found in a segment's schema
/// (made only by [`DynSegment::field`], for that segment).
#[derive(Debug, Clone, PartialEq)]
pub struct DynField {
    path: String,
    kind: DynKind,
    offset: u64,
    count: u64,
    segment: u64,
}

impl DynField {
    /// Its dotted path (`hits`, `inner.x`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What each element holds.
    pub fn kind(&self) -> DynKind {
        self.kind
    }

    /// Number of elements (1 for a single value).
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A `#[shared(lock)]` or `#[shared(rwlock)]` field found in a segment's
/// schema: its lock, its poison flag and the bytes of its value. For an
/// rwlock, [`lock_within`](DynSegment::lock_within) takes the write side
/// (and [`read_rwlock`](DynSegment::read_rwlock) copies under the read side).
///
/// Its fields are private: the handle trusts the offsets and sizes it
/// checked when it made this (an edited copy could point a lock elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct DynLocked {
    path: String,
    rwlock: bool,
    value_type: String,
    value_size: u64,
    lock_offset: u64,
    value_offset: u64,
    segment: u64,
}

impl DynLocked {
    /// Its dotted path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether it is an rwlock (else a mutex).
    pub fn is_rwlock(&self) -> bool {
        self.rwlock
    }

    /// The value's type, as its definition spells it (`[u8; 16]`, `Config`).
    pub fn value_type(&self) -> &str {
        &self.value_type
    }

    /// The value's size in bytes.
    pub fn value_size(&self) -> u64 {
        self.value_size
    }
}

/// A segment opened from its schema, without its Rust type. See the
/// [module docs](self).
pub struct DynSegment {
    /// Membership, file, mapping, header; releases the name when dropped.
    core: Parts,
    /// Tells this handle's fields from another's (a field found in one
    /// segment is refused by every other: its offsets were checked here).
    id: u64,
}

impl super::SegmentOptions {
    /// Attaches to segment `name` whatever type it holds (checks as
    /// [`attach`](Self::attach) does, less the layout), for access to its
    /// fields by name. See [`dynamic`](self::super::dynamic).
    ///
    /// # Errors
    /// As [`attach`](Self::attach), less [`Error::LayoutMismatch`](crate::Error::LayoutMismatch).
    pub fn attach_dyn(&self, name: &str) -> Result<DynSegment> {
        let parts = self.attach_named_parts(name, |h| Ok(Spec::of_header(h)), false)?;
        check_disjoint(&parts.header.schema.entries).map_err(|reason| crate::Error::Corrupt {
            name: parts.name.clone(),
            reason: crate::error::Corruption::Inconsistent(reason),
        })?;
        Ok(DynSegment::from_parts(parts))
    }
}

/// The byte ranges a handle may touch: scalars (atomics of their size),
/// a lock's own words (a mutex's lock word and poison flag, a seqlock's
/// sequence, poison and writer lock, an rwlock's whole header), locked
/// values, waiters, queues and maps (whole). Any partial overlap between
/// them is refused: this process must never mix atomic widths, or atomic
/// and plain accesses (a queue's slots, a map's entries), on the same
/// bytes. Identical scalar entries are allowed.
fn check_disjoint(entries: &[SchemaEntry]) -> std::result::Result<(), &'static str> {
    let mut ranges: Vec<(u64, u64, &str)> = Vec::new();
    for e in entries {
        let len = match e.kind.split_whitespace().next().unwrap_or("") {
            "mutex" => crate::sync::mutex::POISON_OFFSET + 4,
            "seqlock" => 16,
            "rwlock" => core::mem::size_of::<RwHeader>() as u64,
            "queue" | "map" | "event" | "semaphore" | "barrier" | "condvar" => e.size,
            _ if DynKind::parse(&e.kind).is_some() || is_locked_value(entries, &e.path) => e.size,
            _ => continue, // nested structs: their fields are entries of their own
        };
        let end = e.offset.checked_add(len).ok_or("an entry's range overflows")?;
        ranges.push((e.offset, end, e.kind.as_str()));
    }
    ranges.sort_unstable();
    ranges.dedup();
    for pair in ranges.windows(2) {
        let ((_, end_a, _), (start_b, _, _)) = (pair[0], pair[1]);
        if start_b < end_a {
            return Err("schema entries overlap");
        }
    }
    Ok(())
}

/// Whether `path` is the value of a lock entry (`P.value` for a mutex,
/// rwlock or seqlock `P`), or inside one.
fn is_locked_value(entries: &[SchemaEntry], path: &str) -> bool {
    entries.iter().any(|l| {
        matches!(l.kind.as_str(), "mutex" | "rwlock" | "seqlock") && {
            let value = format!("{}.value", l.path);
            path == value || path.starts_with(&format!("{value}.")) || path.starts_with(&format!("{value}["))
        }
    })
}

impl DynSegment {}

/// A field of a struct declared at run time ([`SegmentOptions::create_dyn`](super::SegmentOptions::create_dyn)):
/// a scalar (`count` 1) or an array of `count` scalars.
#[derive(Debug, Clone, Copy)]
pub struct DynDecl<'a> {
    /// The field's name.
    pub name: &'a str,
    /// Its scalar kind.
    pub kind: DynKind,
    /// 1 for a scalar, N for `[kind; N]`.
    pub count: usize,
}

impl super::SegmentOptions {
    /// Creates segment `name` holding a struct declared at run time: the
    /// very segment a Rust program's `#[derive(Shared)] struct TYPE_NAME`
    /// with these fields, in this order, creates and attaches to (same
    /// layout, schema and fingerprint), zeroed. Fields are scalars and
    /// arrays of scalars.
    ///
    /// ```
    /// use shmem::segment::dynamic::{DynDecl, DynKind, DynValue};
    /// use shmem::{Segment, SegmentOptions, Shared};
    ///
    /// #[derive(Shared)]
    /// struct Point {
    ///     x: i64,
    ///     hist: [u32; 4],
    /// }
    ///
    /// # let name = format!("doc-create-dyn-{}", std::process::id());
    /// let fields = [
    ///     DynDecl { name: "x", kind: DynKind::I64, count: 1 },
    ///     DynDecl { name: "hist", kind: DynKind::U32, count: 4 },
    /// ];
    /// let made = SegmentOptions::new().create_dyn(&name, "Point", &fields)?;
    /// made.store(&made.field("x").unwrap(), 0, DynValue::Int(-3));
    /// let typed = Segment::<Point>::attach(&name)?; // layout-checked: the same type
    /// assert_eq!(typed.x().load(), -3);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`create`](Self::create); [`Error::InvalidName`](crate::Error::InvalidName)
    /// for a type or field name that is not a Rust identifier, a repeated
    /// field, no fields, or a zero count.
    pub fn create_dyn(&self, name: &str, type_name: &str, fields: &[DynDecl<'_>]) -> Result<DynSegment> {
        let spec = struct_spec(type_name, fields)
            .map_err(|reason| crate::Error::InvalidName { name: format!("{type_name} (declared struct)"), reason })?;
        let parts = self.create_parts(name, &spec, |_| {})?;
        Ok(DynSegment::from_parts(parts))
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The layout `#[derive(Shared)]` gives a struct of these fields: a
/// `repr(C)` twin of atomics (each aligned to its size), its schema and its
/// fingerprint, computed with the same functions the derive calls.
fn struct_spec(type_name: &str, fields: &[DynDecl<'_>]) -> std::result::Result<Spec, &'static str> {
    use crate::layout::fingerprint as fp;
    if !is_identifier(type_name) {
        return Err("a declared struct's type name must be a Rust identifier");
    }
    if fields.is_empty() {
        return Err("a declared struct needs at least one field");
    }
    let mut h = fp::start_struct(type_name);
    let (mut offset, mut align) = (0usize, 1usize);
    let mut schema = crate::layout::Schema::default();
    for (i, f) in fields.iter().enumerate() {
        if !is_identifier(f.name) || fields[..i].iter().any(|g| g.name == f.name) {
            return Err("field names must be distinct Rust identifiers");
        }
        if f.count == 0 {
            return Err("an array field needs at least one element");
        }
        let elem = f.kind.size() as usize; // the size and alignment of its atomic
        offset = offset.checked_next_multiple_of(elem).ok_or("the struct is too large")?;
        let size = elem.checked_mul(f.count).ok_or("the struct is too large")?;
        let scalar = fp::scalar(f.kind.rust_name(), elem);
        let ty = if f.count == 1 { scalar } else { fp::array(scalar, f.count) };
        h = fp::field(h, f.name, "plain", ty, offset, size, elem);
        schema.entries.push(SchemaEntry {
            offset: offset as u64,
            size: size as u64,
            count: f.count as u64,
            kind: f.kind.rust_name().to_owned(),
            path: f.name.to_owned(),
        });
        offset = offset.checked_add(size).ok_or("the struct is too large")?;
        align = align.max(elem);
    }
    let size = offset.checked_next_multiple_of(align).ok_or("the struct is too large")?;
    Ok(Spec {
        type_name: type_name.to_owned(),
        schema,
        fingerprint: fp::finish_struct(h, size, align),
        size: size as u64,
        align: align as u64,
    })
}

impl DynSegment {
    fn from_parts(p: Parts) -> DynSegment {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        DynSegment { core: p, id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The type name recorded in the segment.
    pub fn type_name(&self) -> &str {
        &self.core.header.type_name
    }

    /// Every entry of the segment's schema (fields, nested structs, locks,
    /// containers), in field order.
    pub fn entries(&self) -> &[SchemaEntry] {
        &self.core.header.schema.entries
    }

    /// The scalar fields and arrays of scalars this handle can access (not
    /// those inside arrays of structs, behind locks, or in containers).
    pub fn fields(&self) -> Vec<DynField> {
        self.entries().iter().filter_map(|e| self.to_field(e)).collect()
    }

    /// The field at `path`, if it is a scalar or an array of scalars (not
    /// a value behind a lock: see [`locked_field`](Self::locked_field)).
    pub fn field(&self, path: &str) -> Option<DynField> {
        self.entries().iter().find(|e| e.path == path).and_then(|e| self.to_field(e))
    }

    fn to_field(&self, e: &SchemaEntry) -> Option<DynField> {
        let kind = DynKind::parse(&e.kind)?;
        if e.path.contains("[]")
            || e.count == 0
            || e.size != kind.size().checked_mul(e.count)?
            || is_locked_value(self.entries(), &e.path)
        {
            return None;
        }
        Some(DynField { path: e.path.clone(), kind, offset: e.offset, count: e.count, segment: self.id })
    }

    /// The `#[shared(lock)]` and `#[shared(rwlock)]` fields (a lock and its value).
    pub fn locked_fields(&self) -> Vec<DynLocked> {
        self.entries()
            .iter()
            .filter(|e| e.kind == "mutex" || e.kind == "rwlock")
            .filter_map(|e| self.locked_field(&e.path))
            .collect()
    }

    /// The `#[shared(lock)]` or `#[shared(rwlock)]` field at `path`.
    pub fn locked_field(&self, path: &str) -> Option<DynLocked> {
        let lock = self.entries().iter().find(|e| e.path == path && (e.kind == "mutex" || e.kind == "rwlock"))?;
        let rwlock = lock.kind == "rwlock";
        let value_path = format!("{path}.value");
        let value = self.entries().iter().find(|e| e.path == value_path)?;
        let h = &self.core.header;
        // The lock's words (a mutex: the lock word and the poison flag; an
        // rwlock: its whole header) must lie in the data, aligned; the value too.
        let words = if rwlock { core::mem::size_of::<RwHeader>() as u64 } else { 12 };
        let lock_end = lock.offset.checked_add(words)?;
        let value_end = value.offset.checked_add(value.size)?;
        // The value after the lock's words (a crafted schema could lay it
        // over them: writing it would then overwrite the lock).
        if lock_end > h.data_size
            || value_end > h.data_size
            || value.offset < lock_end
            || !(h.data_offset + lock.offset).is_multiple_of(8)
        {
            return None;
        }
        Some(DynLocked {
            path: path.to_owned(),
            rwlock,
            value_type: value.kind.clone(),
            value_size: value.size,
            lock_offset: lock.offset,
            value_offset: value.offset,
            segment: self.id,
        })
    }

    /// The [`Event`](crate::Event) field at `path`, if there is one.
    pub fn event(&self, path: &str) -> Option<&crate::Event> {
        self.waiter(path, "event")
    }

    /// The [`Semaphore`](crate::Semaphore) field at `path`, if there is one.
    pub fn semaphore(&self, path: &str) -> Option<&crate::Semaphore> {
        self.waiter(path, "semaphore")
    }

    /// The [`Barrier`](crate::Barrier) field at `path`, if there is one.
    pub fn barrier(&self, path: &str) -> Option<&crate::Barrier> {
        self.waiter(path, "barrier")
    }

    /// The [`Queue`](crate::Queue) field at `path`, of items `T` (their size
    /// must be the schema's `item=`; their type is the caller's choice, as
    /// for any plain data): a [`QueueRing`](crate::containers::queue::QueueRing)
    /// with the field's own capacity, the same protocol as a typed handle's.
    ///
    /// ```
    /// #[derive(shmem::Shared)]
    /// struct Jobs {
    ///     todo: shmem::Queue<u32, 8>,
    /// }
    /// # let name = format!("doc-dyn-queue-{}", std::process::id());
    /// let typed = shmem::Segment::<Jobs>::create_zeroed(&name)?;
    /// let seg = shmem::SegmentOptions::new().attach_dyn(&name)?;
    /// let todo = seg.queue::<u32>("todo").expect("a queue of 4-byte items");
    /// todo.push(7).unwrap();
    /// assert_eq!((todo.capacity(), typed.todo().pop()), (8, Ok(7)));
    /// assert!(seg.queue::<u64>("todo").is_none()); // 8-byte items: not this queue
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn queue<T: bytemuck::Pod>(&self, path: &str) -> Option<&crate::containers::queue::QueueRing<T>> {
        use crate::containers::queue::{QueueRing, QueueSlot};
        use crate::segment::decode::kind_param;
        let e = self.entries().iter().find(|e| e.path == path && e.kind.split_whitespace().next() == Some("queue"))?;
        let item = core::mem::size_of::<T>() as u64;
        let slots = crate::containers::queue::slots_offset::<T, 1>() as u64;
        let cap = kind_param(&e.kind, "cap")?;
        let align = core::mem::align_of::<QueueRing<T, [QueueSlot<T>; 1]>>() as u64;
        let h = &self.core.header;
        // The ring's own size, as `Queue<T, cap>`'s: the words, the slots,
        // rounded up to the alignment.
        let size = cap.checked_mul(item)?.checked_add(slots)?.checked_next_multiple_of(align)?;
        if kind_param(&e.kind, "item")? != item
            || kind_param(&e.kind, "slots")? != slots
            || cap == 0
            || cap > u64::from(u32::MAX)
            || e.count != 1
            || e.size != size
            || e.offset.checked_add(size)? > h.data_size
            || !(self.at(e.offset) as usize as u64).is_multiple_of(align)
        {
            return None;
        }
        let ring = core::ptr::slice_from_raw_parts(self.at(e.offset).cast::<QueueSlot<T>>(), cap as usize)
            as *const QueueRing<T>;
        // SAFETY: the ring (its words and `cap` slots, `size` bytes) lies in
        // the data and is aligned for it (checked above, on the address);
        // no other entry the handle reaches overlaps it (`check_disjoint`
        // at attach); its fields are atomics, locks and cells of `T: Pod`,
        // all valid for every bit pattern, reached only through the queue's
        // protocol (atomics, and slots under its locks), by this process and
        // every other; the mapping lives as long as `&self`. The pointer
        // carries `cap` as the slots' length, which is what the schema's
        // `Queue<T, cap>` has.
        Some(unsafe { &*ring })
    }

    /// The [`Map`](crate::Map) field at `path`, of keys `K` and values `V`
    /// (their sizes and places in a slot must be the schema's; their types
    /// are the caller's choice): a [`MapRing`](crate::containers::map::MapRing)
    /// with the field's own capacity, the same protocol as a typed handle's
    /// (keys hash by their bytes, so a `u32` key finds what a Rust `u32`
    /// key stored).
    ///
    /// ```
    /// #[derive(shmem::Shared)]
    /// struct Cache {
    ///     hits: shmem::Map<u32, u64, 64>,
    /// }
    /// # let name = format!("doc-dyn-map-{}", std::process::id());
    /// let typed = shmem::Segment::<Cache>::create_zeroed(&name)?;
    /// typed.hits().insert(7, 70).unwrap();
    /// let seg = shmem::SegmentOptions::new().attach_dyn(&name)?;
    /// let hits = seg.map::<u32, u64>("hits").expect("a map of u32 keys and u64 values");
    /// assert_eq!((hits.get(&7), hits.capacity()), (Some(70), 64));
    /// assert!(seg.map::<u64, u64>("hits").is_none()); // 8-byte keys: not this map
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn map<K: bytemuck::Pod + core::hash::Hash + Eq, V: bytemuck::Pod>(
        &self,
        path: &str,
    ) -> Option<&crate::containers::map::MapRing<K, V>> {
        use crate::containers::map::{ring_layout, shard_count, MapRing, MapSlot};
        use crate::segment::decode::kind_param;
        let e = self.entries().iter().find(|e| e.path == path && e.kind.split_whitespace().next() == Some("map"))?;
        let [slots, slot, key_at, value_at, align] = ring_layout::<K, V>().map(|x| x as u64);
        let p = |k| kind_param(&e.kind, k);
        let cap = p("cap")?;
        let h = &self.core.header;
        // The ring's own size, as `Map<K, V, cap>`'s.
        let size = cap.checked_mul(slot)?.checked_add(slots)?.checked_next_multiple_of(align)?;
        if p("key")? != core::mem::size_of::<K>() as u64
            || p("value")? != core::mem::size_of::<V>() as u64
            || p("slots")? != slots
            || p("slot")? != slot
            || p("key_at").unwrap_or(8) != key_at
            || p("value_at")? != value_at
            || cap == 0
            || p("shards")? != shard_count(usize::try_from(cap).ok()?) as u64
            || e.count != 1
            || e.size != size
            || e.offset.checked_add(size)? > h.data_size
            || !(self.at(e.offset) as usize as u64).is_multiple_of(align)
        {
            return None;
        }
        let ring = core::ptr::slice_from_raw_parts(self.at(e.offset).cast::<MapSlot<K, V>>(), cap as usize)
            as *const MapRing<K, V>;
        // SAFETY: the ring (its shards, poison flag and `cap` slots, `size`
        // bytes) lies in the data and is aligned for it (checked above, on
        // the address); no other entry the handle reaches overlaps it
        // (`check_disjoint` at attach); its fields are locks, atomics and slots
        // of plain data (a `u64` mark, `K: Pod`, `V: Pod`), valid for every
        // bit pattern, reached only through the map's protocol (slots under
        // their shard's lock), by this process and every other; the mapping
        // lives as long as `&self`. The pointer carries `cap` as the slots'
        // length, and the shard count derived from it is the schema's.
        Some(unsafe { &*ring })
    }

    /// The field at `path` of kind `kind` as a `T`: one of the waiters,
    /// whose words are atomics valid for every bit pattern.
    fn waiter<T: Waiter>(&self, path: &str, kind: &str) -> Option<&T> {
        let e = self.entries().iter().find(|e| e.path == path && e.kind == kind)?;
        let h = &self.core.header;
        let size = core::mem::size_of::<T>() as u64;
        if e.size != size
            || e.count != 1
            || e.offset.checked_add(size)? > h.data_size
            || !(h.data_offset + e.offset).is_multiple_of(core::mem::align_of::<T>() as u64)
        {
            return None;
        }
        // SAFETY: the field lies in the data (checked above) and is aligned
        // for `T` (the mapping is page-aligned); `T` is one of the waiters
        // (sealed `Waiter`), `repr(C)` structs of `AtomicU32`s valid for
        // every bit pattern and only ever accessed atomically, by this
        // process and every other; the mapping lives as long as `&self`.
        Some(unsafe { &*self.at(e.offset).cast::<T>() })
    }

    /// One atomic load of `size` bytes (1, 2, 4 or 8) at `offset` into the
    /// data, bounds- and alignment-checked (for the decoder).
    pub(crate) fn read_uint(&self, offset: u64, size: u64) -> Option<u64> {
        // SAFETY: the mapping is the whole file (`file_size` bytes, header
        // validated at attach or create) and lives as long as `self`.
        unsafe { super::load_uint(self.core.map.as_ptr(), &self.core.header, offset, size) }
    }

    /// The state of the lock, waiter or container at `path` (what
    /// [`View::field_state`](super::View::field_state) says of it), with up
    /// to `contents` of a container's items or entries; `None` if `path` is
    /// not such a field.
    pub fn field_state(&self, path: &str, contents: usize) -> Option<super::decode::FieldState> {
        let e = self.entries().iter().find(|e| e.path == path)?;
        super::decode::decode(self, e, contents)
    }

    fn at(&self, offset: u64) -> *mut u8 {
        self.core.map.as_mut_ptr().wrapping_add((self.core.header.data_offset + offset) as usize)
    }

    /// The lock of mutex field `f` (`None` for a field of another handle,
    /// or an rwlock).
    fn raw_lock(&self, f: &DynLocked) -> Option<&crate::sync::raw_mutex::RawMutex> {
        if f.segment != self.id || f.rwlock {
            return None;
        }
        // SAFETY: `locked_field` checked that the 8-byte lock word lies in
        // the data and is 8-aligned; `RawMutex` is a `repr(C)` atomic word
        // valid for every bit pattern (an impossible word is taken over as
        // poison), and the mapping lives as long as `&self`.
        Some(unsafe { &*self.at(f.lock_offset).cast::<crate::sync::raw_mutex::RawMutex>() })
    }

    /// The header of rwlock field `f` (`None` for a field of another
    /// handle, or a mutex).
    fn rw_lock(&self, f: &DynLocked) -> Option<&RwHeader> {
        if f.segment != self.id || !f.rwlock {
            return None;
        }
        // SAFETY: `locked_field` checked that the rwlock's header lies in
        // the data and is 8-aligned; `RwLock<[u8; 0]>` is the header of
        // every `RwLock<T>` (`repr(C)`, the value last: its words sit at the
        // same offsets whatever `T`, see `rwlock::WORDS`), atomics valid for
        // every bit pattern; the reference covers the header only, never
        // the value, and the mapping lives as long as `&self`.
        Some(unsafe { &*self.at(f.lock_offset).cast::<RwHeader>() })
    }

    /// The poison flag of mutex field `f` (right after the lock word, as in `Mutex`).
    fn poison(&self, f: &DynLocked) -> Option<&core::sync::atomic::AtomicU32> {
        if f.segment != self.id || f.rwlock {
            return None;
        }
        // SAFETY: 4 bytes at lock + 8, checked in bounds by `locked_field`,
        // 4-aligned (the lock word is 8-aligned); an atomic, valid for any bits.
        Some(unsafe {
            &*self.at(f.lock_offset + crate::sync::mutex::POISON_OFFSET).cast::<core::sync::atomic::AtomicU32>()
        })
    }

    /// Takes `f`'s lock as `Mutex::lock` does (a dead holder's lock is
    /// taken over, and the value marked poisoned; for an rwlock, its write
    /// side), waiting at most `timeout` (`None`: as long as needed).
    /// `Some(poisoned)`, or `None` if it timed out or `f` belongs to
    /// another handle. A thread that holds a read guard of the same rwlock
    /// through a typed handle waits for itself: for ever without a timeout.
    pub fn lock_within(&self, f: &DynLocked, timeout: Option<std::time::Duration>) -> Option<bool> {
        use crate::sync::park::Os;
        use crate::sync::raw_mutex::Acquired;
        if let Some(rw) = self.rw_lock(f) {
            return rw.write_detached(timeout.and_then(crate::sync::deadline_after)).ok();
        }
        let (raw, poison) = (self.raw_lock(f)?, self.poison(f)?);
        let acquired = match timeout {
            None => raw.lock_report::<Os>(),
            Some(t) => raw.lock_until::<Os>(crate::sync::deadline_after(t))?,
        };
        if acquired == Acquired::OwnerDied {
            poison.store(1, core::sync::atomic::Ordering::Relaxed);
        }
        Some(poison.load(core::sync::atomic::Ordering::Relaxed) != 0)
    }

    /// Releases `f`'s lock if this process holds it; whether it did.
    ///
    /// # Safety
    /// No guard of a typed handle (`MutexGuard`, `RwLockWriteGuard`) on this
    /// same field may be alive in this process, and no other thread of this
    /// process may release the same field at the same time (for an rwlock
    /// the check and the release are two steps: a second release could open
    /// the lock another process took in between) (see [`RawMutex::unlock_if_mine`](crate::RawMutex::unlock_if_mine)).
    pub unsafe fn unlock(&self, f: &DynLocked) -> bool {
        if let Some(rw) = self.rw_lock(f) {
            if !rw.written_by_me() {
                return false;
            }
            // SAFETY: this process holds the write lock (just checked); the
            // caller's contract says no typed guard for it is alive here, so
            // it was taken by `lock_within` (`write_detached`).
            unsafe { rw.release_detached_write() };
            return true;
        }
        // SAFETY: the caller's contract.
        self.raw_lock(f).is_some_and(|raw| unsafe { raw.unlock_if_mine() })
    }

    /// Clears `f`'s poison flag (after repairing its value); `None` unless
    /// this process holds `f`'s lock.
    pub fn clear_poison(&self, f: &DynLocked) -> Option<()> {
        self.held(f)?;
        match self.rw_lock(f) {
            Some(rw) => rw.clear_poison(),
            None => self.poison(f)?.store(0, core::sync::atomic::Ordering::Relaxed),
        }
        Some(())
    }

    /// `Some` if this process holds `f`'s lock (a value is only read or
    /// written under it: a holder in another process mutates it freely).
    fn held(&self, f: &DynLocked) -> Option<()> {
        match self.rw_lock(f) {
            Some(rw) => rw.written_by_me().then_some(()),
            None => self.raw_lock(f)?.is_mine().then_some(()),
        }
    }

    /// A copy of `f`'s value bytes (single-byte atomic loads); `None`
    /// unless this process holds `f`'s lock.
    pub fn read_value(&self, f: &DynLocked) -> Option<Vec<u8>> {
        self.held(f)?;
        Some(self.copy_value(f))
    }

    /// A consistent copy of `#[shared(rwlock)]` field `path`'s value bytes,
    /// taken under its read lock (which it waits for at most `timeout`):
    /// `Ok((bytes, poisoned))`, or `Err(TimedOut)`. `None` if there is no
    /// such field. (A process holding the field's write lock through
    /// [`lock_within`](Self::lock_within) times out here: read it with
    /// [`read_value`](Self::read_value).)
    pub fn read_rwlock(
        &self,
        path: &str,
        timeout: std::time::Duration,
    ) -> Option<std::result::Result<(Vec<u8>, bool), crate::sync::TimedOut>> {
        let f = self.locked_field(path).filter(|f| f.rwlock)?;
        let rw = self.rw_lock(&f)?;
        Some(rw.read_timeout(timeout).map(|guard| {
            let poisoned = guard.is_err();
            let _guard = guard.unwrap_or_else(std::sync::PoisonError::into_inner);
            (self.copy_value(&f), poisoned)
        }))
    }

    /// The bytes of `f`'s value (single-byte atomic loads; whoever calls
    /// this holds the lock that keeps writers out, or wants a mere copy).
    fn copy_value(&self, f: &DynLocked) -> Vec<u8> {
        (0..f.value_size)
            .map(|i| {
                // SAFETY: `locked_field` checked the value's bytes lie in the
                // data; a byte is always aligned; atomics are valid for any bits.
                let b = unsafe { &*self.at(f.value_offset + i).cast::<core::sync::atomic::AtomicU8>() };
                b.load(core::sync::atomic::Ordering::Relaxed)
            })
            .collect()
    }

    /// Writes `bytes` (exactly the value's size) as `f`'s value, with
    /// single-byte atomic stores. `None` for another size, or unless this
    /// process holds `f`'s lock.
    pub fn write_value(&self, f: &DynLocked, bytes: &[u8]) -> Option<()> {
        self.held(f)?;
        if bytes.len() as u64 != f.value_size {
            return None;
        }
        for (i, byte) in bytes.iter().enumerate() {
            // SAFETY: as in `read_value`.
            let b = unsafe { &*self.at(f.value_offset + i as u64).cast::<core::sync::atomic::AtomicU8>() };
            b.store(*byte, core::sync::atomic::Ordering::Relaxed);
        }
        Some(())
    }

    /// A consistent copy of `#[shared(seqlock)]` field `path`'s value bytes,
    /// read as `SeqLock::read` reads (the same 8-byte words, then single
    /// bytes, never a write): `Ok((bytes, poisoned))`, or `Err(TimedOut)`
    /// if a write stayed in progress for `timeout` (a writer stopped, or
    /// dead: only a writer repairs that). `None` if there is no such field.
    pub fn read_seqlock(
        &self,
        path: &str,
        timeout: std::time::Duration,
    ) -> Option<std::result::Result<(Vec<u8>, bool), crate::sync::TimedOut>> {
        use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
        let lock = self.entries().iter().find(|e| e.path == path && e.kind == "seqlock")?;
        let value_path = format!("{path}.value");
        let value = self.entries().iter().find(|e| e.path == value_path)?;
        let h = &self.core.header;
        // The sequence word and poison flag (8 bytes), and the value, in the
        // data; both 8-aligned (as every SeqLock's are).
        if lock.offset.checked_add(8)? > h.data_size
            || value.offset.checked_add(value.size)? > h.data_size
            || !(h.data_offset + lock.offset).is_multiple_of(8)
            || !(h.data_offset + value.offset).is_multiple_of(8)
        {
            return None;
        }
        // The reference casts below each point into the data area checked
        // just above, aligned as checked (8 for the words, 4 for the flags, 1
        // for bytes), live as long as `&self`, and are atomics (valid for any
        // bits), accessed with the same widths the writers use (`SeqLock`'s
        // `atomic_store`: words, then tail bytes).
        // SAFETY: as just said, for the sequence word.
        let seq = unsafe { &*self.at(lock.offset).cast::<AtomicU32>() };
        // SAFETY: as above; the poison flag follows the sequence word.
        let poisoned = unsafe { &*self.at(lock.offset + 4).cast::<AtomicU32>() };
        let words = (value.size / 8) as usize;
        let deadline = std::time::Instant::now() + timeout.min(std::time::Duration::from_secs(3600));
        let mut out = vec![0u8; value.size as usize];
        loop {
            let s1 = seq.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s1 & 1 == 0 {
                for (i, chunk) in out[..words * 8].chunks_exact_mut(8).enumerate() {
                    // SAFETY: as above, word `i` of the value.
                    let w = unsafe { &*self.at(value.offset + 8 * i as u64).cast::<AtomicU64>() };
                    chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
                }
                for (j, byte) in out[words * 8..].iter_mut().enumerate() {
                    // SAFETY: as above, a tail byte of the value.
                    let b = unsafe { &*self.at(value.offset + (words * 8 + j) as u64).cast::<AtomicU8>() };
                    *byte = b.load(Ordering::Relaxed);
                }
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == s1 {
                    return Some(Ok((out, poisoned.load(Ordering::Relaxed) != 0)));
                }
                continue;
            }
            if std::time::Instant::now() >= deadline {
                return Some(Err(crate::sync::TimedOut));
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    /// The address of element `i` of `f`, if it is in bounds and aligned.
    fn addr(&self, f: &DynField, i: u64) -> Option<*mut u8> {
        if f.segment != self.id {
            return None;
        }
        let h = &self.core.header;
        let size = f.kind.size();
        let rel = f.offset.checked_add(i.checked_mul(size)?)?;
        if i >= f.count || rel.checked_add(size)? > h.data_size {
            return None;
        }
        let at = h.data_offset.checked_add(rel)?;
        if at % size != 0 {
            return None;
        }
        Some(self.core.map.as_mut_ptr().wrapping_add(at as usize))
    }

    /// Reads element `i` of `f` (one atomic load). `None` if out of range.
    pub fn load(&self, f: &DynField, i: u64) -> Option<DynValue> {
        let p = self.addr(f, i)?;
        Some(with_kind!(f.kind, p, a => to_value(a.load())))
    }

    /// Writes element `i` of `f` (one atomic store; an integer wraps to the
    /// field's width). `None` if out of range or of another kind.
    pub fn store(&self, f: &DynField, i: u64, v: DynValue) -> Option<()> {
        let p = self.addr(f, i)?;
        with_kind!(f.kind, p, a => a.store(from_value(v)?));
        Some(())
    }

    /// Adds `v` to element `i` of `f` atomically (wrapping for integers);
    /// returns the previous value. `None` for a `bool` or `char` field, out
    /// of range, or a value of another kind.
    pub fn fetch_add(&self, f: &DynField, i: u64, v: DynValue) -> Option<DynValue> {
        let p = self.addr(f, i)?;
        macro_rules! add {
            ($t:ty) => {{
                // SAFETY: see `atomic_at`.
                let a = unsafe { atomic_at::<$t>(p) };
                to_value(a.fetch_add(from_value(v)?))
            }};
        }
        Some(match f.kind {
            DynKind::I8 => add!(i8),
            DynKind::U8 => add!(u8),
            DynKind::I16 => add!(i16),
            DynKind::U16 => add!(u16),
            DynKind::I32 => add!(i32),
            DynKind::U32 => add!(u32),
            DynKind::I64 => add!(i64),
            DynKind::U64 => add!(u64),
            DynKind::F32 => add!(f32),
            DynKind::F64 => add!(f64),
            DynKind::Bool | DynKind::Char => return None,
        })
    }

    /// Replaces element `i` of `f` with `fun(value)` atomically (a
    /// compare-and-swap loop on the stored bits, so even a NaN whose bits a
    /// conversion would change is matched); `fun` returning `None` stops
    /// without a change. `None` if out of range or `fun` gave another kind.
    pub fn update(&self, f: &DynField, i: u64, mut fun: impl FnMut(DynValue) -> Option<DynValue>) -> Option<()> {
        let p = self.addr(f, i)?;
        with_kind!(f.kind, p, a => a.fetch_update(|cur| from_value(fun(to_value(cur))?)).ok().map(|_| ()))
    }

    /// Compare-and-swap on element `i` of `f`: `Ok(previous)` if it held
    /// `current` (bit for bit) and now holds `new`, else `Err(seen)`.
    /// `None` if out of range or of another kind.
    pub fn compare_exchange(
        &self,
        f: &DynField,
        i: u64,
        current: DynValue,
        new: DynValue,
    ) -> Option<Result<DynValue, DynValue>> {
        let p = self.addr(f, i)?;
        Some(with_kind!(f.kind, p, a => match a.compare_exchange(from_value(current)?, from_value(new)?) {
            Ok(v) => Ok(to_value(v)),
            Err(v) => Err(to_value(v)),
        }))
    }
}

/// The atomic of type `T` at `p`.
///
/// # Safety
/// `p` must come from [`DynSegment::addr`] for a field of `T`'s size on a
/// live handle: in bounds of the mapping, aligned to the size (which is
/// the alignment of every scalar atomic), and the reference must not
/// outlive the handle. Every bit pattern is a valid `Atomic<T>` (its
/// `from_bits` is total), and every access to the data is atomic.
unsafe fn atomic_at<'a, T: crate::sync::atomic::Scalar>(p: *mut u8) -> &'a Atomic<T> {
    // SAFETY: the caller's contract.
    unsafe { &*p.cast::<Atomic<T>>() }
}

/// Runs `$body` with `$a` the atomic of `$kind` at `$p`.
macro_rules! with_kind {
    ($kind:expr, $p:expr, $a:ident => $body:expr) => {
        match $kind {
            DynKind::I8 => {
                // SAFETY: `$p` is from `addr` for a 1-byte field (see `atomic_at`).
                let $a = unsafe { atomic_at::<i8>($p) };
                $body
            }
            DynKind::U8 => {
                // SAFETY: as above.
                let $a = unsafe { atomic_at::<u8>($p) };
                $body
            }
            DynKind::I16 => {
                // SAFETY: as above, 2 bytes.
                let $a = unsafe { atomic_at::<i16>($p) };
                $body
            }
            DynKind::U16 => {
                // SAFETY: as above, 2 bytes.
                let $a = unsafe { atomic_at::<u16>($p) };
                $body
            }
            DynKind::I32 => {
                // SAFETY: as above, 4 bytes.
                let $a = unsafe { atomic_at::<i32>($p) };
                $body
            }
            DynKind::U32 => {
                // SAFETY: as above, 4 bytes.
                let $a = unsafe { atomic_at::<u32>($p) };
                $body
            }
            DynKind::I64 => {
                // SAFETY: as above, 8 bytes.
                let $a = unsafe { atomic_at::<i64>($p) };
                $body
            }
            DynKind::U64 => {
                // SAFETY: as above, 8 bytes.
                let $a = unsafe { atomic_at::<u64>($p) };
                $body
            }
            DynKind::F32 => {
                // SAFETY: as above, 4 bytes.
                let $a = unsafe { atomic_at::<f32>($p) };
                $body
            }
            DynKind::F64 => {
                // SAFETY: as above, 8 bytes.
                let $a = unsafe { atomic_at::<f64>($p) };
                $body
            }
            DynKind::Bool => {
                // SAFETY: as above, 1 byte.
                let $a = unsafe { atomic_at::<bool>($p) };
                $body
            }
            DynKind::Char => {
                // SAFETY: as above, 4 bytes.
                let $a = unsafe { atomic_at::<char>($p) };
                $body
            }
        }
    };
}
use with_kind;

/// A scalar as a [`DynValue`].
trait ToDyn {
    fn to_dyn(self) -> DynValue;
    fn from_dyn(v: DynValue) -> Option<Self>
    where
        Self: Sized;
}

macro_rules! int_dyn {
    ($($t:ty),*) => {$(
        impl ToDyn for $t {
            fn to_dyn(self) -> DynValue { DynValue::Int(self as i128) }
            fn from_dyn(v: DynValue) -> Option<Self> {
                match v { DynValue::Int(i) => Some(i as $t), _ => None }
            }
        }
    )*};
}
int_dyn!(i8, u8, i16, u16, i32, u32, i64, u64);

impl ToDyn for f32 {
    fn to_dyn(self) -> DynValue {
        DynValue::Float(f64::from(self))
    }
    fn from_dyn(v: DynValue) -> Option<Self> {
        match v {
            DynValue::Float(f) => Some(f as f32),
            DynValue::Int(i) => Some(i as f32),
            _ => None,
        }
    }
}

impl ToDyn for f64 {
    fn to_dyn(self) -> DynValue {
        DynValue::Float(self)
    }
    fn from_dyn(v: DynValue) -> Option<Self> {
        match v {
            DynValue::Float(f) => Some(f),
            DynValue::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

impl ToDyn for bool {
    fn to_dyn(self) -> DynValue {
        DynValue::Bool(self)
    }
    fn from_dyn(v: DynValue) -> Option<Self> {
        match v {
            DynValue::Bool(b) => Some(b),
            DynValue::Int(i) => Some(i != 0),
            _ => None,
        }
    }
}

impl ToDyn for char {
    fn to_dyn(self) -> DynValue {
        DynValue::Char(self)
    }
    fn from_dyn(v: DynValue) -> Option<Self> {
        match v {
            DynValue::Char(c) => Some(c),
            _ => None,
        }
    }
}

fn to_value<T: ToDyn>(v: T) -> DynValue {
    v.to_dyn()
}

fn from_value<T: ToDyn>(v: DynValue) -> Option<T> {
    T::from_dyn(v)
}

impl std::fmt::Debug for DynSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynSegment").field("name", &self.core.name).field("type", &self.core.header.type_name).finish()
    }
}

// Send and Sync come from its parts (file, mapping, membership): all access
// to the data is through atomics (`atomic_at`).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<DynSegment>()
};

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, offset: u64, size: u64, kind: &str) -> SchemaEntry {
        SchemaEntry { offset, size, count: 1, kind: kind.to_owned(), path: path.to_owned() }
    }

    #[test]
    fn containers_waiters_and_whole_lock_headers_must_not_overlap_fields() {
        let queue = || entry("jobs", 64, 256, "queue item=4 cap=8 slots=192");
        // A scalar on a queue's slots, on a map, on an event, inside an
        // rwlock's reader slots (past the 12 bytes once checked), inside a
        // seqlock's writer lock: refused.
        for other in [
            entry("hits", 256, 8, "u64"),
            entry("hits", 64, 8, "u64"),
            entry("m", 128, 64, "map key=4 value=8 cap=1 shards=1 slots=1024 slot=24 key_at=8 value_at=16"),
        ] {
            assert!(check_disjoint(&[queue(), other.clone()]).is_err(), "{other:?} over a queue");
        }
        assert!(check_disjoint(&[entry("ev", 0, 4, "event"), entry("x", 0, 4, "u32")]).is_err());
        assert!(check_disjoint(&[entry("rw", 0, 288, "rwlock"), entry("x", 100, 8, "u64")]).is_err());
        assert!(check_disjoint(&[entry("sl", 0, 24, "seqlock"), entry("x", 8, 8, "u64")]).is_err());
        // Side by side: fine.
        assert!(check_disjoint(&[queue(), entry("hits", 320, 8, "u64"), entry("ev", 0, 4, "event")]).is_ok());
    }
}
