//! `shmem._shmem`: the Rust half of the `shmem` Python package.
//!
//! Every object here is a handle to a shmem segment (named, or anonymous and
//! passed by descriptor), made and checked by `shmem-core`: the layouts, the
//! atomics and the crash-safe locks are the Rust ones, so Rust programs
//! attach to what Python creates and the other way round. The Python half
//! (`python/shmem/__init__.py`) gives them multiprocessing's shapes and
//! pickling; it knows nothing of layouts.
//!
//! Blocking calls release the GIL and wake every 50 ms to let Python run
//! its signal handlers (Ctrl-C raises `KeyboardInterrupt` in a `get()`).

// pyo3 0.22's #[pymethods] expansion converts PyErr into PyErr; clippy flags
// it on every method returning PyResult.
#![allow(clippy::useless_conversion)]

use pyo3::create_exception;
use pyo3::exceptions::{PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use shmem::containers::map::MapRing;
use shmem::containers::queue::QueueRing;
use shmem::sync::park::Os;
use shmem::{ArraySegment, Atomic, Error, Event, RawMutex, Segment, SegmentOptions};
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::time::{Duration, Instant};

create_exception!(
    _shmem,
    LayoutMismatch,
    PyValueError,
    "The segment holds another type or layout than the one asked for."
);
create_exception!(_shmem, StaleSegment, PyFileExistsError, "A segment left by a crashed program holds the name.");

/// How long a blocking call sleeps before Python may handle a signal.
const SLICE: Duration = Duration::from_millis(50);

/// A shmem error as the Python exception a Python programmer expects.
fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::NotFound { .. } | Error::NoSegmentGiven { .. } => PyFileNotFoundError::new_err(message),
        Error::AlreadyExists { .. } => PyFileExistsError::new_err(message),
        Error::StaleExists { .. } => StaleSegment::new_err(message),
        Error::PermissionDenied { .. } | Error::ForeignOwner { .. } => PyPermissionError::new_err(message),
        Error::LayoutMismatch { .. } => LayoutMismatch::new_err(message),
        Error::InvalidName { .. } => PyValueError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}

fn options() -> SegmentOptions {
    SegmentOptions::new()
}

/// Runs `f` with descriptor number `fd` from Python (checked to be open),
/// borrowed for the call only.
fn with_fd<R>(fd: i32, f: impl FnOnce(BorrowedFd<'_>) -> PyResult<R>) -> PyResult<R> {
    // SAFETY: F_GETFD only queries the descriptor table.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(PyOSError::new_err(format!("descriptor {fd} is not open")));
    }
    // SAFETY: `fd` is open (checked just above), and the Python caller owns
    // it and keeps it open for this call, which is as long as the borrow
    // lives (it cannot escape `f`).
    f(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// A deadline `timeout` seconds from now: `None` for no timeout (None, or
/// too far to represent); a negative timeout means now; ValueError for NaN.
fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else { return Ok(None) };
    if t.is_nan() {
        return Err(PyValueError::new_err("timeout must be a number of seconds, not NaN"));
    }
    // Negative: no waiting (as multiprocessing treats it).
    Ok(Duration::try_from_secs_f64(t.max(0.0)).ok().and_then(|d| Instant::now().checked_add(d)))
}

/// How long the next slice of a blocking call may sleep.
/// How long one wait for an rwlock field's write side lasts between two
/// checks for signals (see `RawStruct::lock`).
const RW_SLICE: Duration = Duration::from_secs(1);

fn slice_until(deadline: Option<Instant>) -> Duration {
    deadline.map_or(SLICE, |d| d.saturating_duration_since(Instant::now()).min(SLICE))
}

/// The scalar types Python type codes name (`array` module codes, as
/// multiprocessing uses them).
trait Code: shmem::Scalar + shmem::Shared<Layout = Atomic<Self>> + for<'a> FromPyObject<'a> + IntoPy<PyObject> {
    /// Adds with wrap-around for integers (as ctypes does), or in floating
    /// point; returns the previous value.
    fn fetch_add(a: &Atomic<Self>, v: Self) -> Self;
    /// Subtracts likewise.
    fn fetch_sub(a: &Atomic<Self>, v: Self) -> Self;
    /// Bitwise and/or/xor (integers only).
    fn fetch_bits(a: &Atomic<Self>, op: char, v: Self) -> Option<Self>;
    fn into_value(s: Segment<Self>) -> ValueSeg;
    fn into_array(s: ArraySegment<Self>) -> ArraySeg;
    /// `a + b` as `fetch_add` computes it.
    fn sum(a: Self, b: Self) -> Self;
    /// The Python number as this type, wrapping an out-of-range integer
    /// modulo 2^bits as ctypes does (`c_ubyte(300)` is 44), so every store
    /// and update follows one rule.
    fn wrapping(v: &Bound<'_, PyAny>) -> PyResult<Self>;
}

macro_rules! int_code {
    ($($t:ty: $v:ident),*) => {$(
        impl Code for $t {
            fn into_value(s: Segment<Self>) -> ValueSeg { ValueSeg::$v(s) }
            fn into_array(s: ArraySegment<Self>) -> ArraySeg { ArraySeg::$v(s) }
            fn sum(a: Self, b: Self) -> Self { a.wrapping_add(b) }
            fn wrapping(v: &Bound<'_, PyAny>) -> PyResult<Self> {
                if let Ok(x) = v.extract::<Self>() {
                    return Ok(x);
                }
                // `v % 2**bits` is in [0, 2**bits) for any Python int.
                let modulus = 1u128 << (8 * std::mem::size_of::<Self>());
                let m: u128 = v.call_method1("__mod__", (modulus,))?.extract()?;
                Ok(m as u64 as Self)
            }
            fn fetch_add(a: &Atomic<Self>, v: Self) -> Self { a.fetch_add(v) }
            fn fetch_sub(a: &Atomic<Self>, v: Self) -> Self { a.fetch_sub(v) }
            fn fetch_bits(a: &Atomic<Self>, op: char, v: Self) -> Option<Self> {
                match op {
                    '&' => Some(a.fetch_and(v)),
                    '|' => Some(a.fetch_or(v)),
                    '^' => Some(a.fetch_xor(v)),
                    _ => None,
                }
            }
        }
    )*};
}
int_code!(i8: I8, u8: U8, i16: I16, u16: U16, i32: I32, u32: U32, i64: I64, u64: U64);

macro_rules! float_code {
    ($($t:ty: $v:ident),*) => {$(
        impl Code for $t {
            fn into_value(s: Segment<Self>) -> ValueSeg { ValueSeg::$v(s) }
            fn into_array(s: ArraySegment<Self>) -> ArraySeg { ArraySeg::$v(s) }
            fn sum(a: Self, b: Self) -> Self { a + b }
            fn wrapping(v: &Bound<'_, PyAny>) -> PyResult<Self> { v.extract() }
            fn fetch_add(a: &Atomic<Self>, v: Self) -> Self { a.fetch_add(v) }
            fn fetch_sub(a: &Atomic<Self>, v: Self) -> Self { a.fetch_sub(v) }
            fn fetch_bits(_: &Atomic<Self>, _: char, _: Self) -> Option<Self> { None }
        }
    )*};
}
float_code!(f32: F32, f64: F64);

/// Runs `$body` with `$t` bound to the Rust type of type code `$code`.
macro_rules! with_code {
    ($code:expr, $t:ident => $body:expr) => {
        match $code {
            'b' => {
                type $t = i8;
                $body
            }
            'B' => {
                type $t = u8;
                $body
            }
            'h' => {
                type $t = i16;
                $body
            }
            'H' => {
                type $t = u16;
                $body
            }
            'i' => {
                type $t = i32;
                $body
            }
            'I' => {
                type $t = u32;
                $body
            }
            'l' | 'q' => {
                type $t = i64;
                $body
            }
            'L' | 'Q' => {
                type $t = u64;
                $body
            }
            'f' => {
                type $t = f32;
                $body
            }
            'd' => {
                type $t = f64;
                $body
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unsupported type code {other:?}: use one of b B h H i I l L q Q f d"
                )))
            }
        }
    };
}

/// The segment kinds a Value or Array may be, one per type code.
macro_rules! code_enum {
    ($name:ident, $seg:ident) => {
        enum $name {
            I8($seg<i8>),
            U8($seg<u8>),
            I16($seg<i16>),
            U16($seg<u16>),
            I32($seg<i32>),
            U32($seg<u32>),
            I64($seg<i64>),
            U64($seg<u64>),
            F32($seg<f32>),
            F64($seg<f64>),
        }
    };
}
code_enum!(ValueSeg, Segment);
code_enum!(ArraySeg, ArraySegment);

/// Runs `$body` with `$s` bound to the typed segment inside `$e`.
macro_rules! each {
    ($enum:ident, $e:expr, $s:ident => $body:expr) => {
        match $e {
            $enum::I8($s) => $body,
            $enum::U8($s) => $body,
            $enum::I16($s) => $body,
            $enum::U16($s) => $body,
            $enum::I32($s) => $body,
            $enum::U32($s) => $body,
            $enum::I64($s) => $body,
            $enum::U64($s) => $body,
            $enum::F32($s) => $body,
            $enum::F64($s) => $body,
        }
    };
}

/// Adds the Python number `d` to `a` in one atomic step (`fetch_add` of
/// `d` wrapped to the type: a negative or oversized `d` works on unsigned
/// types too, with ctypes' wrap-around).
fn add_delta<T: Code>(a: &Atomic<T>, d: &Bound<'_, PyAny>) -> PyResult<()> {
    T::fetch_add(a, T::wrapping(d)?);
    Ok(())
}

/// Replaces `a`'s value with `f(value)` atomically: a compare-and-swap
/// loop on the value as stored (never a round trip through a Python
/// number, which could change a NaN's bits and never match).
fn update_with<T: Code>(py: Python<'_>, a: &Atomic<T>, f: &Bound<'_, PyAny>) -> PyResult<()> {
    let mut current = a.load();
    loop {
        let new = T::wrapping(&f.call1((current.into_py(py),))?)?;
        match a.compare_exchange(current, new) {
            Ok(_) => return Ok(()),
            Err(seen) => current = seen,
        }
    }
}

