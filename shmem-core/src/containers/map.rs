//! `Map<K, V, N>`: a fixed-capacity hash map shared by all processes —
//! `Manager().dict()` without a server or pickling.
//!
//! ```
//! use shmem::containers::{Map, Str};
//! let ages: Map<Str<16>, u32, 64> = Map::new();
//! let ada = Str::try_from("ada").unwrap();
//! assert_eq!(ages.insert(ada, 36), Ok(None));
//! assert_eq!(ages.update(&ada, |age| *age += 1), Some(37));
//! assert_eq!(ages.get(&ada), Some(37));
//! assert_eq!(ages.remove(&ada), Some(37));
//! assert!(ages.is_empty());
//! ```
//!
//! # Design
//!
//! `N` slots split into up to [`SHARDS`] shards, each an open-addressing
//! table (linear probing inside its slot range) guarded by its own
//! crash-safe [`RawMutex`]. A key's hash picks its shard, so operations on
//! keys of different shards never wait for each other: readers and writers
//! in different processes do not serialise on one global lock. Removal uses
//! backward-shift deletion, so there are no tombstones and the table never
//! degrades. The hash is a fixed FNV-1a over the key's bytes (keys are
//! `Pod`), identical in every process, every build and every compiler
//! version. Keys are told apart by their bytes: for a key type holding
//! floats, `0.0` and `-0.0` are different keys, and each NaN bit pattern is
//! its own key.
//!
//! Layout (for tools): shard `i` at `64 * i` (its entry count, a `u64`, at
//! `+8`), the slots after the shards, each a `u64` full mark, the key at 8
//! and the value (see the schema's `slots=`, `slot=`, `key_at=` and `value_at=`).
//!
//! # Capacity, exactly
//!
//! The map has `S = min(16, max(1, N / 8))` shards; shard `i` owns the slots
//! `N * i / S .. N * (i + 1) / S`, so every shard has `⌊N / S⌋` or
//! `⌈N / S⌉` slots, and a key always goes to the shard its hash picks.
//! `insert` of a new key fails with [`Full`] **exactly when that key's shard
//! has no free slot**, never otherwise. So a map always accepts at least
//! `⌊N / S⌋` entries, accepts all `N` when keys spread over the shards
//! evenly, and with many random keys fills up after roughly `N` minus a
//! few shards' worth of slack (the unit test
//! `full_only_when_the_keys_shard_is_full` checks the rule on 20 maps). Size
//! `N` at about twice the entries you expect, which also keeps probes short.
//! A full map is an error that hands the entry back, never a silent drop.
//!
//! # Crashes
//!
//! Every change marks its shard dirty first and clears the mark last: a
//! structural change (insert of a new key, remove, clear) with
//! `DIRTY_STRUCTURE`, an overwrite of a value in place (insert of an existing
//! key, update) with `DIRTY_VALUE`. If a process dies while holding a shard
//! lock, the next process to lock that shard takes it over (see
//! [`liveness`](crate::sync::liveness)), and if the shard was dirty it
//! repairs the shard **in place**: duplicates a half-done removal left are
//! removed, entries a gap made unreachable are moved back onto their probe
//! path, and the entry count is recomputed from the slots. Each step keeps
//! every entry in shared memory, so a repair killed halfway is simply done
//! again by the next locker, to the same result. Only an interrupted value
//! write marks the map poisoned (that value may be torn): [`Map::is_poisoned`](MapRing::is_poisoned)
//! tells, [`Map::clear_poison`](MapRing::clear_poison) resets.

use super::vec::Full;
use crate::sync::park::{point, Os, Park};
use crate::sync::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::sync::raw_mutex::RawMutex;
use crate::sync::TimedOut;
use bytemuck::Pod;
use core::marker::PhantomData;
use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use std::time::{Duration, Instant};

/// The most shards a map has (fewer for small `N`: each has at least 8 slots).
pub const SHARDS: usize = 16;

/// Where a map's words are, whatever `K`, `V` and `N` (for the schema
/// decoder, [`crate::segment::decode`]): the first shard, a shard's size,
/// its entry count, and a slot's "full" word (the key's and value's places
/// depend on `K` and `V`: the schema records them).
#[cfg(not(loom))]
pub(crate) const WORDS: [u64; 4] = [
    core::mem::offset_of!(MapRing<u8, u8, [MapSlot<u8, u8>; 1]>, shards) as u64,
    size_of::<Shard>() as u64,
    core::mem::offset_of!(Shard, len) as u64,
    core::mem::offset_of!(Slot<u8, u8>, full) as u64,
];

/// `dirty`: a structural change (insert, remove, clear, repair) is under way.
const DIRTY_STRUCTURE: u32 = 1;
/// `dirty`: a value is being overwritten in place (a crash may tear it).
const DIRTY_VALUE: u32 = 2;

#[repr(C, align(64))]
struct Shard {
    lock: RawMutex,
    len: AtomicU64,
    dirty: AtomicU32,
    _reserved: u32,
}

#[repr(C)]
struct Slot<K, V> {
    full: u64,
    key: K,
    value: V,
}

