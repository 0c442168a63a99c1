"""End-to-end: off-CPU data through archives (save/open, history after a restart, in-process
recordings), exports and compare, on the threads.c workload.

The sleeper thread sleeps ~1.5 s in usleep (reason ``sleep``); bounds are generous on the side a
loaded machine can push (longer), tight on the other.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from archive_helpers import pb_decode, pb_packed
from harness import Stax, start_server, stop_server

pytestmark = pytest.mark.skipif(
    not os.path.exists("/sys/kernel/tracing/events/sched/sched_switch")
    and os.geteuid() != 0,
    reason="no tracefs and not root: off-CPU capture unavailable on this host")

SLEEP_MIN_NS, SLEEP_MAX_NS = 1_300_000_000, 3_000_000_000


def _queries(stax: Stax, *run: str) -> dict[str, Any]:
    """The --json answers of every view that reads on-CPU or off-CPU data, without the run
    summary (which differs in id/state/archive fields between a live and a reopened run)."""
    out = {}
    for name, args in (("top", ("top", "-n", "0")), ("threads", ("threads", "-n", "0")),
                       ("wakers", ("wakers", "-n", "0")),
                       ("flame_cpu", ("flame", "--mode", "cpu")),
                       ("flame_offcpu", ("flame", "--mode", "offcpu")),
                       ("flame_wall", ("flame", "--mode", "wall"))):
        res = stax(*args, "--json", *run, check=True).json()
        assert isinstance(res, dict)
        res.pop("run")
        out[name] = res
    # the intervals RPC (no CLI command): every interval with its stack, state and wakeup
    from stax.client import Client

    c = Client(stax.env["STAX_SERVER_SOCKET"])
    try:
        res = c.call("intervals", limit=0, **({"run": int(run[1])} if run else {}))
    finally:
        c.close()
    res.pop("run")
    out["intervals"] = res
    return out


def _diag_run(stax: Stax, *run: str) -> dict[str, Any]:
    res = stax("diagnose", "--json", *run, check=True).json()
    return res["run"]  # type: ignore[index]


def _sleeper(threads: dict[str, Any]) -> dict[str, Any]:
    rows = {r["name"]: r for r in threads["rows"]}
    return rows["sleeper"]


def test_archive_and_history_answer_offcpu_views_like_the_live_run(
        stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    stax("record", "--", str(workloads["threads"]), check=True)
    live = _queries(stax)
    live_diag = _diag_run(stax)
    sleeper = _sleeper(live["threads"])
    assert sleeper["blocked"] == "sleep"
    assert SLEEP_MIN_NS <= sleeper["offcpu_ns"] <= SLEEP_MAX_NS, sleeper
    assert live["flame_offcpu"]["intervals"] > 0
    assert len(live["intervals"]["rows"]) == live["flame_offcpu"]["intervals"]
    assert live_diag["offcpu"]["intervals_recorded"]

    # save -> open: a new run read from the archive answers exactly like the live one
    path = str(tmp_path / "threads.stax")
    stax("save", path, check=True)
    opened = stax("open", path, "--json", check=True).json()
    assert opened["id"] == 2 and opened["intervals"] == live_diag["intervals"]  # type: ignore
    assert opened["offcpu"]["intervals_recorded"]  # type: ignore[index]
    assert _queries(stax) == live
    diag = _diag_run(stax)
    for key in ("unwind", "offcpu"):
        assert diag[key] == live_diag[key], key
    assert diag["unwinding"] == live_diag["unwinding"]
    text = stax("diagnose", check=True).out
    assert "off-CPU: " in text and "wakeups: " in text and "  unwind: " in text

    # after a server restart, the kept run (history) answers the same
    stop_server(stax.server)  # type: ignore[attr-defined]
    restarted = start_server(stax.env, tmp_path)
    try:
        listing = stax("list", check=True).out
        assert " intervals" in listing.splitlines()[0], listing
        assert _queries(stax, "--run", "1") == live
        diag = _diag_run(stax, "--run", "1")
        for key in ("unwind", "offcpu"):
            assert diag[key] == live_diag[key], key
    finally:
        stop_server(restarted)


def _pprof_offcpu(blob: bytes) -> dict[tuple[str, str], int]:
    """Off-CPU nanoseconds per (thread name, reason) in a gzipped pprof export."""
    prof = pb_decode(gzip.decompress(blob))
    strings = [s.decode() for s in prof[6]]
    types = [strings[pb_decode(t)[1][0]] for t in prof[1]]
    assert types == ["samples", "cpu", "off_cpu"], types
    out: dict[tuple[str, str], int] = {}
    for raw in prof.get(2, []):
        s = pb_decode(raw)
        vals = pb_packed(s[2][0])
        labels = {}
        for lab in s.get(3, []):
            d = pb_decode(lab)
            labels[strings[d[1][0]]] = strings[d[2][0]] if 2 in d else d.get(3, [0])[0]
        if vals[2]:
            key = (str(labels["thread name"]), str(labels.get("off-cpu reason")))
            out[key] = out.get(key, 0) + vals[2]
    return out


def test_exports_carry_the_sleepers_offcpu_time(stax: Stax, workloads: dict[str, Path],
                                                tmp_path: Path) -> None:
    stax("record", "--", str(workloads["threads"]), check=True)
    files = {}
    for fmt in ("folded", "speedscope", "pprof", "gecko"):
        out = tmp_path / f"run.{fmt}"
        mode = ("--mode", "offcpu") if fmt == "folded" else ()
        stax("export", "--format", fmt, *mode, "-o", str(out), check=True)
        files[fmt] = out.read_bytes()

    # folded --mode offcpu: stacks through sleeper() ending in [off-cpu:sleep], weighted in ns
    folded = 0
    for line in files["folded"].decode().splitlines():
        stack, n = line.rsplit(" ", 1)
        if ";sleeper;" in stack and stack.endswith(";[off-cpu:sleep]"):
            folded += int(n)
    assert SLEEP_MIN_NS <= folded <= SLEEP_MAX_NS, folded

    # speedscope: an off-CPU profile of the sleeper thread, weights in nanoseconds
    doc = json.loads(files["speedscope"])
    frames = [f["name"] for f in doc["shared"]["frames"]]
    prof = [p for p in doc["profiles"]
            if p["name"].startswith("sleeper (tid ") and p["name"].endswith(" off-CPU")]
    assert len(prof) == 1, [p["name"] for p in doc["profiles"]]
    sleep_ns = sum(w for s, w in zip(prof[0]["samples"], prof[0]["weights"], strict=True)
                   if frames[s[-1]] == "[off-cpu:sleep]")
    assert SLEEP_MIN_NS <= sleep_ns <= SLEEP_MAX_NS

    # pprof: the off_cpu/nanoseconds value, labelled with thread name and reason
    off = _pprof_offcpu(files["pprof"])
    assert SLEEP_MIN_NS <= off.get(("sleeper", "sleep"), 0) <= SLEEP_MAX_NS, off

    # gecko: a "sleeper (off-CPU)" thread weighted by blocked milliseconds
    gecko = json.loads(files["gecko"])
    th = [t for t in gecko["threads"] if t["name"] == "sleeper (off-CPU)"]
    assert len(th) == 1
    ms = sum(th[0]["samples"]["weight"])
    assert SLEEP_MIN_NS / 1e6 <= ms <= SLEEP_MAX_NS / 1e6


def _offline(stax: Stax, workload: Path, **env: str) -> tuple[dict[str, Any], str]:
    e = dict(stax.env, STAX_NO_AUTOSTART="1", **env)
    p = subprocess.run([stax.exe, "record", "--json", "--", str(workload)], env=e,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("warning: stax-server unreachable")
    run = json.loads(p.stdout)
    return run, run["archive"]


def test_in_process_recording_unwinds_and_keeps_offcpu_data(
        stax_noserver: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    from stax.archive import format as fm
    from stax.profile import offviews, views

    run, path = _offline(stax_noserver, workloads["threads"])
    assert not os.path.exists(stax_noserver.env["STAX_SERVER_SOCKET"])
    assert run["unwinding"] == "dwarf"
    assert run["offcpu"]["intervals_recorded"] and run["intervals"] > 0
    assert run["offcpu_ns"] > 4 * SLEEP_MIN_NS  # five threads block ~1.5 s each
    a = fm.load(path)
    assert len(a.profile.intervals) == run["intervals"]
    assert len(a.profile.wakeups) == run["wakeups"]
    assert a.diagnostics["unwind"]["method"] == "dwarf"
    assert a.diagnostics["offcpu"]["intervals_recorded"]
    assert a.diagnostics["capture"]["unwinding"].startswith("DWARF")
    rows = {r["name"]: r for r in views.threads(a.profile, views.Filter(), 0)["rows"]}
    assert rows["sleeper"]["blocked"] == "sleep"
    assert SLEEP_MIN_NS <= rows["sleeper"]["offcpu_ns"] <= SLEEP_MAX_NS
    if run["offcpu"]["wakeups_recorded"]:
        edges = offviews.wakers(a.profile, views.Filter(), 0)["rows"]
        assert any(e["waker"] == "holder" and e["wakee"] == "waiter" for e in edges), edges

    # turned off by the environment, as with a server
    run2, path2 = _offline(stax_noserver, workloads["threads"], STAX_DWARF_UNWIND="0")
    assert run2["unwinding"] == "frame pointers"
    assert fm.load(path2).diagnostics["unwind"] == {"method": "frame pointers"}

    # compare (no server) reports off-CPU totals and per-reason deltas
    res = stax_noserver("compare", path, path2, "--json", check=True).json()
    assert isinstance(res, dict)
    assert res["base"]["offcpu_ns"] == run["offcpu_ns"]
    assert res["cand"]["offcpu_ns"] == run2["offcpu_ns"]
    d = res["delta"]
    assert d["offcpu_ns"] == run2["offcpu_ns"] - run["offcpu_ns"]
    assert d["intervals"] == run2["intervals"] - run["intervals"]
    assert SLEEP_MIN_NS <= res["base"]["offcpu_by_reason"]["sleep"]
    assert sum(d["offcpu_by_reason"].values()) == d["offcpu_ns"]
    text = stax_noserver("compare", path, path2, check=True).out
    assert "off-CPU" in text and "  sleep " in text and "  lock " in text

    # the in-process archive opens in a server with the off-CPU views
    server = start_server(stax_noserver.env, tmp_path)
    try:
        stax_noserver("open", path, check=True)
        th = stax_noserver("threads", "--json", "-n", "0", check=True).json()
        assert isinstance(th, dict)
        assert _sleeper(th)["offcpu_ns"] == rows["sleeper"]["offcpu_ns"]
        out = stax_noserver("diagnose", check=True).out
        assert "off-CPU: " in out and "unwind: DWARF" in out
    finally:
        stop_server(server)
