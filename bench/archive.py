"""Archive size and speed: save and open of a 1M-sample run, bytes per sample.

(a) A synthetic 1M-sample profile shaped like a long recording (4 threads, 3000 distinct stacks
drawn Zipf-like, 1.11 ms periods with jitter), saved and loaded with the library directly.
(b) A real recording (``spin`` at -F 1999 through stax-server), saved with ``stax save`` and
read back with ``stax open``. Reports the ratios to the targets (save and open under 2 s, under
12 bytes per sample) and the compression ratio against the raw in-memory columns.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_env, emit, log, parse_args, ratio

TARGET_S = 2.0
TARGET_BYTES_PER_SAMPLE = 12.0


def synthetic(n: int):  # type: ignore[no-untyped-def]
    import numpy as np

    from stax.profile.tables import Func, Profile, Thread

    rng = np.random.default_rng(7)
    p = Profile(None)
    nfuncs, nframes, nstacks = 400, 4000, 3000
    p.funcs = [Func(f"func_{i}", "prog", "/usr/bin/prog", 0x1000 + 64 * i, 64, True)
               for i in range(nfuncs)]
    prog = p.binary_id("/usr/bin/prog", "00ff", 1)
    for i in range(nframes):
        fid = p.frame_id(prog, 0x1000 + 4 * i)
        p.frame_func[fid] = i % nfuncs
    for s in range(nstacks):
        parent = -1 if s < 8 else int(rng.integers(max(0, s - 200), s))
        p.stack_id(parent, int(rng.integers(0, nframes)))
    tids = rng.integers(0, 4, n).astype(np.int32) + 1000
    times = 10**9 + np.cumsum(rng.integers(250_000, 300_000, n)).astype(np.int64)
    stacks = (rng.zipf(1.3, n) % nstacks).astype(np.int32)
    from array import array

    p.s_time = array("q", times.tobytes())
    p.s_tid = array("i", tids.tobytes())
    p.s_stack = array("i", stacks.tobytes())
    p.s_weight = array("q", np.full(n, 1_111_111, np.int64).tobytes())
    p.s_cpu = array("h", rng.integers(0, 4, n).astype(np.int16).tobytes())
    p.first_time, p.last_time = int(times[0]), int(times[-1])
    for t in range(1000, 1004):
        p.threads[t] = Thread(1, t, [(p.first_time, f"worker-{t}")], p.first_time, p.last_time)
    return p


def raw_bytes(p) -> int:  # type: ignore[no-untyped-def]
    return sum(a.itemsize * len(a) for a in (p.s_time, p.s_tid, p.s_stack, p.s_weight, p.s_cpu))


def main() -> int:
    args = parse_args(__doc__ or "")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from stax.archive import format as fm
    from stax.profile import views

    n = 200_000 if args.quick else 1_000_000
    log(f"archive: building a synthetic {n}-sample profile")
    p = synthetic(n)
    d = tempfile.mkdtemp(prefix="stax-bench-archive-")
    if True:
        path = os.path.join(d, "synthetic.stax")
        t0 = time.perf_counter()
        res = fm.save(p, path, {"id": 1, "command": "synthetic"})
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        a = fm.load(path)
        load_s = time.perf_counter() - t0
        same = (views.top(a.profile, views.Filter(), "self", 0) ==
                views.top(p, views.Filter(), "self", 0))
    bps = res["bytes"] / n
    syn = {"samples": n, "save_s": round(save_s, 3), "open_s": round(load_s, 3),
           "archive_bytes": res["bytes"], "bytes_per_sample": round(bps, 2),
           "raw_column_bytes": raw_bytes(p),
           "compression_ratio": round(ratio(raw_bytes(p), res["bytes"]), 1),
           "save_vs_target": round(save_s / TARGET_S, 3),
           "open_vs_target": round(load_s / TARGET_S, 3),
           "size_vs_target": round(bps / TARGET_BYTES_PER_SAMPLE, 3),
           "round_trip_identical": same}
    secs = "1" if args.quick else "4"
    with bench_env("archive") as env:
        env.start_server()
        log("archive: stax open / stax save of the synthetic archive through the server")
        t0 = time.perf_counter()
        env.stax("open", os.path.join(d, "synthetic.stax"))
        syn["stax_open_wall_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        env.stax("save", os.path.join(d, "again.stax"))
        syn["stax_save_wall_s"] = round(time.perf_counter() - t0, 3)
        shutil.rmtree(d, ignore_errors=True)
        log(f"archive: recording stax record -F 1999 -- spin {secs} 2")
        run = env.stax_json("record", "-F", "1999", "--", str(env.bin["spin"]), secs, "2")
        path = str(env.tmp / "real.stax")
        t0 = time.perf_counter()
        saved = env.stax_json("save", path)
        save_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        env.stax("open", path)
        open_wall = time.perf_counter() - t0
    real = {"samples": run["samples"], "archive_bytes": saved["bytes"],
            "bytes_per_sample": round(ratio(saved["bytes"], max(1, run["samples"])), 2),
            "stax_save_wall_s": round(save_wall, 3), "stax_open_wall_s": round(open_wall, 3)}
    doc = {"synthetic": syn, "recorded": real,
           "targets": {"save_s": TARGET_S, "open_s": TARGET_S,
                       "bytes_per_sample": TARGET_BYTES_PER_SAMPLE}}

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    lines = [
        f"synthetic {n} samples: save {save_s:.2f} s ({syn['save_vs_target']:.2f} of the 2 s "
        f"target, {mark(save_s < TARGET_S)}), open {load_s:.2f} s "
        f"({syn['open_vs_target']:.2f}, {mark(load_s < TARGET_S)})",
        f"  size {res['bytes']} bytes = {bps:.2f} bytes/sample ({syn['size_vs_target']:.2f} of "
        f"the 12 B target, {mark(bps < TARGET_BYTES_PER_SAMPLE)}); "
        f"{syn['compression_ratio']}x smaller than the raw columns; round trip identical: "
        f"{same}",
        f"  through stax-server (whole CLI invocations): stax open {syn['stax_open_wall_s']:.2f} s"
        f" ({mark(syn['stax_open_wall_s'] < TARGET_S)}), stax save {syn['stax_save_wall_s']:.2f} s"
        f" ({mark(syn['stax_save_wall_s'] < TARGET_S)})",
        f"recorded spin ({real['samples']} samples): {real['archive_bytes']} bytes = "
        f"{real['bytes_per_sample']} bytes/sample; stax save {save_wall:.2f} s, stax open "
        f"{open_wall:.2f} s (whole CLI invocations)",
    ]
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
