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
    "Value", "Array", "Lock", "RLock", "Condition", "Event", "Semaphore", "Barrier", "Dict", "Queue", "Struct", "attach", "unlink", "LayoutMismatch", "StaleSegment",
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
#
# Python runs `val.value += 1` as: read `val.value`, call `__iadd__` on
# what was read, store the result back into `val.value`. A number read
# from shared memory (SharedInt / SharedFloat) remembers where it came
# from; its in-place operators compute the result as for any number, and
# return a Pending number that also carries the update since the read.
# Storing a Pending number back into the place it was read from applies
# there, atomically, what its chain of updates has not applied yet (so
# `n += 1; val.value = n` in a loop adds 1 each time, and storing two
# numbers of one chain never applies a step twice). Anything else is an
# ordinary number: `x = val.value; x += 1` changes nothing shared unless
# `x` is stored back into `val.value`.
#
# A Pending number's `_p` is (record, total, ops). `record` is
# `[cell, applied]`, shared by every number derived from one read:
# `applied` is the addition already applied, or None once a general
# update was. `total` is this number's addition since the read (`ops` is
# None), or `ops` the list of (function, argument) steps since the read.

class _Cell:
    """Where a number came from: a Value, or an element of an Array."""

    __slots__ = ("raw", "index")

    def __init__(self, raw, index):
        self.raw, self.index = raw, index

    def same(self, other):
        return other is self or (other.raw is self.raw and other.index == self.index)

    def store(self, v):
        if self.index is None:
            self.raw.store(v)
        else:
            self.raw.store(self.index, v)

    def add(self, delta):
        if self.index is None:
            self.raw.add_delta(delta)
        else:
            self.raw.add_delta(self.index, delta)

    def update(self, fn):
        """`fn` applied atomically (a compare-and-swap loop, in Rust)."""
        if self.index is None:
            self.raw.update(fn)
        else:
            self.raw.update(self.index, fn)


class _DictCell(_Cell):
    """A dict entry: += and -= are one update of the entry; other operators
    are ordinary stores (a shared dict has no compare-and-swap)."""

    __slots__ = ()

    def store(self, v):
        self.raw.set(self.index, v)

    def add(self, delta):
        if self.raw.add(self.index, delta) is None:
            raise KeyError(self.index)

    def update(self, fn):
        raise _NotAtomic


class _NotAtomic(Exception):
    pass


def _add(a, b):
    return a + b


_OPS = {
    "mul": lambda a, b: a * b,
    "truediv": lambda a, b: a / b,
    "floordiv": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "pow": lambda a, b: a ** b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "lshift": lambda a, b: a << b,
    "rshift": lambda a, b: a >> b,
}
_INT_ONLY = {"and", "or", "xor", "lshift", "rshift"}


def _pending(result, p):
    q = (_PendingFloat if isinstance(result, float) else _PendingInt)(result)
    q._p = p
    return q


def _number_classes(base):
    """SharedInt and PendingInt (or the float pair): a number read from
    shared memory, and the result of an in-place operator on one."""
    add, sub = base.__add__, base.__sub__

    def chain(self):
        """(record, total, ops) of this number: a fresh chain for a read."""
        p = self.__dict__.get("_p")
        return p if p is not None else ([self._cell, 0], 0, None)

    def additive(sign):
        plain = add if sign > 0 else sub

        def method(self, other):
            r = plain(self, other)
            if r is NotImplemented:
                r = base(self) + other if sign > 0 else base(self) - other
            rec, total, ops = chain(self)
            step = other if sign > 0 else -other
            if ops is None:
                return _pending(r, (rec, total + step, None))
            return _pending(r, (rec, None, ops + [(_add, step)]))
        return method

    def general(name):
        fn = _OPS[name]

        def method(self, other):
            r = fn(base(self), other)
            rec, total, ops = chain(self)
            if ops is None:
                ops = [(_add, total)] if total else []
            return _pending(r, (rec, None, ops + [(fn, other)]))
        return method

    ns = {
        "__iadd__": additive(+1),
        "__isub__": additive(-1),
        "__reduce__": lambda self: (base, (base(self),)),
        "__copy__": lambda self: base(self),
        "__deepcopy__": lambda self, memo: base(self),
    }
    for name in _OPS:
        if not (base is float and name in _INT_ONLY):
            ns[f"__i{name}__"] = general(name)
    pending = type("Pending" + base.__name__.capitalize(), (base,), dict(ns))

    # The common case, `val.value += 1` on a number just read: as few steps
    # as Python allows.
    def shared_iadd(self, other):
        r = add(self, other)
        if r is NotImplemented:
            return ns["__iadd__"](self, other)
        q = pending(r)
        q._p = ([self._cell, 0], other, None)
        return q

    shared = type("Shared" + base.__name__.capitalize(), (base,), dict(ns, __iadd__=shared_iadd))
    return shared, pending


