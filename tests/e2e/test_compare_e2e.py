"""End-to-end: ``stax compare`` failing a build on real recordings (--fail-… thresholds, exit 2),
and comparing runs of a real server's history (--run, --base-run, --cand-run) without a save."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from harness import Stax, start_server, stop_server


def _runs(stax: Stax, kept: int = 0) -> dict[int, dict]:
    """The server's runs by id; waits until the first ``kept`` are kept on disk."""
    deadline = time.monotonic() + 20
    while True:
        res = stax("list", "--json", check=True).json()
        runs = {r["id"]: r for r in res["runs"]}  # type: ignore[index]
        if all(runs.get(i, {}).get("archive") for i in range(1, kept + 1)):
            return runs
        assert time.monotonic() < deadline, runs
        time.sleep(0.1)


def _failures(res: object) -> list[tuple[str, str | None]]:
    assert isinstance(res, dict)
    return [(f["threshold"], f.get("function")) for f in res["threshold_failures"]]


def test_thresholds_pass_and_fail_on_real_recordings(stax: Stax, workloads: dict[str, Path],
                                                     tmp_path: Path) -> None:
    stax("record", "--", str(workloads["split"]), "300", check=True)  # run 1
    stax("record", "--", str(workloads["split"]), "900", check=True)  # run 2: 3x the work
    stax("record", "--", str(workloads["threads"]), check=True)  # run 3: threads that block
    runs = _runs(stax, kept=3)
    base, cand = runs[1]["archive"], runs[2]["archive"]

    # the same split, three times as long: on-CPU limits fail, the function shares do not
    r = stax("compare", base, cand, "--fail-oncpu-delta-pct", "50", "--fail-oncpu-delta-ms",
             "100", "--fail-function-delta-pct", "15")
    assert r.code == 2, r.err
    failed = [x for x in r.out.splitlines() if x.startswith("threshold failed:")]
    assert len(failed) == 2 and "all passed" not in r.out, r.out
    assert failed[0].startswith("threshold failed: --fail-oncpu-delta-pct: on-CPU time rose by ")
    assert failed[0].endswith("% (limit 50%)")
    assert failed[1].startswith("threshold failed: --fail-oncpu-delta-ms: on-CPU time rose by ")
    r = stax("compare", base, cand, "--json", "--fail-oncpu-delta-pct", "50",
             "--fail-function-delta-pct", "15")
    assert r.code == 2
    res = r.json()
    assert _failures(res) == [("--fail-oncpu-delta-pct", None)]
    [f] = res["threshold_failures"]  # type: ignore[index]
    assert f["limit"] == 50
    assert f["value"] == pytest.approx(res["delta"]["oncpu_pct"])  # type: ignore[index]
    assert f["value"] > 100, f  # 3x the rounds: about +200%

    # limits it stays within pass: exit 0, said so
    r = stax("compare", base, cand, "--fail-oncpu-delta-pct", "10000", "--fail-oncpu-delta-ms",
             "60000", "--fail-function-delta-pct", "15", "--fail-offcpu-delta-ms", "60000")
    assert r.code == 0, r.err
    assert r.out.rstrip().endswith("thresholds: all passed")
    r = stax("compare", cand, base, "--json", "--fail-oncpu-delta-pct", "0",
             "--fail-oncpu-delta-ms", "0")  # the other way round it got faster
    assert r.code == 0 and _failures(r.json()) == []

    # another program: a function's share rising fails, naming the function
    r = stax("compare", base, runs[3]["archive"], "--json", "--fail-function-delta-pct", "20")
    assert r.code == 2
    fails = _failures(r.json())
    assert any(t == "--fail-function-delta-pct" and (f or "").startswith("burn_cpu")
               for t, f in fails), fails  # burn_cpu, or a clone of it (burn_cpu.constprop.0)
    r = stax("compare", base, runs[3]["archive"], "--fail-function-delta-pct", "20")
    assert r.code == 2 and "threshold failed: --fail-function-delta-pct: burn_cpu" in r.out

    # off-CPU time: the threads workload blocks for seconds, split hardly at all
    if runs[3]["offcpu"]["intervals_recorded"]:
        d_ms = (runs[3]["offcpu_ns"] - runs[1]["offcpu_ns"]) / 1e6
        assert d_ms > 1000, runs[3]
        r = stax("compare", base, runs[3]["archive"], "--json", "--fail-offcpu-delta-ms", "500")
        assert r.code == 2
        [f] = r.json()["threshold_failures"]  # type: ignore[index]
        assert f["threshold"] == "--fail-offcpu-delta-ms" and f["value"] == pytest.approx(d_ms)
        r = stax("compare", base, runs[3]["archive"], "--fail-offcpu-delta-ms", f"{d_ms + 1}")
        assert r.code == 0 and "thresholds: all passed" in r.out

    # a bad limit is an error (1), not a failed threshold (2)
    r = stax("compare", base, cand, "--fail-oncpu-delta-pct", "nan")
    assert r.code == 1 and r.err.startswith("error: argument --fail-oncpu-delta-pct:")

    # archives need no server, thresholds included
    stop_server(stax.server)  # type: ignore[attr-defined]
    r = stax("compare", base, cand, "--fail-oncpu-delta-ms", "100")
    assert r.code == 2 and "threshold failed: --fail-oncpu-delta-ms" in r.out


