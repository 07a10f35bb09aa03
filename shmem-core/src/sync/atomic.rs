//! Atomic scalars in shared memory.
//!
//! [`Atomic<T>`] is how a scalar field of a `#[derive(Shared)]` struct lives
//! in a segment: `u64` becomes `Atomic<u64>`, `[f64; 8]` becomes
//! `[Atomic<f64>; 8]`. Every integer width, `bool`, `char`, `f32` and `f64`
//! is supported.
//!
//! # Orderings
//!
//! The methods without an ordering argument (`load`, `store`, `fetch_add`,
//! ...) use [`Ordering::SeqCst`]: the strongest and least surprising choice,
//! and on x86-64 a read-modify-write costs the same under every ordering.
//! Each has a `*_with` twin taking explicit orderings with the same meaning
//! (and the same panics on invalid orderings) as the `std` atomics.
//!
//! # Representation
//!
//! `Atomic<T>` has the size and alignment of `T`'s bits. Floats are stored
//! as their IEEE-754 bits (so compare-exchange compares bits: `-0.0 != 0.0`,
//! and a NaN equals itself if its bits do), `bool` as a byte holding 0 or 1,
//! and `char` as its `u32` code point. Every bit pattern is a valid `Atomic`,
//! so memory written by another process can never make a read undefined
//! behaviour: a byte other than 0 reads as `true`, and a `u32` that is not a
//! Unicode scalar value reads as `char::REPLACEMENT_CHARACTER`.
//!
//! ```
//! use shmem::Atomic;
//! let hits = Atomic::new(0u64);
//! hits.fetch_add(5);
//! assert_eq!(hits.load(), 5);
//! let temperature = Atomic::new(20.5f64);
//! temperature.fetch_add(1.0);
//! assert_eq!(temperature.load(), 21.5);
//! ```

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{self as core_atomic, Ordering};

mod sealed {
    pub trait Sealed {}
}

