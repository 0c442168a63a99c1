"""End-to-end: time limits that hold with many threads, and load shed on purpose when the
sampling rate is far above what the server can process."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from harness import Stax

from stax import sysctl


def test_time_limit_holds_with_300_threads(stax: Stax, workloads: dict[str, Path]) -> None:
    # 300 threads: two spin, the rest wake every 50 ms (a context switch each, recorded)
    target = subprocess.Popen([str(workloads["manythreads"]), "300", "60", "2"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        r = stax("record", "-p", str(target.pid), "-l", "2", "--json", timeout=60)
        ended = time.time()
        assert r.code == 0, r.err
        run = r.json()
        assert run["end_reason"] == "time-limit" and run["threads"] >= 300
        # the recorded span is the limit: it starts when every event is open
        assert 1800 <= run["elapsed_ms"] <= 2500, run["elapsed_ms"]
        # and the run ends soon after: recording began at started_at_unix_ms
        assert ended - run["started_at_unix_ms"] / 1000 < 2 + 1.5, run
        assert run["samples"] > 0
        assert target.poll() is None, "the time limit must leave the target running"
    finally:
        target.kill()
        target.wait()


def _record_overloaded(stax: Stax, spin: Path, threads: int) -> tuple[dict, dict, float]:
    rate = min(50_000, sysctl.read_int("kernel.perf_event_max_sample_rate", 100_000))
    t0 = time.monotonic()
    r = stax("record", "-F", str(rate), "--json", "--", str(spin), "1", str(threads),
             timeout=120)
    took = time.monotonic() - t0
    assert r.code == 0, r.err
    run = r.json()
    assert run["end_reason"] == "exited"
    diag = stax("diagnose", "--json", check=True).json()["run"]
    return run, diag, took


def _assert_shed_and_said(stax: Stax, run: dict, diag: dict) -> None:
    shed = run["shedding"]
    assert shed is not None, run
    assert shed["rate_lowered_to_hz"] or shed["shed_samples"] or shed["stripped_stacks"]
    assert any(n.startswith("overloaded:") for n in run["notes"]), run["notes"]
    assert diag["shedding"] == shed
    text = stax("diagnose", check=True).out
    assert "overload: shed load" in text and "note: overloaded:" in text


def test_overload_on_two_threads_ends_with_the_target(stax: Stax,
                                                      workloads: dict[str, Path]) -> None:
    run, diag, took = _record_overloaded(stax, workloads["spin"], 2)
    assert took < 15, f"a 1 s target took {took:.1f} s to record"
    assert run["elapsed_ms"] < 4000, run["elapsed_ms"]
    if run["shedding"] is None:
        # a target starved of CPU by a busy machine may not outrun the server: then it kept up
        assert run["lost_records"] == 0 and diag["ingest"]["max_lag_ms"] < 1000, diag
    else:
        _assert_shed_and_said(stax, run, diag)
    # the profile is still a profile: spin_hot dominates whatever was shed
    top = stax("top", "--json", "-n", "1", check=True).json()
    assert top["rows"][0]["func"] == "spin_hot"


def test_overload_on_eight_threads_sheds_and_says_so(stax: Stax,
                                                    workloads: dict[str, Path]) -> None:
    run, diag, took = _record_overloaded(stax, workloads["spin"], 8)
    assert took < 20, f"a 1 s target took {took:.1f} s to record"
    _assert_shed_and_said(stax, run, diag)