/// A fixed-capacity hash map shared between processes. See the
/// [module docs](self).
///
/// ```
/// use shmem::{Map, Segment, Shared, Str};
///
/// #[derive(Shared)]
/// struct Registry {
///     // `Manager().dict()` with int keys and short str values, up to 256 entries.
///     names: Map<u32, Str<16>, 256>,
/// }
///
/// let reg = Segment::<Registry>::create_anonymous_with(|_| {})?;
/// reg.names().insert(1, Str::try_from("ada").unwrap()).unwrap();
/// assert_eq!(reg.names().get(&1).unwrap(), "ada");
/// assert_eq!(format!("{:?}", reg.names()), r#"{1: "ada"}"#);
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(transparent)]
pub struct Map<K, V, const N: usize>(MapRing<K, V, [MapSlot<K, V>; N]>);

/// A map's shards, poison flag and slots, whatever their number:
/// [`Map<K, V, N>`](Map) is one with `N` slots and dereferences to a
/// `MapRing<K, V>`, whose methods do the work. A segment opened by schema
/// hands out a `MapRing<K, V>` for a map field of any capacity
/// ([`DynSegment::map`](crate::segment::dynamic::DynSegment::map)).
#[repr(C)]
pub struct MapRing<K, V, S: ?Sized = [MapSlot<K, V>]> {
    shards: [Shard; SHARDS],
    poisoned: AtomicU32,
    _entry: PhantomData<(K, V)>,
    slots: S,
}

/// One slot of a map (public only as [`MapRing`]'s type parameter:
/// nothing can be done with it).
#[doc(hidden)]
#[repr(transparent)]
pub struct MapSlot<K, V>(UnsafeCell<Slot<K, V>>);

/// Where a `Map<K, V, _>`'s parts are, whatever its capacity: the first
/// slot, a slot's size, the key and the value in a slot, and the map's
/// alignment (for a segment opened by schema).
pub(crate) const fn ring_layout<K, V>() -> [usize; 5] {
    [
        core::mem::offset_of!(MapRing<K, V, [MapSlot<K, V>; 1]>, slots),
        size_of::<Slot<K, V>>(),
        core::mem::offset_of!(Slot<K, V>, key),
        core::mem::offset_of!(Slot<K, V>, value),
        core::mem::align_of::<MapRing<K, V, [MapSlot<K, V>; 1]>>(),
    ]
}

/// `x / d`, a shift when `d` is a power of two (the usual shard counts):
/// the division a constant `N` used to fold away.
#[inline(always)]
fn over(x: usize, d: usize) -> usize {
    if d.is_power_of_two() {
        x >> d.trailing_zeros()
    } else {
        x / d
    }
}

/// The number of shards of a map of `n` slots: up to [`SHARDS`], with at
/// least 8 slots each (1 for tiny maps).
#[inline(always)]
pub(crate) const fn shard_count(n: usize) -> usize {
    if n / 8 < SHARDS {
        if n / 8 == 0 {
            1
        } else {
            n / 8
        }
    } else {
        SHARDS
    }
}

// SAFETY: slots are only accessed by the holder of their shard's lock;
// `K` and `V` are plain data, and `Send` because an entry inserted by one
// thread is read or removed by another.
unsafe impl<K: Pod + Send, V: Pod + Send, const N: usize> Sync for Map<K, V, N> {}
// SAFETY: as above.
unsafe impl<K: Pod + Send, V: Pod + Send, const N: usize> Send for Map<K, V, N> {}
// SAFETY: as above: the same protocol over a run-time number of slots.
unsafe impl<K: Pod + Send, V: Pod + Send> Sync for MapRing<K, V> {}
// SAFETY: as above.
unsafe impl<K: Pod + Send, V: Pod + Send> Send for MapRing<K, V> {}

/// 64-bit FNV-1a: fixed, so every process and build hashes keys alike.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // Mix the high bits down (FNV's low bits are weak for short keys).
        let h = self.0;
        h ^ (h >> 29) ^ (h >> 47)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The hash of a key: FNV-1a over the key's bytes (keys are `Pod`), so the
/// same key lands in the same slot in every process, every build and every
/// compiler version (`std::hash::Hash` output is not stable across Rust
/// releases), and later in other languages.
fn hash_of<K: Pod>(key: &K) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(bytemuck::bytes_of(key));
    h.finish()
}

/// The locked view of one shard: its slot range and operations on it.
struct Locked<'a, K, V, P: Park = Os> {
    map: &'a MapRing<K, V>,
    shard: &'a Shard,
    start: usize,
    len: usize,
    _park: PhantomData<fn() -> P>,
}

