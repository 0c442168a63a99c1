"""End-to-end: inline frames from DWARF (a C++ -O2 -g program whose hot helpers exist only as
inlined subroutines) in top, flame, --no-inline, archives and the pprof export."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from consumer_helpers import go_pprof
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


def test_inline_frames_in_exports(stax: Stax, inlined_exe: Path, tmp_path: Path) -> None:
    from archive_helpers import pb_decode

    stax("record", "--", str(inlined_exe), "1", check=True)
    folded = stax("export", "--format", "folded", check=True).out
    assert f"{CRUNCH};hash_word (inlined);mix_step (inlined) " in folded, folded[:2000]
    folded = stax("export", "--format", "folded", "--no-inline", check=True).out
    assert "mix_step" not in folded and CRUNCH in folded

    speedscope = json.loads(stax("export", "--format", "speedscope", check=True).out)
    names = {f["name"] for f in speedscope["shared"]["frames"]}
    assert any(n.startswith("mix_step (inlined) (") for n in names), names

    gecko = json.loads(stax("export", "--format", "gecko", check=True).out)
    ft = gecko["threads"][0]["frameTable"]
    assert max(ft["inlineDepth"]) >= 2, ft["inlineDepth"][:50]

    # pprof: the hot locations carry several Lines, innermost first, crunch last
    out = tmp_path / "p.pb.gz"
    stax("export", "--format", "pprof", "-o", str(out), check=True)
    prof = pb_decode(gzip.decompress(out.read_bytes()))
    strings = [s.decode() for s in prof[6]]
    funcs = {pb_decode(r)[1][0]: strings[pb_decode(r)[2][0]] for r in prof[5]}
    chains = [[funcs[pb_decode(line)[1][0]] for line in pb_decode(r).get(4, [])]
              for r in prof[4]]
    assert ["mix_step", "hash_word", CRUNCH] in chains, chains
    go = shutil.which("go")
    if go is None:
        return
    traces = go_pprof(out, tmp_path, "-traces")
    assert "mix_step" in traces and "(inline)" in traces, traces[:3000]
