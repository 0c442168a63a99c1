"""Archive size and speed: save and open of a 1M-sample run, bytes per sample.

(a) A synthetic 1M-sample profile shaped like a long recording (4 threads, 3000 distinct stacks
drawn Zipf-like, 1.11 ms periods with jitter), saved and loaded with the library directly.
(b) A real recording (``spin`` at -F 1999 through stax-server), saved with ``stax save`` and
read back with ``stax open``. Reports the ratios to the targets (save and open under 2 s, under
12 bytes per sample) and the compression ratio against the raw in-memory columns.
(c) The off-CPU tables alone: the synthetic profile's stacks plus 200k intervals and 50k wakeups
(``--quick``: 40k/10k) shaped like a context-switch-heavy run; bytes per interval and wakeup,
save/open times, and whether the views over them come back identical.
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


def with_offcpu(p, n: int):  # type: ignore[no-untyped-def]
    """The synthetic profile's stacks with ``n`` off-CPU intervals and n/4 wakeups and no
    samples: intervals ping-pong between the four threads, most short, a few long."""
    from array import array

    import numpy as np

    from stax.profile import offcpu
    from stax.profile.tables import Profile

    rng = np.random.default_rng(11)
    q = Profile(None)
    q.funcs, q.binaries = p.funcs, p.binaries
    q.frame_binary, q.frame_offset, q.frame_func = p.frame_binary, p.frame_offset, p.frame_func
    q.stack_parent, q.stack_frame, q.threads = p.stack_parent, p.stack_frame, p.threads
    nst = len(p.stack_parent)
    m = n // 4
    iv, wk = q.intervals, q.wakeups
    starts = p.first_time + np.cumsum(rng.integers(2_000, 40_000, n)).astype(np.int64)
    durs = np.where(rng.random(n) < 0.02, rng.integers(1_000_000, 50_000_000, n),
                    rng.integers(1_000, 30_000, n)).astype(np.int64)
    iv.tid = array("i", (1000 + rng.integers(0, 4, n)).astype(np.int32).tobytes())
    iv.start_ns = array("q", starts.tobytes())
    iv.duration_ns = array("q", durs.tobytes())
    iv.reason = array("b", rng.choice([offcpu.REASON_CODE[r] for r in ("ipc", "lock", "ready")],
                                      n).astype(np.int8).tobytes())
    iv.stack = array("i", (rng.zipf(1.5, n) % nst).astype(np.int32).tobytes())
    iv.state = array("i", rng.choice([0, 1, 2], n).astype(np.int32).tobytes())
    links = np.full(n, -1, np.int32)
    linked = np.sort(rng.choice(n, m, replace=False))
    links[linked] = np.arange(m, dtype=np.int32)
    iv.wakeup = array("i", links.tobytes())
    wk.time_ns = array("q", (starts[linked] + durs[linked] - 500).tobytes())
    wk.waker_tid = array("i", (1000 + rng.integers(0, 4, m)).astype(np.int32).tobytes())
    wk.wakee_tid = array("i", np.frombuffer(iv.tid, np.int32)[linked].tobytes())
    wk.waker_stack = array("i", (rng.zipf(1.5, m) % nst).astype(np.int32).tobytes())
    q.first_time, q.last_time = int(starts[0]), int(starts[-1] + durs[-1])
    return q


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
    # (c) off-CPU tables
    n_iv = 40_000 if args.quick else 200_000
    log(f"archive: {n_iv} off-CPU intervals and {n_iv // 4} wakeups")
    q = with_offcpu(p, n_iv)
    from stax.profile import offviews

    path = os.path.join(d, "offcpu.stax")
    t0 = time.perf_counter()
    fm.save(q, path, {"id": 2, "command": "synthetic off-CPU"})
    off_save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = fm.load(path)
    off_load_s = time.perf_counter() - t0
    tables = b.manifest["tables"]
    iv_bytes = sum(c["size"] for c in tables["intervals"]["columns"].values())
    wk_bytes = sum(c["size"] for c in tables["wakeups"]["columns"].values())
    off_same = all(fn(b.profile, views.Filter(), *a) == fn(q, views.Filter(), *a) for fn, a in (
        (views.threads, (0,)), (offviews.wakers, (0,)), (views.flame, (0, 0.0, "offcpu"))))
    off = {"intervals": n_iv, "wakeups": n_iv // 4, "save_s": round(off_save_s, 3),
           "open_s": round(off_load_s, 3), "interval_bytes": iv_bytes,
           "bytes_per_interval": round(iv_bytes / n_iv, 2), "wakeup_bytes": wk_bytes,
           "bytes_per_wakeup": round(wk_bytes / (n_iv // 4), 2),
           "raw_bytes_per_interval": 8 + 8 + 1 + 4 * 4, "round_trip_identical": off_same}
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
    doc = {"synthetic": syn, "recorded": real, "offcpu": off,
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
        f"off-CPU tables: {n_iv} intervals at {off['bytes_per_interval']} bytes each (raw "
        f"{off['raw_bytes_per_interval']}), {n_iv // 4} wakeups at {off['bytes_per_wakeup']} "
        f"bytes each; save {off_save_s:.2f} s, open {off_load_s:.2f} s; views identical after "
        f"the round trip: {off_same}",
        f"recorded spin ({real['samples']} samples): {real['archive_bytes']} bytes = "
        f"{real['bytes_per_sample']} bytes/sample; stax save {save_wall:.2f} s, stax open "
        f"{open_wall:.2f} s (whole CLI invocations)",
    ]
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
