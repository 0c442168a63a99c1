"""DWARF unwinding: stack completeness, target slowdown, lost records and unwinding throughput,
stax against ``perf record --call-graph dwarf`` (perf's default 8 KiB stack copy).

(a) share of samples whose stack reaches ``main`` (CPython: ``Py_BytesMain``, which its ``main``
tail-calls) for frame-pointer-less C (qsortcb), C++ (template), Rust (hot.rs, release) and CPython
3.11 (a pure-Python loop, and the same loop under 0-25 levels of C-level interpreter recursion);
(b) slowdown of split (no frame pointers) at 900 Hz, stax vs perf --call-graph dwarf;
(c) lost records with 2 busy threads at 900 Hz; (d) unwinding throughput on one core over a
recorded input (decode + unwind + intern, no symbolisation), against 4 x 900 samples/s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import ROOT, Env, bench_env, elapsed_from, emit, log, median, parse_args

FREQ = 900
TARGET_COMPLETE_NATIVE = 99.0
TARGET_COMPLETE_CPYTHON = 95.0
TARGET_GAP_PP = 2.0
TARGET_THROUGHPUT = 4 * FREQ

PY_WORK = """
import sys, time
def work(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s
def level(d, end):
    if d:  # through map(): each level is a C-level recursion of the interpreter
        return list(map(lambda x: level(x, end), [d - 1]))[0]
    while time.monotonic() < end:
        work(2000)
    return 0
secs = float(sys.argv[1])
depths = [int(x) for x in sys.argv[2].split(",")]
for d in depths:
    level(d, time.monotonic() + secs / len(depths))
"""


def python311() -> str | None:
    exe = shutil.which("python3.11")
    if exe is None:
        return None
    p = subprocess.run([exe, "-c", "import sys; print(sys.executable)"], capture_output=True,
                       text=True)
    return p.stdout.strip() or None


def build(env: Env) -> dict[str, list[str]]:
    """name -> argv of each completeness workload (all without frame pointers)."""
    d = env.tmp
    cc = shutil.which("gcc") or "cc"
    out: dict[str, list[str]] = {}
    for name, src in (("qsortcb", ROOT / "workloads/qsortcb.c"),
                      ("split", ROOT / "workloads/split.c"),
                      ("spin", ROOT / "tests/workloads/spin.c")):
        subprocess.run([cc, "-O2", "-g", "-fomit-frame-pointer", "-pthread", "-o",
                        str(d / f"{name}_nofp"), str(src)], check=True)
    out["C (qsortcb)"] = [str(d / "qsortcb_nofp"), "12"]
    gxx = shutil.which("g++")
    if gxx:
        subprocess.run([gxx, "-O2", "-g", "-fomit-frame-pointer", "-o", str(d / "template"),
                        str(ROOT / "tests/workloads/template.cpp")], check=True)
        out["C++ (template)"] = [str(d / "template"), "8000"]
    rustc = shutil.which("rustc") or str(Path.home() / ".cargo/bin/rustc")
    if os.path.exists(rustc):
        subprocess.run([rustc, "-O", "-o", str(d / "hot"), str(ROOT / "tests/workloads/hot.rs")],
                       check=True)
        out["Rust (hot.rs)"] = [str(d / "hot"), "1200"]
    py = python311()
    if py:
        (d / "work.py").write_text(PY_WORK)
        out["CPython 3.11 loop"] = [py, str(d / "work.py"), "1.5", "0"]
        out["CPython 3.11 deep"] = [py, str(d / "work.py"), "3", "0,5,10,15,20,25"]
    return out


def _root_names(name: str) -> tuple[str, ...]:
    return ("Py_BytesMain", "main") if name.startswith("CPython") else ("main",)


def record(env: Env, *argv: str) -> dict[str, Any]:
    """``stax record --json``; the run summary follows whatever the target printed."""
    out = env.stax("record", "--json", "--no-python", "--", *argv).out  # native unwinding
    start = 0 if out.startswith("{") else out.rindex("\n{") + 1
    return json.loads(out[start:])  # type: ignore[no-any-return]


def stax_completeness(env: Env, name: str, argv: list[str]) -> dict[str, Any]:
    run = record(env, *argv)
    tree = env.stax_json("flame", "-d", "1000", "--threshold-pct", "0")
    roots = _root_names(name)
    total = reached = 0

    def visit(node: dict[str, Any], seen: bool) -> None:
        nonlocal total, reached
        seen = seen or node["func"] in roots
        below = sum(c["samples"] for c in node.get("children", []))
        n = node["samples"] - below
        total += n
        reached += n if seen else 0
        for c in node.get("children", []):
            visit(c, seen)

    for r in tree["roots"]:
        visit(r, False)
    return {"samples": total, "reach_pct": 100.0 * reached / total if total else 0.0,
            "cut_short_pct": (run.get("unwind") or {}).get("cut_short_pct")}


def perf_completeness(env: Env, name: str, argv: list[str]) -> dict[str, Any] | None:
    if shutil.which("perf") is None:
        return None
    data = env.tmp / "perf-complete.data"
    env.run(["perf", "record", "-q", "-F", str(FREQ), "-e", "cpu-clock", "--call-graph",
             "dwarf", "-o", str(data), "--", *argv])
    p = env.run(["perf", "script", "--no-inline", "-i", str(data), "-F", "comm,ip,sym"],
                timeout=600)
    os.unlink(data)
    roots = set(_root_names(name))
    total = reached = 0
    for block in p.out.split("\n\n"):
        lines = [ln.split() for ln in block.strip().splitlines()[1:]]
        if not block.strip():
            continue
        total += 1
        if any(len(parts) >= 2 and parts[1] in roots for parts in lines):
            reached += 1
    return {"samples": total, "reach_pct": 100.0 * reached / total if total else 0.0}


def slowdown(env: Env, reps: int) -> dict[str, Any]:
    split = str(env.tmp / "split_nofp")
    env.run([split, "30"])  # page in
    probe = min(elapsed_from(env.run([split, "300"]).err) for _ in range(3))
    rounds = str(max(100, round(300 * 1.5 / probe)))  # a ~1.5 s bare run
    times: dict[str, list[float]] = {"bare": [], "stax": [], "perf": []}
    lost = []
    for i in range(reps):
        order = ["bare", "stax", "perf"]
        order = order[i % 3:] + order[:i % 3]
        for mode in order:
            if mode == "bare":
                p = env.run([split, rounds])
            elif mode == "stax":
                p = env.stax("record", "--json", "--", split, rounds)
                lost.append(int(json.loads(p.out[p.out.index("{"):])["lost_records"]))
            else:
                data = env.tmp / "perf-slow.data"
                p = env.run(["perf", "record", "-q", "-F", str(FREQ), "-e", "cpu-clock",
                             "--call-graph", "dwarf", "-o", str(data), "--", split, rounds])
                os.unlink(data)
            times[mode].append(elapsed_from(p.err))
    med = {k: median(v) for k, v in times.items()}
    s = 100.0 * (med["stax"] / med["bare"] - 1)
    pf = 100.0 * (med["perf"] / med["bare"] - 1)
    return {"median_s": med, "stax_slowdown_pct": s, "perf_slowdown_pct": pf,
            "gap_pp": s - pf, "lost_records": lost}


def lost_two_threads(env: Env, secs: str) -> dict[str, Any]:
    run = record(env, str(env.tmp / "spin_nofp"), secs, "2")
    return {"samples": run["samples"], "lost_records": run["lost_records"],
            "threads": run["threads"]}


def capture(argv: list[str]) -> tuple[bytes, Any]:
    """Record ``argv`` in this process (launch mode), keeping the raw ring-buffer bytes."""
    from stax.capture.recorder import Recorder
    from stax.profile.tables import Profile

    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.read(go_r, 1)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.execv(argv[0], argv)
    os.close(go_r)
    prof = Profile(None, dwarf_unwind=True)
    rec = Recorder(prof, prof.lock, FREQ, dwarf_unwind=True)
    rec.open_launch(pid)
    chunks: list[bytes] = []
    add = rec.orderer.add

    def keep(buf: bytes) -> None:
        chunks.append(buf)
        add(buf)

    rec.orderer.add = keep  # type: ignore[method-assign]
    os.write(go_w, b"g")
    os.close(go_w)
    pidfd = os.pidfd_open(pid)
    rec.run(threading.Event(), pidfd, None)
    os.waitpid(pid, 0)
    os.close(pidfd)
    rec.close()
    return b"".join(chunks), rec.layout


def throughput(inputs: dict[str, list[str]], reps: int) -> dict[str, Any]:
    from stax.profile.tables import Profile

    out: dict[str, Any] = {}
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except OSError:
        pass
    for name, argv in inputs.items():
        data, layout = capture(argv)
        best = float("inf")
        n = frames = 0
        for _ in range(reps):
            p = Profile(None, dwarf_unwind=True)
            t = time.process_time()
            p.ingest(data, layout)
            best = min(best, time.process_time() - t)
            n = p.counts["samples"]
            assert p.unwinder is not None
            frames = p.unwinder.walker.frames
        rate = n / best if best > 0 else float("inf")
        out[name] = {"samples": n, "frames_per_sample": round(frames / max(n, 1), 1),
                     "input_bytes": len(data), "samples_per_s": round(rate),
                     "ratio_to_target": rate / TARGET_THROUGHPUT}
    return out


def main() -> int:
    args = parse_args(__doc__ or "")
    reps = 1 if args.quick else 5
    doc: dict[str, Any] = {"frequency_hz": FREQ}
    lines: list[str] = []
    with bench_env("unwind") as env:
        env.start_server()
        wl = build(env)
        if args.quick:
            wl = {k: v for k, v in wl.items() if k in ("C (qsortcb)", "CPython 3.11 deep")}
        comp: dict[str, Any] = {}
        lines.append(f"(a) stack completeness: samples reaching main, at {FREQ} Hz")
        lines.append(f"    {'workload':22} {'stax':>8} {'perf dwarf':>11}  target")
        for name, argv in wl.items():
            log(f"completeness: {name}")
            s = stax_completeness(env, name, argv)
            pf = perf_completeness(env, name, argv)
            target = (TARGET_COMPLETE_CPYTHON if name.startswith("CPython")
                      else TARGET_COMPLETE_NATIVE)
            comp[name] = {"stax": s, "perf": pf, "target_pct": target}
            pf_txt = f"{pf['reach_pct']:10.1f}%" if pf else "       n/a"
            miss = "" if s["reach_pct"] >= target else "  MISSED"
            lines.append(f"    {name:22} {s['reach_pct']:7.1f}% {pf_txt}  >= {target:.0f}%"
                         f"{miss}")
        doc["completeness"] = comp
        if shutil.which("perf"):
            log("slowdown: split without frame pointers, bare / stax / perf --call-graph dwarf")
            sd = slowdown(env, reps)
            doc["slowdown"] = sd
            miss = "" if sd["gap_pp"] <= TARGET_GAP_PP else "  MISSED"
            lines.append(f"(b) target slowdown at {FREQ} Hz: stax {sd['stax_slowdown_pct']:+.1f}%"
                         f", perf --call-graph dwarf {sd['perf_slowdown_pct']:+.1f}%, gap "
                         f"{sd['gap_pp']:+.1f} points (target <= {TARGET_GAP_PP:.0f}){miss}; "
                         f"lost records {sd['lost_records']}")
        log("lost records: spin, 2 busy threads")
        lr = lost_two_threads(env, "2" if args.quick else "4")
        doc["lost_two_threads"] = lr
        lines.append(f"(c) 2 busy threads at {FREQ} Hz: {lr['samples']} samples, "
                     f"{lr['lost_records']} lost records (target 0)"
                     f"{'' if lr['lost_records'] == 0 else '  MISSED'}")
    with bench_env("unwind-tp") as env2:
        built = build(env2)
        inputs = {k: v for k, v in built.items() if k in ("C (qsortcb)", "CPython 3.11 loop",
                                                          "CPython 3.11 deep")}
        log("throughput: recording inputs in-process, then decoding + unwinding on one core")
        tp = throughput(inputs, reps)
    doc["throughput"] = tp
    lines.append(f"(d) unwinding throughput on one core (recorded input; target > "
                 f"{TARGET_THROUGHPUT} samples/s):")
    for name, t in tp.items():
        miss = "" if t["ratio_to_target"] > 1 else "  MISSED"
        lines.append(f"    {name:22} {t['samples_per_s']:>8} samples/s "
                     f"({t['frames_per_sample']} frames/sample) = "
                     f"{t['ratio_to_target']:.1f}x target{miss}")
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
