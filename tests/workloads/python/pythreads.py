"""Three threads, each in a Python function of its own (``alpha``, ``beta``, ``gamma``) that
calls the shared ``spin``: alpha works all the time; beta and gamma rest between rounds of work
(beta 2 ms after 4 units, gamma 4 ms after 2), so they take different shares of the CPU. Once
all three run it prints their native thread ids (stdout, one JSON line); when done, the CPU time
each took in milliseconds (stderr, one JSON line). The main thread only waits.
Usage: pythreads.py [SECONDS]"""

import json
import sys
import threading
import time

UNIT = 20000  # loop iterations of one round of work (~1 ms)


def spin(n):
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def alpha(stop):
    while not stop.is_set():
        spin(UNIT)


def beta(stop):
    while not stop.is_set():
        spin(4 * UNIT)
        time.sleep(0.002)


def gamma(stop):
    while not stop.is_set():
        spin(2 * UNIT)
        time.sleep(0.004)


cpu_ms = {}
tids = {}
started = threading.Barrier(4)


def run(fn, stop):
    tids[fn.__name__] = threading.get_native_id()
    started.wait()
    fn(stop)
    cpu_ms[fn.__name__] = time.thread_time_ns() / 1e6


seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
stop = threading.Event()
workers = [threading.Thread(target=run, args=(fn, stop), name=fn.__name__)
           for fn in (alpha, beta, gamma)]
for t in workers:
    t.start()
started.wait()
print(json.dumps(tids), flush=True)
time.sleep(seconds)
stop.set()
for t in workers:
    t.join()
print(json.dumps({k: round(v, 1) for k, v in cpu_ms.items()}), file=sys.stderr)
