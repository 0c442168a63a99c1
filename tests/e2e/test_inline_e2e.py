"""End-to-end: inline frames from DWARF (a C++ -O2 -g program whose hot helpers exist only as
inlined subroutines) in top, flame, --no-inline, archives and the pprof export."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from harness import ROOT, Stax

CRUNCH = "work::crunch(unsigned long, long)"


@pytest.fixture
def inlined_exe(tmp_path: Path) -> Path:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path / "inlined"
    subprocess.run([gxx, "-O2", "-g", "-o", str(exe), str(ROOT / "tests/workloads/inlined.cpp")],
                   check=True)
    return exe


def _paths(node: dict, prefix: tuple = ()) -> list[tuple]:
    here = (*prefix, (node["func"], bool(node.get("inlined"))))
    kids = node.get("children") or []
    return [here] + [p for k in kids for p in _paths(k, here)]


def test_inline_frames_in_top_flame_and_no_inline(stax: Stax, inlined_exe: Path) -> None:
    stax("record", "--", str(inlined_exe), "1.5", check=True)
    rows = stax("top", "--json", check=True).json()["rows"]  # type: ignore[index]
    by_name = {r["func"]: r for r in rows}
    assert "mix_step" in by_name, rows[:5]
    assert by_name["mix_step"].get("inlined") is True
    assert not by_name.get(CRUNCH, {}).get("inlined")
    inlined_self = sum(r["self_pct"] for r in rows if r.get("inlined"))
    assert inlined_self > 50, rows[:5]
    text = stax("top", check=True).out
    assert "mix_step (inlined)" in text, text

    # flame: crunch -> hash_word (inlined) -> mix_step (inlined)
    roots = stax("flame", "--json", check=True).json()["roots"]  # type: ignore[index]
    paths = [p for r in roots for p in _paths(r)]
    want = [(CRUNCH, False), ("hash_word", True), ("mix_step", True)]
    assert any(tuple(p[i:i + 3]) == tuple(want) for p in paths for i in range(len(p))), paths
    assert "hash_word (inlined)" in stax("flame", "-d", "30", check=True).out

    # --no-inline folds them back into crunch
    rows = stax("top", "--json", "--no-inline", check=True).json()["rows"]  # type: ignore[index]
    assert not any(r.get("inlined") for r in rows), rows[:5]
    assert rows[0]["func"] == CRUNCH and rows[0]["self_pct"] > 80, rows[:3]
    text = stax("flame", "--no-inline", "-d", "30", check=True).out
    assert "mix_step" not in text and "hash_word" not in text, text
