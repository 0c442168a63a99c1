"""Python stacks: stax versus py-spy on a pure-Python program with a known split.

Runs ``tests/workloads/python/pysplit.py --rounds N`` (three functions taking about 60/30/10% of
its time, which it measures itself, CPU time per function; N calibrated so a bare run takes
about 2 s) with no profiler, under ``stax record`` and under ``py-spy record -r 900`` (900 Hz,
stax's default rate), interleaved with the order rotating every round. py-spy comes from PyPI:
installed into the interpreter running this benchmark (the venv) when missing; a benchmark-only
dependency.

Reports: the slowdown of the program (the ``elapsed_s`` it prints for its rounds, so start-up of
the profilers is excluded) of stax and py-spy over no profiler and of stax over py-spy; the
shares each profiler gives the three functions (samples with the function on the stack) against
the split the program measured, as the largest difference in points; and stax's share of the
samples running Python code that got Python frames (``stax diagnose --json``).

Targets (issue 18): shares within 3 points; Python frames on >= 95% of the samples running
Python code; stax's slowdown no worse than py-spy's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import ROOT, Env, bench_env, elapsed_from, emit, log, median, ratio

PROGRAM = ROOT / "tests" / "workloads" / "python" / "pysplit.py"
FUNCS = ("heavy", "medium", "light")
MODES = ("none", "stax", "py-spy")
RATE = 900
TARGET_BARE_S = 2.0
TARGET_SHARE_PP = 3.0
TARGET_PYTHON_FRAMES = 0.95


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a fast smoke run (fewer repetitions)")
    ap.add_argument("--json", action="store_true", help="print one JSON document of the numbers")
    ap.add_argument("--python", default="/usr/bin/python3.11",
                    help="the CPython 3.11-3.13 running the program (default: %(default)s)")
    return ap.parse_args(argv)


def py_spy() -> str:
    """py-spy next to this interpreter, installed from PyPI with its pip when missing."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        log("py-spy is not installed: pip install py-spy (a benchmark-only dependency)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    if not exe.exists():
        found = shutil.which("py-spy")
        if found is None:
            raise SystemExit("error: py-spy could not be installed")
        return found
    return str(exe)