/// `a + b` as the atomic addition computed it (wrapping for integers).
fn wrapping_sum<T: Code>(a: T, b: T) -> T {
    T::sum(a, b)
}

/// Applies the in-place operator `op` (`+ - & | ^`) to `a` with `v`, in
/// one atomic step; returns the value right after it.
fn apply<T: Code>(py: Python<'_>, a: &Atomic<T>, op: &str, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
    let v: T = v.extract()?;
    match op {
        "+" => {
            T::fetch_add(a, v);
        }
        "-" => {
            T::fetch_sub(a, v);
        }
        "&" | "|" | "^" => {
            let c = op.chars().next().unwrap_or('&');
            T::fetch_bits(a, c, v).ok_or_else(|| PyValueError::new_err(format!("{op}= needs an integer type code")))?;
        }
        other => return Err(PyValueError::new_err(format!("no atomic in-place operator {other:?}"))),
    }
    Ok(a.load().into_py(py))
}

/// A shared scalar: the storage of `shmem.Value`.
#[pyclass(module = "shmem._shmem")]
struct RawValue {
    seg: ValueSeg,
    code: char,
}

fn value_of<T: Code>(py: Python<'_>, s: &Segment<T>) -> PyObject {
    s.load().into_py(py)
}

#[pymethods]
impl RawValue {
    /// Creates a value of type code `code` holding `init`: named `name`, or
    /// anonymous (`name=None`).
    #[new]
    #[pyo3(signature = (code, init, name=None))]
    fn new(code: char, init: &Bound<'_, PyAny>, name: Option<&str>) -> PyResult<Self> {
        let seg = with_code!(code, T => {
            let v: T = init.extract()?;
            let s = match name {
                Some(n) => options().create::<T>(n, &v),
                None => options().create_anonymous::<T>(&v),
            }.map_err(to_py)?;
            T::into_value(s)
        });
        Ok(RawValue { seg, code })
    }

    /// Attaches to named segment `name` holding a scalar of type code `code`.
    #[staticmethod]
    fn attach(code: char, name: &str) -> PyResult<Self> {
        let seg = with_code!(code, T => T::into_value(Segment::<T>::attach(name).map_err(to_py)?));
        Ok(RawValue { seg, code })
    }

    /// Attaches through descriptor `fd` (an anonymous segment passed on).
    #[staticmethod]
    fn attach_fd(code: char, fd: i32) -> PyResult<Self> {
        let seg =
            with_fd(fd, |fd| Ok(with_code!(code, T => T::into_value(options().attach_fd::<T>(fd).map_err(to_py)?))))?;
        Ok(RawValue { seg, code })
    }

    /// The type code.
    #[getter]
    fn code(&self) -> char {
        self.code
    }

    /// The segment name, or None for an anonymous segment.
    #[getter]
    fn name(&self) -> Option<String> {
        each!(ValueSeg, &self.seg, s => (!Segment::is_anonymous(s)).then(|| Segment::name(s).to_owned()))
    }

    fn load(&self, py: Python<'_>) -> PyObject {
        each!(ValueSeg, &self.seg, s => value_of(py, s))
    }

    fn store(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(ValueSeg, &self.seg, s => { s.store(Code::wrapping(v)?); Ok(()) })
    }

    /// Applies `op=` (`+ - & | ^`) atomically; returns the value after.
    fn apply(&self, py: Python<'_>, op: &str, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        each!(ValueSeg, &self.seg, s => apply(py, s, op, v))
    }

    /// Adds `v` atomically (wrapping for integers); returns the value after
    /// this addition (what `val.value += v` leaves, barring others).
    fn add(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        each!(ValueSeg, &self.seg, s => {
            let v = v.extract()?;
            let old = Code::fetch_add(&**s, v);
            Ok(wrapping_sum(old, v).into_py(py))
        })
    }

    /// Adds `d` atomically (a negative `d` subtracts, for unsigned types too).
    fn add_delta(&self, d: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(ValueSeg, &self.seg, s => add_delta(s, d))
    }

    /// Replaces the value with `f(value)` atomically (a CAS loop).
    fn update(&self, py: Python<'_>, f: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(ValueSeg, &self.seg, s => update_with(py, s, f))
    }

    /// Compare-and-swap: returns (swapped, value seen).
    fn compare_exchange(
        &self,
        py: Python<'_>,
        current: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, PyObject)> {
        each!(ValueSeg, &self.seg, s => {
            match s.compare_exchange(current.extract()?, Code::wrapping(new)?) {
                Ok(v) => Ok((true, v.into_py(py))),
                Err(v) => Ok((false, v.into_py(py))),
            }
        })
    }

    /// A new descriptor of the segment (the caller closes it).
    fn share_fd(&self) -> PyResult<i32> {
        each!(ValueSeg, &self.seg, s => Ok(Segment::share_fd(s).map_err(to_py)?.into_raw_fd()))
    }
}

/// The `value` attribute of `shmem.Value` as a descriptor written in Rust,
/// so that `val.value += 1` runs as little Python as possible. Reading
/// returns `obj._number(v)` with `_cell` set (a number that remembers where
/// it came from). Storing a Pending number that carries a plain addition
/// read from this very value adds what its chain has not applied yet (see
/// `__set__`); anything else goes to `store(cell, v)`, the Python function
/// that handles the general case the same way.
#[pyclass(module = "shmem._shmem")]
struct ValueField {
    pending: [PyObject; 2],
    store: PyObject,
}

#[pymethods]
impl ValueField {
    #[new]
    fn new(pending_int: PyObject, pending_float: PyObject, store: PyObject) -> Self {
        ValueField { pending: [pending_int, pending_float], store }
    }

    fn __get__(
        slf: PyRef<'_, Self>,
        obj: Option<&Bound<'_, PyAny>>,
        _owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let py = slf.py();
        let Some(obj) = obj else { return Ok(slf.into_py(py)) };
        let raw = obj.getattr(pyo3::intern!(py, "_raw"))?;
        let v = {
            let raw = raw.downcast::<RawValue>()?.borrow();
            each!(ValueSeg, &raw.seg, s => value_of(py, s))
        };
        let number = obj.getattr(pyo3::intern!(py, "_number"))?.call1((v,))?;
        number.setattr(pyo3::intern!(py, "_cell"), obj.getattr(pyo3::intern!(py, "_cell"))?)?;
        Ok(number.unbind())
    }

    fn __set__(&self, obj: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = obj.py();
        let cell = obj.getattr(pyo3::intern!(py, "_cell"))?;
        let ty = value.get_type();
        if self.pending.iter().any(|p| ty.is(p.bind(py))) {
            // `_p` is (record, total, ops): `record` is `[cell, applied]`,
            // shared by every number derived from one read; `total` is the
            // addition this number carries since that read. Storing it adds
            // what the chain has not applied yet, once (all of this runs
            // under the GIL, with no Python code in between: atomic with
            // respect to other threads).
            let p = value.getattr(pyo3::intern!(py, "_p"))?;
            if let Ok(p) = p.downcast::<pyo3::types::PyTuple>() {
                if p.len() == 3 && p.get_item(2)?.is_none() {
                    if let Ok(rec) = p.get_item(0)?.downcast::<pyo3::types::PyList>() {
                        if rec.len() == 2 && rec.get_item(0)?.is(&cell) && !rec.get_item(1)?.is_none() {
                            let total = p.get_item(1)?;
                            let delta = total.sub(rec.get_item(1)?)?;
                            rec.set_item(1, total)?;
                            let raw = obj.getattr(pyo3::intern!(py, "_raw"))?;
                            let raw = raw.downcast::<RawValue>()?.borrow();
                            return raw.add_delta(&delta);
                        }
                    }
                }
            }
        }
        self.store.call1(py, (cell, value))?;
        Ok(())
    }
}

/// A shared array: the storage of `shmem.Array`.
#[pyclass(module = "shmem._shmem")]
struct RawArray {
    seg: ArraySeg,
    code: char,
}

#[pymethods]
impl RawArray {
    /// Creates an array of type code `code` holding `init` (a list): named
    /// `name`, or anonymous.
    #[new]
    #[pyo3(signature = (code, init, name=None))]
    fn new(code: char, init: Vec<Bound<'_, PyAny>>, name: Option<&str>) -> PyResult<Self> {
        let seg = with_code!(code, T => {
            let values: Vec<T> = init.iter().map(|v| v.extract()).collect::<PyResult<_>>()?;
            let fill = |a: &[Atomic<T>]| a.iter().zip(&values).for_each(|(a, v)| a.store(*v));
            let s = match name {
                Some(n) => options().create_array_with::<T>(n, values.len(), fill),
                None => options().create_anonymous_array_with::<T>(values.len(), fill),
            }.map_err(to_py)?;
            T::into_array(s)
        });
        Ok(RawArray { seg, code })
    }

    #[staticmethod]
    fn attach(code: char, name: &str) -> PyResult<Self> {
        let seg = with_code!(code, T => T::into_array(ArraySegment::<T>::attach(name).map_err(to_py)?));
        Ok(RawArray { seg, code })
    }

    #[staticmethod]
    fn attach_fd(code: char, fd: i32) -> PyResult<Self> {
        let seg = with_fd(fd, |fd| {
            Ok(with_code!(code, T => T::into_array(options().attach_array_fd::<T>(fd).map_err(to_py)?)))
        })?;
        Ok(RawArray { seg, code })
    }

    #[getter]
    fn code(&self) -> char {
        self.code
    }

    #[getter]
    fn name(&self) -> Option<String> {
        each!(ArraySeg, &self.seg, s => (!ArraySegment::is_anonymous(s)).then(|| ArraySegment::name(s).to_owned()))
    }

    fn __len__(&self) -> usize {
        each!(ArraySeg, &self.seg, s => s.len())
    }

    fn load(&self, py: Python<'_>, i: usize) -> PyResult<PyObject> {
        each!(ArraySeg, &self.seg, s => Ok(at(s, i)?.load().into_py(py)))
    }