_SharedInt, _PendingInt = _number_classes(int)
_SharedFloat, _PendingFloat = _number_classes(float)
_STORE_LOCK = threading.Lock()


def _bound(value, cell):
    """A number read from `cell`."""
    b = (_SharedFloat if type(value) is float else _SharedInt)(value)
    b._cell = cell
    return b


def _store(cell, v):
    """Stores `v` into `cell`. A Pending number read from this very cell
    applies there, atomically, what its chain has not applied yet."""
    t = type(v)
    if t is _PendingInt or t is _PendingFloat:
        rec, total, ops = v._p
        with _STORE_LOCK:  # one thread at a time settles a chain's record
            if rec[0].same(cell) and rec[1] is not None:
                if ops is None:
                    delta = total - rec[1]
                    rec[1] = total
                    if delta:
                        cell.add(delta)
                    return
                if rec[1] == 0:
                    rec[1] = None  # a general update applies once, whole

                    def fn(x, steps=ops):
                        for f, arg in steps:
                            x = f(x, arg)
                        return x
                    try:
                        cell.update(fn)
                        return
                    except _NotAtomic:
                        pass
        v = float(v) if t is _PendingFloat else int(v)
    cell.store(v)


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

    # The Rust handle class (`attach`, `attach_fd`) of a class whose only
    # shared state is its handle; such a class pickles through `_rebuild`.
    _RAW = None

    def __reduce__(self):
        return (_rebuild, (type(self), self._ref()))

    @classmethod
    def _from_raw(cls, raw):
        return cls(_raw=raw)

    def __del__(self):
        fd = self._fd
        if fd is not None:
            self._fd = None
            with contextlib.suppress(OSError):
                os.close(fd)


def _rebuild(cls, ref):
    return cls._from_raw(_open(cls._RAW.attach, cls._RAW.attach_fd, ref))


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

    _RAW = _shmem.RawLock

    def __init__(self, *, name=None, _raw=None):
        self._raw = _raw if _raw is not None else _shmem.RawLock(name)
        self.poisoned = False

    def acquire(self, block=True, timeout=None):
        got = self._raw.acquire(block, None if timeout is None else float(timeout))
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

    def __repr__(self):
        return f"<shmem.Lock({'locked' if self.locked() else 'unlocked'})>"


class RLock(Lock):
    """``multiprocessing.RLock()``: a crash-safe lock the holding thread may
    take again (what ``Value`` and ``Array`` use, as multiprocessing does,
    so that ``with arr.get_lock(): arr[:]`` works)."""

    def __init__(self, *, name=None, _raw=None):
        super().__init__(name=name, _raw=_raw)
        self._owner, self._count = None, 0

    @staticmethod
    def _me():
        # The process too: a child forked while this thread held the lock
        # has the same thread id, but does not hold the lock.
        return (os.getpid(), threading.get_ident())

    def acquire(self, block=True, timeout=None):
        me = self._me()
        if self._owner == me:
            self._count += 1
            return True
        if not super().acquire(block, timeout):
            return False
        self._owner, self._count = me, 1
        return True

    def release(self):
        if self._owner != self._me():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            super().release()

    def __repr__(self):
        return f"<shmem.RLock({'locked' if self.locked() else 'unlocked'})>"


class Event(_Shared):
    """``multiprocessing.Event()`` on shared memory."""

    _RAW = _shmem.RawEvent

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

    def __repr__(self):
        return f"<shmem.Event({'set' if self.is_set() else 'unset'})>"


