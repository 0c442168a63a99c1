"""End-to-end: recording a real CPython 3.11 (Debian's /usr/bin/python3.11, and the pyenv build
with a shared libpython) puts the Python functions into the samples: a pure-Python program
whose three functions take ~60/30/10% of its time (it measures the split itself) shows them by
name with about those shares, under ``<module>``; ``--no-python`` records native frames only;
``diagnose`` reports the interpreter version and how many samples got Python frames."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from harness import Stax

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "tests" / "workloads" / "python" / "pysplit.py"
PYTHONS = [p for p in ("/usr/bin/python3.11",
                       os.path.realpath(ROOT / ".venv" / "bin" / "python"))
           if shutil.which(p) and "3.11" in os.path.basename(p)]
FUNCS = ("heavy", "medium", "light")


def _find_all(nodes: list, name: str) -> list[dict]:
    out = []
    for n in nodes:
        if n["func"] == name:
            out.append(n)
        out += _find_all(n["children"], name)
    return out


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11 here")
@pytest.mark.parametrize("python", PYTHONS)
def test_python_functions_by_name_with_their_shares(stax: Stax, python: str) -> None:
    r = stax("record", "--", python, str(TARGET), "4", check=True, timeout=60)
    measured = json.loads(r.err.strip().splitlines()[0])  # the split the program timed
    rows = stax("top", "--json", "-n", "0", "--sort", "total", check=True).json()["rows"]
    py = {row["func"]: row for row in rows if row["binary"] == "pysplit.py"}
    assert set(FUNCS) | {"<module>"} <= set(py), sorted(py)
    total = sum(py[f]["total_samples"] for f in FUNCS)
    shares = {f: 100 * py[f]["total_samples"] / total for f in FUNCS}
    print("measured", measured, "stax", shares)
    for f in FUNCS:
        assert abs(shares[f] - measured[f]) <= 5, (shares, measured)
    text = stax("top", "-n", "0", check=True).out
    assert "heavy  (pysplit.py)" in text
    flame = stax("flame", "--json", "-d", "60", check=True).json()
    modules = _find_all(flame["roots"], "<module>")
    assert modules
    assert {c["func"] for m in modules for c in m["children"]} >= set(FUNCS)
    diag = stax("diagnose", "--json", check=True).json()
    info = diag["run"]["python"]
    assert info["version"].startswith("3.11.")
    assert info["python_running"] > 500
    ratio = info["python_samples"] / info["python_running"]
    print("python frames on", ratio, "of samples running Python code")
    assert ratio >= 0.9, info
    assert info["stack_reader"] == "process", info  # the stack-reading process, not the server
    text = stax("diagnose", check=True).out
    assert "python: CPython 3.11." in text


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11 here")
def test_no_python_records_native_frames_only(stax: Stax) -> None:
    stax("record", "--no-python", "--", PYTHONS[0], str(TARGET), "1", check=True, timeout=60)
    rows = stax("top", "--json", "-n", "0", check=True).json()["rows"]
    assert not [r for r in rows if r["binary"] == "pysplit.py"]
    assert any(r["func"] == "_PyEval_EvalFrameDefault" for r in rows)
    diag = stax("diagnose", "--json", check=True).json()
    assert "python" not in diag["run"]
    assert "  python: " not in stax("diagnose", check=True).out


def test_native_target_gets_no_python_section(stax: Stax, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["split"]), "300", check=True)
    diag = stax("diagnose", "--json", check=True).json()
    assert "python" not in diag["run"]
    assert not [k for k in diag["run"]["records"] if k.startswith("python_")]


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11 here")
def test_attach_to_a_running_interpreter(stax: Stax) -> None:
    import subprocess

    target = subprocess.Popen([PYTHONS[0], str(TARGET), "6"], stderr=subprocess.DEVNULL)
    try:
        stax("record", "-p", str(target.pid), "-l", "2", check=True, timeout=60)
    finally:
        target.kill()
        target.wait()
    rows = stax("top", "--json", "-n", "0", "--sort", "total", check=True).json()["rows"]
    assert {"heavy", "medium", "light"} <= {r["func"] for r in rows
                                            if r["binary"] == "pysplit.py"}
    info = stax("diagnose", "--json", check=True).json()["run"]["python"]
    assert info["python_samples"] > 0.7 * info["python_running"] > 300, info


PERF_PYTHONS = [p for p in ("/root/.pyenv/versions/3.12.1/bin/python3.12",
                            "/root/.pyenv/versions/3.13.0/bin/python3.13",
                            shutil.which("python3.12") or "", shutil.which("python3.13") or "")
                if p and os.path.exists(p)][:1]


@pytest.mark.skipif(not PERF_PYTHONS, reason="no CPython 3.12+ here")
def test_x_perf_trampolines_named_and_completed_by_python_frames(stax: Stax) -> None:
    """``python -X perf`` (3.12+): its trampolines are named from the perf map, and the native
    walks that stop at them (no unwind information) are completed by the Python frames, so
    the functions keep their shares under ``<module>``."""
    r = stax("record", "--", PERF_PYTHONS[0], "-X", "perf", str(TARGET), "3", check=True,
             timeout=60)
    measured = json.loads(r.err.strip().splitlines()[0])
    rows = stax("top", "--json", "-n", "0", "--sort", "total", check=True).json()["rows"]
    assert any(row["func"] == "py::heavy:" + str(TARGET) for row in rows), rows[:10]
    py = {row["func"]: row for row in rows if row["binary"] == "pysplit.py"}
    assert set(FUNCS) | {"<module>"} <= set(py), sorted(py)
    total = sum(py[f]["total_samples"] for f in FUNCS)
    for f in FUNCS:
        assert abs(100 * py[f]["total_samples"] / total - measured[f]) <= 6, (py, measured)
    # under <module>: the part of the stack the walk could not reach
    assert py["<module>"]["total_samples"] >= 0.9 * total
    info = stax("diagnose", "--json", check=True).json()["run"]["python"]
    assert info["python_samples"] >= 0.8 * info["python_running"] > 300, info