    fn store(&self, i: usize, v: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(ArraySeg, &self.seg, s => { at(s, i)?.store(Code::wrapping(v)?); Ok(()) })
    }

    fn apply(&self, py: Python<'_>, i: usize, op: &str, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        each!(ArraySeg, &self.seg, s => apply(py, at(s, i)?, op, v))
    }

    /// Adds `d` to element `i` atomically (a negative `d` subtracts).
    fn add_delta(&self, i: usize, d: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(ArraySeg, &self.seg, s => add_delta(at(s, i)?, d))
    }

    /// Replaces element `i` with `f(element)` atomically (a CAS loop).
    fn update(&self, py: Python<'_>, i: usize, f: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(ArraySeg, &self.seg, s => update_with(py, at(s, i)?, f))
    }

    /// Compare-and-swap element `i`: returns (swapped, value seen).
    fn compare_exchange(
        &self,
        py: Python<'_>,
        i: usize,
        current: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, PyObject)> {
        each!(ArraySeg, &self.seg, s => {
            match at(s, i)?.compare_exchange(current.extract()?, Code::wrapping(new)?) {
                Ok(v) => Ok((true, v.into_py(py))),
                Err(v) => Ok((false, v.into_py(py))),
            }
        })
    }

    /// Every element, each read atomically (a copy, not one snapshot:
    /// take the array's lock around it for that).
    fn to_list(&self, py: Python<'_>) -> PyObject {
        each!(ArraySeg, &self.seg, s => s.iter().map(|a| a.load()).collect::<Vec<_>>().into_py(py))
    }

    fn share_fd(&self) -> PyResult<i32> {
        each!(ArraySeg, &self.seg, s => Ok(ArraySegment::share_fd(s).map_err(to_py)?.into_raw_fd()))
    }
}

fn at<T: Code>(s: &ArraySegment<T>, i: usize) -> PyResult<&Atomic<T>> {
    s.get(i).ok_or_else(|| pyo3::exceptions::PyIndexError::new_err("array index out of range"))
}

/// The `#[pymethods]` of a class holding one `Segment<$seg>` in `seg`: the
/// methods every such class has (attach by name or descriptor, its name, a
/// descriptor to pass on), then the class's own.
macro_rules! segment_class {
    ($cls:ident, $seg:ty; $($methods:tt)*) => {
        #[pymethods]
        impl $cls {
            /// Attaches to named segment `name`.
            #[staticmethod]
            fn attach(name: &str) -> PyResult<Self> {
                Ok($cls { seg: Segment::<$seg>::attach(name).map_err(to_py)? })
            }

            /// Attaches through descriptor `fd` (an anonymous segment passed on).
            #[staticmethod]
            fn attach_fd(fd: i32) -> PyResult<Self> {
                with_fd(fd, |fd| Ok($cls { seg: options().attach_fd::<$seg>(fd).map_err(to_py)? }))
            }

            /// The segment name, or None for an anonymous segment.
            #[getter]
            fn name(&self) -> Option<String> {
                (!Segment::is_anonymous(&self.seg)).then(|| Segment::name(&self.seg).to_owned())
            }

            /// A new descriptor of the segment (the caller closes it).
            fn share_fd(&self) -> PyResult<i32> {
                Ok(Segment::share_fd(&self.seg).map_err(to_py)?.into_raw_fd())
            }

            $($methods)*
        }
    };
}

/// A new segment holding `init`: named `name`, or anonymous.
fn create_segment<T: shmem::Shared>(name: Option<&str>, init: &T) -> PyResult<Segment<T>> {
    match name {
        Some(n) => options().create(n, init),
        None => options().create_anonymous(init),
    }
    .map_err(to_py)
}

/// A crash-safe cross-process lock: the storage of `shmem.Lock`.
#[pyclass(module = "shmem._shmem")]
struct RawLock {
    seg: Segment<RawMutex>,
}

segment_class! { RawLock, RawMutex;
    #[new]
    #[pyo3(signature = (name=None))]
    fn new(name: Option<&str>) -> PyResult<Self> {
        let seg = create_segment(name, &RawMutex::new())?;
        Ok(RawLock { seg })
    }

    /// Takes the lock: returns None if it timed out, else whether the
    /// previous holder died holding it (True: the data it guards may be
    /// half-updated). Releases the
    /// GIL while waiting; Ctrl-C interrupts it. `timeout` None: no limit.
    #[pyo3(signature = (blocking=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<Option<bool>> {
        let deadline = deadline_of(timeout)?;
        // Taken: run the signal handlers that are due now, while a Ctrl-C
        // can still give the lock back (once this returns, Python would
        // raise it with the lock held and no `__exit__` to come).
        let took = |a| {
            if let Err(e) = py.check_signals() {
                // SAFETY: as in `release`: a lock on its own, no guard exists.
                unsafe { self.seg.unlock_if_mine() };
                return Err(e);
            }
            Ok(Some(a == shmem::sync::raw_mutex::Acquired::OwnerDied))
        };
        if let Some(a) = self.seg.try_lock_report::<Os>() {
            return took(a);
        }
        if !blocking {
            return Ok(None);
        }
        loop {
            let slice = slice_until(deadline);
            let seg = &self.seg;
            if let Some(a) = py.allow_threads(|| seg.lock_within::<Os>(slice)) {
                return took(a);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Releases the lock; RuntimeError if this process does not hold it.
    fn release(&self) -> PyResult<()> {
        // SAFETY: this segment holds a lock on its own (`Segment<RawMutex>`),
        // not the lock of a Mutex, RwLock or SeqLock: no guard exists.
        if unsafe { self.seg.unlock_if_mine() } {
            Ok(())
        } else {
            Err(pyo3::exceptions::PyRuntimeError::new_err("release unlocked lock"))
        }
    }

    fn locked(&self) -> bool {
        self.seg.is_locked()
    }
}

/// A cross-process event flag: the storage of `shmem.Event`.
#[pyclass(module = "shmem._shmem")]
struct RawEvent {
    seg: Segment<Event>,
}

segment_class! { RawEvent, Event;
    #[new]
    #[pyo3(signature = (name=None))]
    fn new(name: Option<&str>) -> PyResult<Self> {
        let seg = create_segment(name, &Event::new(false))?;
        Ok(RawEvent { seg })
    }

    fn set(&self) {
        self.seg.set()
    }

    fn clear(&self) {
        self.seg.clear()
    }

    fn is_set(&self) -> bool {
        self.seg.is_set()
    }

    /// Waits until set or `timeout` seconds pass (None: no limit); returns
    /// whether it is set. Releases the GIL; Ctrl-C interrupts it.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        event_wait(py, &self.seg, timeout)
    }
}

/// `Event.wait`: until set or `timeout` seconds pass (None: no limit), in
/// slices with the GIL released and signals checked between them.
fn event_wait(py: Python<'_>, event: &Event, timeout: Option<f64>) -> PyResult<bool> {
    let deadline = deadline_of(timeout)?;
    loop {
        let slice = slice_until(deadline);
        if py.allow_threads(|| event.wait_timeout(slice)).is_ok() {
            return Ok(true);
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(event.is_set());
        }
    }
}

// ---------------------------------------------------------------- Dict and Queue

/// The longest `str` a Dict or Queue holds, in UTF-8 bytes.
const STR_BYTES: usize = 64;
type PyStr = shmem::Str<STR_BYTES>;

/// The capacities a Dict or Queue can have (a requested capacity rounds up).
const CAPACITIES: [usize; 3] = [64, 1024, 16384];

/// A Python value stored as plain data: `int` as `i64`, `float` as `f64`,
/// `str` as up to 64 UTF-8 bytes.
trait Plain: bytemuck::Pod + Send + Sync + 'static {
    fn from_py(v: &Bound<'_, PyAny>) -> PyResult<Self>;
    fn to_py(self, py: Python<'_>) -> PyObject;
    /// What `d[k] += x` adds: the type itself, or a wider signed integer
    /// for the narrower integers (so that `-= 1` works on unsigned values).
    type Delta: Send + Sync;
    /// Reads `x` of `d[k] += x` (before the shard is locked).
    fn delta_from_py(v: &Bound<'_, PyAny>) -> PyResult<Self::Delta>;
    /// `self += d`, in pure Rust (it runs under a shard lock): `Err` with
    /// the reason if it cannot (overflow, a str that would not fit).
    fn add(&mut self, d: &Self::Delta) -> Result<(), &'static str>;
}

/// The integers a Dict, a Queue or a struct's queue or map field may hold
/// (`int` is `i64`; type codes `b B h H i I l L q Q`): checked against
/// their width on the way in; `+=` adds a signed delta, checked against the
/// width on the way out.
macro_rules! plain_int {
    ($($t:ty),*) => {$(
        impl Plain for $t {
            type Delta = i128;
            fn delta_from_py(v: &Bound<'_, PyAny>) -> PyResult<Self::Delta> {
                v.extract()
            }
            fn from_py(v: &Bound<'_, PyAny>) -> PyResult<Self> {
                v.extract()
            }
            fn to_py(self, py: Python<'_>) -> PyObject {
                self.into_py(py)
            }
            fn add(&mut self, d: &i128) -> Result<(), &'static str> {
                let sum = i128::from(*self).checked_add(*d).ok_or("the sum does not fit the type")?;
                *self = <$t>::try_from(sum).map_err(|_| "the sum does not fit the type")?;
                Ok(())
            }
        }
    )*};
}

plain_int!(i8, u8, i16, u16, i32, u32, i64, u64);

/// The floats (`float` is `f64`; type codes `f d`); `+=` adds in `f64`.
macro_rules! plain_float {
    ($($t:ty),*) => {$(
        impl Plain for $t {
            type Delta = f64;
            fn delta_from_py(v: &Bound<'_, PyAny>) -> PyResult<Self::Delta> {
                v.extract()
            }
            fn from_py(v: &Bound<'_, PyAny>) -> PyResult<Self> {
                v.extract()
            }
            fn to_py(self, py: Python<'_>) -> PyObject {
                self.into_py(py)
            }
            fn add(&mut self, d: &f64) -> Result<(), &'static str> {
                *self = (f64::from(*self) + d) as $t;
                Ok(())
            }
        }
    )*};
}

plain_float!(f32, f64);

impl Plain for PyStr {
    type Delta = PyStr;
    fn delta_from_py(v: &Bound<'_, PyAny>) -> PyResult<Self::Delta> {
        Self::from_py(v)
    }
    fn from_py(v: &Bound<'_, PyAny>) -> PyResult<Self> {
        let text: String = v.extract()?;
        PyStr::try_from(text.as_str())
            .map_err(|e| PyValueError::new_err(format!("a str of at most {STR_BYTES} UTF-8 bytes: {e}")))
    }
    fn to_py(self, py: Python<'_>) -> PyObject {
        self.as_str().into_py(py)
    }
    fn add(&mut self, d: &Self) -> Result<(), &'static str> {
        self.push_str(d.as_str()).map_err(|_| "the str would exceed 64 bytes")
    }
}

