"""End-to-end: a real recording of the threads.c workload (one CPU-bound thread, threads blocked
~1.5 s, a main thread that only waits) exported and loaded into the real consumers: speedscope's
own file-format schema, the pprof-format npm decoder, `go tool pprof`, and the Firefox Profiler's
loader (@firefox-devtools/profiler-cli) -- each one's numbers equal to `stax top`/`stax threads`.

`make test` installs them (scripts/sysdeps.sh, scripts/npmdeps.sh); a test skips, saying what is
missing, only where the consumer cannot be had."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from consumer_helpers import (
    CHROMIUM,
    MISSING,
    ProfilerCli,
    go_pprof_top,
    node,
    npm_package,
    pprof_format_totals,
    profiler_cli_problem,
    speedscope_sandwich,
    speedscope_schema,
)
from harness import Stax


def _record(stax: Stax, workloads: dict[str, Path], tmp: Path, fmt: str) -> tuple[Path, dict]:
    stax("record", "--", str(workloads["threads"]), check=True)
    top = stax("top", "--json", "-n", "0", check=True).json()
    assert isinstance(top, dict) and top["run"]["offcpu"]["intervals_recorded"], top.get("run")
    out = tmp / f"run.{fmt}"
    stax("export", "--format", fmt, "-o", str(out), check=True)
    return out, top


def _threads(stax: Stax) -> dict[int, dict[str, Any]]:
    rows = stax("threads", "--json", check=True).json()["rows"]  # type: ignore[index]
    return {r["tid"]: r for r in rows}


def test_speedscope_export_meets_speedscopes_schema_and_equals_top(
        stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    out, top = _record(stax, workloads, tmp_path, "speedscope")
    doc = json.loads(out.read_text())
    frames = doc["shared"]["frames"]
    self_ns: dict[str, int] = {}
    off_ns = 0
    for prof in doc["profiles"]:
        # speedscope lays samples end to end: a profile spans exactly its weights' sum
        assert prof["startValue"] >= 0, prof["name"]
        assert prof["endValue"] - prof["startValue"] == sum(prof["weights"]), prof["name"]
        assert len(prof["samples"]) == len(prof["weights"])
        for s, w in zip(prof["samples"], prof["weights"], strict=True):
            if prof["name"].endswith(" on-CPU"):
                leaf = frames[s[-1]]["name"]
                self_ns[leaf] = self_ns.get(leaf, 0) + w
            else:
                off_ns += w
    want = {f"{r['func']} ({r['binary']})": r["self_ns"] for r in top["rows"] if r["self_ns"]}
    assert self_ns == want
    assert off_ns == top["run"]["offcpu_ns"]
    schema = speedscope_schema()
    if schema is None:
        pytest.skip(f"speedscope's file-format-schema.json: the speedscope npm package {MISSING}")
    import jsonschema

    jsonschema.validate(doc, schema)


def test_speedscope_app_opens_the_export_with_tops_numbers(
        stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    """The speedscope web app itself (npm package, headless Chromium) on the export: its
    Sandwich view of the first profile shows that thread's self times as `stax top --tid`."""
    pkg = npm_package("speedscope")
    if pkg is None:
        pytest.skip(f"the speedscope npm package {MISSING}")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (Debian package chromium): no browser for speedscope")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    out, _top = _record(stax, workloads, tmp_path, "speedscope")
    name, rows = speedscope_sandwich(pkg / "dist" / "release", out)
    m = re.search(r"\(tid (\d+)\) on-CPU \(1/\d+\)$", name)
    assert m, name
    top = stax("top", "--json", "-n", "0", "--tid", m.group(1), check=True).json()
    want = {f"{r['func']} ({r['binary']})": r["self_ns"] for r in top["rows"]}  # type: ignore
    assert rows and {sym for _t, s, sym in rows if s} <= set(want)
    for _total, shown, sym in rows:
        exact = want.get(sym, 0)
        # the app prints two decimals of its unit (1.24s, 5.56ms)
        assert abs(shown - exact) <= 0.005 * max(shown, exact) + 5_000, (sym, shown, exact)


def test_pprof_export_decodes_in_pprof_format_to_top(stax: Stax, workloads: dict[str, Path],
                                                     tmp_path: Path) -> None:
    if node() is None:
        pytest.skip("node is not installed (Debian nodejs): cannot run the pprof-format decoder")
    if npm_package("pprof-format") is None:
        pytest.skip(f"the pprof-format npm package {MISSING}")
    out, top = _record(stax, workloads, tmp_path, "pprof")
    got = pprof_format_totals(out)
    assert got["types"] == ["samples/count", "cpu/nanoseconds", "off_cpu/nanoseconds"]
    assert got["totals"] == [top["total_samples"], top["total_ns"], top["run"]["offcpu_ns"]]
    by_func: dict[str, int] = {}
    for r in top["rows"]:
        by_func[r["func"]] = by_func.get(r["func"], 0) + r["self_samples"]
    assert {k: v for k, v in got["leaf"][0].items() if v} == \
        {k: v for k, v in by_func.items() if v}