class Condition(_Shared):
    """``multiprocessing.Condition(lock=None)`` on shared memory: a
    condition variable with its lock (an ``RLock`` unless one is given)."""

    def __init__(self, lock=None, *, name=None, _raw=None):
        if _raw is not None:
            self._raw, self._lock = _raw, lock
            return
        self._lock = lock if lock is not None else RLock(name=None if name is None else name + ".lock")
        self._raw = _shmem.RawCondvar(name)

    def acquire(self, block=True, timeout=None):
        return self._lock.acquire(block, timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    def wait(self, timeout=None):
        """Releases the lock, waits for a notification (or the timeout),
        takes the lock again; whether it was notified."""
        lock = self._lock
        if isinstance(lock, RLock):
            if lock._owner != RLock._me():
                raise RuntimeError("cannot wait on un-acquired lock")
            count = lock._count
            seq = self._raw.sequence()
            lock._owner, lock._count = None, 0
            Lock.release(lock)
        else:
            seq = self._raw.sequence()
            lock.release()
        try:
            return self._raw.wait_change(seq, timeout)
        finally:
            # Take the lock back whatever happens: the caller's `with`
            # block will release it. A Ctrl-C (or a signal handler's
            # exception) during the wait for it gives it back in the Rust
            # call; it is raised once the lock is ours again.
            interrupted = None
            while True:
                try:
                    Lock.acquire(lock)
                    break
                except BaseException as e:  # noqa: B036 (re-raised below)
                    interrupted = e
            if isinstance(lock, RLock):
                lock._owner, lock._count = RLock._me(), count
            if interrupted is not None:
                raise interrupted

    def wait_for(self, predicate, timeout=None):
        """Waits until ``predicate()`` is true (or the timeout); its last value."""
        import time as _time

        end = None if timeout is None else _time.monotonic() + timeout
        result = predicate()
        while not result:
            remaining = None if end is None else end - _time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n=1):
        self._raw.notify(n)

    def notify_all(self):
        self._raw.notify_all()

    def __reduce__(self):
        return (_rebuild_condition, (self._ref(), self._lock))

    def __repr__(self):
        return "<shmem.Condition>"


def _rebuild_condition(ref, lock):
    return Condition(lock, _raw=_open(_shmem.RawCondvar.attach, _shmem.RawCondvar.attach_fd, ref))


class Semaphore(_Shared):
    """``multiprocessing.Semaphore(value)`` on shared memory."""

    _RAW = _shmem.RawSemaphore

    def __init__(self, value=1, *, name=None, _raw=None):
        self._raw = _raw if _raw is not None else _shmem.RawSemaphore(value, name)

    def acquire(self, block=True, timeout=None):
        return self._raw.acquire(block, None if timeout is None else float(timeout))

    def release(self):
        self._raw.release()

    def get_value(self):
        return self._raw.value()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return f"<shmem.Semaphore(value={self.get_value()})>"


class Barrier(_Shared):
    """``multiprocessing.Barrier(parties)`` on shared memory. ``wait()``
    returns 0 in the party that completed the round and 1 in the others
    (multiprocessing numbers them all); a timeout raises
    ``threading.BrokenBarrierError`` and leaves the round (the barrier
    stays usable)."""

    _RAW = _shmem.RawBarrier

    def __init__(self, parties, *, name=None, _raw=None):
        self._raw = _raw if _raw is not None else _shmem.RawBarrier(parties, name)

    @classmethod
    def _from_raw(cls, raw):
        return cls(None, _raw=raw)

    @property
    def parties(self):
        return self._raw.parties

    def wait(self, timeout=None):
        r = self._raw.wait(timeout)
        if r is None:
            raise threading.BrokenBarrierError
        return 0 if r else 1

    def __repr__(self):
        return f"<shmem.Barrier(parties={self.parties})>"


def _make_lock(lock, name):
    if lock is True:
        return RLock(name=None if name is None else name + ".lock")
    if lock is False or lock is None:
        return None
    return lock


# ---------------------------------------------------------------- Value

class _Synchronized(_Shared):
    """What ``Value`` and ``Array`` share with multiprocessing's
    synchronized wrappers: the type code, the name, the lock."""

    @property
    def typecode(self):
        return self._raw.code

    @property
    def name(self):
        """The segment name (None: anonymous)."""
        return self._raw.name

    def get_lock(self):
        if self._lock is None:
            raise AttributeError(f"this {type(self).__name__} was made with lock=False")
        return self._lock

    def get_obj(self):
        return self


