"""A json/dict-heavy CPython workload: json.dumps/json.loads of nested dicts in a loop for the
given number of seconds (default 1.5), with a gc.collect now and then."""

import gc
import json
import sys
import time


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        doc = {f"k{i}": {"id": i, "tags": [str(i), i * 2, None], "sub": {"x": i / 3, "y": [i] * 4}}
               for i in range(200)}
        back = json.loads(json.dumps(doc))
        n += len(back)
        if n % 20000 == 0:
            gc.collect()
    print(n, file=sys.stderr)


main()
