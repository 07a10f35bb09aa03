"""shmem for Python, in real processes: exact counts across processes,
pickling with the spawn and fork start methods, crash-safe locks, Rust and
Python on one segment, Ctrl-C in a blocking call."""

import gc
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import shmem

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "examples", "python_peer")

START_METHODS = ["fork", "spawn"]


def unique(tag):
    return f"shmem-py-test-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def peer(*args):
    if not os.path.exists(PEER):
        pytest.fail(f"{PEER} is missing: run `cargo build --release --example python_peer` first")
    out = subprocess.run([PEER, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def run(ctx, target, args, n):
    procs = [ctx.Process(target=target, args=args) for _ in range(n)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0, f"child exited with {p.exitcode}"
    finally:
        for p in procs:  # a hung child fails the test instead of hanging pytest
            if p.is_alive():
                p.kill()
                p.join()


# ---------------------------------------------------------------- Value

def add_to_value(val, times):
    for _ in range(times):
        val.value += 1  # exactly as in the multiprocessing tutorial


@pytest.mark.parametrize("method", START_METHODS)
def test_value_plus_equals_loses_nothing_across_4_processes(method):
    ctx = mp.get_context(method)
    val = shmem.Value("i", 0)
    run(ctx, add_to_value, (val, 250_000), 4)
    assert val.value == 1_000_000


def add_many_ways(val):
    for _ in range(1000):
        val.value += 2
        val.value -= 1
    with val.get_lock():  # the tutorial's locked form still works
        val.value += 0


def test_value_in_place_operators_and_lock():
    ctx = mp.get_context("fork")
    val = shmem.Value("q", 10)
    run(ctx, add_many_ways, (val,), 4)
    assert val.value == 10 + 4 * 1000
    v = shmem.Value("d", 1.5)
    v.value += 1.0
    v.value *= 2
    assert v.value == 5.0
    assert isinstance(v.value, float) and float(v.value) == 5.0
    b = shmem.Value("I", 0b1100)
    b.value |= 0b0011
    b.value &= 0b0110
    b.value ^= 0b0001
    assert b.value == 0b0111
    x = b.value  # a number read, never stored back: its += touches nothing shared
    x += 100
    assert b.value == 0b0111 and x == 0b0111 + 100


def test_a_number_read_changes_nothing_until_stored_back():
    val = shmem.Value("i", 10)
    x = val.value
    x += 5  # a local number: nothing shared changes
    assert x == 15 and val.value == 10
    stats = {"hits": val.value}
    stats["hits"] += 1  # stored into a plain dict: nothing shared changes
    assert stats["hits"] == 11 and val.value == 10
    val.value = 20
    val.value = x  # stored back where it was read: adds 5, atomically, to what is there
    assert val.value == 25
    val.value = x  # the chain's +5 was applied already: nothing more
    assert val.value == 25
    y = val.value
    y *= 3
    y += 1
    val.value = y  # several operations, applied together in one compare-and-swap
    assert val.value == 76
    other = shmem.Value("i", 0)
    other.value = y  # into another value: a plain store of the number
    assert other.value == 76


def test_chains_of_updates_apply_each_step_once():
    v = shmem.Value("i", 0)
    n = v.value
    for _ in range(3):  # reuse after a store: each += adds one
        n += 1
        v.value = n
    assert v.value == 3
    a = v.value
    a += 1
    b = a
    b += 1  # b carries a's +1 and its own
    v.value = a
    v.value = b
    assert v.value == 5, "a step stored twice"
    arr = shmem.Array("i", [1, 2, 3])
    arr[-1] += 1
    assert arr[:] == [1, 2, 4]


def test_integers_wrap_as_ctypes_does():
    u = shmem.Value("B", 0)
    u.value -= 1
    assert u.value == 255
    u.value += 300
    assert u.value == 43
    u.value = 300
    assert u.value == 44
    u.value *= 2
    assert u.value == 88
    s = shmem.Value("b", 0)
    s.value -= -128
    assert s.value == -128


def test_numbers_read_from_shared_memory_pickle_as_plain_numbers():
    import copy
    import pickle

    val, arr = shmem.Value("d", 1.5), shmem.Array("i", [7])
    pending = arr[0]
    pending += 1
    for n in (val.value, arr[0], shmem.Value("q", 3).value, pending):
        back = pickle.loads(pickle.dumps(n))
        assert back == n and type(back) in (int, float)
        assert type(copy.deepcopy(n)) in (int, float) and type(copy.copy(n)) in (int, float)


def test_value_with_ctypes_types_and_repr():
    import ctypes

    v = shmem.Value(ctypes.c_double, 2.5)
    assert v.typecode == "d" and v.value == 2.5
    assert repr(v) == "<shmem.Value('d', 2.5)>"
    with pytest.raises(TypeError):
        shmem.Value(ctypes.c_char_p, b"x")
    with pytest.raises(ValueError):
        shmem.Value("z", 0)


# ---------------------------------------------------------------- Array

def add_to_array(arr, times):
    for _ in range(times):
        for i in range(len(arr)):
            arr[i] += 1


@pytest.mark.parametrize("method", START_METHODS)
def test_array_plus_equals_across_processes(method):
    ctx = mp.get_context(method)
    arr = shmem.Array("i", range(5))
    run(ctx, add_to_array, (arr, 2000), 3)
    assert arr[:] == [6000 + i for i in range(5)]
    assert list(arr) == arr[:]


def test_array_slices_views_and_errors():
    arr = shmem.Array("d", 3)
    arr[:] = [1.0, 2.0, 3.0]
    assert arr[::2] == [1.0, 3.0]
    assert arr[-1] == 3.0
    with pytest.raises(IndexError):
        arr[3]
    with pytest.raises(ValueError):
        arr[:] = [1.0]
    with arr.lock() as a:
        a[0] = 9.0
        assert a[0] == 9.0
    with pytest.raises(RuntimeError):
        a[0]
    assert arr[0] == 9.0


# ---------------------------------------------------------------- Lock, Event

def locked_increment(lock, val, times):
    for _ in range(times):
        with lock:
            v = int(val.value)  # a read and a write: racy without the lock
            val.value = v + 1


@pytest.mark.parametrize("method", START_METHODS)
def test_lock_makes_read_then_write_exact(method):
    ctx = mp.get_context(method)
    lock = shmem.Lock()
    val = shmem.Value("i", 0, lock=False)
    run(ctx, locked_increment, (lock, val, 2000), 4)
    assert val.value == 8000


def hold_and_hang(lock, held):
    lock.acquire()
    held.set()
    time.sleep(600)


def test_a_holder_killed_is_recovered_by_python_and_by_rust():
    ctx = mp.get_context("fork")
    for recover in ["python", "rust"]:
        name = unique("killed-lock")
        lock = shmem.Lock(name=name)
        held = shmem.Event()
        p = ctx.Process(target=hold_and_hang, args=(lock, held))
        p.start()
        assert held.wait(30)
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        if recover == "python":
            assert lock.acquire(timeout=10), "the dead holder's lock was not recovered"
            assert lock.poisoned
            lock.release()
        else:
            assert peer("lock", name) == "poisoned"
        del lock


def try_rlock(lock, out):
    out.value = 1 if lock.acquire(timeout=0.2) else 2


def test_rlock_is_not_reentered_by_a_forked_child():
    ctx = mp.get_context("fork")
    val = shmem.Value("i", 0)
    out = shmem.Value("i", 0, lock=False)
    with val.get_lock():
        p = ctx.Process(target=try_rlock, args=(val.get_lock(), out))
        p.start()
        p.join(30)
    assert out.value == 2, "the child entered a lock its parent held"


def test_timeouts_are_checked():
    import threading

    lock = shmem.Lock()
    assert lock.acquire()
    threading.Timer(0.1, lock.release).start()
    assert lock.acquire(timeout=float("inf"))  # waits for the release, no limit
    assert not lock.acquire(timeout=-1)  # negative: no waiting, as multiprocessing
    with pytest.raises(ValueError):
        lock.acquire(timeout=float("nan"))
    lock.release()
    with pytest.raises(ValueError):
        shmem.Lock().acquire(timeout=float("nan"))  # checked even when free
    assert shmem.Event().wait(0) is False and shmem.Event().wait(-1) is False


def test_lock_semantics():
    lock = shmem.Lock()
    assert lock.acquire()
    assert not lock.acquire(block=False)
    t = time.monotonic()
    assert not lock.acquire(timeout=0.1)
    assert time.monotonic() - t >= 0.09
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    assert not lock.poisoned


def set_after(event, delay):
    time.sleep(delay)
    event.set()


@pytest.mark.parametrize("method", START_METHODS)
def test_event_across_processes(method):
    ctx = mp.get_context(method)
    ev = shmem.Event()
    assert not ev.wait(0.05)
    p = ctx.Process(target=set_after, args=(ev, 0.1))
    p.start()
    assert ev.wait(30)
    p.join(30)
    ev.clear()
    assert not ev.is_set()


def consume_when_ready(cond, items, taken):
    with cond:
        assert cond.wait_for(lambda: items.value > 0, timeout=60)
        items.value -= 1
        taken.value += 1


@pytest.mark.parametrize("method", START_METHODS)
def test_condition_across_processes(method):
    ctx = mp.get_context(method)
    cond = shmem.Condition()
    items, taken = shmem.Value("i", 0), shmem.Value("i", 0)
    procs = [ctx.Process(target=consume_when_ready, args=(cond, items, taken)) for _ in range(3)]
    for p in procs:
        p.start()
    for _ in range(3):
        time.sleep(0.05)
        with cond:
            items.value += 1
            cond.notify()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert (items.value, taken.value) == (0, 3)
    with cond:
        assert not cond.wait(0.05)  # no notification: times out, holding the lock again
        assert cond._lock._owner is not None
    with pytest.raises(RuntimeError):
        cond.wait(0.01)


def interrupted_in(make, block):
    """Runs `make` then the blocking `block` in a fresh Python process,
    sends it Ctrl-C once it waits, and checks it was interrupted."""
    code = (
        "import shmem, sys\n"
        f"x = {make}\n"
        "print('waiting', flush=True)\n"
        "try:\n"
        f"    x.{block}\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(0)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "waiting"
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=10)
    assert out.strip() == "interrupted" and p.returncode == 0


def test_ctrl_c_interrupts_a_blocking_wait():
    interrupted_in("shmem.Event()", "wait()")


# ---------------------------------------------------------------- Rust and Python

def test_python_creates_rust_attaches():
    name = unique("py-value")
    val = shmem.Value("q", 7, name=name)
    assert peer("add", name, "5") == "12"
    assert val.value == 12
    f = shmem.Value("d", 0.5, name=unique("py-f64"))
    assert peer("add-f64", f.name, "0.25") == "0.75"
    arr_name = unique("py-array")
    arr = shmem.Array("i", [10, 20, 30], name=arr_name)
    assert peer("array", arr_name) == "[11, 21, 31]"
    assert arr[:] == [11, 21, 31]


def test_rust_creates_python_attaches():
    name = unique("rust-serve")
    p = subprocess.Popen([PEER, "serve", name], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        arr = shmem.attach(name)
        count = shmem.attach(name + ".count")
        assert isinstance(arr, shmem.Array) and arr.typecode == "i"
        assert arr[:] == [1, 2, 3, 4]
        arr[3] += 10
        for _ in range(3):
            count.value += 1
        out, _ = p.communicate(timeout=60)
        assert out.strip() == "[1, 2, 3, 14]"
    finally:
        p.kill()


def set_event(event):
    event.set()


def put_item(q, item):
    q.put(item, timeout=30)


def set_item(d, k, v):
    d[k] = v


def pass_barrier(barrier):
    raise SystemExit(barrier.wait(60))


def hold_write(name, entered, leave):
    s = shmem.attach(name)
    with s.locked("limits"):
        entered.set()
        leave.wait(30)


def hold_field_and_die(name, path="log"):
    s = shmem.attach(name)
    with s.locked(path) as buf:
        buf[:] = b"half...."
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_rust_struct_opened_by_name_from_its_schema():
    name = unique("rust-struct")
    p = subprocess.Popen([PEER, "serve-struct", name], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        s = shmem.attach(name)
        assert isinstance(s, shmem.Struct) and s.type_name == "Stats"
        assert dir(s) == ["hits", "inner", "temps"], dir(s)
        assert any(path == "log" and kind == "mutex" for path, kind, *_ in s.entries())
        s.temps[1] = 2.5
        s.temps[2] += 1.0
        s.inner.count -= 2
        s.inner.on = True
        assert (s.temps[:], s.inner.count, s.inner.on) == ([0.0, 2.5, 1.0], -2, True)
        with pytest.raises(AttributeError, match="behind a lock"):
            s.log
        with pytest.raises(AttributeError, match="behind a lock"):
            s.total  # a locked u64: never a lock-free scalar
        assert "total" not in dir(s)
        with pytest.raises(RuntimeError):
            s._raw.read_value("log")  # not without holding its lock
        import struct

        assert struct.unpack("2d", s.read("pos")) == (1.25, -2.5)  # a seqlock read, as Rust's
        with pytest.raises(AttributeError, match="s.read"):
            s.pos
        # Locks, waiters and containers: their state, by the CLI's decoder.
        assert s.state("jobs", 4) == {
            "kind": "queue",
            "len": 2,
            "capacity": 8,
            "limit": 8,
            "closed": False,
            "items": [struct.pack("=I", 5), struct.pack("=I", 6)],
        }
        assert s.state("jobs")["items"] == []
        assert s.state("ready") == {"kind": "event", "set": True}
        assert s.state("limits") == {"kind": "rwlock", "held": False, "poisoned": False, "readers": 0}
        # An rwlock field: written under its write side, read under its read side.
        with pytest.raises(AttributeError, match="behind an rwlock"):
            s.limits
        with s.locked("limits") as buf:
            assert bytes(buf) == bytes(8)
            assert s.state("limits")["held"]
            with pytest.raises(TimeoutError):
                s.read("limits", timeout=0.05)  # our own write lock keeps readers out
            buf[:] = struct.pack("=2I", 7, 8)
        assert s.read("limits") == struct.pack("=2I", 7, 8)
        with pytest.raises(ZeroDivisionError):
            with s.locked("limits") as buf:
                buf[:] = struct.pack("=2I", 9, 9)
                1 / 0  # an exception: nothing written back, the lock released
        assert s.read("limits") == struct.pack("=2I", 7, 8)
        # Exclusion across processes: a Rust reader keeps Python's writer
        # out, and a Python writer in another process keeps readers out.
        reader = subprocess.Popen([PEER, "hold-read", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert reader.stdout.readline().strip() == "held"
            assert s.state("limits")["readers"] == 1
            with pytest.raises(TimeoutError):
                with s.locked("limits", timeout=0.2):
                    pass
            assert s.read("limits") == struct.pack("=2I", 7, 8)  # readers share
        finally:
            reader.stdin.close()
            assert reader.wait(30) == 0
        entered, leave = mp.get_context("fork").Event(), mp.get_context("fork").Event()
        writer = mp.get_context("fork").Process(target=hold_write, args=(name, entered, leave))
        writer.start()
        assert entered.wait(30)
        with pytest.raises(TimeoutError):
            s.read("limits", timeout=0.2)
        with pytest.raises(TimeoutError):
            with s.locked("limits", timeout=0.2):
                pass
        leave.set()
        writer.join(30)
        assert writer.exitcode == 0
        # A Python process killed inside its write: poison, visible to the
        # next writer here (and to Rust, until cleared).
        killed = mp.get_context("fork").Process(target=hold_field_and_die, args=(name, "limits"))
        killed.start()
        killed.join(30)
        assert killed.exitcode == -signal.SIGKILL
        cm = s.locked("limits", timeout=30)
        with cm as buf:
            assert cm.poisoned and bytes(buf) == struct.pack("=2I", 7, 8)
            buf[:] = struct.pack("=2I", 10, 20)
            cm.clear_poison()
        assert s.read("limits") == struct.pack("=2I", 10, 20)
        assert s.state("pos") == {"kind": "seqlock", "held": False, "poisoned": False, "writing": False}
        assert s.state("log") == {"kind": "lock", "held": False, "poisoned": False}
        # Waiter fields are shmem's Event / Semaphore / Barrier, on the field's words.
        assert isinstance(s.ready, shmem.Event) and s.ready.is_set()  # set by Rust
        s.ready.clear()
        child = mp.get_context("spawn").Process(target=set_event, args=(s.ready,))  # pickles as (name, path)
        child.start()
        assert s.ready.wait(60)
        child.join(60)
        assert child.exitcode == 0
        assert s.slots.get_value() == 0 and not s.slots.acquire(timeout=0.01)
        s.slots.release()
        s.slots.release()
        assert s.slots.acquire(block=False) and s.state("slots") == {"kind": "semaphore", "available": 1}
        assert isinstance(s.start, shmem.Barrier) and s.start.parties == 2
        child = mp.get_context("spawn").Process(target=pass_barrier, args=(s.start,))
        child.start()
        mine = s.start.wait(60)
        child.join(60)
        assert sorted([mine, child.exitcode]) == [0, 1], "one of the two parties leads the round"
        # A queue field: the very queue Rust uses, with the field's capacity.
        with pytest.raises(AttributeError, match="s.queue"):
            s.jobs
        with pytest.raises(AttributeError, match="4-byte"):
            s.queue("jobs", "q")  # 8-byte items: not this queue
        jobs = s.queue("jobs", "I")
        assert (jobs.qsize(), jobs.get(timeout=5)) == (2, 5)  # Rust pushed 5 and 6
        jobs.put(9)
        with pytest.raises(OverflowError):
            jobs.put(-1)  # not a u32
        child = mp.get_context("spawn").Process(target=put_item, args=(jobs, 10))  # pickles as (segment, field, code)
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert s.state("jobs", 8)["items"] == [struct.pack("=I", v) for v in (6, 9, 10)]
        # A map field: Python finds what Rust stored under the same integer.
        with pytest.raises(AttributeError, match="s.dict"):
            s.cache
        with pytest.raises(AttributeError, match="4-byte keys"):
            s.dict("cache", "q", "Q")
        cache = s.dict("cache", "I", "Q")
        assert (cache[1], len(cache), 2 in cache) == (10, 1, False)
        cache[2] = 20
        cache[2] -= 5  # one atomic update, on an unsigned value too
        assert cache[2] == 15
        cache[2] += 5
        with pytest.raises(OverflowError):
            cache[2] -= 21  # below zero: refused, nothing written
        child = mp.get_context("spawn").Process(target=set_item, args=(cache, 3, 30))  # pickles as (segment, field, codes)
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert sorted(cache.items()) == [(1, 10), (2, 20), (3, 30)]
        with pytest.raises(AttributeError, match="no lock, waiter or container field"):
            s.state("hits")
        # A Python process killed holding the field's lock: the next holder
        # gets it, told that the value may be half-written.
        ctx = mp.get_context("fork")
        killed = ctx.Process(target=hold_field_and_die, args=(name,))
        killed.start()
        killed.join(30)
        assert killed.exitcode == -signal.SIGKILL
        assert s.state("log") == {"kind": "lock", "held": True, "poisoned": False}  # until someone takes it over
        cm = s.locked("log", timeout=30)
        with cm as buf:
            assert cm.poisoned and bytes(buf) == bytes(8)  # the dead holder never wrote back
            buf[:] = b"repaired"
            assert s.state("log")["held"]
            cm.clear_poison()
        assert s.state("log") == {"kind": "lock", "held": False, "poisoned": False}
        for _ in range(3):
            s.hits += 1  # atomic, and the Rust side waits for it
        out, _ = p.communicate(timeout=60)
        assert out.strip() == (
            'hits=3 temps=[0.0, 2.5, 1.0] count=-2 on=true log="repaired" poisoned=false ready=true slots=1'
            " limits=[10, 20] limits_poisoned=false jobs=[6, 9, 10] cache=[(1, 10), (2, 20), (3, 30)] cache[2]=Some(20) cache[3]=Some(30)"
        )

    finally:
        p.kill()


def test_python_declares_a_struct_rust_attaches_with_its_type():
    name = unique("py-struct")
    p = shmem.Struct.create(name, "Point", [("x", "q"), ("y", "d"), ("flag", "?"), ("hist", "I", 4)])
    p.y = 1.5
    p.flag = True
    p.hist[0] = 7
    # The Rust program attaches as Segment::<Point> (layout-checked), updates, prints.
    assert peer("point", name) == "x=1 y=1.5 flag=true hist=[7, 0, 0, 5]"
    assert (p.x, p.hist[3]) == (1, 5)
    with pytest.raises(ValueError):
        shmem.Struct.create(unique("bad"), "Point", [("x", "z")])
    with pytest.raises(ValueError):
        shmem.Struct.create(unique("bad"), "Point", [("1x", "q")])


def test_errors_are_python_exceptions():
    name = unique("errors")
    with pytest.raises(FileNotFoundError):
        shmem.attach(name)
    v = shmem.Value("i", 1, name=name, lock=False)
    with pytest.raises(FileExistsError):
        shmem.Value("i", 1, name=name, lock=False)
    with pytest.raises(shmem.LayoutMismatch):
        shmem._shmem.RawValue.attach("d", name)
    with pytest.raises(ValueError):
        shmem.Value("i", 1, name="bad/name")
    del v


def test_named_segments_go_with_their_last_handle():
    name = unique("lifetime")
    v = shmem.Value("i", 3, name=name)
    assert os.path.exists(f"/dev/shm/{name}") and os.path.exists(f"/dev/shm/{name}.lock")
    del v
    gc.collect()  # a Value's number classes are freed by the collector
    assert not os.path.exists(f"/dev/shm/{name}")
    assert not os.path.exists(f"/dev/shm/{name}.lock")


# ---------------------------------------------------------------- Dict, Queue

def count_words(d, times):
    for _ in range(times):
        d["hits"] += 1  # one atomic update of the entry


@pytest.mark.parametrize("method", START_METHODS)
def test_dict_across_processes(method):
    ctx = mp.get_context(method)
    d = shmem.Dict(str, int, capacity=100)
    d["hits"] = 0
    run(ctx, count_words, (d, 5000), 4)
    assert d["hits"] == 20000
    assert d == {"hits": 20000}


def set_one(d):
    d[1] = "a"
    print(d, flush=True)


def test_the_manager_dict_program():
    # The multiprocessing tutorial's Manager().dict() example, with declared types.
    ctx = mp.get_context("spawn")
    d = shmem.Dict(int, str)
    d[0] = "b"
    p = ctx.Process(target=set_one, args=(d,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert repr(d) == "{0: 'b', 1: 'a'}"


def test_dict_semantics_and_errors():
    d = shmem.Dict(int, float, capacity=64)
    d[3] = 1.5
    d[3] += 1.0
    assert d[3] == 2.5 and 3 in d and len(d) == 1
    assert d.get(4) is None and d.get(4, 0.0) == 0.0
    with pytest.raises(KeyError):
        d[4]
    with pytest.raises(KeyError):
        del d[4]
    assert d.setdefault(5, 9.0) == 9.0 and d.setdefault(5, 1.0) == 9.0
    assert d.pop(5) == 9.0 and d.pop(5, None) is None
    d.update({1: 1.0, 2: 2.0})
    assert d.keys() == [1, 2, 3] and d.values() == [1.0, 2.0, 2.5]
    with pytest.raises(TypeError):
        d["x"] = 1.0
    s = shmem.Dict(str, str)
    with pytest.raises(ValueError):
        s["k"] = "x" * 65
    with pytest.raises(TypeError):
        shmem.Dict(list, int)
    held = shmem.Dict(int, int, capacity=500)
    for i in range(500):  # the capacity asked for is available
        held[i] = i
    assert len(held) == 500 and not held.poisoned
    full = shmem.Dict(int, int, capacity=32)
    with pytest.raises(OverflowError):
        for i in range(10_000):
            full[i] = i
    gone = shmem.Dict(int, int)
    gone[1] = 1
    v = gone[1]
    v += 1  # pending for key 1
    del gone[1]
    with pytest.raises(KeyError):
        gone[1] = v  # stored back after the key was deleted


def produce(q, n):
    for i in range(n):
        q.put(i)


def consume(q, out, n):
    total = 0
    for _ in range(n):
        total += q.get()
    with out.get_lock():
        out.value += total


@pytest.mark.parametrize("method", START_METHODS)
def test_queue_two_producers_two_consumers_exact(method):
    ctx = mp.get_context(method)
    q = shmem.Queue(64)
    out = shmem.Value("q", 0)
    procs = [ctx.Process(target=produce, args=(q, 10_000)) for _ in range(2)]
    procs += [ctx.Process(target=consume, args=(q, out, 10_000)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert out.value == 2 * sum(range(10_000))


def put_one_more(q):
    import queue

    try:
        q.put("c", timeout=0.05)
    except queue.Full:
        return
    raise SystemExit(1)


def test_queue_semantics():
    import queue

    q = shmem.Queue(2, item=str)
    q.put("a")
    q.put_nowait("b")
    assert q.full() and q.qsize() == 2
    # maxsize is exact, as in multiprocessing, and holds in every process.
    with pytest.raises(queue.Full):
        q.put("c", timeout=0.05)
    ctx = mp.get_context("spawn")
    child = ctx.Process(target=put_one_more, args=(q,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the child found room past maxsize"
    with pytest.raises(queue.Empty):
        shmem.Queue(item=float).get(timeout=0.05)
    assert q.get() == "a" and q.get_nowait() == "b"
    with pytest.raises(queue.Empty):
        q.get_nowait()
    small = shmem.Queue(64, item=int)
    for i in range(64):
        small.put(i)
    with pytest.raises(queue.Full):
        small.put(64, timeout=0.05)
    small.close()
    with pytest.raises(ValueError):
        small.put(1)
    assert small.get() == 0


def test_ctrl_c_interrupts_a_blocking_get():
    interrupted_in("shmem.Queue()", "get()")


# ---------------------------------------------------------------- the seed's three programs

@pytest.mark.parametrize(
    "example, last_line",
    [
        ("shared_value.py", "hits = 2000000"),
        ("shared_array.py", "arr = [2, 3, 4, 5, 6]"),
        ("shared_dict.py", "{0: 'b', 1: 'a'}"),
    ],
)
def test_examples_print_the_tutorials_results(example, last_line):
    path = os.path.join(os.path.dirname(HERE), "examples", example)
    out = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == last_line


def test_rlock_is_reentrant_and_array_copy_under_it():
    arr = shmem.Array("i", [1, 2])
    with arr.get_lock():
        with arr.get_lock():
            assert arr[:] == [1, 2]
    assert not arr.get_lock().locked()


# ---------------------------------------------------------------- Semaphore, Barrier

def use_slots(sem, inside, over):
    for _ in range(300):
        with sem:
            inside.value += 1
            if int(inside.value) > 2:
                over.value += 1
            inside.value -= 1


@pytest.mark.parametrize("method", START_METHODS)
def test_semaphore_admits_at_most_its_value(method):
    ctx = mp.get_context(method)
    sem = shmem.Semaphore(2)
    inside, over = shmem.Value("i", 0), shmem.Value("i", 0)
    run(ctx, use_slots, (sem, inside, over), 4)
    assert over.value == 0 and inside.value == 0 and sem.get_value() == 2
    assert sem.acquire() and sem.acquire() and not sem.acquire(timeout=0.05)


def meet(barrier, arrivals, leaders, late):
    for r in range(50):
        if late and r % 10 == 0:
            time.sleep(0.12)  # longer than a wait slice: the others leave and rejoin
        arrivals.value += 1
        if barrier.wait(timeout=60) == 0:
            leaders.value += 1
        # Nobody passes round r before all three arrived in it.
        assert arrivals.value >= 3 * (r + 1)


@pytest.mark.parametrize("method", START_METHODS)
def test_barrier_rounds(method):
    ctx = mp.get_context(method)
    barrier = shmem.Barrier(3)
    arrivals, leaders = shmem.Value("i", 0), shmem.Value("i", 0)
    procs = [ctx.Process(target=meet, args=(barrier, arrivals, leaders, i == 0)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert arrivals.value == 150 and leaders.value == 50
    import threading

    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(timeout=0.05)


def _interrupt_mid_slice(parent, start, go):
    """Sends SIGINT to `parent` 20 ms into the second 50 ms wait slice of the
    blocking call it starts at `start` (a monotonic time: one clock for
    every process)."""
    assert go.wait(30)
    time.sleep(max(0.0, start.value + 0.07 - time.monotonic()))
    os.kill(parent, signal.SIGINT)
    time.sleep(0.01)  # still inside that slice


def hold_then_interrupt(lock, parent, held, start, go):
    lock.acquire()
    held.set()
    _interrupt_mid_slice(parent, start, go)
    lock.release()


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
def test_ctrl_c_as_the_lock_frees_never_leaves_it_held(kind):
    # The lock frees just after Ctrl-C arrives: the waiter takes it, and the
    # KeyboardInterrupt must not leave it held (nothing would release it).
    for _ in range(3):
        lock = shmem.Lock() if kind == "lock" else shmem.Semaphore(1)
        ctx = mp.get_context("fork")
        held, go, start = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
        p = ctx.Process(target=hold_then_interrupt, args=(lock, os.getpid(), held, start, go))
        p.start()
        assert held.wait(30)
        # The signal is raised inside this block even if this process stalls.
        with pytest.raises(KeyboardInterrupt):
            start.value = time.monotonic()
            go.set()
            with lock:
                pass
        p.join(30)
        assert p.exitcode == 0
        free = not lock.locked() if kind == "lock" else lock.get_value() == 1
        assert free, "Ctrl-C left the lock held"


def put_after_interrupt(q, parent, start, go):
    _interrupt_mid_slice(parent, start, go)
    q.put(42)


def test_ctrl_c_as_an_item_arrives_never_loses_it():
    # The item comes just after Ctrl-C: the waiting get() takes it from the
    # shared queue, and the KeyboardInterrupt must not drop it.
    for _ in range(3):
        q = shmem.Queue(8)
        ctx = mp.get_context("fork")
        go, start = ctx.Event(), ctx.Value("d", 0.0)
        p = ctx.Process(target=put_after_interrupt, args=(q, os.getpid(), start, go))
        p.start()
        with pytest.raises(KeyboardInterrupt):
            start.value = time.monotonic()
            go.set()
            q.get(timeout=30)
        p.join(30)
        assert p.exitcode == 0
        assert q.qsize() == 1 and not q.empty() and not q.full(), "Ctrl-C lost the item"
        # A forked copy of this handle does not return the kept item again.
        child = ctx.Process(target=get_nothing, args=(q,))
        child.start()
        child.join(30)
        assert child.exitcode == 0, "a forked child got the item kept here"
        assert q.get(timeout=1) == 42 and q.qsize() == 0


def get_nothing(q):
    import queue

    try:
        q.get(timeout=0.05)
    except queue.Empty:
        return
    raise SystemExit(1)


def hold_and_interrupt_twice(cond, parent, start, go):
    assert go.wait(30)
    at = lambda t: time.sleep(max(0.0, start.value + t - time.monotonic()))  # noqa: E731
    at(0.03)
    cond.acquire()  # the parent waits in cond.wait: it released the lock
    at(0.07)
    os.kill(parent, signal.SIGINT)  # ends the wait; the parent waits for the lock back
    at(0.22)
    os.kill(parent, signal.SIGINT)  # arrives as that wait goes on...
    time.sleep(0.01)
    cond.release()  # ...and the lock frees within the same wait slice, mostly


@pytest.mark.parametrize("lock", ["rlock", "lock"])
def test_ctrl_c_in_condition_wait_leaves_the_lock_to_the_with_block(lock):
    # Condition.wait takes its lock back even when a second Ctrl-C arrives
    # meanwhile, so the `with` block's exit releases a lock it holds (else:
    # RuntimeError, or another thread's hold released).
    for _ in range(2):
        cond = shmem.Condition(shmem.Lock() if lock == "lock" else None)
        ctx = mp.get_context("fork")
        go, start = ctx.Event(), ctx.Value("d", 0.0)
        p = ctx.Process(target=hold_and_interrupt_twice, args=(cond, os.getpid(), start, go))
        p.start()
        with pytest.raises(KeyboardInterrupt):
            with cond:
                start.value = time.monotonic()
                go.set()
                cond.wait(30)
        p.join(30)
        assert p.exitcode == 0
        assert cond.acquire(timeout=5), "the lock was left held"
        cond.release()
