"""shmem: race-free shared memory for multiprocessing.

Drop-in replacements for multiprocessing's ``Value``, ``Array``, ``Lock`` and
``Event``, on the shared-memory segments of the Rust library shmem:

* ``val.value += 1`` and ``arr[i] += 1``, written exactly as in the
  multiprocessing tutorial, are single atomic read-modify-writes: no update
  is ever lost, with or without ``get_lock()``.
* Locks survive the death of their holder: a process killed while holding
  one does not block the others; the next ``acquire()`` gets it and sets
  ``lock.poisoned``.
* Objects pass to ``multiprocessing.Process(target=f, args=(val,))`` with
  any start method (an anonymous segment travels as a file descriptor, a
  named one by name), and never register with multiprocessing's resource
  tracker.
* Named segments (``name="stats"``) are the very segments a Rust program
  opens with ``Segment::<i64>::attach("stats")``; ``shmem.attach(name)``
  opens one that Rust created.

The layouts, atomics and locks are shmem's Rust ones (``shmem._shmem``);
this module only gives them multiprocessing's shapes.
"""

import contextlib
import ctypes
import os
import queue as _queue
import threading
from multiprocessing import reduction as _reduction

from . import _shmem
from ._shmem import LayoutMismatch, StaleSegment

__all__ = [
    "Value", "Array", "Lock", "RLock", "Event", "Semaphore", "Barrier", "Dict", "Queue", "attach", "unlink", "LayoutMismatch", "StaleSegment",
]

_CTYPES_CODES = {
    ctypes.c_byte: "b",
    ctypes.c_ubyte: "B",
    ctypes.c_short: "h",
    ctypes.c_ushort: "H",
    ctypes.c_int: "i",
    ctypes.c_uint: "I",
    ctypes.c_long: "l",
    ctypes.c_ulong: "L",
    ctypes.c_longlong: "q",
    ctypes.c_ulonglong: "Q",
    ctypes.c_float: "f",
    ctypes.c_double: "d",
}

# Type names recorded in segment headers (the Rust types) -> type codes.
_RUST_CODES = {
    "i8": "b", "u8": "B", "i16": "h", "u16": "H", "i32": "i", "u32": "I",
    "i64": "q", "u64": "Q", "f32": "f", "f64": "d",
}

_FLOAT_CODES = "fd"


def _code(typecode_or_type):
    """The array-module type code of a code or a ctypes type."""
    if isinstance(typecode_or_type, str):
        return typecode_or_type
    code = _CTYPES_CODES.get(typecode_or_type)
    if code is None:
        raise TypeError(f"unsupported type {typecode_or_type!r}: use a type code such as 'i' or 'd', or a ctypes number type")
    return code


# ---------------------------------------------------------------- atomic += on a field

class _Cell:
    """Where a number came from: a Value, or an element of an Array."""

    __slots__ = ("raw", "index")

    def __init__(self, raw, index):
        self.raw, self.index = raw, index

    def apply(self, op, other):
        if self.index is None:
            return self.raw.apply(op, other)
        return self.raw.apply(self.index, op, other)

    def load(self):
        return self.raw.load() if self.index is None else self.raw.load(self.index)

    def compare_exchange(self, current, new):
        if self.index is None:
            return self.raw.compare_exchange(current, new)
        return self.raw.compare_exchange(self.index, current, new)

    def update(self, fn):
        """Any read-modify-write, atomically (a compare-and-swap loop)."""
        current = self.load()
        while True:
            ok, seen = self.compare_exchange(current, fn(current))
            if ok:
                return fn(current)
            current = seen