impl<K: Pod + Hash + Eq, V: Pod, P: Park> Locked<'_, K, V, P> {
    /// Slot `i` of this shard (`i < self.len`).
    #[allow(clippy::mut_from_ref, reason = "the shard lock, held by `self`, makes the access exclusive")]
    fn slot(&self, i: usize) -> &mut Slot<K, V> {
        assert!(i < self.len);
        // SAFETY: slot `start + i` belongs to this shard, whose lock this
        // process holds for the lifetime of `self`, so no other process or
        // thread accesses it; within this module no two references returned
        // by `slot` are alive at once (each use is a single expression or a
        // short block that ends before the next call).
        unsafe { &mut *self.map.slots[self.start + i].0.get() }
    }

    fn full(&self, i: usize) -> bool {
        self.slot(i).full != 0
    }

    fn key(&self, i: usize) -> K {
        self.slot(i).key
    }

    fn home(&self, key: &K) -> usize {
        (hash_of(key) % self.len as u64) as usize
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: &K) -> Option<usize> {
        let mut i = self.home(key);
        for _ in 0..self.len {
            if !self.full(i) {
                return None;
            }
            // Keys are compared by their bytes, as they are hashed: a key
            // type whose `==` differs from its bytes (a `Str` with bytes
            // after its end, written by another language) is still one key.
            if bytemuck::bytes_of(&self.key(i)) == bytemuck::bytes_of(key) {
                return Some(i);
            }
            i = (i + 1) % self.len;
        }
        None
    }

    /// Puts a key known to be absent into the first free slot of its probe
    /// sequence; hands the entry back if the shard is full.
    fn insert_new(&self, key: K, value: V) -> Result<(), Full<(K, V)>> {
        let mut i = self.home(&key);
        for _ in 0..self.len {
            if !self.full(i) {
                // The slot is empty: writing key and value first and the
                // `full` mark last publishes the entry in one store.
                // The shard is dirty from before the mark to after `len`
                // counts the entry: a crash in between leaves `len` to repair.
                self.shard.dirty.store(DIRTY_STRUCTURE, Ordering::Relaxed);
                point::<P>("map.insert.dirty");
                let slot = self.slot(i);
                slot.key = key;
                slot.value = value;
                point::<P>("map.insert.written");
                slot.full = 1;
                point::<P>("map.insert.published");
                self.shard.len.fetch_add(1, Ordering::Relaxed);
                point::<P>("map.insert.counted");
                self.shard.dirty.store(0, Ordering::Relaxed);
                return Ok(());
            }
            i = (i + 1) % self.len;
        }
        Err(Full((key, value)))
    }

    /// Removes the entry in slot `i` with backward-shift deletion.
    fn remove_at(&self, i: usize) -> V {
        let value = self.slot(i).value;
        self.shard.dirty.store(DIRTY_STRUCTURE, Ordering::Relaxed);
        point::<P>("map.remove.dirty");
        let mut hole = i;
        self.slot(hole).full = 0;
        point::<P>("map.remove.emptied");
        let mut j = (hole + 1) % self.len;
        while j != i && self.full(j) {
            let home = self.home(&self.key(j));
            let (dist_j, dist_hole) = ((j + self.len - home) % self.len, (j + self.len - hole) % self.len);
            if dist_j >= dist_hole {
                // Copy, mark the copy full, then empty the source: a crash
                // in between leaves a duplicate, which `repair` removes.
                let (key, value) = (self.slot(j).key, self.slot(j).value);
                let dst = self.slot(hole);
                dst.key = key;
                dst.value = value;
                point::<P>("map.remove.shift_written");
                dst.full = 1;
                point::<P>("map.remove.shift_copied");
                self.slot(j).full = 0;
                point::<P>("map.remove.shift_emptied");
                hole = j;
            }
            j = (j + 1) % self.len;
        }
        self.shard.len.fetch_sub(1, Ordering::Relaxed);
        point::<P>("map.remove.counted");
        self.shard.dirty.store(0, Ordering::Relaxed);
        value
    }

    /// Repairs the shard in place after a process died while it was dirty:
    /// removes duplicated keys (a removal's shift copies an entry before it
    /// empties the source), moves entries that a gap made unreachable back
    /// onto their probe path, recounts `len`, and only then clears `dirty`.
    ///
    /// Every step keeps each entry in the shared slots (a move copies, marks
    /// the copy full, then empties the source), so a process killed while
    /// repairing leaves the shard dirty with nothing lost, and the next
    /// repair ends in the same state: repair is idempotent. Linear in the
    /// shard's size (plus probe distances), with a set of key bytes on the
    /// heap for the duplicate check.
    fn repair(&self) {
        point::<P>("map.repair.start");
        // 1. Duplicates: keep the first copy of each key.
        let mut seen = std::collections::HashSet::with_capacity(self.len);
        for i in 0..self.len {
            if self.full(i) && !seen.insert(bytemuck::bytes_of(&self.key(i)).to_vec()) {
                self.slot(i).full = 0;
                point::<P>("map.repair.dedup");
            }
        }
        // 2. Reachability: an entry must have no empty slot between its
        // home and itself. Move it to the first empty slot on that path.
        for _pass in 0..self.len {
            let mut moved = false;
            for i in 0..self.len {
                if !self.full(i) {
                    continue;
                }
                let mut p = self.home(&self.key(i));
                while p != i && self.full(p) {
                    p = (p + 1) % self.len;
                }
                if p != i {
                    let (key, value) = (self.slot(i).key, self.slot(i).value);
                    let dst = self.slot(p);
                    dst.key = key;
                    dst.value = value;
                    point::<P>("map.repair.copy_written");
                    dst.full = 1;
                    point::<P>("map.repair.moved");
                    self.slot(i).full = 0;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        // 3. The count, from the slots themselves.
        let count = (0..self.len).filter(|&i| self.full(i)).count();
        self.shard.len.store(count as u64, Ordering::Relaxed);
        point::<P>("map.repair.counted");
        self.shard.dirty.store(0, Ordering::Relaxed);
    }
}

impl<K, V, P: Park> Drop for Locked<'_, K, V, P> {
    fn drop(&mut self) {
        // SAFETY: a `Locked` exists only while this process holds the lock.
        unsafe { self.shard.lock.unlock::<P>() };
    }
}

/// What [`Map::insert`](MapRing::insert) returns: the previous value, or the entry back if
/// its shard is full.
pub type InsertResult<K, V> = Result<Option<V>, Full<(K, V)>>;

impl<K: Pod + Hash + Eq, V: Pod, const N: usize> Map<K, V, N> {
    const VALID: () = assert!(N > 0, "a Map needs at least one slot");

    /// An empty map (for use outside segments; in a segment, a zeroed map
    /// is empty). Builds the map on the stack: for large `N` create the
    /// segment with `create_zeroed` instead.
    #[cfg(not(loom))]
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value, reason = "forces the compile-time capacity check")]
        let () = Self::VALID;
        // SAFETY: shards are a zero-valid `RawMutex` and integers, slots are
        // `full = 0` (empty) with plain-data keys and values; all-zero bytes
        // are an empty map.
        unsafe { core::mem::zeroed() }
    }

    /// An empty map (under loom, whose atomics carry model state and are
    /// built, not zeroed).
    #[cfg(loom)]
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value, reason = "forces the compile-time capacity check")]
        let () = Self::VALID;
        let shard = || Shard { lock: RawMutex::new(), len: AtomicU64::new(0), dirty: AtomicU32::new(0), _reserved: 0 };
        Map(MapRing {
            shards: core::array::from_fn(|_| shard()),
            poisoned: AtomicU32::new(0),
            _entry: PhantomData,
            slots: core::array::from_fn(|_| {
                MapSlot(UnsafeCell::new(Slot { full: 0, key: K::zeroed(), value: V::zeroed() }))
            }),
        })
    }

    /// The capacity `N` (see the module docs on per-shard capacity).
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The number of shards (for schemas).
    pub(crate) const SHARD_COUNT: usize = shard_count(N);
    /// Where the slots start (for schemas): slot `i` is at `SLOTS_OFFSET + i * SLOT_SIZE`,
    /// holding a `u64` "full" mark, the key at `KEY_AT` and the value at `VALUE_AT`.
    pub(crate) const SLOTS_OFFSET: usize = core::mem::offset_of!(MapRing<K, V, [MapSlot<K, V>; N]>, slots);
    pub(crate) const SLOT_SIZE: usize = size_of::<Slot<K, V>>();
    pub(crate) const VALUE_AT: usize = core::mem::offset_of!(Slot<K, V>, value);
    /// Where the key is in a slot (8, or 16 for a 16-aligned key).
    pub(crate) const KEY_AT: usize = core::mem::offset_of!(Slot<K, V>, key);
}

