"""shmem for Python against multiprocessing, in one run on one machine.

Every row is timed here, now, beside the multiprocessing figure it is
compared with; the ratio is the point (absolute numbers depend on the
machine and its load). `python bench.py --quick` runs a tenth of the work.

    row                         shmem                        multiprocessing
    val.value += 1              shmem.Value                  with val.get_lock(): val.value += 1
                                (alone, and two processes at once)
    dict set + get              shmem.Dict(int, int)         Manager().dict()
    queue put + get, 1 -> 1     shmem.Queue(1024)            multiprocessing.Queue(1024)
"""

import multiprocessing as mp
import sys
import time

import shmem

QUICK = "--quick" in sys.argv
SCALE = 10 if QUICK else 1


def rate(n, fn):
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def bench_value():
    n = 200_000 // SCALE
    ours = shmem.Value("i", 0)
    theirs = mp.Value("i", 0)

    def shmem_add(k):
        for _ in range(k):
            ours.value += 1

    def mp_locked(k):
        for _ in range(k):
            with theirs.get_lock():
                theirs.value += 1

    return rate(n, shmem_add), rate(n, mp_locked)


def add_shmem(val, n):
    for _ in range(n):
        val.value += 1


def add_mp_locked(val, n):
    for _ in range(n):
        with val.get_lock():
            val.value += 1


def contended_rate(target, val, n, procs=2):
    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=target, args=(val, n)) for _ in range(procs)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    elapsed = time.perf_counter() - t
    assert val.value == n * procs
    return n * procs / elapsed


def bench_value_contended():
    n = 200_000 // SCALE
    return contended_rate(add_shmem, shmem.Value("i", 0), n), contended_rate(add_mp_locked, mp.Value("i", 0), n)


def bench_dict():
    ours = shmem.Dict(int, int, capacity=1024)
    with mp.Manager() as manager:
        theirs = manager.dict()

        def run(d, k):
            for i in range(k):
                d[i & 511] = i
                d[i & 511]

        return rate(100_000 // SCALE, lambda k: run(ours, k)), rate(5_000 // SCALE, lambda k: run(theirs, k))


def producer(q, n):
    for i in range(n):
        q.put(i)
    q.put(-1)


def queue_rate(q, n):
    p = mp.get_context("fork").Process(target=producer, args=(q, n))
    t = time.perf_counter()
    p.start()
    got = 0
    while q.get() != -1:
        got += 1
    elapsed = time.perf_counter() - t
    p.join()
    assert got == n
    return n / elapsed


def bench_queue():
    n = 200_000 // SCALE
    return queue_rate(shmem.Queue(1024), n), queue_rate(mp.Queue(1024), n)


def main():
    rows = [
        ("val.value += 1, one process (vs with val.get_lock(): ...)", bench_value(), 5),
        ("val.value += 1, two processes at once (vs with val.get_lock(): ...)", bench_value_contended(), 5),
        ("dict set + get (vs Manager().dict())", bench_dict(), 50),
        ("queue put + get, 1 -> 1 (vs multiprocessing.Queue)", bench_queue(), 10),
    ]
    print("| operation | shmem (ops/s) | multiprocessing (ops/s) | ratio | goal |")
    print("|---|---:|---:|---:|---:|")
    for name, (ours, theirs), goal in rows:
        print(f"| {name} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.1f}x | {goal}x |")


if __name__ == "__main__":
    main()