/// Runs a map operation that may wait for a shard lock in slices, with the
/// GIL released, letting Python handle signals between slices (a peer
/// stopped while holding a shard must not freeze every thread, nor Ctrl-C).
fn sliced<R: Send>(py: Python<'_>, op: impl Fn(Duration) -> Result<R, shmem::TimedOut> + Send + Sync) -> PyResult<R> {
    loop {
        if let Ok(r) = py.allow_threads(|| op(SLICE)) {
            return Ok(r);
        }
        py.check_signals()?;
    }
}

/// A dict segment of any key, value and capacity.
trait DynDict: Send + Sync {
    fn name(&self) -> Option<String>;
    fn capacity(&self) -> usize;
    fn len(&self) -> usize;
    fn poisoned(&self) -> bool;
    fn get(&self, py: Python<'_>, k: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>>;
    /// Returns the previous value.
    fn set(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>>;
    fn remove(&self, py: Python<'_>, k: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>>;
    fn setdefault(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<PyObject>;
    /// `d[k] += v` in one step; the value after, or None if `k` is absent.
    fn add(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>>;
    fn items(&self, py: Python<'_>) -> Vec<(PyObject, PyObject)>;
    fn clear(&self, py: Python<'_>);
    fn share_fd(&self) -> PyResult<i32>;
}

fn full_error(capacity: usize) -> PyErr {
    pyo3::exceptions::PyOverflowError::new_err(format!(
        "the dict is full (capacity {capacity}; keys are spread over shards, so a shard can fill first): \
         create it with a larger capacity"
    ))
}

/// Where a dict's map is: a map segment, or a map field of a struct segment.
trait MapHome: Send + Sync {
    type K: Plain + std::hash::Hash + Eq;
    type V: Plain;
    fn name(&self) -> Option<String>;
    fn share_fd(&self) -> PyResult<i32>;
    /// Runs `f` on the map.
    fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&MapRing<Self::K, Self::V>) -> PyResult<R>) -> PyResult<R>;
}

impl<K: Plain + std::hash::Hash + Eq, V: Plain, const N: usize> MapHome for Segment<shmem::Map<K, V, N>> {
    type K = K;
    type V = V;
    fn name(&self) -> Option<String> {
        (!Segment::is_anonymous(self)).then(|| Segment::name(self).to_owned())
    }
    fn share_fd(&self) -> PyResult<i32> {
        Ok(Segment::share_fd(self).map_err(to_py)?.into_raw_fd())
    }
    fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&MapRing<K, V>) -> PyResult<R>) -> PyResult<R> {
        f(self)
    }
}

/// A map field of a struct segment opened by schema (checked when made:
/// the schema does not change while the segment is open).
struct FieldMap<K, V> {
    st: Py<RawStruct>,
    path: String,
    _entry: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K: Plain + std::hash::Hash + Eq, V: Plain> MapHome for FieldMap<K, V> {
    type K = K;
    type V = V;
    fn name(&self) -> Option<String> {
        None
    }
    fn share_fd(&self) -> PyResult<i32> {
        Err(PyValueError::new_err("a map field travels with its struct segment: pickle the field, not a descriptor"))
    }
    fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&MapRing<K, V>) -> PyResult<R>) -> PyResult<R> {
        let st = self.st.borrow(py);
        let m = st.seg.map::<K, V>(&self.path).ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(format!("`{}` is no longer a map field", self.path))
        })?;
        f(m)
    }
}

impl<H: MapHome> DynDict for H {
    fn name(&self) -> Option<String> {
        MapHome::name(self)
    }
    fn capacity(&self) -> usize {
        Python::with_gil(|py| self.with(py, |m| Ok(m.capacity()))).unwrap_or(0)
    }
    fn len(&self) -> usize {
        Python::with_gil(|py| self.with(py, |m| Ok(m.len()))).unwrap_or(0)
    }
    fn poisoned(&self) -> bool {
        Python::with_gil(|py| self.with(py, |m| Ok(m.is_poisoned()))).unwrap_or(false)
    }
    fn get(&self, py: Python<'_>, k: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        let k = H::K::from_py(k)?;
        self.with(py, |m| Ok(sliced(py, |t| m.get_timeout(&k, t))?.map(|v| v.to_py(py))))
    }
    fn set(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        let (k, v) = (H::K::from_py(k)?, H::V::from_py(v)?);
        self.with(py, |m| {
            let old = sliced(py, |t| m.insert_timeout(k, v, t))?.map_err(|_| full_error(m.capacity()))?;
            Ok(old.map(|o| o.to_py(py)))
        })
    }
    fn remove(&self, py: Python<'_>, k: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        let k = H::K::from_py(k)?;
        self.with(py, |m| Ok(sliced(py, |t| m.remove_timeout(&k, t))?.map(|v| v.to_py(py))))
    }
    fn setdefault(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let (k, v) = (H::K::from_py(k)?, H::V::from_py(v)?);
        self.with(py, |m| {
            let got = py.allow_threads(|| m.get_or_insert(k, v)).map_err(|_| full_error(m.capacity()))?;
            Ok(got.to_py(py))
        })
    }
    fn add(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        // Everything Python is done before the shard is locked.
        let (k, d) = (H::K::from_py(k)?, H::V::delta_from_py(v)?);
        let failed = std::sync::Mutex::new(None);
        let after = self.with(py, |m| {
            sliced(py, |t| {
                m.update_timeout(&k, t, |value| {
                    if let Err(why) = value.add(&d) {
                        *failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                    }
                })
            })
        })?;
        if let Some(why) = failed.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Err(pyo3::exceptions::PyOverflowError::new_err(why));
        }
        Ok(after.map(|a| a.to_py(py)))
    }
    fn items(&self, py: Python<'_>) -> Vec<(PyObject, PyObject)> {
        let all = self.with(py, |m| Ok(py.allow_threads(|| m.to_vec()))).unwrap_or_default();
        all.into_iter().map(|(k, v)| (k.to_py(py), v.to_py(py))).collect()
    }
    fn clear(&self, py: Python<'_>) {
        let _ = self.with(py, |m| {
            py.allow_threads(|| m.clear());
            Ok(())
        });
    }
    fn share_fd(&self) -> PyResult<i32> {
        MapHome::share_fd(self)
    }
}

/// What to do with the dict segment of key type `$k`, value type `$v` and
/// capacity `$n`, for every supported combination.
macro_rules! with_dict_type {
    ($key:expr, $value:expr, $cap:expr, $K:ident, $V:ident, $N:ident => $body:expr) => {{
        macro_rules! go {
            ($kt:ty, $vt:ty) => {
                match $cap {
                    64 => {
                        type $K = $kt;
                        type $V = $vt;
                        const $N: usize = 64;
                        $body
                    }
                    1024 => {
                        type $K = $kt;
                        type $V = $vt;
                        const $N: usize = 1024;
                        $body
                    }
                    _ => {
                        type $K = $kt;
                        type $V = $vt;
                        const $N: usize = 16384;
                        $body
                    }
                }
            };
        }
        match ($key, $value) {
            ("int", "int") => go!(i64, i64),
            ("int", "float") => go!(i64, f64),
            ("int", "str") => go!(i64, PyStr),
            ("str", "int") => go!(PyStr, i64),
            ("str", "float") => go!(PyStr, f64),
            ("str", "str") => go!(PyStr, PyStr),
            (k, v) => {
                return Err(PyValueError::new_err(format!(
                    "unsupported dict types ({k}, {v}): keys are int or str, values int, float or str"
                )))
            }
        }
    }};
}

/// The map size from the menu for a dict that must hold `wanted` entries:
/// twice as many slots, since a map fills shard by shard and the fullest
/// shard decides (at half full, a shard overflowing is very unlikely).
fn dict_capacity_for(wanted: usize) -> PyResult<usize> {
    capacity_for(wanted.saturating_mul(2)).map_err(|_| {
        PyValueError::new_err(format!(
            "a dict of {wanted} entries is over the largest supported, {}",
            CAPACITIES[2] / 2
        ))
    })
}

/// The capacity from the menu that holds at least `wanted` entries.
fn capacity_for(wanted: usize) -> PyResult<usize> {
    CAPACITIES.iter().copied().find(|&c| c >= wanted).ok_or_else(|| {
        PyValueError::new_err(format!("capacity {wanted} is over the largest supported, {}", CAPACITIES[2]))
    })
}

/// A shared dict of declared key and value types: the storage of `shmem.Dict`.
#[pyclass(module = "shmem._shmem")]
struct RawDict {
    inner: Box<dyn DynDict>,
    key: String,
    value: String,
}

#[pymethods]
impl RawDict {
    #[new]
    #[pyo3(signature = (key, value, capacity, name=None))]
    fn new(key: &str, value: &str, capacity: usize, name: Option<&str>) -> PyResult<Self> {
        let cap = dict_capacity_for(capacity)?;
        let inner: Box<dyn DynDict> = with_dict_type!(key, value, cap, K, V, N => {
            let seg = match name {
                Some(n) => options().create_with::<shmem::Map<K, V, N>>(n, |_| {}),
                None => options().create_anonymous_with::<shmem::Map<K, V, N>>(|_| {}),
            }.map_err(to_py)?;
            Box::new(seg)
        });
        Ok(RawDict { inner, key: key.to_owned(), value: value.to_owned() })
    }