impl<K, V, const N: usize> core::ops::Deref for Map<K, V, N> {
    type Target = MapRing<K, V>;
    #[inline(always)]
    fn deref(&self) -> &MapRing<K, V> {
        &self.0
    }
}

impl<K: Pod + Hash + Eq, V: Pod> MapRing<K, V> {
    /// Up to [`SHARDS`], with at least 8 slots each (1 for tiny maps).
    #[inline(always)]
    fn shard_count(&self) -> usize {
        shard_count(self.slots.len())
    }

    fn lock_shard<P: Park>(&self, index: usize) -> Locked<'_, K, V, P> {
        match self.lock_shard_until::<P>(index, None) {
            Ok(locked) => locked,
            Err(TimedOut) => unreachable!("no deadline, no timeout"),
        }
    }

    fn lock_shard_until<P: Park>(
        &self,
        index: usize,
        deadline: Option<Instant>,
    ) -> Result<Locked<'_, K, V, P>, TimedOut> {
        let count = self.shard_count();
        let n = self.slots.len();
        let (start, end) = (over(index * n, count), over((index + 1) * n, count));
        let shard = &self.shards[index];
        shard.lock.lock_until::<P>(deadline).ok_or(TimedOut)?;
        let locked = Locked { map: self, shard, start, len: end - start, _park: PhantomData };
        // A shard left dirty by anyone is repaired (the owner died, or the
        // word was garbled); only an interrupted value write poisons: a
        // structural change (insert, remove, clear, repair) never tears an
        // entry, and repair restores the structure.
        let dirty = shard.dirty.load(Ordering::Relaxed);
        if dirty != 0 {
            if dirty != DIRTY_STRUCTURE {
                self.poisoned.store(1, Ordering::Relaxed);
            }
            locked.repair();
        }
        Ok(locked)
    }

    fn shard_of(&self, key: &K) -> usize {
        let count = self.shard_count();
        let h = (hash_of(key) >> 32) as usize;
        // `h % count`: a mask for the usual power-of-two shard counts.
        if count.is_power_of_two() {
            h & (count - 1)
        } else {
            h % count
        }
    }

    fn lock_for(&self, key: &K) -> Locked<'_, K, V> {
        self.lock_shard::<Os>(self.shard_of(key))
    }

    fn lock_for_within(&self, key: &K, timeout: Duration) -> Result<Locked<'_, K, V>, TimedOut> {
        self.lock_shard_until::<Os>(self.shard_of(key), crate::sync::deadline_after(timeout))
    }

    /// [`insert`](Self::insert) with another [`Park`] (for the loom model).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    #[doc(hidden)]
    pub fn insert_with<P: Park>(&self, key: K, value: V) -> InsertResult<K, V> {
        Self::insert_locked(&self.lock_shard::<P>(self.shard_of(&key)), key, value)
    }

    /// [`remove`](Self::remove) with another [`Park`] (for the loom model).
    #[doc(hidden)]
    pub fn remove_with<P: Park>(&self, key: &K) -> Option<V> {
        let shard = self.lock_shard::<P>(self.shard_of(key));
        shard.find(key).map(|i| shard.remove_at(i))
    }

    /// Every entry, each shard locked with another [`Park`] (for the loom
    /// model; see [`to_vec`](Self::to_vec)).
    #[doc(hidden)]
    pub fn to_vec_with<P: Park>(&self) -> std::vec::Vec<(K, V)> {
        let mut out = std::vec::Vec::new();
        for index in 0..self.shard_count() {
            let shard = self.lock_shard::<P>(index);
            for i in 0..shard.len {
                if shard.full(i) {
                    out.push((shard.key(i), shard.slot(i).value));
                }
            }
        }
        out
    }

    /// The capacity (`N` of a [`Map<K, V, N>`](Map); see the module docs on
    /// per-shard capacity).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The number of entries (a snapshot).
    ///
    /// ```
    /// use shmem::{Map, Segment};
    /// let ages = Segment::<Map<u32, u8, 64>>::create_anonymous_with(|_| {})?; // an empty map
    /// ages.insert(1, 10).unwrap();
    /// assert_eq!((ages.len(), ages.capacity()), (1, 64));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        // Each shard's count is shared memory a peer could have garbled:
        // never more than the map holds, never an overflow.
        let total = self.shards[..self.shard_count()]
            .iter()
            .map(|s| (s.len.load(Ordering::Relaxed) as usize).min(self.capacity()))
            .fold(0usize, usize::saturating_add);
        total.min(self.capacity())
    }

    /// Whether the map has no entries (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts or replaces; returns the previous value.
    ///
    /// # Errors
    /// [`Full`] with the entry if the key's shard has no free slot.
    ///
    /// ```
    /// use shmem::{Map, Segment};
    /// let ages = Segment::<Map<u32, u8, 64>>::create_anonymous_with(|_| {})?; // an empty map
    /// assert_eq!(ages.insert(7, 30).unwrap(), None);     // `d[7] = 30`
    /// assert_eq!(ages.insert(7, 31).unwrap(), Some(30)); // replaced
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, Full<(K, V)>> {
        Self::insert_locked(&self.lock_for(&key), key, value)
    }

    /// [`insert`](Self::insert), waiting at most `timeout` for the key's
    /// shard (held by another thread or process). `Duration::ZERO` never waits.
    ///
    /// # Errors
    /// `Err(TimedOut)` if the shard stayed locked; `Ok(Err(Full))` as for `insert`.
    pub fn insert_timeout(&self, key: K, value: V, timeout: Duration) -> Result<InsertResult<K, V>, TimedOut> {
        Ok(Self::insert_locked(&self.lock_for_within(&key, timeout)?, key, value))
    }

    fn insert_locked<P: Park>(shard: &Locked<'_, K, V, P>, key: K, value: V) -> Result<Option<V>, Full<(K, V)>> {
        match shard.find(&key) {
            Some(i) => {
                shard.shard.dirty.store(DIRTY_VALUE, Ordering::Relaxed);
                point::<P>("map.replace.dirty");
                let old = core::mem::replace(&mut shard.slot(i).value, value);
                point::<P>("map.replace.written");
                shard.shard.dirty.store(0, Ordering::Relaxed);
                Ok(Some(old))
            }
            None => shard.insert_new(key, value).map(|()| None),
        }
    }

    /// A copy of the value for `key`.
    ///
    /// ```
    /// use shmem::{Map, Segment};
    /// let ages = Segment::<Map<u32, u8, 64>>::create_anonymous_with(|_| {})?; // an empty map
    /// ages.insert(7, 30).unwrap();
    /// assert_eq!(ages.get(&7), Some(30)); // `d.get(7)`
    /// assert_eq!(ages.get(&8), None);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn get(&self, key: &K) -> Option<V> {
        let shard = self.lock_for(key);
        shard.find(key).map(|i| shard.slot(i).value)
    }

    /// [`get`](Self::get), waiting at most `timeout` for the key's shard.
    /// `Duration::ZERO` never waits.
    ///
    /// # Errors
    /// `Err(TimedOut)` if the shard stayed locked by another thread or process.
    pub fn get_timeout(&self, key: &K, timeout: Duration) -> Result<Option<V>, TimedOut> {
        let shard = self.lock_for_within(key, timeout)?;
        Ok(shard.find(key).map(|i| shard.slot(i).value))
    }

    /// Whether `key` is present.
    ///
    /// ```
    /// use shmem::{Map, Segment};
    /// let ages = Segment::<Map<u32, u8, 64>>::create_anonymous_with(|_| {})?; // an empty map
    /// ages.insert(7, 30).unwrap();
    /// assert!(ages.contains_key(&7)); // `7 in d`
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn contains_key(&self, key: &K) -> bool {
        self.lock_for(key).find(key).is_some()
    }

    /// Removes `key`; returns its value.
    ///
    /// ```
    /// use shmem::{Map, Segment};
    /// let ages = Segment::<Map<u32, u8, 64>>::create_anonymous_with(|_| {})?; // an empty map
    /// ages.insert(7, 30).unwrap();
    /// assert_eq!(ages.remove(&7), Some(30)); // `d.pop(7, None)`
    /// assert!(ages.is_empty());
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn remove(&self, key: &K) -> Option<V> {
        let shard = self.lock_for(key);
        shard.find(key).map(|i| shard.remove_at(i))
    }

    /// [`remove`](Self::remove), waiting at most `timeout` for the key's
    /// shard. `Duration::ZERO` never waits.
    ///
    /// # Errors
    /// `Err(TimedOut)` if the shard stayed locked by another thread or process.
    pub fn remove_timeout(&self, key: &K, timeout: Duration) -> Result<Option<V>, TimedOut> {
        let shard = self.lock_for_within(key, timeout)?;
        Ok(shard.find(key).map(|i| shard.remove_at(i)))
    }

    /// Applies `f` to the value for `key` atomically (no other process sees
    /// or changes it meanwhile); returns the new value, `None` if absent.
    ///
    /// ```
    /// use shmem::{Map, Segment};
    /// let ages = Segment::<Map<u32, u8, 64>>::create_anonymous_with(|_| {})?; // an empty map
    /// ages.insert(7, 30).unwrap();
    /// // `d[7] += 1`, as one step: no other process can interleave.
    /// assert_eq!(ages.update(&7, |age| *age += 1), Some(31));
    /// assert_eq!(ages.update(&8, |age| *age += 1), None); // no such key
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn update(&self, key: &K, f: impl FnOnce(&mut V)) -> Option<V> {
        Self::update_locked(&self.lock_for(key), key, f)
    }

    /// [`update`](Self::update), waiting at most `timeout` for the key's
    /// shard. `Duration::ZERO` never waits.
    ///
    /// # Errors
    /// `Err(TimedOut)` if the shard stayed locked by another thread or process.
    pub fn update_timeout(&self, key: &K, timeout: Duration, f: impl FnOnce(&mut V)) -> Result<Option<V>, TimedOut> {
        Ok(Self::update_locked(&self.lock_for_within(key, timeout)?, key, f))
    }

    fn update_locked<P: Park>(shard: &Locked<'_, K, V, P>, key: &K, f: impl FnOnce(&mut V)) -> Option<V> {
        let i = shard.find(key)?;
        let mut value = shard.slot(i).value;
        f(&mut value);
        shard.shard.dirty.store(DIRTY_VALUE, Ordering::Relaxed);
        point::<P>("map.update.dirty");
        shard.slot(i).value = value;
        point::<P>("map.update.written");
        shard.shard.dirty.store(0, Ordering::Relaxed);
        Some(value)
    }

    /// The value for `key`, inserting `value` first if absent.
    ///
    /// # Errors
    /// [`Full`] with the entry if it was absent and its shard is full.
    ///
    /// ```
    /// use shmem::{Map, Segment};
    /// let ages = Segment::<Map<u32, u8, 64>>::create_anonymous_with(|_| {})?; // an empty map
    /// assert_eq!(ages.get_or_insert(7, 30).unwrap(), 30); // `d.setdefault(7, 30)`
    /// assert_eq!(ages.get_or_insert(7, 99).unwrap(), 30);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn get_or_insert(&self, key: K, value: V) -> Result<V, Full<(K, V)>> {
        let shard = self.lock_for(&key);
        match shard.find(&key) {
            Some(i) => Ok(shard.slot(i).value),
            None => shard.insert_new(key, value).map(|()| value),
        }
    }

    /// Removes every entry (shard by shard; each shard is marked dirty
    /// meanwhile, so a process killed mid-clear leaves it to be repaired).
    pub fn clear(&self) {
        for index in 0..self.shard_count() {
            let shard = self.lock_shard::<Os>(index);
            shard.shard.dirty.store(DIRTY_STRUCTURE, Ordering::Relaxed);
            crate::crash_point!("map.clear.dirty");
            for i in 0..shard.len {
                shard.slot(i).full = 0;
                if i == shard.len / 2 {
                    crate::crash_point!("map.clear.half");
                }
            }
            shard.shard.len.store(0, Ordering::Relaxed);
            crate::crash_point!("map.clear.counted");
            shard.shard.dirty.store(0, Ordering::Relaxed);
        }
    }

    /// Every entry, shard by shard (each shard is consistent; the whole is
    /// not one atomic snapshot if others write meanwhile).
    ///
    /// ```
    /// use shmem::{Map, Segment};
    /// let ages = Segment::<Map<u32, u8, 64>>::create_anonymous_with(|_| {})?; // an empty map
    /// ages.insert(2, 20).unwrap();
    /// ages.insert(1, 10).unwrap();
    /// let mut items = ages.to_vec(); // `list(d.items())`, in slot order
    /// items.sort();
    /// assert_eq!(items, [(1, 10), (2, 20)]);
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn to_vec(&self) -> std::vec::Vec<(K, V)> {
        // `len` is shared memory another process could have garbled: never
        // let it size an allocation beyond the capacity.
        let mut out = std::vec::Vec::with_capacity(self.len().min(self.capacity()));
        for index in 0..self.shard_count() {
            let shard = self.lock_shard::<Os>(index);
            for i in 0..shard.len {
                let slot = shard.slot(i);
                if slot.full != 0 {
                    out.push((slot.key, slot.value));
                }
            }
        }
        out
    }

    /// A `std` `HashMap` copy of the entries (see [`to_vec`](Self::to_vec)).
    pub fn to_hashmap(&self) -> HashMap<K, V> {
        self.to_vec().into_iter().collect()
    }

    /// Whether a process died while overwriting a value in place (that value
    /// may be torn). Structural repairs (after a death mid-insert or
    /// mid-remove) lose nothing and do not poison.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed) != 0
    }

    /// Marks the values consistent again.
    pub fn clear_poison(&self) {
        self.poisoned.store(0, Ordering::Relaxed);
    }

    /// Holds `key`'s shard lock with the shard marked dirty until the guard
    /// drops: for crash tests (a process killed meanwhile dies mid-update).
    #[doc(hidden)]
    pub fn hold_shard_dirty(&self, key: &K) -> impl Drop + '_ {
        let shard = self.lock_for(key);
        shard.shard.dirty.store(DIRTY_VALUE, Ordering::Relaxed);
        shard
    }
}

