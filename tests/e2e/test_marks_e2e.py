"""Marks and time windows on a real recording: a program that works in two phases (work_a, then
work_b) is marked between them with ``stax mark`` while it records; the views over a window
show only that phase, by mark labels or by seconds; the marks survive ``save``/``open`` and scope
``compare`` and ``export`` too."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from harness import Stax


def _funcs(stax: Stax, *args: str) -> dict[str, int]:
    res = stax("top", "-n", "0", "--json", *args, check=True).json()
    return {r["func"]: r["self_samples"] for r in res["rows"]}  # type: ignore[index]


def _line(proc: subprocess.Popen[str], want: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == want, (line, proc.stderr.read() if proc.stderr else "")


@pytest.fixture
def marked(stax: Stax, workloads: dict[str, Path]) -> dict[str, float]:
    """A finished run of ``marked``: marks ``a-end`` between the phases and ``b-end`` after
    work_b; returns the marks' times (s)."""
    proc = stax.popen("record", "--", str(workloads["marked"]), "0.7", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        _line(proc, "a done")  # work_a has run; the program now waits (blocked) for a line
        time.sleep(0.1)
        r = stax("mark", "a-end", check=True)
        assert r.out.startswith("marked a-end at ") and " in run 1" in r.out
        time.sleep(0.1)
        proc.stdin.write("\n")
        proc.stdin.flush()
        _line(proc, "b done")
        time.sleep(0.1)
        stax("mark", "b-end", check=True)
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = stax("status", "--json", check=True).json()["current"]  # type: ignore[index]
    marks = {m["label"]: m["time_ns"] / 1e9 for m in run["marks"]}
    assert list(marks) == ["a-end", "b-end"] and 0.6 < marks["a-end"] < marks["b-end"]
    return marks


def test_windows_by_marks_and_seconds_show_one_phase(stax: Stax,
                                                     marked: dict[str, float]) -> None:
    whole = _funcs(stax)
    assert whole.get("work_a", 0) > 50 and whole.get("work_b", 0) > 50
    a = _funcs(stax, "--window", "..a-end")
    b = _funcs(stax, "--window", "a-end..b-end")
    assert a.get("work_a", 0) > 50 and "work_b" not in a
    assert b.get("work_b", 0) > 50 and "work_a" not in b
    t = marks_a = marked["a-end"]
    assert "work_b" not in _funcs(stax, "--window", f"0..{t - 0.05:.3f}")
    late = _funcs(stax, "--window", f"{marks_a + 0.05:.3f}..")
    assert late.get("work_b", 0) > 50 and "work_a" not in late
    text = stax("top", "--window", "a-end..b-end", check=True).out
    assert "work_b" in text and "work_a" not in text
    # the other views read the same window
    flame = stax("flame", "--window", "a-end..b-end", "--json", check=True).json()
    assert "work_a" not in str(flame) and "work_b" in str(flame)
    th = stax("threads", "--window", "a-end..", "--json", check=True).json()
    assert th["rows"] and all(r["samples"] < whole["work_b"] + 20 for r in th["rows"])
    assert stax("wakers", "--window", "a-end..b-end", check=True).code == 0
    ann = stax("annotate", "work_a", "--window", "..a-end", "--json", check=True).json()
    assert ann["self_samples"] == a["work_a"]
    r = stax("annotate", "work_b", "--window", "..a-end")  # work_b did not run before a-end
    assert r.code == 1 and 'no sampled function matches "work_b"' in r.err
    # a window after the run: an answer, not an error
    for view in ("top", "threads", "flame"):
        r = stax(view, "--window", "500..", check=True)
        assert r.out.strip() == "(no samples in the window 500..)", (view, r.out)
    # status and diagnose list the marks
    assert "marks: a-end at " in stax("status", check=True).out
    diag = stax("diagnose", check=True).out
    assert "marks: a-end at " in diag and "b-end at " in diag
    assert [m["label"] for m in stax("diagnose", "--json", check=True).json()["run"][
        "marks"]] == ["a-end", "b-end"]


def test_bad_windows_and_marks_are_one_error_line(stax: Stax, marked: dict[str, float]) -> None:
    for args, msg in [
        (("top", "--window", "nope.."), "error: unknown mark 'nope'; marks: a-end, b-end"),
        (("top", "--window", "b-end..a-end"), "error: window end before start"),
        (("flame", "--window", "3..1"), "error: argument --window: window end before start"),
        (("threads", "--window", "7"), "error: argument --window: window '7' has no '..'"),
        (("mark", "1.5"), "must not be a number"),
        (("mark", ""), "must not be empty"),
    ]:
        r = stax(*args)
        assert r.code == 1 and r.err.startswith("error: ") and msg in r.err, (args, r.err)
    r = stax("mark", "late")  # the run has stopped: nothing to mark
    assert r.code == 1 and r.err.strip() == ("error: no active run to mark; start one with: "
                                             "stax record -- COMMAND")


def test_marks_survive_save_open_and_scope_compare_and_export(
        stax: Stax, marked: dict[str, float], tmp_path: Path) -> None:
    before = _funcs(stax, "--window", "a-end..b-end")
    path = str(tmp_path / "marked.stax")
    stax("save", path, check=True)
    stax("open", path, check=True)
    run = stax("status", "--json", check=True).json()["current"]  # type: ignore[index]
    assert run["id"] == 2 and [m["label"] for m in run["marks"]] == ["a-end", "b-end"]
    assert _funcs(stax, "--window", "a-end..b-end") == before
    # compare: base in its phase a, cand in its phase b
    res = stax("compare", path, path, "--base-window", "..a-end", "--cand-window",
               "a-end..b-end", "--json", check=True).json()
    reg = {r["func"] for r in res["regressions"]}
    imp = {r["func"] for r in res["improvements"]}
    assert "work_b" in reg and "work_a" in imp
    same = stax("compare", path, path, "--window", "a-end..", "--json", check=True).json()
    assert same["delta"]["samples"] == 0 and same["base"]["window"] == "a-end.."
    text = stax("compare", path, path, "--window", "a-end..", check=True).out
    assert "windows: base a-end.., cand a-end.." in text
    r = stax("compare", path, path, "--window", "x..")
    assert r.code == 1 and "unknown mark 'x'; marks: a-end, b-end" in r.err
    folded = stax("export", "--format", "folded", "--window", "a-end..b-end", check=True).out
    assert "work_b" in folded and "work_a" not in folded
    r = stax("export", "--format", "folded", "--window", "zz..")
    assert r.code == 1 and r.err.startswith("error: unknown mark 'zz'")


def test_mark_with_no_active_run_exits_1(stax: Stax) -> None:
    r = stax("mark", "x")
    assert r.code == 1 and r.err.startswith("error: no active run to mark")
    assert "Traceback" not in r.err