    #[staticmethod]
    fn attach(key: &str, value: &str, capacity: usize, name: &str) -> PyResult<Self> {
        let cap = capacity_for(capacity)?;
        let inner: Box<dyn DynDict> = with_dict_type!(key, value, cap, K, V, N => {
            Box::new(Segment::<shmem::Map<K, V, N>>::attach(name).map_err(to_py)?)
        });
        Ok(RawDict { inner, key: key.to_owned(), value: value.to_owned() })
    }

    #[staticmethod]
    fn attach_fd(key: &str, value: &str, capacity: usize, fd: i32) -> PyResult<Self> {
        let cap = capacity_for(capacity)?;
        let inner = with_fd(fd, |fd| {
            Ok(with_dict_type!(key, value, cap, K, V, N => {
                Box::new(options().attach_fd::<shmem::Map<K, V, N>>(fd).map_err(to_py)?) as Box<dyn DynDict>
            }))
        })?;
        Ok(RawDict { inner, key: key.to_owned(), value: value.to_owned() })
    }

    /// The map field `path` of struct segment `st`, of keys of type code
    /// `key` (`i I l L q Q`) and values of type code `value` (`b B h H i I
    /// l L q Q f d`); their sizes must be the field's.
    #[staticmethod]
    fn field(py: Python<'_>, st: Py<RawStruct>, path: String, key: char, value: char) -> PyResult<Self> {
        macro_rules! with_key {
            ($k:ident => $body:expr) => {
                match key {
                    'i' => {
                        type $k = i32;
                        $body
                    }
                    'I' => {
                        type $k = u32;
                        $body
                    }
                    'l' | 'q' => {
                        type $k = i64;
                        $body
                    }
                    'L' | 'Q' => {
                        type $k = u64;
                        $body
                    }
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "unsupported key type code {other:?}: use one of i I l L q Q"
                        )))
                    }
                }
            };
        }
        let inner: Box<dyn DynDict> = with_key!(K => with_code!(value, V => {
            if st.borrow(py).seg.map::<K, V>(&path).is_none() {
                let seg = &st.borrow(py).seg;
                let held = seg
                    .entries()
                    .iter()
                    .find(|e| e.path == path && e.kind.starts_with("map "))
                    .map_or(String::from("no such map field"), |e| {
                        let p = |k| shmem::segment::decode::kind_param(&e.kind, k).unwrap_or(0);
                        format!("the field holds {}-byte keys and {}-byte values", p("key"), p("value"))
                    });
                return Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                    "segment `{}` ({}): `{path}` is not a map of {}-byte keys and {}-byte values \
                     (type codes {key:?}, {value:?}): {held}",
                    seg.name(),
                    seg.type_name(),
                    core::mem::size_of::<K>(),
                    core::mem::size_of::<V>()
                )));
            }
            Box::new(FieldMap::<K, V> { st, path, _entry: std::marker::PhantomData })
        }));
        Ok(RawDict { inner, key: key.to_string(), value: value.to_string() })
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.inner.name()
    }
    #[getter]
    fn key_type(&self) -> &str {
        &self.key
    }
    #[getter]
    fn value_type(&self) -> &str {
        &self.value
    }
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    fn __len__(&self) -> usize {
        self.inner.len()
    }
    /// Whether a process died in the middle of an update (that entry may
    /// hold a half-written value).
    #[getter]
    fn poisoned(&self) -> bool {
        self.inner.poisoned()
    }
    fn get(&self, py: Python<'_>, k: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        self.inner.get(py, k)
    }
    fn set(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        self.inner.set(py, k, v)
    }
    fn remove(&self, py: Python<'_>, k: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        self.inner.remove(py, k)
    }
    fn setdefault(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        self.inner.setdefault(py, k, v)
    }
    fn add(&self, py: Python<'_>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        self.inner.add(py, k, v)
    }
    fn items(&self, py: Python<'_>) -> Vec<(PyObject, PyObject)> {
        self.inner.items(py)
    }
    fn clear(&self, py: Python<'_>) {
        self.inner.clear(py)
    }
    fn share_fd(&self) -> PyResult<i32> {
        self.inner.share_fd()
    }
}

/// A queue segment of any item type and capacity.
trait DynQueue: Send + Sync {
    fn name(&self) -> Option<String>;
    fn capacity(&self) -> usize;
    fn limit(&self) -> usize;
    fn set_limit(&self, limit: usize);
    fn len(&self) -> usize;
    /// `Ok(None)`: pushed; `Ok(Some(full))`: full (true) or closed (false).
    fn push(&self, py: Python<'_>, item: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<Option<bool>>;
    /// `Ok(Err(closed))`: empty (false) or closed and drained (true).
    fn pop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Result<PyObject, bool>>;
    fn close(&self);
    fn is_closed(&self) -> bool;
    fn share_fd(&self) -> PyResult<i32>;
}

impl<T: Plain, const N: usize> DynQueue for Segment<shmem::Queue<T, N>> {
    fn name(&self) -> Option<String> {
        (!Segment::is_anonymous(self)).then(|| Segment::name(self).to_owned())
    }
    fn capacity(&self) -> usize {
        N
    }
    fn limit(&self) -> usize {
        (**self).limit()
    }
    fn set_limit(&self, limit: usize) {
        (**self).set_limit(limit)
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn push(&self, py: Python<'_>, item: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<Option<bool>> {
        ring_push::<T>(py, self, item, timeout)
    }
    fn pop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Result<PyObject, bool>> {
        ring_pop::<T>(py, self, timeout)
    }
    fn close(&self) {
        (**self).close()
    }
    fn is_closed(&self) -> bool {
        (**self).is_closed()
    }
    fn share_fd(&self) -> PyResult<i32> {
        Ok(Segment::share_fd(self).map_err(to_py)?.into_raw_fd())
    }
}

/// A queue field of a struct segment opened by schema (checked when made:
/// the schema does not change while the segment is open).
struct FieldQueue<T> {
    st: Py<RawStruct>,
    path: String,
    _item: std::marker::PhantomData<fn() -> T>,
}

impl<T: Plain> FieldQueue<T> {
    /// Runs `f` on the ring, with the struct segment borrowed meanwhile.
    fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&QueueRing<T>) -> PyResult<R>) -> PyResult<R> {
        let st = self.st.borrow(py);
        let q = st.seg.queue::<T>(&self.path).ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(format!("`{}` is no longer a queue field", self.path))
        })?;
        f(q)
    }
}

impl<T: Plain> DynQueue for FieldQueue<T> {
    fn name(&self) -> Option<String> {
        None
    }
    fn capacity(&self) -> usize {
        Python::with_gil(|py| self.with(py, |q| Ok(q.capacity()))).unwrap_or(0)
    }
    fn limit(&self) -> usize {
        Python::with_gil(|py| self.with(py, |q| Ok(q.limit()))).unwrap_or(0)
    }
    fn set_limit(&self, limit: usize) {
        let _ = Python::with_gil(|py| {
            self.with(py, |q| {
                q.set_limit(limit);
                Ok(())
            })
        });
    }
    fn len(&self) -> usize {
        Python::with_gil(|py| self.with(py, |q| Ok(q.len()))).unwrap_or(0)
    }
    fn push(&self, py: Python<'_>, item: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<Option<bool>> {
        self.with(py, |q| ring_push::<T>(py, q, item, timeout))
    }
    fn pop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Result<PyObject, bool>> {
        self.with(py, |q| ring_pop::<T>(py, q, timeout))
    }
    fn close(&self) {
        let _ = Python::with_gil(|py| {
            self.with(py, |q| {
                q.close();
                Ok(())
            })
        });
    }
    fn is_closed(&self) -> bool {
        Python::with_gil(|py| self.with(py, |q| Ok(q.is_closed()))).unwrap_or(false)
    }
    fn share_fd(&self) -> PyResult<i32> {
        Err(PyValueError::new_err("a queue field travels with its struct segment: pickle the field, not a descriptor"))
    }
}

/// `Queue.put` on any queue: `None` if pushed, `Some(true)` if full,
/// `Some(false)` if closed. Waits in slices with the GIL released.
fn ring_push<T: Plain>(
    py: Python<'_>,
    q: &QueueRing<T>,
    item: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<Option<bool>> {
    let item = T::from_py(item)?;
    let deadline = deadline_of(timeout)?;
    if deadline.is_some_and(|d| d <= Instant::now()) {
        // No waiting for room; but another pusher holding the lock for a
        // moment is not "full": retry that for up to 10 ms.
        let start = Instant::now();
        loop {
            match py.allow_threads(|| q.try_push(item)) {
                Ok(()) => return Ok(None),
                Err(shmem::PushError::Full(_)) => return Ok(Some(true)),
                Err(shmem::PushError::Closed(_)) => return Ok(Some(false)),
                Err(_) if start.elapsed() < Duration::from_millis(10) => {}
                Err(_) => return Ok(Some(true)),
            }
        }
    }
    loop {
        let slice = slice_until(deadline);
        match py.allow_threads(|| q.push_timeout(item, slice)) {
            Ok(()) => return Ok(None),
            Err(shmem::PushError::Closed(_)) => return Ok(Some(false)),
            Err(_) => {}
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Some(true));
        }
    }
}

/// `Queue.get` on any queue: the item, or `Err(closed)` (false: empty).
fn ring_pop<T: Plain>(py: Python<'_>, q: &QueueRing<T>, timeout: Option<f64>) -> PyResult<Result<PyObject, bool>> {
    let deadline = deadline_of(timeout)?;
    if deadline.is_some_and(|d| d <= Instant::now()) {
        let start = Instant::now();
        loop {
            match py.allow_threads(|| q.try_pop()) {
                Ok(item) => return Ok(Ok(item.to_py(py))),
                Err(shmem::PopError::Empty) => return Ok(Err(false)),
                Err(shmem::PopError::Closed) => return Ok(Err(true)),
                Err(_) if start.elapsed() < Duration::from_millis(10) => {}
                Err(_) => return Ok(Err(false)),
            }
        }
    }
    loop {
        let slice = slice_until(deadline);
        match py.allow_threads(|| q.pop_timeout(slice)) {
            Ok(item) => return Ok(Ok(item.to_py(py))),
            Err(shmem::PopError::Closed) => return Ok(Err(true)),
            Err(_) => {}
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Err(false));
        }
    }
}