def _make_bound(base):
    """An int (or float) subclass that remembers its cell, so that
    ``val.value += 1`` becomes one atomic update of the cell."""

    def atomic(op):
        def method(self, other):
            after = self._cell.apply(op, other)
            if after is NotImplemented:  # a plain update instead (dict: *= etc.)
                return NotImplemented
            return _applied(self._cell, after)
        return method

    def cas(fn):
        def method(self, other):
            after = self._cell.update(lambda v: fn(v, other))
            if after is NotImplemented:
                return NotImplemented
            return _applied(self._cell, after)
        return method

    ns = {
        "__iadd__": atomic("+"),
        "__isub__": atomic("-"),
        "__imul__": cas(lambda a, b: a * b),
        "__itruediv__": cas(lambda a, b: a / b),
        "__ifloordiv__": cas(lambda a, b: a // b),
        "__imod__": cas(lambda a, b: a % b),
        "__ipow__": cas(lambda a, b: a ** b),
    }
    if base is int:
        ns.update({
            "__iand__": atomic("&"),
            "__ior__": atomic("|"),
            "__ixor__": atomic("^"),
            "__ilshift__": cas(lambda a, b: a << b),
            "__irshift__": cas(lambda a, b: a >> b),
        })
    return type("Shared" + base.__name__.capitalize(), (base,), ns)


_BoundInt = _make_bound(int)
_BoundFloat = _make_bound(float)


def _make_fast_bound(base):
    """The base of a Value's own number class: in-place operators through
    the class's cell (a Value's class sets ``+=`` and ``-=`` itself)."""
    slow = _make_bound(base)

    def via_cell(name):
        method = getattr(slow, name)

        def run(self, other):
            r = method(self, other)
            return r if r is NotImplemented else self._applied(r)
        return run

    ns = {"__slots__": ()}
    for name in vars(slow):
        if name.startswith("__i") and name not in ns:
            ns[name] = via_cell(name)
    return type("Fast" + base.__name__, (base,), ns)


_FAST_BOUND = {int: _make_fast_bound(int), float: _make_fast_bound(float)}
_AppliedInt = type("AppliedInt", (int,), {})
_AppliedFloat = type("AppliedFloat", (float,), {})


def _bound(value, cell):
    b = (_BoundFloat if isinstance(value, float) else _BoundInt)(value)
    b._cell = cell
    return b


def _applied(cell, value):
    """The result of an in-place operator: the store that Python does next
    (``val.value = <this>``) recognises it and does nothing."""
    a = (_AppliedFloat if isinstance(value, float) else _AppliedInt)(value)
    a._cell = cell
    return a


def _is_applied_to(value, raw, index):
    cell = getattr(value, "_cell", None)
    return type(value) in (_AppliedInt, _AppliedFloat) and cell.raw is raw and cell.index == index


# ---------------------------------------------------------------- pickling

class _Shared:
    """Pickling for the handles: a named segment travels by name, an
    anonymous one as a file descriptor (multiprocessing passes it to the
    child, with any start method)."""

    _fd = None

    def _ref(self):
        raw = self._raw
        if raw.name is not None:
            return ("name", raw.name)
        if self._fd is None:
            self._fd = raw.share_fd()  # kept open: the spawner dups it late
        return ("fd", _reduction.DupFd(self._fd))

    def __del__(self):
        fd = self._fd
        if fd is not None:
            self._fd = None
            with contextlib.suppress(OSError):
                os.close(fd)


def _open(cls_attach, cls_attach_fd, ref, *code):
    kind, what = ref
    if kind == "name":
        return cls_attach(*code, what)
    fd = what.detach()
    try:
        return cls_attach_fd(*code, fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- Lock, Event

class Lock(_Shared):
    """A cross-process lock that survives its holder's death:
    ``multiprocessing.Lock()``, crash-safe.

    If the previous holder died holding it, ``acquire()`` still succeeds
    and sets ``poisoned`` (the data it guards may be half-updated).
    """

    def __init__(self, *, name=None, _raw=None):
        self._raw = _raw if _raw is not None else _shmem.RawLock(name)
        self.poisoned = False

    def acquire(self, block=True, timeout=None):
        got = self._raw.acquire(block, -1.0 if timeout is None else float(timeout))
        if got is None:
            return False
        if got:
            self.poisoned = True
        return True

    def release(self):
        self._raw.release()

    def locked(self):
        return self._raw.locked()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def __reduce__(self):
        return (_rebuild_lock, (self._ref(),))

    def __repr__(self):
        return f"<shmem.Lock({'locked' if self.locked() else 'unlocked'})>"


def _rebuild_lock(ref):
    return Lock(_raw=_open(_shmem.RawLock.attach, _shmem.RawLock.attach_fd, ref))


class RLock(Lock):
    """``multiprocessing.RLock()``: a crash-safe lock the holding thread may
    take again (what ``Value`` and ``Array`` use, as multiprocessing does,
    so that ``with arr.get_lock(): arr[:]`` works)."""

    def __init__(self, *, name=None, _raw=None):
        super().__init__(name=name, _raw=_raw)
        self._owner, self._count = None, 0

    def acquire(self, block=True, timeout=None):
        me = threading.get_ident()
        if self._owner == me:
            self._count += 1
            return True
        if not super().acquire(block, timeout):
            return False
        self._owner, self._count = me, 1
        return True

    def release(self):
        if self._owner != threading.get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            super().release()

    def __reduce__(self):
        return (_rebuild_rlock, (self._ref(),))

    def __repr__(self):
        return f"<shmem.RLock({'locked' if self.locked() else 'unlocked'})>"


def _rebuild_rlock(ref):
    return RLock(_raw=_open(_shmem.RawLock.attach, _shmem.RawLock.attach_fd, ref))


class Event(_Shared):
    """``multiprocessing.Event()`` on shared memory."""

    def __init__(self, *, name=None, _raw=None):
        self._raw = _raw if _raw is not None else _shmem.RawEvent(name)

    def set(self):
        self._raw.set()

    def clear(self):
        self._raw.clear()

    def is_set(self):
        return self._raw.is_set()

    def wait(self, timeout=None):
        return self._raw.wait(timeout)

    def __reduce__(self):
        return (_rebuild_event, (self._ref(),))

    def __repr__(self):
        return f"<shmem.Event({'set' if self.is_set() else 'unset'})>"


def _rebuild_event(ref):
    return Event(_raw=_open(_shmem.RawEvent.attach, _shmem.RawEvent.attach_fd, ref))


class Semaphore(_Shared):
    """``multiprocessing.Semaphore(value)`` on shared memory."""

    def __init__(self, value=1, *, name=None, _raw=None):
        self._raw = _raw if _raw is not None else _shmem.RawSemaphore(value, name)

    def acquire(self, block=True, timeout=None):
        return self._raw.acquire(block, -1.0 if timeout is None else float(timeout))

    def release(self):
        self._raw.release()

    def get_value(self):
        return self._raw.value()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def __reduce__(self):
        return (_rebuild_semaphore, (self._ref(),))

    def __repr__(self):
        return f"<shmem.Semaphore(value={self.get_value()})>"


def _rebuild_semaphore(ref):
    return Semaphore(_raw=_open(_shmem.RawSemaphore.attach, _shmem.RawSemaphore.attach_fd, ref))


class Barrier(_Shared):
    """``multiprocessing.Barrier(parties)`` on shared memory. ``wait()``
    returns 0 in the party that completed the round and 1 in the others
    (multiprocessing numbers them all); a timeout raises
    ``threading.BrokenBarrierError`` and leaves the round (the barrier
    stays usable)."""

    def __init__(self, parties, *, name=None, _raw=None):
        self._raw = _raw if _raw is not None else _shmem.RawBarrier(parties, name)

    @property
    def parties(self):
        return self._raw.parties

    def wait(self, timeout=None):
        r = self._raw.wait(timeout)
        if r is None:
            raise threading.BrokenBarrierError
        return 0 if r else 1

    def __reduce__(self):
        return (_rebuild_barrier, (self._ref(),))

    def __repr__(self):
        return f"<shmem.Barrier(parties={self.parties})>"


def _rebuild_barrier(ref):
    return Barrier(None, _raw=_open(_shmem.RawBarrier.attach, _shmem.RawBarrier.attach_fd, ref))


def _make_lock(lock, name):
    if lock is True:
        return RLock(name=None if name is None else name + ".lock")
    if lock is False or lock is None:
        return None
    return lock


# ---------------------------------------------------------------- Value

class Value(_Shared):
    """``multiprocessing.Value(typecode_or_type, value, lock=True)``, where
    ``val.value += 1`` is one atomic update that never loses a count.

    ``val.value`` is a number (an ``int`` or ``float`` subclass) that
    remembers where it came from, so that the in-place operators (``+= -=
    *= /= //= %= **= &= |= ^= <<= >>=``) update the shared value atomically.
    ``int(val.value)`` is a plain copy. ``get_lock()`` is a crash-safe lock
    for updates of several values together.

    With ``name=...`` the segment is named: a Rust program attaches with
    ``Segment::<i32>::attach(name)`` (type code ``'i'`` is ``i32``, ``'d'``
    is ``f64``, ...).
    """

    def __init__(self, typecode_or_type, *args, lock=True, name=None, _raw=None, _lock=None):
        if _raw is not None:
            self._raw, self._lock = _raw, _lock
            self._classes()
            return
        code = _code(typecode_or_type)
        init = args[0] if args else (0.0 if code in _FLOAT_CODES else 0)
        self._raw = _shmem.RawValue(code, init, name)
        self._lock = _make_lock(lock, name)
        self._classes()

    def _classes(self):
        """This value's own number classes: a read (``SharedInt``) and the
        result of an in-place operator on it (``Applied``). ``+=`` and
        ``-=`` are the Rust handle's own methods (no Python frame runs for
        ``val.value += 1``); the other operators go through a cell."""
        raw = self._raw
        base = float if raw.code in _FLOAT_CODES else int
        applied = type("Applied", (base,), {"__slots__": ()})
        bound = type("Shared" + base.__name__.capitalize(), (_FAST_BOUND[base],), {
            "__slots__": (), "_cell": _Cell(raw, None), "_applied": applied,
            "__iadd__": raw.iadd, "__isub__": raw.isub,
        })
        raw.set_classes(bound, applied)
        self._bound_cls, self._applied_cls = bound, applied

    # Reading gives this value's own number class; storing the result of an
    # in-place operator on it does nothing (the operator already updated
    # the value, atomically). A descriptor written in Rust: no Python frame.
    value = _shmem.ValueField()

    @property
    def typecode(self):
        return self._raw.code

    @property
    def name(self):
        """The segment name (None: anonymous)."""
        return self._raw.name

    def get_lock(self):
        if self._lock is None:
            raise AttributeError("this Value was made with lock=False")
        return self._lock

    def get_obj(self):
        return self

    def __reduce__(self):
        lock = self._lock
        return (_rebuild_value, (self._raw.code, self._ref(), lock))

    def __repr__(self):
        return f"<shmem.Value({self._raw.code!r}, {self._raw.load()!r})>"


def _rebuild_value(code, ref, lock):
    return Value(None, _raw=_open(_shmem.RawValue.attach, _shmem.RawValue.attach_fd, ref, code), _lock=lock)


# ---------------------------------------------------------------- Array

class _LockedView:
    """The elements of an Array while its lock is held (``with arr.lock()
    as a:``); unusable once the block ends."""

    def __init__(self, array):
        self._array, self._open = array, True

    def _check(self):
        if not self._open:
            raise RuntimeError("this view of the array was only valid inside its `with` block")

    def __len__(self):
        self._check()
        return len(self._array)

    def __getitem__(self, i):
        self._check()
        return self._array[i]

    def __setitem__(self, i, v):
        self._check()
        self._array[i] = v

    def __iter__(self):
        self._check()
        return iter(self._array[:])


class Array(_Shared):
    """``multiprocessing.Array(typecode_or_type, size_or_initializer,
    lock=True)``, where ``arr[i] += 1`` is one atomic update.

    ``arr[:]`` is a copy taken under the array's lock (consistent with
    writers that hold the lock). ``with arr.lock() as a:`` holds it and
    gives a view that cannot be used after the block.

    With ``name=...`` a Rust program attaches with
    ``Segment::<[i32; N]>::attach(name)`` (or ``ArraySegment::<i32>``).
    """

    def __init__(self, typecode_or_type, size_or_initializer, *, lock=True, name=None, _raw=None, _lock=None):
        if _raw is not None:
            self._raw, self._lock = _raw, _lock
            return
        code = _code(typecode_or_type)
        if isinstance(size_or_initializer, int):
            init = [0.0 if code in _FLOAT_CODES else 0] * size_or_initializer
        else:
            init = list(size_or_initializer)
        self._raw = _shmem.RawArray(code, init, name)
        self._lock = _make_lock(lock, name)

    def __len__(self):
        return len(self._raw)

    def _index(self, i):
        n = len(self._raw)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("array index out of range")
        return i

    def __getitem__(self, i):
        if isinstance(i, slice):
            with self._locked():
                values = self._raw.to_list()
            return values[i]
        i = self._index(i)
        return _bound(self._raw.load(i), _Cell(self._raw, i))

    def __setitem__(self, i, v):
        if isinstance(i, slice):
            indices = range(*i.indices(len(self._raw)))
            values = list(v)
            if len(values) != len(indices):
                raise ValueError("can only assign a sequence of the same length to an array slice")
            with self._locked():
                for j, x in zip(indices, values):
                    self._raw.store(j, x)
            return
        i = self._index(i)
        if _is_applied_to(v, self._raw, i):
            return
        self._raw.store(i, v)

    def __iter__(self):
        return iter(self[:])

    def _locked(self):
        return self._lock if self._lock is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def lock(self):
        """Holds the array's lock for the block; yields a view of the
        elements that is invalid after it."""
        with self.get_lock():
            view = _LockedView(self)
            try:
                yield view
            finally:
                view._open = False

    @property
    def typecode(self):
        return self._raw.code

    @property
    def name(self):
        return self._raw.name

    def get_lock(self):
        if self._lock is None:
            raise AttributeError("this Array was made with lock=False")
        return self._lock

    def get_obj(self):
        return self

    def __reduce__(self):
        return (_rebuild_array, (self._raw.code, self._ref(), self._lock))

    def __repr__(self):
        return f"<shmem.Array({self._raw.code!r}, {self._raw.to_list()!r})>"


def _rebuild_array(code, ref, lock):
    return Array(None, None, _raw=_open(_shmem.RawArray.attach, _shmem.RawArray.attach_fd, ref, code), _lock=lock)


# ---------------------------------------------------------------- Dict

_TYPES = {int: "int", float: "float", str: "str", "int": "int", "float": "float", "str": "str"}


def _type_name(t, what):
    name = _TYPES.get(t)
    if name is None:
        raise TypeError(f"{what} type {t!r}: use int, float or str (str: up to {_shmem.STR_BYTES} UTF-8 bytes)")
    return name


class _DictCell:
    """A dict entry, for ``d[k] += 1`` in one step."""

    __slots__ = ("raw", "index")

    def __init__(self, raw, key):
        self.raw, self.index = raw, key

    def apply(self, op, other):
        if op == "-":
            other = -other
        elif op != "+":
            return NotImplemented
        after = self.raw.add(self.index, other)
        if after is None:
            raise KeyError(self.index)
        return after

    def update(self, fn):
        return NotImplemented


def _dict_bound(value, raw, key):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _bound(value, _DictCell(raw, key))
    return value


class Dict(_Shared):
    """A dict shared by processes, like ``multiprocessing.Manager().dict()``
    but with no server process: every operation is a lock-striped update of
    shared memory.

    Keys are ``int`` or ``str``; values ``int``, ``float`` or ``str`` (a
    ``str`` holds up to 64 UTF-8 bytes), declared when it is made; its
    capacity is fixed (rounded up to 64, 1024 or 16384 entries). ``d[k] +=
    1`` on a number is one atomic update. Iteration and ``repr`` are in key
    order (a shared dict has no insertion order).

    With ``name=...`` a Rust program attaches with
    ``Segment::<Map<i64, i64, 1024>>::attach(name)`` (``str`` is ``Str<64>``).
    """

    def __init__(self, key=int, value=int, capacity=1024, *, name=None, _raw=None):
        if _raw is not None:
            self._raw = _raw
            return
        self._raw = _shmem.RawDict(_type_name(key, "key"), _type_name(value, "value"), capacity, name)

    def __getitem__(self, k):
        v = self._raw.get(k)
        if v is None:
            raise KeyError(k)
        return _dict_bound(v, self._raw, k)

    def __setitem__(self, k, v):
        cell = getattr(v, "_cell", None)
        if type(v) in (_AppliedInt, _AppliedFloat) and isinstance(cell, _DictCell) and cell.raw is self._raw and cell.index == k:
            return
        self._raw.set(k, v)

    def __delitem__(self, k):
        if self._raw.remove(k) is None:
            raise KeyError(k)

    def __contains__(self, k):
        return self._raw.get(k) is not None

    def __len__(self):
        return len(self._raw)

    def __iter__(self):
        return iter(self.keys())

    def get(self, k, default=None):
        v = self._raw.get(k)
        return default if v is None else v

    def _sorted_items(self):
        return sorted(self._raw.items(), key=lambda kv: kv[0])

    def items(self):
        return self._sorted_items()

    def keys(self):
        return [k for k, _ in self._sorted_items()]

    def values(self):
        return [v for _, v in self._sorted_items()]

    _MISSING = object()

    def pop(self, k, default=_MISSING):
        v = self._raw.remove(k)
        if v is None:
            if default is Dict._MISSING:
                raise KeyError(k)
            return default
        return v

    def setdefault(self, k, default):
        return self._raw.setdefault(k, default)

    def update(self, other=(), **kw):
        items = other.items() if hasattr(other, "items") else other
        for k, v in items:
            self[k] = v
        for k, v in kw.items():
            self[k] = v

    def clear(self):
        self._raw.clear()

    def copy(self):
        return dict(self._sorted_items())

    @property
    def name(self):
        return self._raw.name

    @property
    def capacity(self):
        return self._raw.capacity

    def __eq__(self, other):
        return self.copy() == (other.copy() if isinstance(other, Dict) else other)

    def __reduce__(self):
        r = self._raw
        return (_rebuild_dict, (r.key_type, r.value_type, r.capacity, self._ref()))

    def __repr__(self):
        return repr(self.copy())


def _rebuild_dict(key, value, capacity, ref):
    return Dict(_raw=_open(_shmem.RawDict.attach, _shmem.RawDict.attach_fd, ref, key, value, capacity))


# ---------------------------------------------------------------- Queue

class Queue(_Shared):
    """``multiprocessing.Queue(maxsize)`` on shared memory: no pickling, no
    feeder thread; ``put`` and ``get`` move a plain value in one step.

    Items are ``int``, ``float`` or ``str`` (up to 64 UTF-8 bytes), declared
    when it is made (``item=int``). Raises ``queue.Full`` and
    ``queue.Empty`` as multiprocessing does. ``maxsize=0`` (no limit in
    multiprocessing) holds 16384 items; a limit rounds up to 64, 1024 or
    16384 slots, and ``full()`` reports the limit asked for.
    """

    def __init__(self, maxsize=0, *, item=int, name=None, _raw=None, _maxsize=None):
        if _raw is not None:
            self._raw, self._maxsize = _raw, _maxsize
            return
        self._maxsize = maxsize if maxsize and maxsize > 0 else 0
        self._raw = _shmem.RawQueue(_type_name(item, "item"), self._maxsize or 16384, name)

    def put(self, obj, block=True, timeout=None):
        r = self._raw.push(obj, timeout if block else 0.0)
        if r == "full":
            raise _queue.Full
        if r == "closed":
            raise ValueError("Queue is closed")

    def put_nowait(self, obj):
        self.put(obj, False)

    def get(self, block=True, timeout=None):
        ok, item = self._raw.pop(timeout if block else 0.0)
        if ok:
            return item
        if item == "closed":
            raise ValueError("Queue is closed")
        raise _queue.Empty

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        return len(self._raw)

    def empty(self):
        return len(self._raw) == 0

    def full(self):
        limit = self._maxsize or self._raw.capacity
        return len(self._raw) >= limit

    def close(self):
        """No more puts; gets drain what is left, then raise ValueError."""
        self._raw.close()

    def join_thread(self):
        """Nothing to wait for: there is no feeder thread."""

    def cancel_join_thread(self):
        """Nothing to cancel: there is no feeder thread."""

    @property
    def name(self):
        return self._raw.name

    def __reduce__(self):
        r = self._raw
        return (_rebuild_queue, (r.item_type, r.capacity, self._maxsize, self._ref()))

    def __repr__(self):
        return f"<shmem.Queue({self._raw.item_type}, {len(self._raw)} of {self._raw.capacity})>"


def _rebuild_queue(item, capacity, maxsize, ref):
    raw = _open(_shmem.RawQueue.attach, _shmem.RawQueue.attach_fd, ref, item, capacity)
    return Queue(_raw=raw, _maxsize=maxsize)


# ---------------------------------------------------------------- by name

def attach(name):
    """Opens named segment ``name``, whatever created it (Python, or a Rust
    program), from the type recorded in it: a scalar gives a ``Value``
    (without lock), ``[T; N]`` an ``Array``, a lock a ``Lock``, an event an
    ``Event``. Raises ``FileNotFoundError`` if there is none, and
    ``LayoutMismatch`` for a type this module cannot open yet (a struct)."""
    type_name = _shmem.type_of(name)
    if type_name in _RUST_CODES:
        return Value(None, _raw=_shmem.RawValue.attach(_RUST_CODES[type_name], name), _lock=None)
    if type_name.startswith("[") and ";" in type_name:
        elem = type_name[1:type_name.index(";")]
        if elem in _RUST_CODES:
            return Array(None, None, _raw=_shmem.RawArray.attach(_RUST_CODES[elem], name), _lock=None)
    if type_name == "rawmutex":
        return Lock(_raw=_shmem.RawLock.attach(name))
    if type_name == "event":
        return Event(_raw=_shmem.RawEvent.attach(name))
    raise LayoutMismatch(f"segment `{name}` holds `{type_name}`, which shmem for Python cannot open yet")


def unlink(name):
    """Removes segment name ``name`` (processes attached keep using it)."""
    _shmem.unlink(name)