impl<K: Pod + Hash + Eq, V: Pod, const N: usize> Default for Map<K, V, N> {
    fn default() -> Self {
        Map::new()
    }
}

/// Prints as a dict, `{0: "b", 1: "a"}`, in a stable order (not the hash
/// order of the slots): keys sorted by their printed form, numbers by value.
///
/// ```
/// use shmem::{Map, Segment};
/// let map = Segment::<Map<i32, u8, 16>>::create_anonymous_with(|_| {})?;
/// for k in [10, -3, 2, 9] {
///     map.insert(k, 1).unwrap();
/// }
/// assert_eq!(format!("{:?}", *map), "{-3: 1, 2: 1, 9: 1, 10: 1}");
/// # Ok::<(), shmem::Error>(())
/// ```
impl<K: Pod + Hash + Eq + fmt::Debug, V: Pod + fmt::Debug, const N: usize> fmt::Debug for Map<K, V, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<(String, V)> = self.to_vec().into_iter().map(|(k, v)| (format!("{k:?}"), v)).collect();
        entries.sort_by(|(a, _), (b, _)| match (a.parse::<i128>(), b.parse::<i128>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        });
        f.debug_map().entries(entries.iter().map(|(k, v)| (DebugText(k), v))).finish()
    }
}

/// A string printed by `Debug` as it is (an already formatted key).
struct DebugText<'a>(&'a str);