def test_pprof_export_reads_in_go_tool_pprof_as_top(stax: Stax, workloads: dict[str, Path],
                                                    tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("go (Debian golang-go) is not installed: no `go tool pprof` to check with")
    out, top = _record(stax, workloads, tmp_path, "pprof")
    total, flat = go_pprof_top(out, "samples", tmp_path)
    assert total == top["total_samples"]
    want: dict[str, int] = {}
    for r in top["rows"]:
        if r["self_samples"]:
            want[r["func"]] = want.get(r["func"], 0) + r["self_samples"]
    assert flat == want
    total_ns, _flat = go_pprof_top(out, "cpu", tmp_path)
    assert total_ns == top["total_ns"]
    off_ns, _flat = go_pprof_top(out, "off_cpu", tmp_path)
    assert off_ns == top["run"]["offcpu_ns"]


def _gecko_structure(doc: dict[str, Any], threads: dict[int, dict[str, Any]],
                     pid: int) -> None:
    """The processed-format rules the loader relies on, and the issue's four fixes."""
    assert doc["meta"]["sampleUnits"]["threadCPUDelta"] == "ns"
    for lib in doc["libs"]:
        if lib["codeId"]:
            assert len(lib["breakpadId"]) == 33 and lib["breakpadId"].endswith("0"), lib
            assert lib["breakpadId"][16:32] == lib["codeId"][16:32].upper(), lib
    tids = [t["tid"] for t in doc["threads"]]
    assert len(set(tids)) == len(tids), tids
    # the main thread's on-CPU copy is the one marked main (none when it never ran sampled: an
    # empty thread would hang the loader)
    main = [(t["tid"], t["name"]) for t in doc["threads"] if t["isMainThread"]]
    assert main == ([(pid, f"{threads[pid]['name']} (on-CPU)")] if threads[pid]["samples"]
                    else [])
    for t in doc["threads"]:
        s = t["samples"]
        assert len(s["threadCPUDelta"]) == s["length"] == len(s["time"]) == len(s["weight"])
        assert s["time"] == sorted(s["time"]), t["name"]
        if t["name"].endswith(" (off-CPU)"):
            tid = int(str(t["tid"]).split("-")[0])
            assert not t["isMainThread"]
            assert abs(sum(s["weight"]) - threads[tid]["offcpu_ns"] / 1e6) < 1e-3, t["name"]
            assert not any(s["threadCPUDelta"])
        else:
            assert s["length"] == threads[t["tid"]]["samples"], t["name"]
            assert sum(s["threadCPUDelta"]) == threads[t["tid"]]["oncpu_ns"], t["name"]


def test_gecko_export_loads_in_the_firefox_profiler(stax: Stax, workloads: dict[str, Path],
                                                    tmp_path: Path) -> None:
    out, top = _record(stax, workloads, tmp_path, "gecko")
    threads = _threads(stax)
    doc = json.loads(out.read_text())
    _gecko_structure(doc, threads, top["run"]["pid"])
    # the holder blocks in one 1.5 s sleep: its off-CPU copy has samples all through it (one
    # per sampling period, or 1000 over the interval, whichever is sparser: 1.5 ms apart)
    holder = next(t for t in doc["threads"] if t["name"] == "holder (off-CPU)")
    times = [t for t in holder["samples"]["time"] if 600.0 <= t <= 800.0]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) > 100 and max(gaps) <= 2.0

    problem = profiler_cli_problem(tmp_path)
    if problem is not None:
        pytest.skip(problem)
    cli = ProfilerCli(tmp_path)
    try:
        cli.load(out)
        listed = cli.json("thread", "list")["threads"]
        assert len(listed) == len(doc["threads"])
        for t in listed:
            info = cli.json("thread", "info", "--thread", t["threadHandle"])
            if t["name"].endswith(" (on-CPU)"):
                assert info["sampleCount"] == threads[int(t["tid"])]["samples"], t
            else:
                assert t["name"].endswith(" (off-CPU)") and str(t["tid"]).endswith("-offcpu")
        # a zoom into the middle of the holder's wait finds that window's blocked time
        handle = next(t["threadHandle"] for t in listed if t["name"] == "holder (off-CPU)")
        cli.run("zoom", "push", "0.6,0.8")
        got = cli.json("thread", "samples", "--thread", handle)
        assert abs(got["categoryBreakdown"]["totalSamples"] - 200.0) < 5.0, got
    finally:
        cli.close()
