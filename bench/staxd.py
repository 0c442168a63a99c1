"""Brokered recording (descriptors opened by staxd) versus in-process recording: target slowdown.

Runs ``split N`` bare, under ``stax record`` with the server opening its own events, and under
``stax record --daemon-socket`` with a staxd on a temp socket opening them, interleaved, against
one server; compares the ``elapsed_s`` the target prints. N is calibrated to a ~1.5 s bare run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

from _common import (
    Env,
    bench_env,
    calibrate_split,
    elapsed_from,
    emit,
    log,
    median,
    parse_args,
    ratio,
    tool,
    wait_for_socket,
)

TARGET_BARE_S = 1.5
TARGET_GAP_PP = 2.0  # brokered slowdown within this many points of in-process
MODES = ("bare", "in-process", "staxd")


def one_run(env: Env, mode: str, rounds: int, sock: str) -> dict[str, Any]:
    split = str(env.bin["split"])
    if mode == "bare":
        p = env.run([split, str(rounds)])
        return {"elapsed_s": elapsed_from(p.err), "wall_s": p.wall}
    daemon = sock if mode == "staxd" else str(env.tmp / "no-staxd.sock")
    p = env.stax("record", "--json", "--daemon-socket", daemon, "--", split, str(rounds))
    run = json.loads(p.out)
    if run.get("capture_mode") != mode:
        raise RuntimeError(f"expected a {mode} run, got {run.get('capture_mode')}: {p.err}")
    return {"elapsed_s": elapsed_from(p.err), "wall_s": p.wall,
            "lost_records": int(run["lost_records"]), "samples": int(run["samples"])}


def start_staxd(env: Env) -> tuple[subprocess.Popen[bytes], str]:
    sock = str(env.tmp / "staxd.sock")
    logf = open(env.tmp / "staxd.log", "ab")  # noqa: SIM115 - lives as long as staxd
    proc = subprocess.Popen([tool("staxd"), "--socket", sock], stdout=logf, stderr=logf)
    try:
        wait_for_socket(sock, proc, env.tmp / "staxd.log", name="staxd")
    except RuntimeError as e:
        proc.kill()
        raise SystemExit(f"error: {e}") from None
    return proc, sock


def main() -> int:
    args = parse_args(__doc__ or "")
    reps = 2 if args.quick else 5
    with bench_env("staxd") as env:
        env.start_server()
        staxd, sock = start_staxd(env)
        try:
            rounds = calibrate_split(env, TARGET_BARE_S)
            log(f"staxd: split {rounds} rounds, {reps} runs per mode, interleaved")
            for mode in MODES:
                one_run(env, mode, max(100, rounds // 10), sock)
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
            for i in range(reps):
                order = MODES[i % 3:] + MODES[:i % 3]
                for mode in order:
                    runs[mode].append(one_run(env, mode, rounds, sock))
                log(f"  round {i + 1}/{reps}: " + ", ".join(
                    f"{m} {runs[m][-1]['elapsed_s']:.3f}s" for m in MODES))
        finally:
            staxd.send_signal(signal.SIGTERM)
            staxd.wait(10)
    med = {m: median([r["elapsed_s"] for r in runs[m]]) for m in MODES}
    wall = {m: median([r["wall_s"] for r in runs[m]]) for m in MODES}
    local = ratio(med["in-process"], med["bare"])
    broker = ratio(med["staxd"], med["bare"])
    gap_pp = (broker - local) * 100
    doc = {
        "benchmark": "staxd",
        "quick": args.quick,
        "workload": f"split {rounds}",
        "runs_per_mode": reps,
        "median_elapsed_s": med,
        "median_wall_s": wall,
        "in_process_over_bare": local,
        "staxd_over_bare": broker,
        "staxd_over_in_process": ratio(med["staxd"], med["in-process"]),
        "staxd_minus_in_process_pp": gap_pp,
        "target_pp": TARGET_GAP_PP,
        "within_target": abs(gap_pp) <= TARGET_GAP_PP,
        "lost_records": {m: [r["lost_records"] for r in runs[m]] for m in MODES[1:]},
        "samples": {m: [r["samples"] for r in runs[m]] for m in MODES[1:]},
    }
    lines = [
        f"staxd: split {rounds} rounds, median of {reps} interleaved runs per mode "
        "(target-reported elapsed_s)",
        f"  bare                   {med['bare']:.3f} s",
        f"  in-process recording   {med['in-process']:.3f} s   /bare = {local:.3f}",
        f"  brokered (staxd)       {med['staxd']:.3f} s   /bare = {broker:.3f}",
        f"  brokered / in-process = {doc['staxd_over_in_process']:.3f}; slowdown difference "
        f"{gap_pp:+.2f} points (target |diff| <= {TARGET_GAP_PP:.0f}: "
        f"{'met' if abs(gap_pp) <= TARGET_GAP_PP else 'MISSED'})",
        f"  command wall time: brokered / in-process = "
        f"{ratio(wall['staxd'], wall['in-process']):.3f}",
        f"  samples per run: {doc['samples']}; lost records: {doc['lost_records']}",
    ]
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
