//! The state of a segment's locks, waiters and containers, decoded from a
//! [`View`] by schema alone: one decoder for every tool (the `shmem` CLI,
//! the Python package's `attach`). The word offsets come from the types
//! themselves (`offset_of!` next to each definition), so a change of layout
//! changes the decoder with it; what depends on a field's type parameters
//! (a queue's item size, a map's slot size) comes from its schema entry.
//!
//! Everything here only reads, with atomic loads checked against the
//! segment's data, and bounds every count by what the entry's own bytes can
//! hold and every copy by [`MAX_ITEM_BYTES`]: a crafted segment cannot make
//! a tool read out of range, loop or allocate for long.

use super::View;
use crate::layout::SchemaEntry;
use crate::sync::raw_mutex::owner_of;

/// Whether a lock is held, by whom, and whether a holder died inside.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockState {
    /// The holder's owner token (see [`liveness`](crate::sync::liveness));
    /// `None` when free.
    pub held_by: Option<u64>,
    /// A holder died inside (the value may be half-updated).
    pub poisoned: bool,
}

/// What a queue holds.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// Items in the queue.
    pub len: u64,
    /// Its capacity.
    pub capacity: u64,
    /// The most items pushes fill it to ([`QueueRing::set_limit`](crate::containers::queue::QueueRing::set_limit)):
    /// the capacity unless lowered.
    pub limit: u64,
    /// Whether it was closed.
    pub closed: bool,
    /// Bytes per item.
    pub item_size: u64,
    /// The first items, oldest first (as many as asked for), each as its
    /// bytes (at most [`MAX_ITEM_BYTES`] of each). A copy taken without the
    /// lock: items may change meanwhile.
    pub items: Vec<Vec<u8>>,
}

/// What a map holds.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapState {
    /// Entries in the map (the sum of its shards' counts).
    pub len: u64,
    /// Its capacity in slots.
    pub capacity: u64,
    /// Bytes per key.
    pub key_size: u64,
    /// Bytes per value.
    pub value_size: u64,
    /// Some entries (as many as asked for, in slot order), as (key bytes,
    /// value bytes), at most [`MAX_ITEM_BYTES`] of each. A copy taken
    /// without the lock.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The decoded state of one schema entry that is not plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldState {
    /// `#[shared(lock)]`.
    Mutex(LockState),
    /// `#[shared(rwlock)]`: the writer side, and the readers inside.
    RwLock {
        /// The gate (held by a writer, or a reader entering).
        lock: LockState,
        /// Readers inside, summed over the reader slots.
        readers: u64,
    },
    /// `#[shared(seqlock)]`.
    SeqLock {
        /// The writers' lock.
        lock: LockState,
        /// A write is in progress (the sequence is odd).
        writing: bool,
    },
    /// An [`Event`](crate::Event).
    Event {
        /// Whether it is set.
        set: bool,
    },
    /// A [`Semaphore`](crate::Semaphore).
    Semaphore {
        /// Permits available.
        available: u32,
    },
    /// A [`Barrier`](crate::Barrier).
    Barrier {
        /// Parties per round.
        parties: u32,
        /// Arrivals in the current round.
        arrived: u32,
    },
    /// A [`Condvar`](crate::Condvar) (no state worth showing).
    Condvar,
    /// A [`Queue`](crate::Queue).
    Queue(QueueState),
    /// A [`Map`](crate::Map).
    Map(MapState),
}

/// The most bytes copied of one queue item, map key or map value: a crafted
/// schema must not make a tool copy gigabytes.
pub const MAX_ITEM_BYTES: u64 = 256;