macro_rules! with_queue_type {
    ($item:expr, $cap:expr, $T:ident, $N:ident => $body:expr) => {{
        macro_rules! go {
            ($tt:ty) => {
                match $cap {
                    64 => {
                        type $T = $tt;
                        const $N: usize = 64;
                        $body
                    }
                    1024 => {
                        type $T = $tt;
                        const $N: usize = 1024;
                        $body
                    }
                    _ => {
                        type $T = $tt;
                        const $N: usize = 16384;
                        $body
                    }
                }
            };
        }
        match $item {
            "int" => go!(i64),
            "float" => go!(f64),
            "str" => go!(PyStr),
            other => {
                return Err(PyValueError::new_err(format!("unsupported queue item type {other}: int, float or str")))
            }
        }
    }};
}

/// A bounded multi-producer multi-consumer queue: the storage of `shmem.Queue`.
#[pyclass(module = "shmem._shmem")]
struct RawQueue {
    inner: Box<dyn DynQueue>,
    item: String,
    /// Items popped as Ctrl-C arrived, with the pid of the process that
    /// popped them: this handle's next `pop`s there return them (raising
    /// would have dropped them; they left the shared queue). A handle
    /// copied into a forked child keeps the parent's: ignored there.
    kept: std::sync::Mutex<std::collections::VecDeque<(u32, PyObject)>>,
}

impl RawQueue {
    /// The oldest item this process kept (`kept`); another process's
    /// (a forked copy of the handle) are dropped, never returned twice.
    fn take_kept(&self) -> Option<PyObject> {
        let me = std::process::id();
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|(p, _)| *p == me);
        kept.pop_front().map(|(_, item)| item)
    }
}

#[pymethods]
impl RawQueue {
    #[new]
    #[pyo3(signature = (item, capacity, name=None, limit=0))]
    fn new(item: &str, capacity: usize, name: Option<&str>, limit: usize) -> PyResult<Self> {
        let cap = capacity_for(capacity)?;
        let inner: Box<dyn DynQueue> = with_queue_type!(item, cap, T, N => {
            let seg = match name {
                Some(n) => options().create_with::<shmem::Queue<T, N>>(n, |q| q.set_limit(limit)),
                None => options().create_anonymous_with::<shmem::Queue<T, N>>(|q| q.set_limit(limit)),
            }.map_err(to_py)?;
            Box::new(seg)
        });
        Ok(RawQueue { inner, item: item.to_owned(), kept: std::sync::Mutex::default() })
    }

    #[staticmethod]
    fn attach(item: &str, capacity: usize, name: &str) -> PyResult<Self> {
        let cap = capacity_for(capacity)?;
        let inner: Box<dyn DynQueue> = with_queue_type!(item, cap, T, N => {
            Box::new(Segment::<shmem::Queue<T, N>>::attach(name).map_err(to_py)?)
        });
        Ok(RawQueue { inner, item: item.to_owned(), kept: std::sync::Mutex::default() })
    }

    #[staticmethod]
    fn attach_fd(item: &str, capacity: usize, fd: i32) -> PyResult<Self> {
        let cap = capacity_for(capacity)?;
        let inner = with_fd(fd, |fd| {
            Ok(with_queue_type!(item, cap, T, N => {
                Box::new(options().attach_fd::<shmem::Queue<T, N>>(fd).map_err(to_py)?) as Box<dyn DynQueue>
            }))
        })?;
        Ok(RawQueue { inner, item: item.to_owned(), kept: std::sync::Mutex::default() })
    }

    /// The queue field `path` of struct segment `st`, of items of type code
    /// `code` (their size must be the field's; `b B h H i I l L q Q f d`).
    #[staticmethod]
    fn field(py: Python<'_>, st: Py<RawStruct>, path: String, code: char) -> PyResult<Self> {
        let inner: Box<dyn DynQueue> = with_code!(code, T => {
            if st.borrow(py).seg.queue::<T>(&path).is_none() {
                let seg = &st.borrow(py).seg;
                let held = seg
                    .entries()
                    .iter()
                    .find(|e| e.path == path && e.kind.starts_with("queue "))
                    .and_then(|e| shmem::segment::decode::kind_param(&e.kind, "item"))
                    .map_or(String::from("no such queue field"), |n| format!("the field holds {n}-byte items"));
                return Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                    "segment `{}` ({}): `{path}` is not a queue of {}-byte items (type code {code:?}): {held}",
                    seg.name(),
                    seg.type_name(),
                    core::mem::size_of::<T>()
                )));
            }
            Box::new(FieldQueue::<T> { st, path, _item: std::marker::PhantomData })
        });
        Ok(RawQueue { inner, item: code.to_string(), kept: std::sync::Mutex::default() })
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.inner.name()
    }
    #[getter]
    fn item_type(&self) -> &str {
        &self.item
    }
    /// The most items puts fill it to (the `maxsize` asked for), in the
    /// queue itself: every process sees it.
    #[getter]
    fn limit(&self) -> usize {
        self.inner.limit()
    }

    /// Sets [`limit`] (0: the capacity).
    fn set_limit(&self, limit: usize) {
        self.inner.set_limit(limit)
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    /// Items in the shared queue.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Items this handle took as Ctrl-C arrived, which its next `pop`s
    /// return first (in this process).
    fn kept(&self) -> usize {
        let me = std::process::id();
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().filter(|(p, _)| *p == me).count()
    }
    /// Pushes; returns None, or "full" / "closed".
    #[pyo3(signature = (item, timeout=None))]
    fn push(&self, py: Python<'_>, item: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<Option<&'static str>> {
        Ok(self.inner.push(py, item, timeout)?.map(|full| if full { "full" } else { "closed" }))
    }
    /// Pops; returns (True, item), or (False, "empty" / "closed").
    #[pyo3(signature = (timeout=None))]
    fn pop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(bool, PyObject)> {
        if let Some(item) = self.take_kept() {
            return Ok((true, item));
        }
        Ok(match self.inner.pop(py, timeout)? {
            Ok(item) => {
                // The signal handlers due now run here: a Ctrl-C raised as
                // this call returns would drop the item, which has left the
                // shared queue; kept, the next `get` returns it.
                if let Err(e) = py.check_signals() {
                    let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    kept.push_back((std::process::id(), item));
                    return Err(e);
                }
                (true, item)
            }
            Err(closed) => (false, if closed { "closed" } else { "empty" }.into_py(py)),
        })
    }
    fn close(&self) {
        self.inner.close()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    fn share_fd(&self) -> PyResult<i32> {
        self.inner.share_fd()
    }
}

// ---------------------------------------------------------------- structs by schema

use shmem::segment::dynamic::{DynDecl, DynField, DynKind, DynSegment, DynValue};

/// The kind of a type code (`'q'`, `'d'`, `'?'` for bool, ...).
fn kind_of_code(code: &str) -> PyResult<DynKind> {
    Ok(match code {
        "b" => DynKind::I8,
        "B" => DynKind::U8,
        "h" => DynKind::I16,
        "H" => DynKind::U16,
        "i" => DynKind::I32,
        "I" => DynKind::U32,
        "l" | "q" => DynKind::I64,
        "L" | "Q" => DynKind::U64,
        "f" => DynKind::F32,
        "d" => DynKind::F64,
        "?" => DynKind::Bool,
        other => {
            return Err(PyValueError::new_err(format!(
                "unsupported type code {other:?} for a struct field: use one of b B h H i I l L q Q f d ?"
            )))
        }
    })
}

/// A segment opened from its schema (a `#[derive(Shared)]` struct made by
/// a Rust program, say): the storage of `shmem.Struct`.
#[pyclass(module = "shmem._shmem")]
struct RawStruct {
    seg: DynSegment,
}

fn dyn_to_py(py: Python<'_>, v: DynValue) -> PyObject {
    match v {
        DynValue::Int(i) => i.into_py(py),
        DynValue::Float(f) => f.into_py(py),
        DynValue::Bool(b) => b.into_py(py),
        DynValue::Char(c) => c.into_py(py),
    }
}

/// A Python value for a field of `kind` (integers wrap to its width).
fn py_to_dyn(kind: DynKind, v: &Bound<'_, PyAny>) -> PyResult<DynValue> {
    Ok(match kind {
        DynKind::F32 | DynKind::F64 => DynValue::Float(v.extract()?),
        DynKind::Bool => DynValue::Bool(v.is_truthy()?),
        DynKind::Char => DynValue::Char(v.extract()?),
        _ => match v.extract::<i128>() {
            Ok(i) => DynValue::Int(i),
            Err(_) => DynValue::Int(v.call_method1("__mod__", (1u128 << 64,))?.extract::<u64>()? as i128),
        },
    })
}

impl RawStruct {
    fn field(&self, path: &str) -> PyResult<DynField> {
        self.seg.field(path).ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(format!(
                "segment `{}` ({}) has no scalar field `{path}`",
                self.seg.name(),
                self.seg.type_name()
            ))
        })
    }
}

impl RawStruct {
    fn locked(&self, path: &str) -> PyResult<shmem::segment::dynamic::DynLocked> {
        self.seg.locked_field(path).ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(format!(
                "segment `{}` ({}) has no #[shared(lock)] or #[shared(rwlock)] field `{path}`",
                self.seg.name(),
                self.seg.type_name()
            ))
        })
    }
}

fn not_held() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("this process does not hold the field's lock")
}

fn out_of_range(path: &str, i: u64) -> PyErr {
    pyo3::exceptions::PyIndexError::new_err(format!("`{path}[{i}]` is out of range, or not of that kind"))
}

#[pymethods]
impl RawStruct {
    #[staticmethod]
    fn attach(name: &str) -> PyResult<Self> {
        Ok(RawStruct { seg: options().attach_dyn(name).map_err(to_py)? })
    }