/// A `core::sync::atomic` type used as the storage of an [`Atomic`].
///
/// Sealed: implemented for the integer atomics of `core` only.
pub trait RawAtomic: Send + Sync + sealed::Sealed + 'static {
    /// The plain integer this atomic holds.
    type Bits: Copy + Eq;
    #[doc(hidden)]
    fn new(bits: Self::Bits) -> Self;
    #[doc(hidden)]
    fn load(&self, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn store(&self, bits: Self::Bits, order: Ordering);
    #[doc(hidden)]
    fn swap(&self, bits: Self::Bits, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn compare_exchange(
        &self,
        current: Self::Bits,
        new: Self::Bits,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self::Bits, Self::Bits>;
    #[doc(hidden)]
    fn compare_exchange_weak(
        &self,
        current: Self::Bits,
        new: Self::Bits,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self::Bits, Self::Bits>;
}

/// The integer read-modify-write operations of a [`RawAtomic`].
pub trait RawIntAtomic: RawAtomic {
    #[doc(hidden)]
    fn fetch_add(&self, v: Self::Bits, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn fetch_sub(&self, v: Self::Bits, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn fetch_and(&self, v: Self::Bits, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn fetch_nand(&self, v: Self::Bits, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn fetch_or(&self, v: Self::Bits, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn fetch_xor(&self, v: Self::Bits, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn fetch_max(&self, v: Self::Bits, order: Ordering) -> Self::Bits;
    #[doc(hidden)]
    fn fetch_min(&self, v: Self::Bits, order: Ordering) -> Self::Bits;
}

macro_rules! raw_atomic {
    ($($atomic:ident: $bits:ty),* $(,)?) => {$(
        impl sealed::Sealed for core_atomic::$atomic {}
        impl RawAtomic for core_atomic::$atomic {
            type Bits = $bits;
            #[inline] fn new(bits: $bits) -> Self { Self::new(bits) }
            #[inline] fn load(&self, order: Ordering) -> $bits { self.load(order) }
            #[inline] fn store(&self, bits: $bits, order: Ordering) { self.store(bits, order) }
            #[inline] fn swap(&self, bits: $bits, order: Ordering) -> $bits { self.swap(bits, order) }
            #[inline] fn compare_exchange(&self, c: $bits, n: $bits, s: Ordering, f: Ordering) -> Result<$bits, $bits> { self.compare_exchange(c, n, s, f) }
            #[inline] fn compare_exchange_weak(&self, c: $bits, n: $bits, s: Ordering, f: Ordering) -> Result<$bits, $bits> { self.compare_exchange_weak(c, n, s, f) }
        }
        impl RawIntAtomic for core_atomic::$atomic {
            #[inline] fn fetch_add(&self, v: $bits, o: Ordering) -> $bits { self.fetch_add(v, o) }
            #[inline] fn fetch_sub(&self, v: $bits, o: Ordering) -> $bits { self.fetch_sub(v, o) }
            #[inline] fn fetch_and(&self, v: $bits, o: Ordering) -> $bits { self.fetch_and(v, o) }
            #[inline] fn fetch_nand(&self, v: $bits, o: Ordering) -> $bits { self.fetch_nand(v, o) }
            #[inline] fn fetch_or(&self, v: $bits, o: Ordering) -> $bits { self.fetch_or(v, o) }
            #[inline] fn fetch_xor(&self, v: $bits, o: Ordering) -> $bits { self.fetch_xor(v, o) }
            #[inline] fn fetch_max(&self, v: $bits, o: Ordering) -> $bits { self.fetch_max(v, o) }
            #[inline] fn fetch_min(&self, v: $bits, o: Ordering) -> $bits { self.fetch_min(v, o) }
        }
    )*};
}

raw_atomic! {
    AtomicU8: u8, AtomicU16: u16, AtomicU32: u32, AtomicU64: u64, AtomicUsize: usize,
    AtomicI8: i8, AtomicI16: i16, AtomicI32: i32, AtomicI64: i64, AtomicIsize: isize,
}

/// A primitive type that has an atomic form in shared memory.
///
/// Sealed: implemented for every integer type up to 64 bits, `bool`, `char`,
/// `f32` and `f64`.
pub trait Scalar: Copy + Send + Sync + sealed::Sealed + 'static {
    /// The `core` atomic that stores this type's bits.
    type Raw: RawAtomic;
    /// The type's name as recorded in segment schemas (`"u64"`, `"f32"`, ...).
    const KIND: &'static str;
    /// This value's bit representation.
    fn to_bits(self) -> <Self::Raw as RawAtomic>::Bits;
    /// The value of a bit representation (total: every pattern maps to a value).
    fn from_bits(bits: <Self::Raw as RawAtomic>::Bits) -> Self;
}

/// An integer [`Scalar`], stored as itself.
pub trait Integer: Scalar<Raw: RawIntAtomic<Bits = Self>> {}

macro_rules! int_scalar {
    ($($t:ident: $atomic:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Scalar for $t {
            type Raw = core_atomic::$atomic;
            const KIND: &'static str = stringify!($t);
            #[inline] fn to_bits(self) -> $t { self }
            #[inline] fn from_bits(bits: $t) -> $t { bits }
        }
        impl Integer for $t {}
    )*};
}

int_scalar! {
    u8: AtomicU8, u16: AtomicU16, u32: AtomicU32, u64: AtomicU64, usize: AtomicUsize,
    i8: AtomicI8, i16: AtomicI16, i32: AtomicI32, i64: AtomicI64, isize: AtomicIsize,
}

impl sealed::Sealed for bool {}
impl Scalar for bool {
    type Raw = core_atomic::AtomicU8;
    const KIND: &'static str = "bool";
    #[inline]
    fn to_bits(self) -> u8 {
        u8::from(self)
    }
    #[inline]
    fn from_bits(bits: u8) -> bool {
        bits != 0
    }
}

impl sealed::Sealed for char {}
impl Scalar for char {
    type Raw = core_atomic::AtomicU32;
    const KIND: &'static str = "char";
    #[inline]
    fn to_bits(self) -> u32 {
        u32::from(self)
    }
    #[inline]
    fn from_bits(bits: u32) -> char {
        char::from_u32(bits).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

impl sealed::Sealed for f32 {}
impl Scalar for f32 {
    type Raw = core_atomic::AtomicU32;
    const KIND: &'static str = "f32";
    #[inline]
    fn to_bits(self) -> u32 {
        f32::to_bits(self)
    }
    #[inline]
    fn from_bits(bits: u32) -> f32 {
        f32::from_bits(bits)
    }
}

impl sealed::Sealed for f64 {}
impl Scalar for f64 {
    type Raw = core_atomic::AtomicU64;
    const KIND: &'static str = "f64";
    #[inline]
    fn to_bits(self) -> u64 {
        f64::to_bits(self)
    }
    #[inline]
    fn from_bits(bits: u64) -> f64 {
        f64::from_bits(bits)
    }
}

/// A `T` that every process attached to a segment can read and modify
/// atomically. See the [module docs](self) for orderings and representation.
///
/// ```
/// use shmem::{Segment, Shared};
///
/// #[derive(Shared, Default)]
/// struct Stats {
///     hits: u64,
///     temperature: f64,
/// }
///
/// let s = Segment::create_anonymous(&Stats::default())?;
/// s.hits().fetch_add(1);                          // `val.value += 1`, never losing an update
/// s.temperature().store(21.5);
/// s.hits().update(|h| h * 10);                    // any read-modify-write, atomically
/// assert_eq!(s.hits().compare_exchange(10, 11), Ok(10));
/// assert_eq!((s.hits().load(), s.temperature().load()), (11, 21.5));
/// # Ok::<(), shmem::Error>(())
/// ```
#[repr(transparent)]
pub struct Atomic<T: Scalar> {
    raw: T::Raw,
    _value: PhantomData<T>,
}

const SEQ: Ordering = Ordering::SeqCst;

/// The failure ordering `std` would pair with a success ordering.
const fn failure_for(success: Ordering) -> Ordering {
    match success {
        Ordering::Release | Ordering::Relaxed => Ordering::Relaxed,
        Ordering::Acquire | Ordering::AcqRel => Ordering::Acquire,
        _ => Ordering::SeqCst,
    }
}

impl<T: Scalar> Atomic<T> {
    /// A new atomic holding `value` (for use outside segments, e.g. in tests).
    pub fn new(value: T) -> Self {
        Atomic { raw: T::Raw::new(value.to_bits()), _value: PhantomData }
    }

    /// The underlying `core` atomic of `T`'s bits, for operations this type
    /// does not wrap.
    pub fn as_raw(&self) -> &T::Raw {
        &self.raw
    }

    /// Reads the value.
    #[inline]
    pub fn load(&self) -> T {
        self.load_with(SEQ)
    }

    /// Reads the value with an explicit ordering.
    ///
    /// # Panics
    /// If `order` is `Release` or `AcqRel`, as `std`'s `load` does.
    #[inline]
    pub fn load_with(&self, order: Ordering) -> T {
        T::from_bits(self.raw.load(order))
    }

    /// Writes the value.
    #[inline]
    pub fn store(&self, value: T) {
        self.store_with(value, SEQ)
    }

    /// Writes the value with an explicit ordering.
    ///
    /// # Panics
    /// If `order` is `Acquire` or `AcqRel`, as `std`'s `store` does.
    #[inline]
    pub fn store_with(&self, value: T, order: Ordering) {
        self.raw.store(value.to_bits(), order)
    }

    /// Writes `value` and returns the previous value.
    #[inline]
    pub fn swap(&self, value: T) -> T {
        self.swap_with(value, SEQ)
    }

    /// [`swap`](Self::swap) with an explicit ordering.
    #[inline]
    pub fn swap_with(&self, value: T, order: Ordering) -> T {
        T::from_bits(self.raw.swap(value.to_bits(), order))
    }

    /// Writes `new` if the value's bits equal `current`'s. Returns the
    /// previous value: `Ok` if it was replaced, `Err` (holding the actual
    /// value) if not.
    #[inline]
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        self.compare_exchange_with(current, new, SEQ, SEQ)
    }

    /// [`compare_exchange`](Self::compare_exchange) with explicit orderings.
    ///
    /// # Panics
    /// If `failure` is `Release` or `AcqRel`, as in `std`.
    #[inline]
    pub fn compare_exchange_with(&self, current: T, new: T, success: Ordering, failure: Ordering) -> Result<T, T> {
        self.raw
            .compare_exchange(current.to_bits(), new.to_bits(), success, failure)
            .map(T::from_bits)
            .map_err(T::from_bits)
    }

    /// Like [`compare_exchange_with`](Self::compare_exchange_with) but may
    /// fail spuriously; for use in loops.
    #[inline]
    pub fn compare_exchange_weak_with(&self, current: T, new: T, success: Ordering, failure: Ordering) -> Result<T, T> {
        self.raw
            .compare_exchange_weak(current.to_bits(), new.to_bits(), success, failure)
            .map(T::from_bits)
            .map_err(T::from_bits)
    }

    /// Applies `f` to the value atomically until it succeeds or `f` returns
    /// `None`: `Ok(previous)` if the value was replaced, `Err(current)` if
    /// `f` declined. `f` may run more than once under contention.
    #[inline]
    pub fn fetch_update(&self, f: impl FnMut(T) -> Option<T>) -> Result<T, T> {
        self.fetch_update_with(SEQ, SEQ, f)
    }

    /// [`fetch_update`](Self::fetch_update) with explicit orderings, as `std`'s.
    pub fn fetch_update_with(
        &self,
        set_order: Ordering,
        fetch_order: Ordering,
        mut f: impl FnMut(T) -> Option<T>,
    ) -> Result<T, T> {
        let mut prev = self.raw.load(fetch_order);
        while let Some(next) = f(T::from_bits(prev)) {
            match self.raw.compare_exchange_weak(prev, next.to_bits(), set_order, fetch_order) {
                Ok(old) => return Ok(T::from_bits(old)),
                Err(actual) => prev = actual,
            }
        }
        Err(T::from_bits(prev))
    }

    /// Replaces the value with `f(value)` atomically and returns the
    /// previous value. `f` may run more than once under contention.
    ///
    /// ```
    /// # use shmem::Atomic;
    /// let a = Atomic::new(10u32);
    /// assert_eq!(a.update(|v| v * 3), 10);
    /// assert_eq!(a.load(), 30);
    /// ```
    #[inline]
    pub fn update(&self, mut f: impl FnMut(T) -> T) -> T {
        match self.fetch_update(|v| Some(f(v))) {
            Ok(prev) | Err(prev) => prev,
        }
    }
}

macro_rules! int_op {
    ($($name:ident, $with:ident: $doc:literal;)*) => {
        impl<T: Integer> Atomic<T> {$(
            #[doc = concat!($doc, " Returns the previous value.")]
            #[inline]
            pub fn $name(&self, value: T) -> T {
                self.raw.$name(value, SEQ)
            }
            #[doc = concat!("[`", stringify!($name), "`](Self::", stringify!($name), ") with an explicit ordering.")]
            #[inline]
            pub fn $with(&self, value: T, order: Ordering) -> T {
                self.raw.$name(value, order)
            }
        )*}
    };
}

int_op! {
    fetch_add, fetch_add_with: "Adds `value`, wrapping on overflow.";
    fetch_sub, fetch_sub_with: "Subtracts `value`, wrapping on overflow.";
    fetch_and, fetch_and_with: "Bitwise-ands with `value`.";
    fetch_nand, fetch_nand_with: "Bitwise-nands with `value`.";
    fetch_or, fetch_or_with: "Bitwise-ors with `value`.";
    fetch_xor, fetch_xor_with: "Bitwise-xors with `value`.";
    fetch_max, fetch_max_with: "Sets the value to the maximum of itself and `value`.";
    fetch_min, fetch_min_with: "Sets the value to the minimum of itself and `value`.";
}

macro_rules! float_ops {
    ($($t:ty),*) => {$(
        impl Atomic<$t> {
            /// Adds `value` (a compare-exchange loop on the bits). Returns the previous value.
            #[inline]
            pub fn fetch_add(&self, value: $t) -> $t {
                self.fetch_add_with(value, SEQ)
            }
            /// [`fetch_add`](Self::fetch_add) with an explicit ordering.
            #[inline]
            pub fn fetch_add_with(&self, value: $t, order: Ordering) -> $t {
                self.rmw(order, |v| v + value)
            }
            /// Subtracts `value`. Returns the previous value.
            #[inline]
            pub fn fetch_sub(&self, value: $t) -> $t {
                self.fetch_sub_with(value, SEQ)
            }
            /// [`fetch_sub`](Self::fetch_sub) with an explicit ordering.
            #[inline]
            pub fn fetch_sub_with(&self, value: $t, order: Ordering) -> $t {
                self.rmw(order, |v| v - value)
            }
            /// Sets the value to the maximum of itself and `value` (as
            #[doc = concat!("[`", stringify!($t), "::max`]). Returns the previous value.")]
            #[inline]
            pub fn fetch_max(&self, value: $t) -> $t {
                self.fetch_max_with(value, SEQ)
            }
            /// [`fetch_max`](Self::fetch_max) with an explicit ordering.
            #[inline]
            pub fn fetch_max_with(&self, value: $t, order: Ordering) -> $t {
                self.rmw(order, |v| v.max(value))
            }
            /// Sets the value to the minimum of itself and `value` (as
            #[doc = concat!("[`", stringify!($t), "::min`]). Returns the previous value.")]
            #[inline]
            pub fn fetch_min(&self, value: $t) -> $t {
                self.fetch_min_with(value, SEQ)
            }
            /// [`fetch_min`](Self::fetch_min) with an explicit ordering.
            #[inline]
            pub fn fetch_min_with(&self, value: $t, order: Ordering) -> $t {
                self.rmw(order, |v| v.min(value))
            }
            #[inline]
            fn rmw(&self, order: Ordering, mut f: impl FnMut($t) -> $t) -> $t {
                match self.fetch_update_with(order, failure_for(order), |v| Some(f(v))) {
                    Ok(prev) | Err(prev) => prev,
                }
            }
        }
    )*};
}

float_ops!(f32, f64);

/// The ordering of the failed-compare load in a CAS loop whose store uses `order`.
fn load_order(order: Ordering) -> Ordering {
    match order {
        Ordering::Release | Ordering::Relaxed => Ordering::Relaxed,
        Ordering::Acquire | Ordering::AcqRel => Ordering::Acquire,
        _ => Ordering::SeqCst,
    }
}

/// `bool` read-modify-writes. Each is one atomic operation on the byte and
/// treats any non-zero byte as `true` (a peer process may have written a
/// byte other than 0 or 1); what they store is always 0 or 1, except that
/// `fetch_or(true)` on a non-zero byte leaves it as it was (still `true`).
impl Atomic<bool> {
    /// Applies `f` to the value in one compare-exchange loop, storing 0 or 1.
    #[inline]
    fn update_bool(&self, order: Ordering, f: impl Fn(bool) -> bool) -> bool {
        match self.raw.fetch_update(order, load_order(order), |b| Some(u8::from(f(b != 0)))) {
            Ok(prev) | Err(prev) => prev != 0,
        }
    }
    /// Logical "and" with `value`. Returns the previous value.
    #[inline]
    pub fn fetch_and(&self, value: bool) -> bool {
        self.fetch_and_with(value, SEQ)
    }
    /// [`fetch_and`](Self::fetch_and) with an explicit ordering.
    #[inline]
    pub fn fetch_and_with(&self, value: bool, order: Ordering) -> bool {
        if value {
            // x && true == x: an atomic no-op that still orders like an RMW.
            self.raw.fetch_or(0, order) != 0
        } else {
            self.raw.swap(0, order) != 0
        }
    }
    /// Logical "or" with `value`. Returns the previous value.
    #[inline]
    pub fn fetch_or(&self, value: bool) -> bool {
        self.fetch_or_with(value, SEQ)
    }
    /// [`fetch_or`](Self::fetch_or) with an explicit ordering.
    #[inline]
    pub fn fetch_or_with(&self, value: bool, order: Ordering) -> bool {
        self.raw.fetch_or(u8::from(value), order) != 0
    }
    /// Logical "xor" with `value`. Returns the previous value.
    #[inline]
    pub fn fetch_xor(&self, value: bool) -> bool {
        self.fetch_xor_with(value, SEQ)
    }
    /// [`fetch_xor`](Self::fetch_xor) with an explicit ordering.
    #[inline]
    pub fn fetch_xor_with(&self, value: bool, order: Ordering) -> bool {
        if value {
            self.update_bool(order, |b| !b)
        } else {
            self.raw.fetch_or(0, order) != 0
        }
    }
    /// Logical "nand" with `value`. Returns the previous value.
    #[inline]
    pub fn fetch_nand(&self, value: bool) -> bool {
        self.fetch_nand_with(value, SEQ)
    }
    /// [`fetch_nand`](Self::fetch_nand) with an explicit ordering: one
    /// atomic step (never a state other than 0 or 1 visible to readers).
    #[inline]
    pub fn fetch_nand_with(&self, value: bool, order: Ordering) -> bool {
        if value {
            self.update_bool(order, |b| !b)
        } else {
            self.raw.swap(1, order) != 0
        }
    }
    /// Logical negation. Returns the previous value.
    #[inline]
    pub fn fetch_not(&self) -> bool {
        self.fetch_xor(true)
    }
}

impl<T: Scalar + fmt::Debug> fmt::Debug for Atomic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.load_with(Ordering::Relaxed), f)
    }
}

impl<T: Scalar + Default> Default for Atomic<T> {
    fn default() -> Self {
        Atomic::new(T::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ops_match_std() {
        let a = Atomic::new(5i32);
        assert_eq!(a.fetch_add(3), 5);
        assert_eq!(a.fetch_sub(10), 8);
        assert_eq!(a.load(), -2);
        assert_eq!(a.fetch_max(7), -2);
        assert_eq!(a.fetch_min(1), 7);
        assert_eq!(a.load(), 1);
        assert_eq!(a.fetch_or(6), 1);
        assert_eq!(a.fetch_and(3), 7);
        assert_eq!(a.fetch_xor(1), 3);
        assert_eq!(a.load(), 2);
        assert_eq!(a.compare_exchange(2, 9), Ok(2));
        assert_eq!(a.compare_exchange(2, 10), Err(9));
        let u = Atomic::new(u8::MAX);
        assert_eq!(u.fetch_add(1), u8::MAX);
        assert_eq!(u.load(), 0, "wraps like std");
    }

    #[test]
    fn floats_work_through_bits() {
        let f = Atomic::new(1.5f32);
        assert_eq!(f.fetch_add(2.0), 1.5);
        assert_eq!(f.fetch_sub(0.5), 3.5);
        assert_eq!(f.fetch_max(10.0), 3.0);
        assert_eq!(f.fetch_min(-1.0), 10.0);
        assert_eq!(f.load(), -1.0);
        assert_eq!(f.swap(f32::NAN).to_bits(), (-1.0f32).to_bits());
        assert!(f.load().is_nan());
        let d = Atomic::new(0.0f64);
        assert_eq!(d.compare_exchange(-0.0, 1.0), Err(0.0), "compares bits, so -0.0 != 0.0");
    }

    #[test]
    fn bool_and_char() {
        let b = Atomic::new(false);
        assert!(!b.fetch_or(true));
        assert!(b.fetch_xor(true));
        assert!(!b.fetch_not());
        assert!(b.fetch_nand(true));
        assert!(!b.load());
        assert_eq!(b.as_raw().load(Ordering::Relaxed), 0);
        b.as_raw().store(7, Ordering::Relaxed);
        assert!(b.load(), "any non-zero byte reads as true");
        // Bytes other than 0/1 (written by a peer) are `true` for every op.
        b.as_raw().store(2, Ordering::Relaxed);
        assert!(b.fetch_and(true) && b.load(), "2 && true is true");
        assert!(b.fetch_xor(true) && !b.load(), "2 ^ true is false");
        b.as_raw().store(0xFE, Ordering::Relaxed);
        assert!(b.fetch_nand(true) && !b.load(), "!(0xFE && true) is false");
        assert_eq!(b.as_raw().load(Ordering::Relaxed), 0);
        assert!(!b.fetch_nand(false) && b.load());
        assert_eq!(b.as_raw().load(Ordering::Relaxed), 1);

        let c = Atomic::new('a');
        assert_eq!(c.update(|c| char::from_u32(c as u32 + 1).unwrap()), 'a');
        assert_eq!(c.load(), 'b');
        c.as_raw().store(0xD800, Ordering::Relaxed);
        assert_eq!(c.load(), char::REPLACEMENT_CHARACTER, "a surrogate is not UB");
    }

    /// `fetch_nand(true)` toggles: over any number of racing calls, exactly
    /// half saw `true`, and no reader ever sees a byte other than 0 or 1
    /// (it used to be two read-modify-writes, with 0xFE/0xFF in between).
    #[test]
    fn bool_nand_is_one_atomic_step() {
        const N: usize = if cfg!(debug_assertions) { 20_000 } else { 200_000 };
        let b = Atomic::new(false);
        let done = core::sync::atomic::AtomicBool::new(false);
        let trues = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    assert!(b.as_raw().load(Ordering::Relaxed) <= 1, "a reader saw a byte other than 0/1");
                }
            });
            let workers: std::vec::Vec<_> =
                (0..2).map(|_| s.spawn(|| (0..N).filter(|_| b.fetch_nand(true)).count())).collect();
            let trues: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
            done.store(true, Ordering::Relaxed);
            reader.join().unwrap();
            trues
        });
        assert_eq!(trues, N, "{} toggles saw true {trues} times", 2 * N);
    }

    #[test]
    fn fetch_update_declines() {
        let a = Atomic::new(3u64);
        assert_eq!(a.fetch_update(|v| (v > 5).then_some(0)), Err(3));
        assert_eq!(a.fetch_update(|v| Some(v * 2)), Ok(3));
        assert_eq!(a.load(), 6);
    }
}