def measured(stderr: str) -> dict[str, float]:
    """The split the program printed (its last JSON line on stderr)."""
    lines = [x for x in stderr.splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(f"the program printed no split; stderr was:\n{stderr[-2000:]}")
    got: dict[str, float] = json.loads(lines[-1])
    return got


def shares_of(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.get(f, 0) for f in FUNCS)
    return {f: 100.0 * counts.get(f, 0) / total if total else float("nan") for f in FUNCS}


def folded_counts(path: Path) -> dict[str, int]:
    """Per function, the samples of py-spy's raw (folded) output with it on the stack. A frame
    reads ``function (file.py:line)``."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        names = {frame.split(" (", 1)[0] for frame in stack.split(";")}
        for f in FUNCS:
            if f in names:
                counts[f] = counts.get(f, 0) + int(n)
    return counts


def one_run(env: Env, mode: str, python: str, spy: str, rounds: int, i: int) -> dict[str, Any]:
    argv = [python, str(PROGRAM), "--rounds", str(rounds)]
    out: dict[str, Any] = {}
    if mode == "none":
        p = env.run(argv)
    elif mode == "stax":
        p = env.stax("record", "--json", "--", *argv)
        run = json.loads(p.out)
        top = env.stax_json("top", "-n", "0", "--sort", "total")
        counts = {r["func"]: r["total_samples"] for r in top["rows"]
                  if r["binary"] == PROGRAM.name}
        py = env.stax_json("diagnose")["run"].get("python") or {}
        out = {"samples": int(run["samples"]), "lost_records": int(run["lost_records"]),
               "counts": counts, "python_running": py.get("python_running", 0),
               "python_samples": py.get("python_samples", 0),
               "python_mismatches": py.get("python_mismatches", 0),
               "python_misses": py.get("python_misses", 0), "version": py.get("version")}
    else:
        folded = env.tmp / f"py-spy-{i}.txt"
        p = env.run([spy, "record", "-r", str(RATE), "-f", "raw", "-o", str(folded), "--",
                     *argv])
        out = {"counts": folded_counts(folded)}
        out["samples"] = sum(out["counts"].values())
        folded.unlink(missing_ok=True)
    out.update({"elapsed_s": elapsed_from(p.err), "measured": measured(p.err)})
    if "counts" in out:
        out["shares"] = shares_of(out["counts"])
        out["max_error_pp"] = max(abs(out["shares"][f] - out["measured"][f]) for f in FUNCS)
    return out


def calibrate(env: Env, python: str) -> int:
    """Rounds for a bare run of about TARGET_BARE_S seconds."""
    probe = 40
    t = min(elapsed_from(env.run([python, str(PROGRAM), "--rounds", str(probe)]).err)
            for _ in range(3))
    return max(20, round(probe * TARGET_BARE_S / t))


def main() -> int:
    args = parse()
    if not os.access(args.python, os.X_OK):
        raise SystemExit(f"error: {args.python} is not an executable CPython")
    spy = py_spy()
    reps = 1 if args.quick else 3
    with bench_env("python") as env:
        env.start_server()
        rounds = calibrate(env, args.python)
        log(f"python: pysplit.py --rounds {rounds} on {args.python}, {reps} runs per mode, "
            "interleaved")
        for mode in MODES:  # warm-up: page cache, the server's first run, py-spy's first start
            one_run(env, mode, args.python, spy, max(20, rounds // 10), -1)
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for i in range(reps):
            for mode in MODES[i % 3:] + MODES[:i % 3]:
                runs[mode].append(one_run(env, mode, args.python, spy, rounds, i))
            log(f"  round {i + 1}/{reps}: " + ", ".join(
                f"{m} {runs[m][-1]['elapsed_s']:.3f}s" for m in MODES))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    med = {m: median([r["elapsed_s"] for r in runs[m]]) for m in MODES}
    stax_x, spy_x = ratio(med["stax"], med["none"]), ratio(med["py-spy"], med["none"])
    stax_over_spy = ratio(med["stax"], med["py-spy"])
    err = {m: median([r["max_error_pp"] for r in runs[m]]) for m in ("stax", "py-spy")}
    shares = {m: {f: median([r["shares"][f] for r in runs[m]]) for f in FUNCS}
              for m in ("stax", "py-spy")}
    want = {f: median([r["measured"][f] for m in MODES for r in runs[m]]) for f in FUNCS}
    frames = [ratio(r["python_samples"], r["python_running"]) for r in runs["stax"]]
    frames_med = median(frames)
    ok_share = max(err.values()) <= TARGET_SHARE_PP
    ok_frames = frames_med >= TARGET_PYTHON_FRAMES
    ok_slow = stax_x <= spy_x
    doc = {
        "benchmark": "python",
        "quick": args.quick,
        "python": args.python,
        "version": runs["stax"][0]["version"],
        "workload": f"pysplit.py --rounds {rounds}",
        "runs_per_mode": reps,
        "load_average_1m": float(load),
        "median_elapsed_s": med,
        "elapsed_s": {m: [r["elapsed_s"] for r in runs[m]] for m in MODES},
        "stax_over_none": stax_x,
        "py_spy_over_none": spy_x,
        "stax_over_py_spy": stax_over_spy,
        "measured_split": want,
        "shares": shares,
        "max_share_error_pp": err,
        "stax_python_frames": frames,
        "stax_python_mismatches": [r["python_mismatches"] for r in runs["stax"]],
        "stax_python_misses": [r["python_misses"] for r in runs["stax"]],
        "stax_samples": [r["samples"] for r in runs["stax"]],
        "stax_lost_records": [r["lost_records"] for r in runs["stax"]],
        "py_spy_samples": [r["samples"] for r in runs["py-spy"]],
        "targets": {"share_pp": TARGET_SHARE_PP, "python_frames": TARGET_PYTHON_FRAMES,
                    "slowdown": "stax <= py-spy"},
        "met": {"shares": ok_share, "python_frames": ok_frames, "slowdown": ok_slow},
    }

    def split(s: dict[str, float]) -> str:
        return "/".join(f"{s[f]:.1f}" for f in FUNCS)

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = [
        f"python: pysplit.py --rounds {rounds} on {args.python} (CPython {doc['version']}), "
        f"median of {reps} interleaved runs per mode (program-reported elapsed_s), "
        f"load average {load}",
        f"  no profiler             {med['none']:.3f} s",
        f"  stax record             {med['stax']:.3f} s   stax/none = {stax_x:.3f} "
        f"({(stax_x - 1) * 100:+.1f}%)",
        f"  py-spy record -r {RATE}   {med['py-spy']:.3f} s   py-spy/none = {spy_x:.3f} "
        f"({(spy_x - 1) * 100:+.1f}%)",
        f"  stax/py-spy = {stax_over_spy:.3f} (target: stax's slowdown no worse than "
        f"py-spy's: {verdict(ok_slow)})",
        f"  split {'/'.join(FUNCS)} measured by the program {split(want)}",
        f"    stax   {split(shares['stax'])}   max error {err['stax']:.1f} points",
        f"    py-spy {split(shares['py-spy'])}   max error {err['py-spy']:.1f} points "
        f"(target <= {TARGET_SHARE_PP:.0f}: {verdict(ok_share)})",
        f"  stax: Python frames on {frames_med * 100:.1f}% of the samples running Python code "
        f"(per run: {', '.join(f'{x * 100:.1f}%' for x in frames)}; target >= "
        f"{TARGET_PYTHON_FRAMES * 100:.0f}%: {verdict(ok_frames)}); mismatched "
        f"{doc['stax_python_mismatches']}, no read close enough {doc['stax_python_misses']}",
        f"  samples per run: stax {doc['stax_samples']} (lost records "
        f"{doc['stax_lost_records']}), py-spy {doc['py_spy_samples']}",
    ]
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
