"""A Python target whose stacks are known: the main thread parks in recursion, a worker thread
in a method called through a lambda from sorted() (a C function between two activations of
the interpreter), a third inside a generator. Once all are parked, prints their native
thread ids."""

import sys
import threading
import time

ready = threading.Barrier(3)


def park():
    ready.wait()
    if threading.current_thread() is threading.main_thread():
        time.sleep(0.3)  # the others reach their sleep too
        print(threading.get_native_id(), ids["worker"], ids["gen"], flush=True)
    time.sleep(600)


def recurse(n):
    if n == 0:
        park()
        return 0
    return recurse(n - 1) + 1


class Worker:
    def run(self):
        sorted([2, 1], key=lambda x: self.key(x))

    def key(self, x):
        if x == 2:
            park()
        return x


def gen():
    yield 1
    park()
    yield 2


def consume():
    for _ in gen():
        pass


threads = [
    threading.Thread(target=Worker().run, name="worker"),
    threading.Thread(target=consume, name="gen"),
]
for t in threads:
    t.start()
time.sleep(0.2)
ids = {t.name: t.native_id for t in threads}
sys.setrecursionlimit(200)
recurse(5)