    /// Creates segment `name` holding struct `type_name` of `fields`
    /// ((name, type code, count)): what `#[derive(Shared)] struct
    /// type_name { ... }` with those fields, in order, is in Rust.
    #[staticmethod]
    fn create(name: &str, type_name: &str, fields: Vec<(String, String, usize)>) -> PyResult<Self> {
        let kinds: Vec<DynKind> = fields.iter().map(|(_, code, _)| kind_of_code(code)).collect::<PyResult<_>>()?;
        let decls: Vec<DynDecl<'_>> = fields
            .iter()
            .zip(&kinds)
            .map(|((n, _, count), kind)| DynDecl { name: n, kind: *kind, count: *count })
            .collect();
        Ok(RawStruct { seg: options().create_dyn(name, type_name, &decls).map_err(to_py)? })
    }

    #[getter]
    fn name(&self) -> String {
        self.seg.name().to_owned()
    }

    #[getter]
    fn type_name(&self) -> String {
        self.seg.type_name().to_owned()
    }

    /// The accessible fields: (path, kind, count).
    fn fields(&self) -> Vec<(String, String, u64)> {
        self.seg
            .fields()
            .into_iter()
            .map(|f| (f.path().to_owned(), format!("{:?}", f.kind()).to_lowercase(), f.count()))
            .collect()
    }

    /// Every schema entry: (path, kind, offset, size, count).
    fn entries(&self) -> Vec<(String, String, u64, u64, u64)> {
        self.seg.entries().iter().map(|e| (e.path.clone(), e.kind.clone(), e.offset, e.size, e.count)).collect()
    }

    fn load(&self, py: Python<'_>, path: &str, i: u64) -> PyResult<PyObject> {
        let f = self.field(path)?;
        Ok(dyn_to_py(py, self.seg.load(&f, i).ok_or_else(|| out_of_range(path, i))?))
    }

    fn store(&self, path: &str, i: u64, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let f = self.field(path)?;
        self.seg.store(&f, i, py_to_dyn(f.kind(), v)?).ok_or_else(|| out_of_range(path, i))
    }

    fn add_delta(&self, path: &str, i: u64, d: &Bound<'_, PyAny>) -> PyResult<()> {
        let f = self.field(path)?;
        self.seg.fetch_add(&f, i, py_to_dyn(f.kind(), d)?).map(|_| ()).ok_or_else(|| out_of_range(path, i))
    }

    /// The `#[shared(lock)]` fields: (path, value type, value size).
    fn locked_fields(&self) -> Vec<(String, String, u64)> {
        self.seg
            .locked_fields()
            .into_iter()
            .map(|f| (f.path().to_owned(), f.value_type().to_owned(), f.value_size()))
            .collect()
    }

