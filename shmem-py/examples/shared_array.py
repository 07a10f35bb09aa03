"""multiprocessing's Array example: two processes each lock the array, print
what they saw and add 1 to every element; the parent prints
`arr = [2, 3, 4, 5, 6]` last. The lock survives a holder that crashes."""

import os
from multiprocessing import Process

from shmem import Array  # was: from multiprocessing import Array


def add_one(arr):
    with arr.get_lock():
        print(f"child {os.getpid()} saw {arr[:]}")
        for i in range(len(arr)):
            arr[i] += 1


if __name__ == "__main__":
    arr = Array("i", range(5))
    for _ in range(2):
        p = Process(target=add_one, args=(arr,))
        p.start()
        p.join()
    print(f"arr = {arr[:]}")
