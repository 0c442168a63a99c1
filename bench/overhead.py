"""Target slowdown under stax versus under ``perf record``, on the split workload.

Runs ``split N`` bare, under ``stax record`` and under ``perf record -F 900 -g -e cpu-clock``,
interleaved (the order rotates every round), and compares the ``elapsed_s`` the target itself
prints. N is calibrated so a bare run takes about 1.5 s.
"""

from __future__ import annotations

import json
import os
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
)

TARGET_BARE_S = 1.5
TARGET_GAP_PP = 2.0  # stax's slowdown within this many percentage points of perf's
PERF_FREQ = 900
MODES = ("bare", "stax", "perf")


def one_run(env: Env, mode: str, rounds: int, i: int) -> dict[str, Any]:
    split = str(env.bin["split"])
    if mode == "bare":
        p = env.run([split, str(rounds)])
        return {"elapsed_s": elapsed_from(p.err), "wall_s": p.wall}
    if mode == "stax":
        p = env.stax("record", "--json", "--", split, str(rounds))
        run = json.loads(p.out)
        return {"elapsed_s": elapsed_from(p.err), "wall_s": p.wall,
                "lost_records": int(run["lost_records"]), "samples": int(run["samples"])}
    out = env.tmp / f"perf-{i}.data"
    p = env.run(["perf", "record", "-F", str(PERF_FREQ), "-g", "-e", "cpu-clock", "-o",
                 str(out), "--", split, str(rounds)])
    try:
        os.unlink(out)
    except OSError:
        pass
    return {"elapsed_s": elapsed_from(p.err), "wall_s": p.wall}


def main() -> int:
    args = parse_args(__doc__ or "")
    reps = 2 if args.quick else 5
    with bench_env("overhead") as env:
        env.start_server()
        rounds = calibrate_split(env, TARGET_BARE_S)
        log(f"overhead: split {rounds} rounds, {reps} runs per mode, interleaved")
        for mode in MODES:  # warm-up: page cache, server's first run, perf's first start
            one_run(env, mode, max(100, rounds // 10), -1)
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for i in range(reps):
            order = MODES[i % 3:] + MODES[:i % 3]
            for mode in order:
                runs[mode].append(one_run(env, mode, rounds, i))
            log(f"  round {i + 1}/{reps}: " + ", ".join(
                f"{m} {runs[m][-1]['elapsed_s']:.3f}s" for m in MODES))

    med = {m: median([r["elapsed_s"] for r in runs[m]]) for m in MODES}
    wall = {m: median([r["wall_s"] for r in runs[m]]) for m in MODES}
    stax_ratio = ratio(med["stax"], med["bare"])
    perf_ratio = ratio(med["perf"], med["bare"])
    gap_pp = (stax_ratio - perf_ratio) * 100
    lost = [r["lost_records"] for r in runs["stax"]]
    samples = [r["samples"] for r in runs["stax"]]
    doc = {
        "benchmark": "overhead",
        "quick": args.quick,
        "workload": f"split {rounds}",
        "runs_per_mode": reps,
        "median_elapsed_s": med,
        "median_wall_s": wall,
        "elapsed_s": {m: [r["elapsed_s"] for r in runs[m]] for m in MODES},
        "stax_over_bare": stax_ratio,
        "perf_over_bare": perf_ratio,
        "stax_minus_perf_pp": gap_pp,
        "target_pp": TARGET_GAP_PP,
        "within_target": gap_pp <= TARGET_GAP_PP,
        "stax_lost_records": lost,
        "stax_samples": samples,
    }
    lines = [
        f"overhead: split {rounds} rounds, median of {reps} interleaved runs per mode "
        "(target-reported elapsed_s)",
        f"  bare                 {med['bare']:.3f} s",
        f"  stax record          {med['stax']:.3f} s   stax/bare = {stax_ratio:.3f} "
        f"({(stax_ratio - 1) * 100:+.1f}%)",
        f"  perf record -F {PERF_FREQ}   {med['perf']:.3f} s   perf/bare = {perf_ratio:.3f} "
        f"({(perf_ratio - 1) * 100:+.1f}%)",
        f"  stax slowdown - perf slowdown = {gap_pp:+.2f} points "
        f"(target <= {TARGET_GAP_PP:.0f}: {'met' if gap_pp <= TARGET_GAP_PP else 'MISSED'})",
        f"  command wall time: stax/bare = {ratio(wall['stax'], wall['bare']):.3f}, "
        f"perf/bare = {ratio(wall['perf'], wall['bare']):.3f}",
        f"  stax lost records per run: {lost} (samples per run: {samples})",
    ]
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
