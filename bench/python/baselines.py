"""Python multiprocessing baselines for the shmem benchmark driver.

Usage: python3 baselines.py WORKLOAD N [PROCESSES] -> prints one JSON object:
{"ops": ..., "seconds": ..., ...}. Each workload uses real separate
processes (the 'spawn' start method, as on macOS/Windows and the safe one
with threads) and checks its own result. As in the Rust driver, the clock
starts when every worker stands at a start barrier, so process start-up
(about 50 ms each with 'spawn') is not timed, except in the spawn workload.
"""
import json
import multiprocessing as mp
import sys
import time


def _inc_locked(start, v, n):
    start.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def _inc_unlocked(start, v, n):
    start.wait()
    for _ in range(n):
        v.value += 1


def _array_locked(start, a, n):
    start.wait()
    for _ in range(n):
        with a.get_lock():
            for i in range(len(a)):
                a[i] += 1


def _dict_worker(start, d, first, keys, rounds):
    start.wait()
    for r in range(rounds):
        for k in range(first, first + keys):
            d[k] = r
            assert d[k] == r


def _queue_producer(start, q, first, n, sentinels):
    start.wait()
    for i in range(first, first + n):
        q.put(i)
    for _ in range(sentinels):
        q.put(None)


def _queue_consumer(start, q, results):
    start.wait()
    got = total = 0
    while (v := q.get()) is not None:
        got += 1
        total += v
    results.put((got, total))


def _pipe_producer(start, conn, n):
    start.wait()
    for i in range(n):
        conn.send(i)
    conn.send(None)


def _pong(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def _noop():
    pass


def _timed(ctx, start, ps):
    """Starts `ps`, opens the barrier once all stand at it, joins them."""
    [p.start() for p in ps]
    start.wait()
    t = time.perf_counter()
    [p.join() for p in ps]
    dt = time.perf_counter() - t
    assert all(p.exitcode == 0 for p in ps), "a worker failed"
    return dt


def _consume_timed(start, producer, get, n):
    """Starts `producer`, then times receiving 0..n-1 with `get` up to None."""
    producer.start()
    start.wait()
    t = time.perf_counter()
    got = total = 0
    while (v := get()) is not None:
        got += 1
        total += v
    dt = time.perf_counter() - t
    producer.join()
    assert (got, total) == (n, n * (n - 1) // 2)
    return {"ops": n, "seconds": dt, "check": got}


def run(workload, n, procs):
    ctx = mp.get_context("spawn")
    if workload in ("counter_locked", "counter_unlocked"):
        v = ctx.Value("q", 0)
        start = ctx.Barrier(procs + 1)
        target = _inc_locked if workload == "counter_locked" else _inc_unlocked
        dt = _timed(ctx, start, [ctx.Process(target=target, args=(start, v, n)) for _ in range(procs)])
        return {"ops": procs * n, "seconds": dt, "check": v.value, "lost": procs * n - v.value}
    if workload == "array_locked":
        a = ctx.Array("q", 1024)
        start = ctx.Barrier(procs + 1)
        dt = _timed(ctx, start, [ctx.Process(target=_array_locked, args=(start, a, n)) for _ in range(procs)])
        assert all(x == procs * n for x in a), "lost update"
        return {"ops": procs * n, "seconds": dt, "check": a[0]}
    if workload == "dict":
        keys, rounds = 1000, max(1, n // 1000)
        with ctx.Manager() as m:
            d = m.dict()
            start = ctx.Barrier(procs + 1)
            ps = [ctx.Process(target=_dict_worker, args=(start, d, i * keys, keys, rounds)) for i in range(procs)]
            dt = _timed(ctx, start, ps)
            assert len(d) == procs * keys
        return {"ops": procs * keys * rounds * 2, "seconds": dt, "check": procs * keys}
    if workload == "queue":
        q = ctx.Queue(4096)
        start = ctx.Barrier(2)
        return _consume_timed(start, ctx.Process(target=_queue_producer, args=(start, q, 0, n, 1)), q.get, n)
    if workload == "queue_mpmc":
        per = n // procs
        q, results = ctx.Queue(4096), ctx.Queue()
        start = ctx.Barrier(2 * procs + 1)
        # Each producer sends one end marker per consumer it is paired with.
        ps = [ctx.Process(target=_queue_producer, args=(start, q, i * per, per, 1)) for i in range(procs)]
        ps += [ctx.Process(target=_queue_consumer, args=(start, q, results)) for _ in range(procs)]
        [p.start() for p in ps]
        start.wait()
        t = time.perf_counter()
        counts = [results.get() for _ in range(procs)]
        dt = time.perf_counter() - t
        [p.join() for p in ps]
        total = per * procs
        assert (sum(c for c, _ in counts), sum(s for _, s in counts)) == (total, total * (total - 1) // 2)
        return {"ops": total, "seconds": dt, "check": total}
    if workload == "pipe":
        a, b = ctx.Pipe(duplex=False)
        start = ctx.Barrier(2)
        return _consume_timed(start, ctx.Process(target=_pipe_producer, args=(start, b, n)), a.recv, n)
    if workload == "pingpong_pipe":
        a, b = ctx.Pipe()
        p = ctx.Process(target=_pong, args=(b, n))
        p.start()
        a.send(0)
        a.recv()  # warm up: the child is running
        rtts = []
        for i in range(n - 1):
            t = time.perf_counter()
            a.send(i)
            assert a.recv() == i
            rtts.append(time.perf_counter() - t)
        p.join()
        rtts.sort()
        return {"ops": len(rtts), "seconds": sum(rtts), "median": rtts[len(rtts) // 2], "p99": rtts[len(rtts) * 99 // 100]}
    if workload == "spawn":
        t = time.perf_counter()
        for _ in range(n):
            p = ctx.Process(target=_noop)
            p.start()
            p.join()
            assert p.exitcode == 0
        return {"ops": n, "seconds": time.perf_counter() - t, "check": n}
    raise SystemExit(f"unknown workload {workload}")


if __name__ == "__main__":
    procs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), procs)))
