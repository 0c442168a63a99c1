"""End-to-end: save/open/compare/export on real recordings, history across a server restart,
and the in-process fallback when no server can be reached."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from archive_helpers import pprof_stacks
from consumer_helpers import go_pprof
from harness import Stax, start_server, stop_server


def _top(stax: Stax, *args: str) -> dict:
    res = stax("top", "--json", "-n", "0", *args, check=True).json()
    assert isinstance(res, dict)
    return res


def _without_run(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "run"}


def test_save_open_round_trip_gives_identical_top(stax: Stax, workloads: dict[str, Path],
                                                  tmp_path: Path) -> None:
    stax("record", "--", str(workloads["split"]), "600", check=True)
    before = _top(stax)
    before_total = _top(stax, "--sort", "total")
    flame_before = stax("flame", "--json", "--threshold-pct", "0", check=True).json()
    r = stax("save", str(tmp_path / "split.stax"), check=True)
    assert f"saved run 1 to {tmp_path / 'split.stax'}" in r.out
    assert (tmp_path / "split.stax" / "stax-archive.json").exists()
    r = stax("open", str(tmp_path / "split.stax" / "stax-archive.json"), check=True)
    assert r.out.startswith("opened: run 2  [stopped]")
    after = _top(stax)
    assert after["run"]["id"] == 2 and after["run"]["archive"] == str(tmp_path / "split.stax")
    assert _without_run(after) == _without_run(before)
    assert _without_run(_top(stax, "--sort", "total")) == _without_run(before_total)
    flame_after = stax("flame", "--json", "--threshold-pct", "0", check=True).json()
    assert _without_run(flame_after) == _without_run(flame_before)  # type: ignore[arg-type]
    assert before["rows"][0]["func"] == "work_a"
    diag = stax("diagnose", check=True).out
    assert "capture: archive" in diag
    # the directory form opens too
    assert stax("open", str(tmp_path / "split.stax"), check=True).code == 0


def test_open_refuses_while_recording_and_bad_archives_fail_cleanly(
        stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    stax("record", "--", str(workloads["split"]), "200", check=True)
    stax("save", str(tmp_path / "a.stax"), check=True)
    proc = stax.record_bg("--", str(workloads["spin"]), "20", samples=20)
    try:
        r = stax("open", str(tmp_path / "a.stax"))
        assert r.code == 1 and r.err.startswith("error: run 2 is recording")
        # saving a run that is still recording takes a snapshot
        r = stax("save", str(tmp_path / "live.stax"), "--json", check=True)
        assert r.json()["samples"] >= 20  # type: ignore[index]
    finally:
        stax("stop", check=True)
        proc.wait(20)
    (tmp_path / "junk.json").write_text('{"hello": 1}')
    bad = tmp_path / "bad.stax"
    shutil.copytree(tmp_path / "a.stax", bad)
    data = (bad / "columns.bin").read_bytes()
    (bad / "columns.bin").write_bytes(data[:10])
    cases = {str(tmp_path / "missing.stax"): "no such file",
             str(tmp_path / "junk.json"): "not a stax archive",
             str(bad): "truncated"}
    for path, why in cases.items():
        for cmd in (("open", path), ("compare", path, str(tmp_path / "a.stax"))):
            r = stax(*cmd)
            assert r.code == 1, (cmd, r.out)
            lines = r.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error:") and why in lines[0], r.err
    r = stax("save", str(tmp_path / "junk.json"))
    assert r.code == 1 and "not a stax archive; not overwriting" in r.err


def test_unreadable_archive_is_one_error_line(tmp_path: Path, workloads: dict[str, Path],
                                              stax: Stax, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """No permission to read (root reads everything, so the refusal is simulated)."""
    from stax.cli.main import main

    stax("record", "--", str(workloads["split"]), "100", check=True)
    stax("save", str(tmp_path / "a.stax"), check=True)
    real_open = open

    def denied(path: object, *a: object, **k: object) -> object:
        if str(path).startswith(str(tmp_path / "a.stax")):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", denied)
    assert main(["compare", str(tmp_path / "a.stax"), str(tmp_path / "a.stax")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot read") and \
        "Permission denied" in err


def test_finished_runs_survive_a_server_restart(stax: Stax, workloads: dict[str, Path],
                                                tmp_path: Path) -> None:
    stax("record", "--", str(workloads["split"]), "300", check=True)
    stax("record", "--", str(workloads["spin"]), "0.3", check=True)
    top1 = _top(stax, "--run", "1")
    runs_dir = Path(stax.env["XDG_STATE_HOME"]) / "stax" / "runs"
    stop_server(stax.server)  # type: ignore[attr-defined]
    assert sorted(os.listdir(runs_dir)) == ["run-1.stax", "run-2.stax"]
    restarted = start_server(stax.env, tmp_path)
    try:
        listing = stax("list", "--json", check=True).json()
        assert [r["id"] for r in listing["runs"]] == [1, 2]  # type: ignore[index]
        assert listing["runs"][0]["exit_status"] == 0  # type: ignore[index]
        assert listing["runs"][0]["archive"] == str(runs_dir / "run-1.stax")  # type: ignore
        assert stax("list", check=True).out.splitlines()[0].startswith("  run 1  [stopped]")
        assert _without_run(_top(stax, "--run", "1")) == _without_run(top1)
        assert stax("top", "--run", "2", "--json", check=True).json()["rows"][0]["func"] == \
            "spin_hot"  # type: ignore[index]
        r = stax("select-run", "1", check=True)
        assert r.out.startswith("selected: run 1")
        assert _top(stax)["run"]["id"] == 1
        # new runs continue the numbering
        stax("record", "--", str(workloads["split"]), "100", check=True)
        assert stax("list", "--json", check=True).json()["runs"][-1]["id"] == 3  # type: ignore
    finally:
        stop_server(restarted)


def test_history_is_bounded(tmp_path: Path, workloads: dict[str, Path]) -> None:
    from harness import isolated_env

    env = isolated_env(tmp_path)
    env["STAX_HISTORY_RUNS"] = "2"
    server = start_server(env, tmp_path)
    stax = Stax(env, tmp_path)
    try:
        for _ in range(3):
            stax("record", "--", str(workloads["split"]), "50", check=True)
    finally:
        stop_server(server)
    runs_dir = Path(env["XDG_STATE_HOME"]) / "stax" / "runs"
    assert sorted(os.listdir(runs_dir)) == ["run-2.stax", "run-3.stax"]
    server = start_server(env, tmp_path)
    try:
        ids = [r["id"] for r in stax("list", "--json", check=True).json()["runs"]]  # type: ignore
        assert ids == [2, 3]
    finally:
        stop_server(server)


def test_unreachable_server_records_in_process(stax_noserver: Stax, workloads: dict[str, Path],
                                               tmp_path: Path) -> None:
    env = dict(stax_noserver.env, STAX_NO_AUTOSTART="1")
    p = subprocess.run([stax_noserver.exe, "record", "--", str(workloads["split"]), "400"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("warning: stax-server unreachable")
    assert "STAX_NO_AUTOSTART=1" in p.stderr
    assert not os.path.exists(env["STAX_SERVER_SOCKET"]), "no server may have been started"
    saved = [x for x in p.stderr.splitlines() if x.startswith("stax: saved the recording to ")]
    assert len(saved) == 1
    path = saved[0].rsplit(" ", 1)[1]
    assert os.path.exists(os.path.join(path, "stax-archive.json"))
    # compare needs no server
    r = stax_noserver("compare", path, path, "--json", check=True)
    assert r.json()["delta"]["samples"] == 0  # type: ignore[index]
    server = start_server(stax_noserver.env, tmp_path)
    try:
        r = stax_noserver("open", path, check=True)
        assert "split 400" in r.out
        top = stax_noserver("top", "--json", check=True).json()
        shares = {row["func"]: row["self_pct"] for row in top["rows"]}  # type: ignore[index]
        assert top["total_samples"] > 200  # type: ignore[index]
        assert abs(shares["work_a"] - 60) <= 8, shares
    finally:
        stop_server(server)


def test_unreachable_server_json_summary_and_exit_status(stax_noserver: Stax,
                                                         workloads: dict[str, Path]) -> None:
    env = dict(stax_noserver.env, STAX_NO_AUTOSTART="1")
    p = subprocess.run([stax_noserver.exe, "record", "--json", "--", "sh", "-c",
                        f"{workloads['spin']} 0.2; exit 3"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p.stderr
    run = json.loads(p.stdout)
    assert run["exit_status"] == 3 and run["samples"] > 50
    assert os.path.isdir(run["archive"])


def test_compare_two_recordings(stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    stax("record", "--", str(workloads["split"]), "300", check=True)
    stax("save", str(tmp_path / "base.stax"), check=True)
    stax("record", "--", str(workloads["spin"]), "0.4", check=True)
    stax("save", str(tmp_path / "cand.stax"), check=True)
    stop_server(stax.server)  # type: ignore[attr-defined]  # compare needs no server
    r = stax("compare", str(tmp_path / "base.stax"), str(tmp_path / "cand.stax"), "--json",
             check=True)
    res = r.json()
    assert isinstance(res, dict)
    assert res["regressions"][0]["func"] == "spin_hot"
    assert res["regressions"][0]["status"] == "new"
    assert res["improvements"][0]["func"] == "work_a"
    assert res["delta"]["samples"] == res["cand"]["samples"] - res["base"]["samples"]
    text = stax("compare", str(tmp_path / "base.stax"), str(tmp_path / "cand.stax"),
                check=True).out
    assert "regressions (self time grew" in text and "spin_hot" in text


def test_exports_of_a_real_run(stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    stax("record", "--", str(workloads["split"]), "500", check=True)
    top = {r["func"]: r["self_samples"] for r in _top(stax)["rows"]}
    folded = stax("export", "--format", "folded", check=True).out
    weights: dict[str, int] = {}
    for line in folded.splitlines():
        stack, n = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1]
        if leaf.startswith("[off-cpu:"):  # off-CPU stacks (docs/cli.md), not samples
            continue
        weights[leaf] = weights.get(leaf, 0) + int(n)
        assert ";main;" in f";{stack};" or "main" not in top
    assert weights == top  # off-CPU lines: see test_archive_offcpu_e2e.py
    r = stax("export", "--format", "speedscope", "-o", str(tmp_path / "s.json"), check=True)
    assert "wrote speedscope export of run 1" in r.err
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert sum(len(p["samples"]) for p in doc["profiles"]) > 0
    stax("export", "--format", "pprof", "-o", str(tmp_path / "p.pb.gz"), check=True)
    blob = (tmp_path / "p.pb.gz").read_bytes()
    stacks, _strings, _prof = pprof_stacks(blob)
    leaf_counts: dict[str, int] = {}
    for k, v in stacks.items():
        leaf = k.split(";")[-1]
        if v:  # off-CPU samples count 0 samples (their value is off_cpu/nanoseconds)
            leaf_counts[leaf] = leaf_counts.get(leaf, 0) + v
    assert leaf_counts == top
    gzip.decompress(blob)
    stax("export", "--format", "gecko", "-o", str(tmp_path / "g.json"), check=True)
    g = json.loads((tmp_path / "g.json").read_text())
    assert sum(t["samples"]["length"] for t in g["threads"]
               if t["name"].endswith(" (on-CPU)")) == sum(top.values())
    tid = stax("threads", "--json", check=True).json()["rows"][0]["tid"]  # type: ignore[index]
    one = stax("export", "--format", "folded", "--tid", str(tid), check=True).out
    assert one.strip()
    r = stax("export", "--format", "folded", "--tid", "999999")
    assert r.code == 1 and r.err.startswith("error: no thread 999999")
    r = stax("export", "--format", "svg")
    assert r.code == 1 and r.err.startswith("error:")
    r = stax("export", "--format", "folded", "-o", str(tmp_path / "nodir" / "x"))
    assert r.code == 1 and "does not exist" in r.err


def test_pprof_export_reads_in_go_tool_pprof(stax: Stax, workloads: dict[str, Path],
                                             tmp_path: Path) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go (Debian golang-go) is not installed: no `go tool pprof` to check with")
    stax("record", "--", str(workloads["split"]), "500", check=True)
    out = tmp_path / "p.pb.gz"
    stax("export", "--format", "pprof", "-o", str(out), check=True)
    t0 = time.monotonic()
    top = go_pprof(out, tmp_path, "-top", "-nodecount=3", timeout=120)
    lines = top.splitlines()
    assert any(line.rstrip().endswith("work_a") for line in lines[-3:]), top
    assert "Type: cpu" in top and time.monotonic() - t0 < 120


def test_unreachable_server_attach_records_in_process(stax_noserver: Stax,
                                                      workloads: dict[str, Path]) -> None:
    env = dict(stax_noserver.env, STAX_NO_AUTOSTART="1")
    target = subprocess.Popen([str(workloads["spin"]), "30"])
    try:
        time.sleep(0.2)
        p = subprocess.run([stax_noserver.exe, "record", "--json", "-p", str(target.pid),
                            "-l", "1"], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stderr.startswith("warning: stax-server unreachable")
        run = json.loads(p.stdout)
        assert run["mode"] == "attach" and run["end_reason"] == "time-limit"
        assert run["samples"] > 0 and target.poll() is None
        res = stax_noserver("compare", run["archive"], run["archive"], "--json",
                            check=True).json()
        assert res["base"]["samples"] == run["samples"]  # type: ignore[index]
    finally:
        target.kill()
        target.wait()


def test_server_that_cannot_start_falls_back_to_in_process(stax_noserver: Stax,
                                                           workloads: dict[str, Path]) -> None:
    env = dict(stax_noserver.env, STAX_SERVER_SOCKET="/proc/no-such-dir/stax.sock")
    p = subprocess.run([stax_noserver.exe, "record", "--", str(workloads["split"]), "100"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr.startswith("warning: stax-server unreachable (could not start stax-server")
    assert "stax: saved the recording to " in p.stderr and "Traceback" not in p.stderr
