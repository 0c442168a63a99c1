"""The run journal's cost: what a flush every second costs as a long run grows, and recovery.

A synthetic run grows by 2 threads x 999 Hz = 1998 samples per simulated second (the soak's
rate), over 600 simulated seconds (``--quick``: 120), with a Zipf-like draw over 3000 stacks;
after each second the journal flushes what was added (stax.server.journal.Journal.flush, the
call the server makes every second). Reports the flush time of the first and last minute (a
flush must cost in proportion to the new rows, not the run's size, so these should match), its
share of one core, journal bytes per sample, and how long recovering the journal into a kept
run takes. **Target:** a flush under 1 % of a core, first and last minute within 2x.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from array import array
from pathlib import Path

from _common import emit, log, median, parse_args, ratio

RATE = 1998  # samples per second: two busy threads at 999 Hz


def main() -> int:
    args = parse_args(__doc__ or "")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import numpy as np
    from archive import synthetic

    from stax.server.history import History
    from stax.server.journal import Journal
    from stax.server.recover import recover_all

    seconds = 120 if args.quick else 600
    base = synthetic(1)  # the functions, frames and stacks; one sample
    rng = np.random.default_rng(3)
    nstacks = len(base.stack_parent)
    d = tempfile.mkdtemp(prefix="stax-bench-journal-")
    try:
        h = History(os.path.join(d, "runs"))
        run = {"id": 1, "command": "synthetic", "mode": "launch", "pid": 1, "argv": [],
               "frequency_hz": 999, "started_at_unix_ms": int(time.time() * 1000)}
        j = Journal(h.journal_of(1), base, lambda: run, interval=3600)
        assert j.start(), j.error
        t = base.first_time or 10**9
        times = []
        log(f"journal: {seconds} simulated seconds at {RATE} samples/s")
        for _ in range(seconds):
            n = RATE
            ts = t + np.cumsum(rng.integers(450_000, 550_000, n)).astype(np.int64)
            t = int(ts[-1])
            with base.lock:
                base.s_time.frombytes(ts.tobytes())
                base.s_tid.frombytes((1000 + rng.integers(0, 2, n)).astype(np.int32).tobytes())
                base.s_stack.frombytes((rng.zipf(1.3, n) % nstacks).astype(np.int32).tobytes())
                base.s_weight.frombytes(np.full(n, 1_001_001, np.int64).tobytes())
                base.s_cpu.frombytes(array("h", [0] * n).tobytes())
                base.last_time = t
            t0 = time.perf_counter()
            j.flush()
            times.append(time.perf_counter() - t0)
        j.close(discard=False)
        samples = len(base.s_stack)
        t0 = time.perf_counter()
        got = recover_all(h.dir, h.path_of)
        recover_s = time.perf_counter() - t0
        assert got == [1]
        first, last = median(times[:60]), median(times[-60:])
        doc = {
            "seconds": seconds, "samples": samples,
            "flush_ms_first_minute": round(first * 1000, 3),
            "flush_ms_last_minute": round(last * 1000, 3),
            "last_over_first": round(ratio(last, first), 2),
            "core_share_pct": round(100 * last / 1.0, 3),
            "journal_bytes_per_sample": round(ratio(j.bytes, samples), 2),
            "recover_s": round(recover_s, 3),
        }
    finally:
        shutil.rmtree(d, ignore_errors=True)
    ok = doc["core_share_pct"] < 1 and doc["last_over_first"] < 2
    emit(args, doc, [
        f"journal: {samples} samples over {seconds} s; a flush takes "
        f"{doc['flush_ms_first_minute']} ms in the first minute, "
        f"{doc['flush_ms_last_minute']} ms in the last ({doc['last_over_first']}x), "
        f"{doc['core_share_pct']} % of a core",
        f"journal: {doc['journal_bytes_per_sample']} bytes per sample on disk; recovering it "
        f"into a kept run took {doc['recover_s']} s",
        "journal: target met" if ok else "journal: MISSED (flush under 1 % of a core, "
                                          "flat as the run grows)",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
