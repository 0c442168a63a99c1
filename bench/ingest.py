"""How fast stax takes samples in: live through the server, and offline decode+intern throughput.

(a) live: ``stax record -F 1999 -- spin 5 4`` through an isolated stax-server; samples received,
    samples/s, lost records and the server's CPU time over the run as a fraction of one core.
(b) offline: record spin in this process with ``stax.capture.recorder.Recorder``, keeping the raw
    bytes of every ring-buffer read; then time decoding and interning those bytes into a fresh
    ``Profile`` on one core, and compare the rate with the 4 x 1999 Hz the live run demands.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _common import Env, bench_env, emit, log, median, parse_args, proc_cpu_seconds, ratio

from stax.capture import records as rec
from stax.capture.recorder import Recorder
from stax.profile.tables import Profile

FREQ = 1999
THREADS = 4
TARGET_LOST = 0


# --- (a) live, through the server ------------------------------------------------------------

def live(env: Env, seconds: float) -> dict[str, Any]:
    server_pid = env.start_server()
    # one tiny run first so the server's first-run costs (imports, symbolizer) are not counted
    env.stax("record", "--json", "--", str(env.bin["spin"]), "0.05", "1")
    cpu0 = proc_cpu_seconds(server_pid)
    t0 = time.perf_counter()
    p = env.stax("record", "-F", str(FREQ), "--json", "--", str(env.bin["spin"]), str(seconds),
                 str(THREADS))
    wall = time.perf_counter() - t0
    cpu1 = proc_cpu_seconds(server_pid)
    run = json.loads(p.out)
    secs = run["elapsed_ms"] / 1000
    cpus = len(os.sched_getaffinity(0))
    return {
        "workload": f"spin {seconds:g} {THREADS}",
        "frequency_hz": FREQ,
        "samples": int(run["samples"]),
        "run_elapsed_s": secs,
        "samples_per_s": ratio(run["samples"], secs),
        "possible_per_s": FREQ * min(THREADS, cpus),
        "lost_records": int(run["lost_records"]),
        "threads": int(run["threads"]),
        "server_cpu_s": cpu1 - cpu0,
        "record_wall_s": wall,
        "server_core_fraction": ratio(cpu1 - cpu0, wall),
    }


# --- (b) offline decode + intern throughput --------------------------------------------------

def record_in_process(env: Env, seconds: float) -> tuple[list[bytes], int, int]:
    """Launch spin under an in-process Recorder; the raw chunks, live sample count and lost."""
    argv = [str(env.bin["spin"]), f"{seconds:g}", str(THREADS)]
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the target: wait for the go-ahead, then exec (events enable at exec)
        try:
            os.close(go_w)
            if os.read(go_r, 1) == b"g":
                os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(go_r)
    profile = Profile(None)
    recorder = Recorder(profile, profile.lock, FREQ)
    chunks: list[bytes] = []
    try:
        recorder.open_launch(pid)
        for rb in recorder.buffers:
            rb.read = _tap(rb.read, chunks)  # type: ignore[method-assign]
        pidfd = os.pidfd_open(pid)
        os.write(go_w, b"g")
        os.close(go_w)
        try:
            recorder.run(threading.Event(), pidfd, time.monotonic() + seconds + 30)
        finally:
            os.close(pidfd)
    finally:
        recorder.close()
        os.waitpid(pid, 0)
    return chunks, profile.counts["samples"], profile.counts["lost"]


def _tap(read: Callable[[], bytes], chunks: list[bytes]) -> Callable[[], bytes]:
    def tapped() -> bytes:
        data = read()
        if data:
            chunks.append(data)
        return data

    return tapped


def decode_orderer(chunks: list[bytes]) -> Profile:
    prof = Profile(None)
    orderer = rec.Orderer(prof)
    for c in chunks:
        orderer.add(c)
    orderer.flush(None)
    return prof


def decode_stream(chunks: list[bytes]) -> Profile:
    prof = Profile(None)
    for c in chunks:
        prof.ingest(c)
    return prof


def time_decode(fn: Callable[[list[bytes]], Profile], chunks: list[bytes],
                reps: int) -> tuple[float, int]:
    times: list[float] = []
    samples = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        prof = fn(chunks)
        times.append(time.perf_counter() - t0)
        samples = prof.counts["samples"]
    return median(times), samples


def offline(env: Env, seconds: float, reps: int) -> dict[str, Any]:
    chunks, live_samples, lost = record_in_process(env, seconds)
    nbytes = sum(len(c) for c in chunks)
    old_affinity = os.sched_getaffinity(0)
    cpu = min(old_affinity)
    os.sched_setaffinity(0, {cpu})  # this thread only: decode on one core
    try:
        t_ord, n_ord = time_decode(decode_orderer, chunks, reps)
        t_str, n_str = time_decode(decode_stream, chunks, reps)
    finally:
        os.sched_setaffinity(0, old_affinity)
    demand = FREQ * THREADS
    rate_ord = ratio(n_ord, t_ord)
    rate_str = ratio(n_str, t_str)
    return {
        "workload": f"spin {seconds:g} {THREADS}",
        "chunks": len(chunks),
        "bytes": nbytes,
        "samples": n_ord,
        "samples_in_live_profile": live_samples,
        "lost_records": lost,
        "pinned_cpu": cpu,
        "reps": reps,
        "orderer_s": t_ord,
        "orderer_samples_per_s": rate_ord,
        "orderer_mb_per_s": ratio(nbytes / 1e6, t_ord),
        "stream_s": t_str,
        "stream_samples_per_s": rate_str,
        "stream_samples": n_str,
        "demand_samples_per_s": demand,
        "orderer_over_demand": ratio(rate_ord, demand),
        "stream_over_demand": ratio(rate_str, demand),
    }


def main() -> int:
    args = parse_args(__doc__ or "")
    seconds = 2.0 if args.quick else 5.0
    reps = 1 if args.quick else 3
    with bench_env("ingest") as env:
        log(f"ingest (a): stax record -F {FREQ} -- spin {seconds:g} {THREADS} via the server")
        a = live(env, seconds)
        env.stop_server()
        log(f"ingest (b): in-process Recorder on spin {seconds:g} {THREADS}, then decode x{reps}")
        b = offline(env, seconds, reps)

    doc = {"benchmark": "ingest", "quick": args.quick, "live": a, "offline": b,
           "target_lost_records": TARGET_LOST}
    lines = [
        f"ingest (a) live: stax record -F {FREQ} -- {a['workload']} "
        f"({a['threads']} threads, {len(os.sched_getaffinity(0))} CPUs)",
        f"  samples received     {a['samples']} in {a['run_elapsed_s']:.2f} s = "
        f"{a['samples_per_s']:.0f}/s ({ratio(a['samples_per_s'], a['possible_per_s']):.3f} of "
        f"the {a['possible_per_s']}/s the CPUs allow)",
        f"  lost records         {a['lost_records']} (target {TARGET_LOST}: "
        f"{'met' if a['lost_records'] <= TARGET_LOST else 'MISSED'})",
        f"  server CPU           {a['server_cpu_s']:.2f} s over {a['record_wall_s']:.2f} s = "
        f"{a['server_core_fraction']:.3f} of one core",
        f"ingest (b) offline: {b['samples']} samples, {b['bytes'] / 1e6:.1f} MB in "
        f"{b['chunks']} reads, decoded on CPU {b['pinned_cpu']} (median of {b['reps']})",
        f"  Orderer + flush(None)   {b['orderer_s']:.3f} s = {b['orderer_samples_per_s']:.0f} "
        f"samples/s = {b['orderer_over_demand']:.2f}x the {b['demand_samples_per_s']}/s demand "
        f"({b['orderer_mb_per_s']:.1f} MB/s)",
        f"  Profile.ingest per read {b['stream_s']:.3f} s = {b['stream_samples_per_s']:.0f} "
        f"samples/s = {b['stream_over_demand']:.2f}x the demand",
    ]
    if b["samples"] != b["samples_in_live_profile"]:
        lines.append(f"  note: offline decode found {b['samples']} samples but the live profile "
                     f"had {b['samples_in_live_profile']}")
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