def test_runs_of_the_servers_history_as_sides(stax: Stax, workloads: dict[str, Path],
                                              tmp_path: Path) -> None:
    stax("record", "--", str(workloads["split"]), "300", check=True)  # run 1
    stax("record", "--", str(workloads["split"]), "900", check=True)  # run 2
    runs = _runs(stax, kept=2)
    by_path = stax("compare", runs[1]["archive"], runs[2]["archive"], "--json",
                   check=True).json()
    assert isinstance(by_path, dict)

    r = stax("compare", "--run", "1", "--run", "2", "--json", "--fail-oncpu-delta-pct", "50")
    assert r.code == 2, r.err
    res = r.json()
    assert isinstance(res, dict)
    assert (res["base"]["run"], res["cand"]["run"]) == (1, 2)
    assert res["base"]["path"] == runs[1]["archive"]  # read where the server keeps it
    assert res["delta"] == by_path["delta"] and res["regressions"] == by_path["regressions"]
    assert _failures(res) == [("--fail-oncpu-delta-pct", None)]
    text = stax("compare", "--run", "1", "--run", "2", check=True).out
    assert text.startswith(f"base: run 1  {runs[1]['archive']}  (")

    # mixed sides, in the order written, or named with --base-run / --cand-run
    stax("save", str(tmp_path / "base.stax"), "--run", "1", check=True)
    for argv in ((str(tmp_path / "base.stax"), "--run", "2"),
                 ("--cand-run", "2", str(tmp_path / "base.stax"))):
        res = stax("compare", *argv, "--json", check=True).json()
        assert isinstance(res, dict)
        assert res["base"]["run"] is None and res["cand"]["run"] == 2
        assert res["delta"] == by_path["delta"], argv
    res = stax("compare", "--base-run", "2", "--cand-run", "1", "--json", check=True).json()
    assert res["delta"]["samples"] == -by_path["delta"]["samples"]  # type: ignore[index]

    # a run that does not exist, one still recording, too many or too few sides
    r = stax("compare", "--run", "1", "--run", "99")
    assert r.code == 1 and r.err.startswith("error: no run 99 on the server"), r.err
    proc = stax.record_bg("--", str(workloads["spin"]), "30")
    try:
        r = stax("compare", "--run", "1", "--run", "3")
        assert r.code == 1 and "run 3 is still recording" in r.err, r.err
    finally:
        stax("stop")
        proc.wait(30)
    r = stax("compare", "--run", "1")
    assert r.code == 1 and r.err.startswith("error: compare needs two sides")
    r = stax("compare", "--run", "1", "--run", "2", str(tmp_path / "base.stax"))
    assert r.code == 1 and r.err.startswith("error: compare needs two sides")

    # --run needs the server; archive paths do not
    stop_server(stax.server)  # type: ignore[attr-defined]
    r = stax("compare", "--run", "1", str(tmp_path / "base.stax"))
    assert r.code == 1 and "stax-server isn't running" in r.err
    # a new server restores the kept runs: their ids work again
    server = start_server(stax.env, tmp_path)
    try:
        res = stax("compare", "--run", "1", "--run", "2", "--json", check=True).json()
        assert res["delta"] == by_path["delta"]  # type: ignore[index]
    finally:
        stop_server(server)


def test_runs_not_kept_on_disk_are_saved_for_the_comparison(tmp_path: Path,
                                                            workloads: dict[str, Path]) -> None:
    from harness import isolated_env

    env = dict(isolated_env(tmp_path), STAX_HISTORY_RUNS="0")  # no history: nothing kept
    server = start_server(env, tmp_path)
    stax = Stax(env, tmp_path)
    try:
        stax("record", "--", str(workloads["split"]), "300", check=True)
        stax("record", "--", str(workloads["split"]), "600", check=True)
        assert all(r["archive"] is None for r in _runs(stax).values())
        r = stax("compare", "--run", "1", "--run", "2", "--json", "--fail-oncpu-delta-pct",
                 "10000")
        assert r.code == 0, r.err
        res = r.json()
        assert isinstance(res, dict)
        assert res["base"]["samples"] > 0 and res["cand"]["samples"] > res["base"]["samples"]
        assert "/stax-compare-" in res["base"]["path"]
        assert not os.path.exists(res["base"]["path"])  # the temporary archives are removed
    finally:
        stop_server(server)
