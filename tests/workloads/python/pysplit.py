"""Three pure-Python functions taking 60/30/10% of the run, called from module level. It
times them itself (CPU time) and prints the split it measured (stderr, as JSON) when done.
With ``--rounds N`` it does a fixed amount of work (N rounds of the three) instead of running
for SECONDS, and also prints ``elapsed_s=`` (wall time of the rounds) on stderr.
Usage: pysplit.py [SECONDS] | pysplit.py --rounds N"""

import json
import sys
import time

UNIT = 20000  # loop iterations of one unit of work (~1 ms)


def heavy(n):
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def medium(n):
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def light(n):
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


rounds = int(sys.argv[2]) if sys.argv[1:2] == ["--rounds"] else None
seconds = float(sys.argv[1]) if len(sys.argv) > 1 and rounds is None else 3.0
spent = {"heavy": 0, "medium": 0, "light": 0}
clock = time.thread_time_ns  # on-CPU time, as samples count it
start = time.monotonic()
end = start + seconds
done = 0
while (done < rounds) if rounds is not None else (time.monotonic() < end):
    done += 1
    t0 = clock()
    heavy(6 * UNIT)
    t1 = clock()
    medium(3 * UNIT)
    t2 = clock()
    light(UNIT)
    t3 = clock()
    spent["heavy"] += t1 - t0
    spent["medium"] += t2 - t1
    spent["light"] += t3 - t2
total = sum(spent.values())
print(json.dumps({k: round(100 * v / total, 2) for k, v in spent.items()}), file=sys.stderr)
if rounds is not None:
    print(f"elapsed_s={time.monotonic() - start:.6f}", file=sys.stderr)
