"""Named Python functions that spend their time in C extensions: ``squeeze`` in zlib (the
module's C code, then libz's deflate), ``encode`` and ``decode`` in json's C accelerator
(_json: the encoder and the scanner), split about 50/30/20. It times the three itself (CPU
time) and prints the split it measured (stderr, as JSON) when done.
Usage: pyext.py [SECONDS]"""

import json
import random
import sys
import time
import zlib

rng = random.Random(7)
BLOB = bytes(rng.randrange(64) for _ in range(64 * 1024))  # compresses, but not for free
DOC = [{"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"][: i % 4], "score": i * 0.25,
        "ok": i % 3 == 0, "parent": None} for i in range(300)]
TEXT = json.dumps(DOC)


def squeeze(n):
    size = 0
    for _ in range(n):
        size += len(zlib.compress(BLOB, 6))
    return size


def encode(n):
    size = 0
    for _ in range(n):
        size += len(json.dumps(DOC))
    return size


def decode(n):
    count = 0
    for _ in range(n):
        count += len(json.loads(TEXT))
    return count


def calibrate(fn, seconds=0.02):
    """How many calls of ``fn`` take about ``seconds`` of CPU."""
    n = 1
    while True:
        t0 = time.thread_time()
        fn(n)
        dt = time.thread_time() - t0
        if dt >= seconds:
            return max(1, round(n * seconds / dt))
        n *= 2


seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
# units of ~10 ms of CPU each: 5/3/2 of them per round
units = {f: calibrate(f) // 2 or 1 for f in (squeeze, encode, decode)}
plan = [(squeeze, 5), (encode, 3), (decode, 2)]
spent = {f.__name__: 0 for f, _ in plan}
clock = time.thread_time_ns  # on-CPU time, as samples count it
end = time.monotonic() + seconds
while time.monotonic() < end:
    for f, k in plan:
        t0 = clock()
        f(k * units[f])
        spent[f.__name__] += clock() - t0
total = sum(spent.values())
print(json.dumps({k: round(100 * v / total, 2) for k, v in spent.items()}), file=sys.stderr)