class Value(_Synchronized):
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
            self._cell = _Cell(self._raw, None)
            self._number = _SharedFloat if _raw.code in _FLOAT_CODES else _SharedInt
            return
        code = _code(typecode_or_type)
        init = args[0] if args else (0.0 if code in _FLOAT_CODES else 0)
        self._raw = _shmem.RawValue(code, init, name)
        self._lock = _make_lock(lock, name)
        self._cell = _Cell(self._raw, None)
        self._number = _SharedFloat if code in _FLOAT_CODES else _SharedInt

    # Reading gives a number that remembers this value; storing back the
    # result of an in-place operator on it applies that update atomically,
    # once (see `_store`). A descriptor written in Rust: the fast path of
    # `val.value += 1` runs no Python frame of its own.
    value = _shmem.ValueField(_PendingInt, _PendingFloat, _store)

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


class Array(_Synchronized):
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
        _store(_Cell(self._raw, self._index(i)), v)

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


def _dict_bound(value, raw, key):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _bound(value, _DictCell(raw, key))
    return value


class Dict(_Shared):
    """A dict shared by processes, like ``multiprocessing.Manager().dict()``
    but with no server process: every operation is a lock-striped update of
    shared memory.

    Keys are ``int`` or ``str``; values ``int``, ``float`` or ``str`` (a
    ``str`` holds up to 64 UTF-8 bytes), declared when it is made. It holds
    ``capacity`` entries (up to 8192): the shared map gets twice as many
    slots, since it fills shard by shard. ``d[k] += 1`` on a number is one
    atomic update of the entry (other in-place operators, and ``+=`` on a
    ``str`` value, are a read and a store, as with ``Manager().dict()``). Iteration and ``repr`` are in key
    order (a shared dict has no insertion order).

    With ``name=...`` a Rust program attaches with
    ``Segment::<Map<i64, i64, 1024>>::attach(name)`` (``str`` is ``Str<64>``).
    """

    def __init__(self, key=int, value=int, capacity=512, *, name=None, _raw=None):
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
        _store(_DictCell(self._raw, k), v)

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
        """How many slots the shared map has (twice the entries asked for)."""
        return self._raw.capacity

    @property
    def poisoned(self):
        """Whether a process died in the middle of updating an entry."""
        return self._raw.poisoned

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
    ``queue.Empty`` as multiprocessing does. A ``get`` interrupted by Ctrl-C
    just as it took an item keeps it for this handle's next ``get``. ``maxsize=0`` (no limit in
    multiprocessing) holds 16384 items; ``maxsize=N`` (up to 16384) blocks
    puts at exactly N items, in every process (the limit lives in the
    queue; its slots round up to 64, 1024 or 16384).
    """

    def __init__(self, maxsize=0, *, item=int, name=None, _raw=None, _maxsize=None):
        if _raw is not None:
            self._raw, self._maxsize = _raw, _maxsize
            return
        self._maxsize = maxsize if maxsize and maxsize > 0 else 0
        # The limit is set before the segment has its name: no peer sees it without.
        self._raw = _shmem.RawQueue(_type_name(item, "item"), self._maxsize or 16384, name, self._maxsize)

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
        """Items in the queue, and any this handle took as Ctrl-C arrived."""
        return len(self._raw) + self._raw.kept()

    def empty(self):
        return self.qsize() == 0

    def full(self):
        return len(self._raw) >= self._raw.limit

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


# ---------------------------------------------------------------- structs by schema

class _StructCell(_Cell):
    """A scalar of a Struct: `index` is (path, element)."""

    __slots__ = ()

    def store(self, v):
        self.raw.store(self.index[0], self.index[1], v)

    def add(self, delta):
        self.raw.add_delta(self.index[0], self.index[1], delta)

    def update(self, fn):
        self.raw.update(self.index[0], self.index[1], fn)


def _struct_number(raw, path, i):
    v = raw.load(path, i)
    if type(v) in (int, float):
        return _bound(v, _StructCell(raw, (path, i)))
    return v  # bool, char: plain values


class _StructArray:
    """An array of scalars inside a Struct: ``s.temps[1] += 0.5`` is atomic."""

    def __init__(self, raw, path, count):
        self._raw, self._path, self._count = raw, path, count

    def __len__(self):
        return self._count

    def _index(self, i):
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError("array index out of range")
        return i

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._raw.load(self._path, j) for j in range(*i.indices(self._count))]
        return _struct_number(self._raw, self._path, self._index(i))

    def __setitem__(self, i, v):
        _store(_StructCell(self._raw, (self._path, self._index(i))), v)

    def __iter__(self):
        return iter(self[:])

    def __repr__(self):
        return repr(self[:])


class _LockedValue:
    """``with s.locked("log") as buf:``: the field's lock held for the
    block, and its value as a bytearray, written back when the block ends
    (unless it raised). ``poisoned`` says whether a holder died in the
    middle of an update (``clear_poison()`` once repaired)."""

    def __init__(self, raw, path, timeout):
        self._raw, self._path, self._timeout = raw, path, timeout
        self.poisoned = False

    def __enter__(self):
        got = self._raw.lock(self._path, self._timeout)
        if got is None:
            raise TimeoutError(f"the lock of `{self._path}` was not free within {self._timeout} s")
        try:
            self.poisoned = got
            self._buf = bytearray(self._raw.read_value(self._path))
            return self._buf
        except BaseException:  # Ctrl-C here must not leave the lock held for good
            self._raw.unlock(self._path)
            raise

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                self._raw.write_value(self._path, bytes(self._buf))
        finally:
            self._raw.unlock(self._path)

    def clear_poison(self):
        self._raw.clear_poison(self._path)
        self.poisoned = False


_STATE_KINDS = ("condvar",)


class Struct:
    """A segment opened from the schema in its header, whatever made it (a
    Rust program's ``#[derive(Shared)]`` struct): ``shmem.attach(name)``.

    Scalars are attributes (``s.hits``, ``s.inner.count``), arrays of
    scalars are sequences (``s.temps[1]``); reads and writes are atomic, and
    ``s.hits += 1`` is one atomic update. A ``#[shared(lock)]`` field is
    reached through its lock: ``with s.locked("log") as buf:`` (its bytes);
    an rwlock field too (its write side), and a seqlock or rwlock field is
    read with ``s.read(name)``; an Event, Semaphore or
    Barrier field is a ``shmem.Event``/``Semaphore``/``Barrier``
    (``s.ready.wait(1.0)``). The state of any lock, waiter or container
    field (who holds it, how full a queue is) is ``s.state(name)``; a
    queue field is ``s.queue(name, typecode)``, a map field ``s.dict(name,
    key, value)``. The operations of condvar fields are not available from
    Python yet."""

    def __init__(self, raw, prefix=""):
        fields = {path: (kind, count) for path, kind, count in raw.fields()}
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name):
        path = self._prefix + name
        field = self._fields.get(path)
        if field is not None:
            kind, count = field
            if count == 1:
                return _struct_number(self._raw, path, 0)
            return _StructArray(self._raw, path, count)
        kind = next((e[1].split()[0] for e in self._raw.entries() if e[0] == path), None)
        if kind == "mutex":
            raise AttributeError(f"`{path}` is behind a lock: use `with s.locked({path!r}) as buf:`")
        if kind == "rwlock":
            raise AttributeError(
                f"`{path}` is behind an rwlock: read it with `s.read({path!r})`, write it in `with s.locked({path!r}) as buf:`"
            )
        if kind in _WAITER_FIELDS:
            return _WAITER_FIELDS[kind]._from_raw(_shmem.RawWaiterField(self._raw, path))
        if kind == "seqlock":
            raise AttributeError(f"`{path}` is behind a seqlock: use `s.read({path!r})`, or `s.state({path!r})`")
        if kind == "queue":
            raise AttributeError(
                f"`{path}` is a queue: open it with its item type, `s.queue({path!r}, 'q')` (a type code)"
            )
        if kind == "map":
            raise AttributeError(
                f"`{path}` is a map: open it with its key and value types, `s.dict({path!r}, 'I', 'Q')` (type codes)"
            )
        if kind in _STATE_KINDS:  # no operations from Python yet
            raise AttributeError(
                f"`{path}` is a {kind}: Python reads its state with `s.state({path!r})`, not its operations yet"
            )
        if any(e[0].startswith(path + ".") for e in self._raw.entries()):
            return Struct(self._raw, path + ".")
        raise AttributeError(f"segment `{self._raw.name}` ({self._raw.type_name}) has no field `{path}`")

    def __setattr__(self, name, v):
        path = self._prefix + name
        if path not in self._fields:
            raise AttributeError(f"segment `{self._raw.name}` ({self._raw.type_name}) has no scalar field `{path}`")
        _store(_StructCell(self._raw, (path, 0)), v)

    def __dir__(self):
        n = len(self._prefix)
        return sorted({p[n:].split(".")[0] for p in self._fields if p.startswith(self._prefix)})

    @classmethod
    def create(cls, name, type_name, fields):
        """Creates named segment ``name`` holding a struct declared here:
        ``fields`` is a list of ``(field, typecode)`` or ``(field, typecode,
        count)`` for an array. It is exactly the segment of the Rust type
        ``#[derive(Shared)] struct TYPE_NAME { field: type, ... }`` (codes:
        ``b B h H i I q Q f d`` and ``?`` for bool), which a Rust program
        attaches to with ``Segment::<TypeName>::attach(name)``."""
        decl = [(f[0], f[1], f[2] if len(f) > 2 else 1) for f in fields]
        return cls(_shmem.RawStruct.create(name, type_name, decl))

    def entries(self):
        """The segment's whole schema: (path, kind, offset, size, count)."""
        return self._raw.entries()

    def state(self, name, contents=0):
        """The state of lock, rwlock, seqlock, event, semaphore, barrier,
        queue or map field ``name``, decoded by the same code as the
        ``shmem show`` command: a dict such as ``{"kind": "queue", "len": 3,
        "capacity": 64, "closed": False, "items": [...]}`` with up to
        ``contents`` of a queue's oldest items (or a map's entries) as
        bytes. A copy read without any lock, for monitoring."""
        return self._raw.state(self._prefix + name, contents)

    def read(self, name, timeout=1.0):
        """A consistent copy of the value bytes of ``#[shared(seqlock)]`` or
        ``#[shared(rwlock)]`` field ``name`` (decode them with
        ``struct.unpack``), as a Rust reader sees it: a seqlock read never
        blocks its writer; an rwlock read takes the read side for the copy,
        alongside other readers. ``TimeoutError`` if a writer kept it for
        ``timeout`` seconds."""
        path = self._prefix + name
        if any(e[0] == path and e[1] == "rwlock" for e in self._raw.entries()):
            data, _poisoned = self._raw.read_rwlock(path, timeout)
        else:
            data, _poisoned = self._raw.read_seqlock(path, timeout)
        return data

    def queue(self, name, typecode):
        """The ``Queue<T, N>`` field ``name`` as a ``shmem.Queue`` (``put``,
        ``get``, ``qsize``, ``close``...), on the very queue a Rust program
        uses: its capacity is the field's, its items the type code's
        (``'I'`` for ``u32``, ``'q'`` for ``i64``, ``'d'`` for ``f64``...;
        their size must be the field's). Pickles as (segment, field, code)."""
        path = self._prefix + name
        raw = _shmem.RawQueue.field(self._raw, path, typecode)
        q = _QueueField(_raw=raw, _maxsize=None)
        q._location = (self._raw.name, path, typecode)
        return q

    def dict(self, name, key, value):
        """The ``Map<K, V, N>`` field ``name`` as a ``shmem.Dict`` (``d[k]``,
        ``d[k] = v``, ``del d[k]``, ``items()``...), on the very map a Rust
        program uses: its capacity is the field's, keys and values the type
        codes' (``key``: ``'i' 'I' 'q' 'Q'``; ``value``: any of ``b B h H i I
        q Q f d``; their sizes must be the field's). A key finds what Rust
        stored under the same integer. Pickles as (segment, field, codes)."""
        path = self._prefix + name
        d = _DictField(_raw=_shmem.RawDict.field(self._raw, path, key, value))
        d._location = (self._raw.name, path, key, value)
        return d

    def locked(self, name, timeout=None):
        """The ``#[shared(lock)]`` or ``#[shared(rwlock)]`` field ``name``:
        ``with s.locked("log") as buf:`` holds its lock (an rwlock's write
        side) and gives its value's bytes, written back when the block ends
        without an exception. A holder killed inside poisons it, as in Rust."""
        return _LockedValue(self._raw, self._prefix + name, timeout)

    @property
    def type_name(self):
        return self._raw.type_name

    def __repr__(self):
        shown = {name: getattr(self, name) for name in dir(self)}
        return f"<shmem.Struct {self._raw.type_name} {shown!r}>"