    /// Takes the lock of locked field `path`: whether its value is poisoned
    /// (a holder died in the middle), or None if `timeout` passed. Releases
    /// the GIL while waiting; Ctrl-C interrupts it.
    #[pyo3(signature = (path, timeout=None))]
    fn lock(&self, py: Python<'_>, path: &str, timeout: Option<f64>) -> PyResult<Option<bool>> {
        let f = self.locked(path)?;
        let deadline = deadline_of(timeout)?;
        loop {
            // An rwlock writer that times out a slice gives up its place
            // ahead of new readers: slices of a second there (Ctrl-C is
            // seen within one), of SLICE for a mutex.
            let slice = if f.is_rwlock() {
                deadline.map_or(RW_SLICE, |d| d.saturating_duration_since(Instant::now()).min(RW_SLICE))
            } else {
                slice_until(deadline)
            };
            let (seg, f) = (&self.seg, &f);
            if let Some(poisoned) = py.allow_threads(|| seg.lock_within(f, Some(slice))) {
                // As in `RawLock::acquire`: a Ctrl-C due now gives it back.
                if let Err(e) = py.check_signals() {
                    // SAFETY: as in `unlock`: no typed guard exists in this
                    // process. This thread took the lock just above and has
                    // not released it (a signal handler that released it
                    // itself makes this a no-op: `unlock` checks ownership).
                    unsafe { seg.unlock(f) };
                    return Err(e);
                }
                return Ok(Some(poisoned));
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Releases the lock of locked field `path`; RuntimeError if this
    /// process does not hold it.
    fn unlock(&self, path: &str) -> PyResult<()> {
        let f = self.locked(path)?;
        // SAFETY: the contract is about typed guards anywhere in this
        // process: the Python package never makes a typed handle of a
        // segment it opened by schema, nor hands out a guard. (Another
        // Rust extension loaded into the same interpreter that locks this
        // very field through a typed handle would break it.)
        if unsafe { self.seg.unlock(&f) } {
            Ok(())
        } else {
            Err(pyo3::exceptions::PyRuntimeError::new_err("release unlocked lock"))
        }
    }

    /// The bytes of locked field `path`'s value (hold its lock).
    fn read_value<'py>(&self, py: Python<'py>, path: &str) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let f = self.locked(path)?;
        let bytes = self.seg.read_value(&f).ok_or_else(not_held)?;
        Ok(pyo3::types::PyBytes::new_bound(py, &bytes))
    }

    /// Writes the bytes of locked field `path`'s value (hold its lock).
    fn write_value(&self, path: &str, bytes: &[u8]) -> PyResult<()> {
        let f = self.locked(path)?;
        if bytes.len() as u64 != f.value_size() {
            return Err(PyValueError::new_err(format!("`{path}` holds {} bytes, not {}", f.value_size(), bytes.len())));
        }
        self.seg.write_value(&f, bytes).ok_or_else(not_held)
    }

    /// The state of lock, waiter or container field `path`, decoded from
    /// its words by the same decoder as the `shmem` CLI: a dict with
    /// `"kind"` and its numbers (a queue's up to `contents` oldest items and
    /// a map's first entries as bytes). A copy read without any lock.
    #[pyo3(signature = (path, contents=0))]
    fn state<'py>(&self, py: Python<'py>, path: &str, contents: usize) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        use shmem::FieldState as S;
        let state = self.seg.field_state(path, contents).ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(format!(
                "segment `{}` ({}) has no lock, waiter or container field `{path}`",
                self.seg.name(),
                self.seg.type_name()
            ))
        })?;
        let d = pyo3::types::PyDict::new_bound(py);
        let lock = |l: &shmem::LockState| -> PyResult<()> {
            d.set_item("held", l.held_by.is_some())?;
            d.set_item("poisoned", l.poisoned)
        };
        let bytes = |b: &[u8]| pyo3::types::PyBytes::new_bound(py, b);
        match &state {
            S::Mutex(l) => {
                d.set_item("kind", "lock")?;
                lock(l)?;
            }
            S::RwLock { lock: l, readers } => {
                d.set_item("kind", "rwlock")?;
                lock(l)?;
                d.set_item("readers", readers)?;
            }
            S::SeqLock { lock: l, writing } => {
                d.set_item("kind", "seqlock")?;
                lock(l)?;
                d.set_item("writing", writing)?;
            }
            S::Event { set } => {
                d.set_item("kind", "event")?;
                d.set_item("set", set)?;
            }
            S::Semaphore { available } => {
                d.set_item("kind", "semaphore")?;
                d.set_item("available", available)?;
            }
            S::Barrier { parties, arrived } => {
                d.set_item("kind", "barrier")?;
                d.set_item("parties", parties)?;
                d.set_item("arrived", arrived)?;
            }
            S::Condvar => d.set_item("kind", "condvar")?,
            S::Queue(q) => {
                d.set_item("kind", "queue")?;
                d.set_item("len", q.len)?;
                d.set_item("capacity", q.capacity)?;
                d.set_item("limit", q.limit)?;
                d.set_item("closed", q.closed)?;
                d.set_item("items", q.items.iter().map(|i| bytes(i)).collect::<Vec<_>>())?;
            }
            S::Map(m) => {
                d.set_item("kind", "map")?;
                d.set_item("len", m.len)?;
                d.set_item("capacity", m.capacity)?;
                let entries: Vec<_> = m.entries.iter().map(|(k, v)| (bytes(k), bytes(v))).collect();
                d.set_item("entries", entries)?;
            }
            _ => d.set_item("kind", "unknown")?,
        }
        Ok(d)
    }

    /// A consistent copy of `#[shared(seqlock)]` field `path`'s value bytes
    /// and whether it is poisoned; TimeoutError if a write stayed in
    /// progress for `timeout` seconds (default 1). Releases the GIL.
    #[pyo3(signature = (path, timeout=1.0))]
    fn read_seqlock<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        timeout: f64,
    ) -> PyResult<(Bound<'py, pyo3::types::PyBytes>, bool)> {
        let t = deadline_of(Some(timeout))?
            .map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
        let seg = &self.seg;
        match py.allow_threads(|| seg.read_seqlock(path, t)) {
            None => Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                "segment `{}` ({}) has no #[shared(seqlock)] field `{path}`",
                self.seg.name(),
                self.seg.type_name()
            ))),
            Some(Err(_)) => Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                "a write of `{path}` stayed in progress for {timeout} s (its writer is stopped, or died)"
            ))),
            Some(Ok((bytes, poisoned))) => Ok((pyo3::types::PyBytes::new_bound(py, &bytes), poisoned)),
        }
    }

    /// A consistent copy of `#[shared(rwlock)]` field `path`'s value bytes,
    /// taken under its read lock, and whether it is poisoned; TimeoutError
    /// if a writer kept it for `timeout` seconds (None: no limit). Releases
    /// the GIL; Ctrl-C interrupts the wait.
    #[pyo3(signature = (path, timeout=None))]
    fn read_rwlock<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        timeout: Option<f64>,
    ) -> PyResult<(Bound<'py, pyo3::types::PyBytes>, bool)> {
        let deadline = deadline_of(timeout)?;
        let seg = &self.seg;
        loop {
            let slice = slice_until(deadline);
            match py.allow_threads(|| seg.read_rwlock(path, slice)) {
                None => {
                    return Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                        "segment `{}` ({}) has no #[shared(rwlock)] field `{path}`",
                        seg.name(),
                        seg.type_name()
                    )))
                }
                Some(Ok((bytes, poisoned))) => return Ok((pyo3::types::PyBytes::new_bound(py, &bytes), poisoned)),
                Some(Err(_)) => {}
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                    "a writer kept `{path}` for {} s (this process, if it is inside `with s.locked({path:?})`)",
                    timeout.unwrap_or(0.0)
                )));
            }
        }
    }

    /// Marks locked field `path`'s value as repaired.
    fn clear_poison(&self, path: &str) -> PyResult<()> {
        let f = self.locked(path)?;
        self.seg.clear_poison(&f).ok_or_else(not_held)
    }

    /// Replaces element `i` of `path` with `f(value)` atomically (a CAS loop
    /// on the stored bits).
    fn update(&self, py: Python<'_>, path: &str, i: u64, fun: &Bound<'_, PyAny>) -> PyResult<()> {
        let f = self.field(path)?;
        let mut failed = None;
        let done = self.seg.update(&f, i, |current| {
            let result = fun.call1((dyn_to_py(py, current),)).and_then(|new| py_to_dyn(f.kind(), &new));
            match result {
                Ok(v) => Some(v),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        done.ok_or_else(|| out_of_range(path, i))
    }
}

/// The notification side of a `shmem.Condition` (its lock is a `RawLock`).
#[pyclass(module = "shmem._shmem")]
struct RawCondvar {
    seg: Segment<shmem::Condvar>,
}

segment_class! { RawCondvar, shmem::Condvar;
    #[new]
    #[pyo3(signature = (name=None))]
    fn new(name: Option<&str>) -> PyResult<Self> {
        let seg = create_segment(name, &shmem::Condvar::new())?;
        Ok(RawCondvar { seg })
    }

    fn sequence(&self) -> u32 {
        self.seg.sequence()
    }

    /// Waits for a notification after `seq` (None: no time limit); whether
    /// one came. Releases the GIL; Ctrl-C interrupts it.
    #[pyo3(signature = (seq, timeout=None))]
    fn wait_change(&self, py: Python<'_>, seq: u32, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline_of(timeout)?;
        loop {
            let slice = slice_until(deadline);
            let seg = &self.seg;
            if py.allow_threads(|| seg.wait_change(seq, slice)) {
                return Ok(true);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    fn notify(&self, n: usize) {
        for _ in 0..n {
            self.seg.notify_one();
        }
    }

    fn notify_all(&self) {
        self.seg.notify_all()
    }
}

/// What segment `name` holds, by its recorded type name (`"i32"`,
/// `"[f64; 3]"`, `"rawmutex"`, `"event"`, a struct's name).
#[pyfunction]
fn type_of(name: &str) -> PyResult<String> {
    Ok(shmem::inspect(name).map_err(to_py)?.header.type_name)
}

/// Removes the name of segment `name` (processes attached keep it).
#[pyfunction]
fn unlink(name: &str) -> PyResult<()> {
    shmem::unlink(name).map_err(to_py)
}

/// A cross-process counting semaphore: the storage of `shmem.Semaphore`.
#[pyclass(module = "shmem._shmem")]
struct RawSemaphore {
    seg: Segment<shmem::Semaphore>,
}

segment_class! { RawSemaphore, shmem::Semaphore;
    #[new]
    #[pyo3(signature = (value, name=None))]
    fn new(value: u32, name: Option<&str>) -> PyResult<Self> {
        let seg = create_segment(name, &shmem::Semaphore::new(value))?;
        Ok(RawSemaphore { seg })
    }

    /// Takes a permit: whether it got one (`timeout` None: no limit).
    /// Releases the GIL while waiting; Ctrl-C interrupts it.
    #[pyo3(signature = (blocking=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        semaphore_acquire(py, &self.seg, blocking, timeout)
    }

    fn release(&self) {
        self.seg.release()
    }

    fn value(&self) -> u32 {
        self.seg.available()
    }
}

/// A cross-process barrier: the storage of `shmem.Barrier`.
#[pyclass(module = "shmem._shmem")]
struct RawBarrier {
    seg: Segment<shmem::Barrier>,
}

segment_class! { RawBarrier, shmem::Barrier;
    #[new]
    #[pyo3(signature = (parties, name=None))]
    fn new(parties: u32, name: Option<&str>) -> PyResult<Self> {
        let seg = create_segment(name, &shmem::Barrier::new(parties))?;
        Ok(RawBarrier { seg })
    }

    #[getter]
    fn parties(&self) -> u32 {
        self.seg.parties()
    }

    /// Waits for every party: Some(is the one that completed the round), or
    /// None on timeout (this party then left the round). Releases the GIL;
    /// Ctrl-C interrupts it (leaving the round).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<bool>> {
        barrier_wait(py, &self.seg, timeout)
    }
}

/// `Semaphore.acquire`: a permit, waiting in slices with the GIL released
/// and signals checked between them.
fn semaphore_acquire(py: Python<'_>, sem: &shmem::Semaphore, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
    let deadline = deadline_of(timeout)?;
    // A permit taken: as for a lock (`RawLock::acquire`), the signal
    // handlers due now run here, where a Ctrl-C can still give it back.
    let took = || match py.check_signals() {
        Ok(()) => Ok(true),
        Err(e) => {
            sem.release();
            Err(e)
        }
    };
    if sem.try_acquire() {
        return took();
    }
    if !blocking {
        return Ok(false);
    }
    loop {
        let slice = slice_until(deadline);
        if py.allow_threads(|| sem.acquire_timeout(slice)).is_ok() {
            return took();
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

/// `Barrier.wait`: Some(is the leader), or None on timeout, waiting in
/// slices with the GIL released and signals checked between them.
fn barrier_wait(py: Python<'_>, barrier: &shmem::Barrier, timeout: Option<f64>) -> PyResult<Option<bool>> {
    let deadline = deadline_of(timeout)?;
    loop {
        let slice = slice_until(deadline);
        // A slice that times out leaves the round, and the next one joins
        // it again: the round completes with us either way.
        if let Ok(r) = py.allow_threads(|| barrier.wait_timeout(slice)) {
            return Ok(Some(r.is_leader()));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// An Event, Semaphore or Barrier field of a struct segment (what
/// `shmem.attach` finds in a `#[derive(Shared)]` struct): the same methods
/// as `RawEvent`, `RawSemaphore` and `RawBarrier`, on the field's words.
#[pyclass(module = "shmem._shmem")]
struct RawWaiterField {
    st: Py<RawStruct>,
    path: String,
}

impl RawWaiterField {
    fn missing(&self, kind: &str) -> PyErr {
        pyo3::exceptions::PyAttributeError::new_err(format!("`{}` is not a {kind} field", self.path))
    }
}

#[pymethods]
impl RawWaiterField {
    /// The waiter field `path` of struct segment `st`.
    #[new]
    fn new(st: Py<RawStruct>, path: String) -> Self {
        RawWaiterField { st, path }
    }

    /// The struct segment's name and the field's path (for pickling).
    #[getter]
    fn location(&self, py: Python<'_>) -> (String, String) {
        (self.st.borrow(py).seg.name().to_owned(), self.path.clone())
    }

    fn set(&self, py: Python<'_>) -> PyResult<()> {
        let st = self.st.borrow(py);
        st.seg.event(&self.path).ok_or_else(|| self.missing("event"))?.set();
        Ok(())
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let st = self.st.borrow(py);
        st.seg.event(&self.path).ok_or_else(|| self.missing("event"))?.clear();
        Ok(())
    }

    fn is_set(&self, py: Python<'_>) -> PyResult<bool> {
        let st = self.st.borrow(py);
        Ok(st.seg.event(&self.path).ok_or_else(|| self.missing("event"))?.is_set())
    }

    /// As `RawEvent.wait` for an event field, `RawBarrier.wait` for a barrier.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyObject> {
        let st = self.st.borrow(py);
        if let Some(event) = st.seg.event(&self.path) {
            return Ok(event_wait(py, event, timeout)?.into_py(py));
        }
        let barrier = st.seg.barrier(&self.path).ok_or_else(|| self.missing("event or barrier"))?;
        Ok(barrier_wait(py, barrier, timeout)?.into_py(py))
    }

    #[pyo3(signature = (blocking=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        let st = self.st.borrow(py);
        semaphore_acquire(py, st.seg.semaphore(&self.path).ok_or_else(|| self.missing("semaphore"))?, blocking, timeout)
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let st = self.st.borrow(py);
        st.seg.semaphore(&self.path).ok_or_else(|| self.missing("semaphore"))?.release();
        Ok(())
    }

    fn value(&self, py: Python<'_>) -> PyResult<u32> {
        let st = self.st.borrow(py);
        Ok(st.seg.semaphore(&self.path).ok_or_else(|| self.missing("semaphore"))?.available())
    }

    #[getter]
    fn parties(&self, py: Python<'_>) -> PyResult<u32> {
        let st = self.st.borrow(py);
        Ok(st.seg.barrier(&self.path).ok_or_else(|| self.missing("barrier"))?.parties())
    }
}

/// The Rust half of the `shmem` package.
#[pymodule]
fn _shmem(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RawValue>()?;
    m.add_class::<RawArray>()?;
    m.add_class::<ValueField>()?;
    m.add_class::<RawLock>()?;
    m.add_class::<RawEvent>()?;
    m.add_class::<RawDict>()?;
    m.add_class::<RawQueue>()?;
    m.add_class::<RawSemaphore>()?;
    m.add_class::<RawBarrier>()?;
    m.add_class::<RawStruct>()?;
    m.add_class::<RawWaiterField>()?;
    m.add_class::<RawCondvar>()?;
    m.add("STR_BYTES", STR_BYTES)?;
    m.add_function(wrap_pyfunction!(type_of, m)?)?;
    m.add_function(wrap_pyfunction!(unlink, m)?)?;
    m.add("LayoutMismatch", m.py().get_type_bound::<LayoutMismatch>())?;
    m.add("StaleSegment", m.py().get_type_bound::<StaleSegment>())?;
    Ok(())
}
