"""multiprocessing's Manager().dict() example, with no server process: the
parent sets 0 -> 'b', two children each set 1 -> 'a' and print the dict,
and so does the parent, last: `{0: 'b', 1: 'a'}`. The one change besides
the import: the dict declares its key and value types."""

from multiprocessing import Process

import shmem  # was: from multiprocessing import Manager


def set_and_print(d):
    d[1] = "a"
    print(d)


if __name__ == "__main__":
    d = shmem.Dict(int, str)  # was: d = Manager().dict()
    d[0] = "b"
    for _ in range(2):
        p = Process(target=set_and_print, args=(d,))
        p.start()
        p.join()
    print(d)
