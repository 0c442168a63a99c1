"""Three shapes of Python code, each reached from a named function called at module level and
split about 40/30/30: ``recursion`` descends ``descend`` DEPTH+1 levels deep to ``bottom``,
which does the work; ``generators`` sums what the generator ``produce`` yields (the work is in
the generator's body); ``coroutines`` runs ``outer`` on an asyncio event loop, which awaits
``inner``, which does the work between ``await asyncio.sleep(0)``s. It times the three itself
(CPU time) and prints the split it measured (stderr, as JSON) when done.
Usage: pyshapes.py [SECONDS]"""

import asyncio
import json
import sys
import time

DEPTH = 20  # descend(DEPTH) .. descend(0): DEPTH + 1 frames of descend above bottom
UNIT = 10000  # loop iterations of one unit of work (~0.5 ms)
ITEM = 250  # loop iterations per item a generator yields
PAUSE = 5000  # loop iterations of a coroutine between its awaits


def bottom(n):
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def descend(level, n):
    if level == 0:
        return bottom(n)
    return descend(level - 1, n) + 1


def recursion(units):
    for _ in range(units):
        descend(DEPTH, UNIT)


def produce(n):
    for _ in range(n // ITEM):
        x = 0
        for i in range(ITEM):  # the work of one item, then it is handed over
            x += i * i % 7
        yield x


def generators(units):
    total = 0
    for _ in range(units):
        for v in produce(UNIT):
            total += v
    return total


async def inner(n):
    x = 0
    for i in range(n):
        x += i * i % 7
        if i % PAUSE == 0:
            await asyncio.sleep(0)
    return x


async def outer(units):
    total = 0
    for _ in range(units):
        total += await inner(UNIT)
    return total


loop = asyncio.new_event_loop()


def coroutines(units):
    return loop.run_until_complete(outer(units))


seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
plan = [(recursion, 90), (generators, 80), (coroutines, 45)]  # ~40/30/30 ms per round
spent = {f.__name__: 0 for f, _ in plan}
clock = time.thread_time_ns  # on-CPU time, as samples count it
end = time.monotonic() + seconds
while time.monotonic() < end:
    for f, units in plan:
        t0 = clock()
        f(units)
        spent[f.__name__] += clock() - t0
total = sum(spent.values())
print(json.dumps({k: round(100 * v / total, 2) for k, v in spent.items()}), file=sys.stderr)
