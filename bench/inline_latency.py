"""Inline frames' cost on query latency: a ~20k-sample run of an inline-heavy C++ program.

Compiles tests/workloads/inlined.cpp with ``g++ -O2 -g`` (its hot helpers exist only as
DW_TAG_inlined_subroutine DIEs), records ``stax record -F 2000 -- inlined S`` (S is 10 s, longer
when the kernel delivered well under 2000 samples/s), then times whole ``stax top`` and
``stax flame`` invocations (text and ``--json``) with inline expansion on (the default) and off
(``--no-inline``) against query_latency's targets. The first query of the run also symbolises
it and builds the DWARF inline index: reported as ``first``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

from _common import ROOT, bench_env, emit, log, parse_args, ratio
from query_latency import TARGET_SAMPLES, TARGETS_S, time_cmd

QUERIES: list[tuple[str, list[str], str]] = [  # label, stax args, target key
    ("stax top", ["top"], "top"),
    ("stax flame", ["flame"], "flame"),
    ("stax top --json", ["top", "--json"], "top"),
    ("stax flame --json", ["flame", "--json"], "flame"),
]


def main() -> int:
    args = parse_args(__doc__ or "")
    reps = 3 if args.quick else 7
    gxx = shutil.which("g++")
    if gxx is None:
        log("inline_latency: g++ is not installed; skipped")
        return 0
    results: dict[str, Any] = {}
    with bench_env("inline") as env:
        exe = env.tmp / "inlined"
        subprocess.run([gxx, "-O2", "-g", "-o", str(exe),
                        str(ROOT / "tests" / "workloads" / "inlined.cpp")], check=True)
        env.start_server()
        seconds = 10.0
        for _attempt in range(3):
            log(f"inline_latency: recording stax record -F 2000 -- inlined {seconds:g}")
            run = env.stax_json("record", "-F", "2000", "--", str(exe), f"{seconds:g}")
            if run["samples"] >= 0.85 * TARGET_SAMPLES or seconds >= 30:
                break
            seconds = round(min(30.0, seconds * 1.05 * TARGET_SAMPLES / max(1, run["samples"])),
                            1)
        samples = int(run["samples"])
        inlined_rows = sum(1 for r in env.stax_json("top", "-n", "0")["rows"] if r.get("inlined"))
        for suffix, extra in (("", []), (" --no-inline", ["--no-inline"])):
            for label, sargs, key in QUERIES:
                argv = [*sargs, *extra]
                first = env.stax(*argv).wall
                med, times = time_cmd(env, [env.stax_exe, *argv], reps)
                results[label + suffix] = {"median_s": med, "first_s": first, "times_s": times,
                                           "target_s": TARGETS_S[key],
                                           "over_target": ratio(med, TARGETS_S[key])}
                log(f"  {label}{suffix}: median {med * 1000:.0f} ms (first {first * 1000:.0f} ms)")
    doc = {"benchmark": "inline_latency", "quick": args.quick, "run_samples": samples,
           "run_workload": f"inlined {seconds:g}", "inlined_functions_in_top": inlined_rows,
           "results": results,
           "all_within_target": all(r["over_target"] <= 1 for r in results.values())}
    lines = [f"inline latency: run of {samples} samples (inlined {seconds:g} at -F 2000, "
             f"{inlined_rows} inlined functions in top); median of {reps}; ratio = time/target"]
    for label, r in results.items():
        lines.append(f"  {label:<30} {r['median_s'] * 1000:6.0f} ms  target "
                     f"{r['target_s'] * 1000:4.0f} ms  ratio {r['over_target']:.2f}"
                     f"{'' if r['over_target'] <= 1 else '  MISSED'}"
                     f"  first {r['first_s'] * 1000:5.0f} ms")
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
