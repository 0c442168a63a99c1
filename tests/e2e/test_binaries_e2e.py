"""End-to-end: binaries are found however they are named or deleted. A program under a
non-UTF-8 path, and programs whose file was deleted or replaced before the attach, get
symbols, DWARF unwinding (built without frame pointers) and annotate."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Stax

from stax.symbols import read_build_id


def _top(stax: Stax) -> dict[str, Any]:
    return stax("top", "--json", "--sort", "total", "-n", "0", check=True).json()  # type: ignore[return-value]


def _reach_main_pct(top: dict[str, Any]) -> float:
    main = [r for r in top["rows"] if r["func"] == "main"]
    return 100.0 * main[0]["total_samples"] / top["total_samples"] if main else 0.0


def _diag(stax: Stax) -> dict[str, Any]:
    return stax("diagnose", "--json", check=True).json()  # type: ignore[return-value]


def _check_profile(stax: Stax, binary: str) -> None:
    """slow_cmp is named in ``binary``, stacks reach main, no unwinding stop in the program."""
    top = _top(stax)
    hot = [r for r in top["rows"] if r["func"] == "slow_cmp"]
    assert hot and hot[0]["binary"] == binary, top["rows"][:5]
    assert hot[0]["self_samples"] > 0.5 * top["total_samples"]
    assert _reach_main_pct(top) >= 98.0
    d = _diag(stax)
    run = d["run"]
    assert run["unwinding"] == "dwarf"
    assert run["unwind"]["complete"] >= 0.98 * run["unwind"]["walks"], run["unwind"]
    assert not [s for s in run["unwind"]["stops"] if s["binary"] == binary], run["unwind"]
    assert d["symbols"]["missing_files"] == 0
    assert d["symbols"]["build_id_mismatches"] == 0


def _check_annotate(stax: Stax) -> dict[str, Any]:
    res: Any = stax("annotate", "slow_cmp", "--json", check=True).json()
    assert res["function"]["func"] == "slow_cmp"
    assert res["instructions"] and res["note"] is None, res["note"]
    assert res["placed_samples"] > 0.9 * res["self_samples"]
    assert res["has_line_info"] and any("qsortcb.c" in s["file"] for s in res["sources"])
    return res  # type: ignore[no-any-return]


def test_non_utf8_path_unwinds_and_symbolises(stax: Stax, workloads: dict[str, Path],
                                              tmp_path: Path) -> None:
    d = os.fsencode(tmp_path) + b"/x\xff"
    os.mkdir(d)
    exe = d + b"/w\xff\xfe"
    shutil.copy(workloads["qsortcb_nofp"], exe)
    stax("record", "--", os.fsdecode(exe), "10", check=True)
    _check_profile(stax, "w\\xff\\xfe")
    res = _check_annotate(stax)
    assert res["function"]["path"] == os.fsencode(exe).decode("utf-8", "backslashreplace")
    # text output shows the binary's name escaped (the command line is not this module's)
    out = subprocess.run([stax.exe, "top"], env=stax.env, capture_output=True, check=True).stdout
    assert b"slow_cmp  (w\\xff\\xfe)" in out, out


@pytest.fixture
def started(workloads: dict[str, Path], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes],
                                                                          Path, str]]:
    """qsortcb (no frame pointers) copied to its own file and running; and its build-id."""
    exe = tmp_path / "victim"
    shutil.copy(workloads["qsortcb_nofp"], exe)
    bid = read_build_id(str(exe))
    assert bid
    proc = subprocess.Popen([str(exe), "100000"], stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        yield proc, exe, bid
    finally:
        proc.kill()
        proc.wait()


def _attach(stax: Stax, pid: int) -> None:
    stax("record", "--pid", str(pid), "-l", "1.5", check=True)


def test_binary_deleted_before_attach(stax: Stax, started: tuple[subprocess.Popen[bytes],
                                                                Path, str]) -> None:
    proc, exe, bid = started
    exe.unlink()
    _attach(stax, proc.pid)
    _check_profile(stax, "victim")
    res = _check_annotate(stax)
    assert res["function"]["build_id"] == bid
    assert res["function"]["path"] == f"{exe} (deleted)"
    src = res["function"]["disk_path"]
    assert f"/proc/{proc.pid}/" in src and "kept open" in src, src
    files = _diag(stax)["run"]["binary_files"]
    assert files["kept_open"] == 1 and files["missing"] == 0, files
    assert files["found_by"]["pinned"] == 1
    proc.kill()
    proc.wait()
    _check_annotate(stax)  # the run kept the file open: still readable after the exit


def test_binary_replaced_before_attach(stax: Stax, workloads: dict[str, Path],
                                       started: tuple[subprocess.Popen[bytes], Path, str],
                                       tmp_path: Path) -> None:
    proc, exe, bid = started
    other = tmp_path / "other"
    shutil.copy(workloads["spin_nofp"], other)
    os.rename(other, exe)  # the name now holds a different program
    _attach(stax, proc.pid)
    _check_profile(stax, "victim")
    res = _check_annotate(stax)
    assert res["function"]["build_id"] == bid
    assert "kept open" in res["function"]["disk_path"]


def test_binary_gone_is_reported(stax: Stax, workloads: dict[str, Path],
                                 tmp_path: Path) -> None:
    exe = tmp_path / "gone"
    shutil.copy(workloads["qsortcb_nofp"], exe)
    stax("record", "--", str(exe), "4", check=True)
    exe.unlink()  # after the run: neither the file nor its process is left
    res: Any = stax("annotate", "slow_cmp", "--json", check=True).json()
    assert res["function"]["func"] == "slow_cmp"  # named while recording
    assert not res["instructions"]
    st: Any = stax("status", "--json", check=True).json()
    pid = st["current"]["pid"]
    why = f"{exe}: not found on disk, and its process {pid} is gone"
    assert res["note"] == f"{why}: nothing to disassemble"
    files = _diag(stax)["run"]["binary_files"]
    assert files["missing"] == 1 and files["kept_open"] == 0, files
    assert files["missing_listed"] == [{"binary": str(exe), "problem": "missing", "reason": why}]
    assert f"binary files: {files['found']} readable, 1 not, 0 kept open" in stax(
        "diagnose", check=True).out