def _field_of(name, path):
    """Field ``path`` of struct segment ``name`` (how waiter fields unpickle)."""
    obj = Struct(_shmem.RawStruct.attach(name))
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


class _FieldPickle:
    """Pickles a waiter field as its struct segment's name and its path."""

    def __reduce__(self):
        return (_field_of, self._raw.location)


class _EventField(_FieldPickle, Event):
    """An ``Event`` field of a struct segment: ``s.ready.set()``."""


class _SemaphoreField(_FieldPickle, Semaphore):
    """A ``Semaphore`` field of a struct segment: ``with s.slots:``."""


class _BarrierField(_FieldPickle, Barrier):
    """A ``Barrier`` field of a struct segment: ``s.start.wait()``."""


_WAITER_FIELDS = {"event": _EventField, "semaphore": _SemaphoreField, "barrier": _BarrierField}


def _dict_field_of(name, path, key, value):
    """Map field ``path`` of struct segment ``name`` (how it unpickles)."""
    return Struct(_shmem.RawStruct.attach(name)).dict(path, key, value)


class _DictField(Dict):
    """A ``Map`` field of a struct segment: ``s.dict("cache", "I", "Q")``."""

    def __reduce__(self):
        return (_dict_field_of, self._location)

    def __repr__(self):
        name, path, key, value = self._location
        return f"<shmem.Dict field {path!r} of {name!r} ({key!r}: {value!r}, {len(self._raw)} of {self._raw.capacity})>"


