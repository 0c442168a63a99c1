"""Inline frames' cost on query latency: ~20k-sample runs of an inline-heavy C++ program and of
Debian's CPython interpreter.

Programs: tests/workloads/inlined.cpp compiled with ``g++ -O2 -g`` (its hot helpers exist only as
DW_TAG_inlined_subroutine DIEs), and ``/usr/bin/python3.11 tests/workloads/jsondicts.py`` when
the interpreter's separate debug file is installed (Debian package python3.11-dbg); each is
recorded with ``stax record -F 2000 -- PROGRAM S`` (S is 10 s, longer when the kernel delivered
well under 2000 samples/s). Then whole ``stax top`` and ``stax flame`` invocations (text and
``--json``) are timed with inline expansion on (the default) and off (``--no-inline``) against
query_latency's targets. The first query of a run also symbolises it and builds the DWARF inline
index: reported as ``first``. The load average is reported (the numbers move with it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import ROOT, bench_env, emit, log, parse_args, ratio
from query_latency import TARGET_SAMPLES, TARGETS_S, time_cmd

PYTHON = "/usr/bin/python3.11"

QUERIES: list[tuple[str, list[str], str]] = [  # label, stax args, target key
    ("stax top", ["top"], "top"),
    ("stax flame", ["flame"], "flame"),
    ("stax top --json", ["top", "--json"], "top"),
    ("stax flame --json", ["flame", "--json"], "flame"),
]


def _programs(tmp: Path) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    gxx = shutil.which("g++")
    if gxx is None:
        log("inline_latency: g++ is not installed; the C++ program is skipped")
    else:
        exe = tmp / "inlined"
        subprocess.run([gxx, "-O2", "-g", "-o", str(exe),
                        str(ROOT / "tests" / "workloads" / "inlined.cpp")], check=True)
        out.append(("c++", [str(exe)]))
    from stax.symbols import find_debug_file, read_build_id

    if not Path(PYTHON).exists() or find_debug_file(
            PYTHON, read_build_id(PYTHON), want="separate", fetch=False) is None:
        log(f"inline_latency: no debug file for {PYTHON} (python3.11-dbg); CPython skipped")
    else:
        out.append(("cpython", [PYTHON, str(ROOT / "tests" / "workloads" / "jsondicts.py")]))
    return out


def _measure(env: Any, argv: list[str], reps: int) -> dict[str, Any]:
    seconds = 10.0
    for _attempt in range(3):
        log(f"inline_latency: recording stax record -F 2000 -- {' '.join(argv)} {seconds:g}")
        run = env.stax_json("record", "-F", "2000", "--", *argv, f"{seconds:g}")
        if run["samples"] >= 0.85 * TARGET_SAMPLES or seconds >= 30:
            break
        seconds = round(min(30.0, seconds * 1.05 * TARGET_SAMPLES / max(1, run["samples"])), 1)
    run_id = str(run["id"])
    results: dict[str, Any] = {}
    for suffix, extra in (("", []), (" --no-inline", ["--no-inline"])):
        for label, sargs, key in QUERIES:
            qargv = [*sargs, "--run", run_id, *extra]
            first = env.stax(*qargv).wall
            med, times = time_cmd(env, [env.stax_exe, *qargv], reps)
            results[label + suffix] = {"median_s": med, "first_s": first, "times_s": times,
                                       "target_s": TARGETS_S[key],
                                       "over_target": ratio(med, TARGETS_S[key])}
            log(f"  {label}{suffix}: median {med * 1000:.0f} ms (first {first * 1000:.0f} ms)")
    rows = env.stax_json("top", "-n", "0", "--run", run_id)["rows"]
    return {"run_samples": int(run["samples"]), "seconds": seconds,
            "inlined_functions_in_top": sum(1 for r in rows if r.get("inlined")),
            "results": results}


def main() -> int:
    args = parse_args(__doc__ or "")
    reps = 3 if args.quick else 7
    programs: dict[str, Any] = {}
    load: list[float] = []
    with bench_env("inline") as env:
        todo = _programs(env.tmp)
        if not todo:
            return 0
        env.start_server()
        load.append(os.getloadavg()[0])
        for name, argv in todo:
            programs[name] = _measure(env, argv, reps)
            load.append(os.getloadavg()[0])
    doc = {"benchmark": "inline_latency", "quick": args.quick, "programs": programs,
           "loadavg_1m": load,
           "all_within_target": all(r["over_target"] <= 1 for p in programs.values()
                                    for r in p["results"].values())}
    lines = [f"inline latency: median of {reps}; ratio = time/target; 1-minute load average "
             f"{', '.join(f'{x:.2f}' for x in load)}"]
    for name, p in programs.items():
        lines.append(f"{name}: run of {p['run_samples']} samples (-F 2000, {p['seconds']:g} s, "
                     f"{p['inlined_functions_in_top']} inlined functions in top)")
        for label, r in p["results"].items():
            lines.append(f"  {label:<30} {r['median_s'] * 1000:6.0f} ms  target "
                         f"{r['target_s'] * 1000:4.0f} ms  ratio {r['over_target']:.2f}"
                         f"{'' if r['over_target'] <= 1 else '  MISSED'}"
                         f"  first {r['first_s'] * 1000:5.0f} ms")
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