/// A number the entry's kind records as `key=value` (`"queue item=8 cap=4"`).
pub fn kind_param(kind: &str, key: &str) -> Option<u64> {
    kind.split_whitespace().find_map(|p| p.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

impl View {
    /// The state of the lock, waiter or container at schema entry `e`, with
    /// up to `contents` of a container's items or entries; `None` for plain
    /// data (scalars, arrays, nested structs: read those with
    /// [`read_uint`](View::read_uint)) and for kinds this version does not
    /// know.
    ///
    /// ```
    /// #[derive(shmem::Shared)]
    /// struct Jobs {
    ///     queue: shmem::Queue<u32, 8>,
    ///     #[shared(lock)]
    ///     log: [u8; 16],
    /// }
    /// # let name = format!("doc-decode-{}", std::process::id());
    /// let seg = shmem::Segment::<Jobs>::create_zeroed(&name)?;
    /// seg.queue().try_push(7).unwrap();
    /// let view = shmem::View::open(&name)?;
    /// let schema = &view.info.header.schema;
    /// let entry = |path: &str| schema.entries.iter().find(|e| e.path == path).unwrap();
    /// match view.field_state(entry("queue"), 4) {
    ///     Some(shmem::FieldState::Queue(q)) => assert_eq!((q.len, q.items), (1, vec![7u32.to_ne_bytes().to_vec()])),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert!(matches!(view.field_state(entry("log"), 0), Some(shmem::FieldState::Mutex(l)) if l.held_by.is_none()));
    /// # Ok::<(), shmem::Error>(())
    /// ```
    pub fn field_state(&self, e: &SchemaEntry, contents: usize) -> Option<FieldState> {
        decode(self, e, contents)
    }
}

/// Atomic reads of a segment's data, bounds-checked: what the decoder needs.
pub(crate) trait Words {
    /// As [`View::read_uint`].
    fn read_uint(&self, offset: u64, size: u64) -> Option<u64>;

    /// As [`View::read_bytes`].
    fn read_bytes(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        (offset..offset.checked_add(len)?).map(|o| self.read_uint(o, 1).map(|b| b as u8)).collect()
    }
}

impl Words for View {
    fn read_uint(&self, offset: u64, size: u64) -> Option<u64> {
        View::read_uint(self, offset, size)
    }
}

impl Words for super::dynamic::DynSegment {
    fn read_uint(&self, offset: u64, size: u64) -> Option<u64> {
        super::dynamic::DynSegment::read_uint(self, offset, size)
    }
}

/// The decoder behind [`View::field_state`] and
/// [`DynSegment::field_state`](super::dynamic::DynSegment::field_state).
pub(crate) fn decode<W: Words>(w: &W, e: &SchemaEntry, contents: usize) -> Option<FieldState> {
    {
        let word = |at: u64, size: u64| e.offset.checked_add(at).and_then(|o| w.read_uint(o, size)).unwrap_or(0);
        let lock = |word_at: u64, poison_at: u64| LockState {
            // A word with no owner token (only flags, in a corrupt segment) is free.
            held_by: owner_of(word(word_at, 8)).filter(|&token| token != 0),
            poisoned: word(poison_at, 4) != 0,
        };
        let kind = e.kind.as_str();
        Some(match kind.split_whitespace().next().unwrap_or("") {
            "mutex" => FieldState::Mutex(lock(crate::sync::mutex::RAW_OFFSET, crate::sync::mutex::POISON_OFFSET)),
            "rwlock" => {
                let [gate, poisoned, slots, slot, count] = crate::sync::rwlock::WORDS;
                let readers = (0..crate::sync::rwlock::READER_SLOTS as u64)
                    .map(|i| word(slots + slot * i + count, 8))
                    .fold(0u64, u64::wrapping_add);
                FieldState::RwLock { lock: lock(gate, poisoned), readers }
            }
            "seqlock" => {
                let [seq, poisoned, writer] = crate::sync::seqlock::WORDS;
                FieldState::SeqLock { lock: lock(writer, poisoned), writing: word(seq, 4) & 1 == 1 }
            }
            "event" => FieldState::Event { set: word(crate::sync::wait::WORDS[0], 4) != 0 },
            "semaphore" => FieldState::Semaphore { available: word(crate::sync::wait::WORDS[1], 4) as u32 },
            "barrier" => FieldState::Barrier {
                parties: word(crate::sync::wait::WORDS[2], 4) as u32,
                arrived: word(crate::sync::wait::WORDS[3], 4) as u32 & crate::sync::wait::ARRIVED,
            },
            "condvar" => FieldState::Condvar,
            "queue" => FieldState::Queue(queue_state(w, e, contents)),
            "map" => FieldState::Map(map_state(w, e, contents)),
            _ => return None,
        })
    }
}

fn queue_state<W: Words>(w: &W, e: &SchemaEntry, contents: usize) -> QueueState {
    {
        let word = |at: u64, size: u64| e.offset.checked_add(at).and_then(|o| w.read_uint(o, size)).unwrap_or(0);
        let [tail_at, head_at, closed_at, limit_at] = crate::containers::queue::WORDS;
        // `head` first: both only grow, so a `tail` read later is never
        // behind it (a busy queue read the other way round looks full).
        let head = word(head_at, 8);
        let tail = word(tail_at, 8);
        let item_size = kind_param(&e.kind, "item").unwrap_or(0);
        // Bounded by what the entry's own bytes can hold.
        let capacity = kind_param(&e.kind, "cap").unwrap_or(0).min(e.size.checked_div(item_size).unwrap_or(0));
        let len = tail.saturating_sub(head).min(capacity);
        let slots = kind_param(&e.kind, "slots").unwrap_or(0);
        let items = (0..len.min(contents as u64))
            .map(|i| {
                (head.wrapping_add(i) % capacity.max(1))
                    .checked_mul(item_size)
                    .and_then(|o| o.checked_add(slots)?.checked_add(e.offset))
                    .and_then(|at| copy_item(w, at, item_size))
                    .unwrap_or_default()
            })
            .collect();
        let limit = match word(limit_at, 4) {
            0 => capacity,
            l => l.min(capacity),
        };
        QueueState { len, capacity, limit, closed: word(closed_at, 4) != 0, item_size, items }
    }
}

fn map_state<W: Words>(w: &W, e: &SchemaEntry, contents: usize) -> MapState {
    {
        let word = |at: u64, size: u64| e.offset.checked_add(at).and_then(|o| w.read_uint(o, size)).unwrap_or(0);
        let p = |k| kind_param(&e.kind, k).unwrap_or(0);
        let (key_size, value_size, slots, slot, value_at) =
            (p("key"), p("value"), p("slots"), p("slot"), p("value_at"));
        // Schemas written before `key_at` was recorded: 8, after the full mark.
        let key_at = kind_param(&e.kind, "key_at").unwrap_or(8);
        let [shards_at, shard_size, len_at, full_at] = crate::containers::map::WORDS;
        // Bounded by what the entry's own bytes can hold.
        let capacity = p("cap").min(e.size.checked_div(slot).unwrap_or(0));
        let shards = kind_param(&e.kind, "shards")
            .unwrap_or(1)
            .min(crate::containers::map::SHARDS as u64)
            .min(e.size / shard_size.max(1));
        let len = (0..shards)
            .map(|i| word(shards_at + shard_size * i + len_at, 8).min(capacity))
            .fold(0, u64::saturating_add)
            .min(capacity);
        // Scan a bounded number of slots, not only of entries returned: a
        // crafted map could claim billions of slots.
        let scan = (contents as u64).saturating_mul(16).min(capacity);
        let entries = (0..scan)
            .filter_map(|i| e.offset.checked_add(slots)?.checked_add(i.checked_mul(slot)?))
            .filter(|&at| at.checked_add(full_at).and_then(|o| w.read_uint(o, 8)).unwrap_or(0) != 0)
            .take(contents)
            .map(|at| {
                let bytes = |o: u64, n: u64| at.checked_add(o).and_then(|o| copy_item(w, o, n)).unwrap_or_default();
                (bytes(key_at, key_size), bytes(value_at, value_size))
            })
            .collect();
        MapState { len, capacity, key_size, value_size, entries }
    }
}

/// A copy of the item, key or value of `size` bytes at `at`: one atomic load
/// when it is a machine word or less (never torn), else byte by byte (a copy
/// taken while a holder of the lock rewrites it may mix old and new bytes),
/// at most [`MAX_ITEM_BYTES`]. `None` if out of range.
fn copy_item<W: Words>(w: &W, at: u64, size: u64) -> Option<Vec<u8>> {
    if let (1 | 2 | 4 | 8, Some(v)) = (size, w.read_uint(at, size)) {
        let bytes = v.to_ne_bytes();
        let n = size as usize;
        // The value's own bytes: the low-order ones of the u64.
        return Some(if cfg!(target_endian = "big") { bytes[8 - n..].to_vec() } else { bytes[..n].to_vec() });
    }
    w.read_bytes(at, size.min(MAX_ITEM_BYTES))
}
