"""Off-CPU capture cost and accuracy.

1. A context-switch-heavy workload (two threads ping-ponging a byte over pipes, 100k round
   trips): its own elapsed time bare, under ``stax record``, and under
   ``perf record -e sched:sched_switch -g``; records stax lost.
2. Off-CPU durations against the truth the workloads set: threads.c (sleeper 15 x 100 ms of
   sleep, waiter ~1450 ms on a mutex), the condition-variable workload (800 ms).

Targets: durations within 5% of the truth; zero lost records; slowdown reported.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    Env,
    compile_workloads,
    elapsed_from,
    emit,
    log,
    median,
    parse_args,
    ratio,
)

ROUNDS = 100_000
SOURCES = {
    "pingpong": ROOT / "tests" / "workloads" / "pingpong.c",
    "condvar": ROOT / "tests" / "workloads" / "condvar.c",
    "threads": ROOT / "workloads" / "threads.c",
}


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stderr[-3000:]}")
    return p


def _reason_ms(th: dict[str, Any], name: str, reason: str) -> float:
    for row in th["rows"]:
        if row["name"] == name:
            return row["offcpu_by_reason"].get(reason, 0) / 1e6
    return float("nan")


def main() -> int:
    args = parse_args(__doc__ or "")
    reps = 1 if args.quick else 3
    perf = shutil.which("perf")
    with tempfile.TemporaryDirectory(prefix="stax-bench-offcpu-") as d:
        tmp = Path(d)
        env = Env(tmp)
        exe = compile_workloads(tmp, SOURCES)
        env.start_server()
        try:
            bare: list[float] = []
            staxed: list[float] = []
            perfed: list[float] = []
            lost: list[int] = []
            intervals: list[int] = []
            wakeups: list[int] = []
            perf_lost: list[int] = []
            for i in range(reps):
                log(f"ping-pong {ROUNDS} round trips, repetition {i + 1}/{reps}")
                bare.append(elapsed_from(_run([str(exe["pingpong"]), str(ROUNDS)]).stderr))
                p = env.stax("record", "--json", "--", str(exe["pingpong"]), str(ROUNDS))
                staxed.append(elapsed_from(p.err))
                run = json.loads(p.out)
                if not run["offcpu"]["intervals_recorded"]:
                    raise SystemExit(f"error: off-CPU capture unavailable: "
                                     f"{run['offcpu']['problem']}")
                lost.append(run["lost_records"])
                intervals.append(run["intervals"])
                wakeups.append(run["wakeups"])
                if perf:
                    pp = _run([perf, "record", "-q", "-e", "sched:sched_switch", "-g", "-o",
                               str(tmp / "perf.data"), "--", str(exe["pingpong"]), str(ROUNDS)])
                    perfed.append(elapsed_from(pp.stderr))
                    st = _run([perf, "report", "-i", str(tmp / "perf.data"), "--stats"])
                    m = re.search(r"LOST events:\s+(\d+)", st.stdout)
                    perf_lost.append(int(m.group(1)) if m else 0)

            log("accuracy: threads.c and condvar")
            env.stax("record", "--", str(exe["threads"]))
            th = env.stax_json("threads", "-n", "0")
            env.stax("record", "--", str(exe["condvar"]))
            cv = env.stax_json("threads", "-n", "0")
        finally:
            env.stop_server()

    truth = [
        ("threads.c sleeper, sleep", _reason_ms(th, "sleeper", "sleep"), 1500.0),
        ("threads.c waiter, lock", _reason_ms(th, "waiter", "lock"), 1450.0),
        ("condvar cvwaiter, lock", _reason_ms(cv, "cvwaiter", "lock"), 800.0),
    ]
    acc = [{"what": w, "measured_ms": round(m, 2), "truth_ms": t,
            "error_pct": round(100.0 * (m - t) / t, 2)} for w, m, t in truth]
    b, s, pf = median(bare), median(staxed), median(perfed)
    doc = {
        "rounds": ROUNDS, "repetitions": reps,
        "bare_s": b, "stax_s": s, "perf_s": pf if perfed else None,
        "slowdown_vs_bare": ratio(s, b),
        "slowdown_vs_perf": ratio(s, pf) if perfed else None,
        "perf_vs_bare": ratio(pf, b) if perfed else None,
        "lost_records": lost, "perf_lost": perf_lost if perfed else None,
        "intervals": intervals, "wakeups": wakeups,
        "accuracy": acc,
        "targets": {"durations_within_5pct": all(abs(a["error_pct"]) <= 5 for a in acc),
                    "zero_lost_records": all(n == 0 for n in lost)},
    }
    lines = [
        f"off-CPU: ping-pong {ROUNDS} round trips, median of {reps}",
        f"  bare            {b:7.3f} s",
        f"  stax record     {s:7.3f} s   x{ratio(s, b):.2f} vs bare"
        + (f", x{ratio(s, pf):.2f} vs perf" if perfed else ""),
    ]
    if perfed:
        lines.append(f"  perf record -e sched:sched_switch -g  {pf:7.3f} s   "
                     f"x{ratio(pf, b):.2f} vs bare (perf lost events {perf_lost})")
    else:
        lines.append("  perf: not installed, comparison skipped")
    lines.append(f"  stax lost records per run: {lost}  (target 0: "
                 f"{'met' if doc['targets']['zero_lost_records'] else 'MISSED'})")
    lines.append(f"  intervals per run: {intervals}, wakeups per run: {wakeups}")
    lines.append("accuracy (off-CPU time vs what the workload sets):")
    for a in acc:
        lines.append(f"  {a['what']:28} {a['measured_ms']:9.1f} ms vs {a['truth_ms']:7.1f} ms "
                     f"({a['error_pct']:+.2f}%)")
    lines.append(f"  target within 5%: "
                 f"{'met' if doc['targets']['durations_within_5pct'] else 'MISSED'}")
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
