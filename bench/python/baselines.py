"""Python multiprocessing baselines for the shmem benchmark driver.

Usage: python3 baselines.py WORKLOAD N  -> prints one JSON object:
{"ops": ..., "seconds": ..., "check": ...}. Each workload uses real separate
processes (the 'spawn' start method, as on macOS/Windows and the safe one
with threads) and checks its own result.
"""
import json
import multiprocessing as mp
import sys
import time


def _inc_locked(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def _inc_unlocked(v, n):
    for _ in range(n):
        v.value += 1


def _array_locked(a, n):
    for _ in range(n):
        with a.get_lock():
            for i in range(len(a)):
                a[i] += 1


def _dict_worker(d, start, keys, rounds):
    for r in range(rounds):
        for k in range(start, start + keys):
            d[k] = r
            _ = d[k]


def _queue_producer(q, n):
    for i in range(n):
        q.put(i)
    q.put(None)


def _pipe_producer(conn, n):
    for i in range(n):
        conn.send(i)
    conn.send(None)


def _pong(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def _noop():
    pass


def run(workload, n):
    ctx = mp.get_context("spawn")
    if workload in ("counter_locked", "counter_unlocked"):
        v = ctx.Value("q", 0)
        target = _inc_locked if workload == "counter_locked" else _inc_unlocked
        ps = [ctx.Process(target=target, args=(v, n)) for _ in range(2)]
        t = time.perf_counter()
        [p.start() for p in ps]
        [p.join() for p in ps]
        dt = time.perf_counter() - t
        return {"ops": 2 * n, "seconds": dt, "check": v.value, "lost": 2 * n - v.value}
    if workload == "array_locked":
        a = ctx.Array("q", 1024)
        ps = [ctx.Process(target=_array_locked, args=(a, n)) for _ in range(2)]
        t = time.perf_counter()
        [p.start() for p in ps]
        [p.join() for p in ps]
        dt = time.perf_counter() - t
        assert all(x == 2 * n for x in a), "lost update"
        return {"ops": 2 * n, "seconds": dt, "check": a[0]}
    if workload == "dict":
        keys, rounds = 1000, max(1, n // 1000)
        with ctx.Manager() as m:
            d = m.dict()
            ps = [ctx.Process(target=_dict_worker, args=(d, i * keys, keys, rounds)) for i in range(2)]
            t = time.perf_counter()
            [p.start() for p in ps]
            [p.join() for p in ps]
            dt = time.perf_counter() - t
            assert len(d) == 2 * keys
        return {"ops": 2 * keys * rounds * 2, "seconds": dt, "check": 2 * keys}
    if workload == "queue":
        q = ctx.Queue(4096)
        p = ctx.Process(target=_queue_producer, args=(q, n))
        t = time.perf_counter()
        p.start()
        got = 0
        while q.get() is not None:
            got += 1
        p.join()
        dt = time.perf_counter() - t
        assert got == n
        return {"ops": n, "seconds": dt, "check": got}
    if workload == "pipe":
        a, b = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_pipe_producer, args=(b, n))
        t = time.perf_counter()
        p.start()
        got = 0
        while a.recv() is not None:
            got += 1
        p.join()
        dt = time.perf_counter() - t
        assert got == n
        return {"ops": n, "seconds": dt, "check": got}
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
            a.recv()
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
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))))
