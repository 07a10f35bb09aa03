"""multiprocessing's Value example, done right: two processes each add 1 a
million times, written exactly as the tutorial writes it. With
`from multiprocessing import Value` this loses updates (run it: it prints
less than 2000000); with shmem it prints `hits = 2000000`."""

from multiprocessing import Process

from shmem import Value  # was: from multiprocessing import Value


def count(counter, times):
    for _ in range(times):
        counter.value += 1


if __name__ == "__main__":
    counter = Value("i", 0)
    workers = [Process(target=count, args=(counter, 1_000_000)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(f"hits = {counter.value}")