def _queue_field_of(name, path, typecode):
    """Queue field ``path`` of struct segment ``name`` (how it unpickles)."""
    return Struct(_shmem.RawStruct.attach(name)).queue(path, typecode)


class _QueueField(Queue):
    """A ``Queue`` field of a struct segment: ``s.queue("jobs", "I")``."""

    def __reduce__(self):
        return (_queue_field_of, self._location)

    def __repr__(self):
        name, path, code = self._location
        return f"<shmem.Queue field {path!r} of {name!r} ({code!r}, {len(self._raw)} of {self._raw.capacity})>"


# ---------------------------------------------------------------- by name

def attach(name):
    """Opens named segment ``name``, whatever created it (Python, or a Rust
    program), from the type recorded in it: a scalar gives a ``Value``,
    ``[T; N]`` an ``Array``, a lock a ``Lock``, an event an ``Event``, a
    semaphore or barrier likewise, and a struct a ``Struct`` whose scalar
    fields are attributes. Raises ``FileNotFoundError`` if there is none,
    and ``LayoutMismatch`` for a type this module cannot open yet (a queue or
    map by name: open those with ``Queue``/``Dict`` and their types).
    A Value or Array made with ``name=`` gets the lock it was made with."""
    type_name = _shmem.type_of(name)
    if type_name in _RUST_CODES:
        return Value(None, _raw=_shmem.RawValue.attach(_RUST_CODES[type_name], name), _lock=_lock_of(name))
    if type_name.startswith("[") and ";" in type_name:
        elem = type_name[1:type_name.index(";")]
        if elem in _RUST_CODES:
            return Array(None, None, _raw=_shmem.RawArray.attach(_RUST_CODES[elem], name), _lock=_lock_of(name))
    if type_name == "rawmutex":
        return Lock(_raw=_shmem.RawLock.attach(name))
    if type_name == "event":
        return Event(_raw=_shmem.RawEvent.attach(name))
    if type_name == "semaphore":
        return Semaphore(_raw=_shmem.RawSemaphore.attach(name))
    if type_name == "barrier":
        return Barrier(None, _raw=_shmem.RawBarrier.attach(name))
    if not type_name.startswith(("[", "Queue<", "Map<")):
        return Struct(_shmem.RawStruct.attach(name))
    raise LayoutMismatch(f"segment `{name}` holds `{type_name}`, which shmem for Python cannot open yet")


def _lock_of(name):
    """The lock a named Value or Array was made with (`NAME.lock`), if any."""
    try:
        if _shmem.type_of(name + ".lock") == "rawmutex":
            return RLock(_raw=_shmem.RawLock.attach(name + ".lock"))
    except (FileNotFoundError, ValueError):
        pass
    return None


def unlink(name):
    """Removes segment name ``name`` (processes attached keep using it)."""
    _shmem.unlink(name)