impl fmt::Debug for DebugText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key hash is part of the segment format: a key must land in the
    /// same slot in every process, every build, every compiler version and
    /// (later) every language. These values pin it; if this test fails, the
    /// format changed and `header::VERSION` must change with it.
    #[test]
    #[cfg(target_endian = "little")]
    fn key_hash_is_fixed_over_the_key_bytes() {
        assert_eq!(hash_of(&0u64), PINNED[0]);
        assert_eq!(hash_of(&42u64), PINNED[1]);
        assert_eq!(hash_of(&[1u8, 2, 3]), PINNED[2]);
        assert_eq!(hash_of(&-1i32), hash_of(&u32::MAX), "bytes, not types, are hashed");
        let text = crate::containers::Str::<8>::try_from("ab").unwrap();
        assert_eq!(hash_of(&text), PINNED[3]);
    }

    /// FNV-1a 64 over the bytes, then `h ^ (h >> 29) ^ (h >> 47)`: computed
    /// independently (in Python) for `0u64`, `42u64` (little-endian),
    /// `[1, 2, 3]` and `Str::<8>` "ab" (`b"ab"` and six zero bytes).
    #[cfg(target_endian = "little")]
    const PINNED: [u64; 4] = [12161962235692100059, 18391255487709368259, 15035938190718288956, 17490113133101049606];

    /// A capacity whose shard count is no power of two (100 slots: 12
    /// shards of 8 or 9): the divisions, not the shifts, split the slots,
    /// every slot belongs to one shard, and every entry is found again.
    #[test]
    fn shard_counts_that_are_no_power_of_two() {
        let map: Box<Map<u32, u64, 100>> = Box::default();
        assert_eq!(map.shard_count(), 12);
        let ranges: std::vec::Vec<(usize, usize)> =
            (0..12).map(|i| (over(i * 100, 12), over((i + 1) * 100, 12))).collect();
        assert_eq!((ranges[0].0, ranges[11].1), (0, 100));
        assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0 && w[0].1 - w[0].0 >= 8));
        let mut stored = std::vec::Vec::new();
        for k in 0..400u32 {
            if map.insert(k, u64::from(k) * 3).is_ok() {
                stored.push(k);
            }
        }
        assert!(stored.len() > 50, "only {} of 100 slots filled", stored.len());
        assert_eq!(map.len(), stored.len());
        for &k in &stored {
            assert_eq!(map.get(&k), Some(u64::from(k) * 3));
        }
        for &k in stored.iter().step_by(2) {
            assert_eq!(map.remove(&k), Some(u64::from(k) * 3));
        }
        for (i, &k) in stored.iter().enumerate() {
            assert_eq!(map.get(&k), (i % 2 == 1).then(|| u64::from(k) * 3));
        }
    }

    /// `Full` comes exactly when the key's own shard has no free slot.
    #[test]
    fn full_only_when_the_keys_shard_is_full() {
        for seed in 0..20u64 {
            let map: Box<Map<u64, u64, 256>> = Box::default();
            let count = map.shard_count();
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut accepted = 0usize;
            loop {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match map.insert(x, x) {
                    Ok(None) => accepted += 1,
                    Ok(Some(_)) => {}
                    Err(Full((k, _))) => {
                        let shard = map.lock_for(&k);
                        let used = (0..shard.len).filter(|&i| shard.full(i)).count();
                        assert_eq!(used, shard.len, "Full although the key's shard has a free slot");
                        assert!(accepted >= 256 / count, "accepted {accepted}, less than one shard's share");
                        break;
                    }
                }
            }
            assert_eq!(map.len(), accepted);
        }
    }

    #[test]
    fn behaves_like_a_hashmap_under_random_operations() {
        let map: Map<u32, u64, 512> = Map::new();
        let mut model = HashMap::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = (rng % 300) as u32;
            match rng % 4 {
                0 | 1 => assert_eq!(map.insert(key, step).unwrap(), model.insert(key, step)),
                2 => assert_eq!(map.remove(&key), model.remove(&key)),
                _ => assert_eq!(
                    map.update(&key, |v| *v += 1),
                    model.get_mut(&key).map(|v| {
                        *v += 1;
                        *v
                    })
                ),
            }
            assert_eq!(map.get(&key), model.get(&key).copied());
        }
        assert_eq!(map.len(), model.len());
        assert_eq!(map.to_hashmap(), model);
        map.clear();
        assert!(map.is_empty() && map.to_vec().is_empty());
    }

    #[test]
    fn full_is_an_error_and_removal_frees_space_for_good() {
        let map: Map<u16, u16, 4> = Map::new();
        let mut stored = std::vec::Vec::new();
        for k in 0..100u16 {
            match map.insert(k, k) {
                Ok(None) => stored.push(k),
                Err(Full((back, _))) => assert_eq!(back, k, "the entry is handed back"),
                Ok(Some(_)) => unreachable!(),
            }
        }
        assert_eq!(map.len(), stored.len());
        assert!(map.len() <= 4);
        // Churn: remove and re-insert many times; no tombstones pile up.
        for round in 0..1000u16 {
            let k = stored[usize::from(round) % stored.len()];
            assert_eq!(map.remove(&k), Some(k));
            assert_eq!(map.insert(k, k), Ok(None));
        }
        assert_eq!(map.get_or_insert(stored[0], 9), Ok(stored[0]));
    }

    #[test]
    fn repair_removes_duplicates_and_restores_probing() {
        let map: Map<u32, u32, 256> = Map::new();
        for k in 0..8 {
            map.insert(k, k * 10).unwrap();
        }
        {
            // Simulate a removal interrupted after its copy step: duplicate
            // one entry into a free slot of its shard.
            let shard = map.lock_for(&3);
            let from = shard.find(&3).unwrap();
            let to = (0..shard.len).find(|i| !shard.full(*i)).unwrap();
            let (key, value) = (shard.slot(from).key, shard.slot(from).value);
            let dst = shard.slot(to);
            dst.key = key;
            dst.value = value;
            dst.full = 1;
            shard.repair();
        }
        assert_eq!(map.len(), 8);
        assert_eq!(map.to_vec().iter().filter(|(k, _)| *k == 3).count(), 1);
        for k in 0..8 {
            assert_eq!(map.get(&k), Some(k * 10));
        }
    }
}
