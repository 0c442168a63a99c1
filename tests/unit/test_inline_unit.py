"""Inline frames without a recording: the DWARF index on a compiled -O2 -g program, the func
paths with and without inlining, the archive round trip of the chains, and the exports."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from archive_helpers import RUN, SPLIT, build_profile, pb_decode
from harness import ROOT

from stax.archive import format as fm
from stax.archive.export import converter
from stax.profile import inline, views
from stax.profile.tables import Func


def _with_chain() -> tuple:
    """SPLIT with work_a's frame expanding into helper <- leaf (both inlined in work_a)."""
    p = build_profile(SPLIT)
    helper = len(p.funcs)
    p.funcs.append(Func("helper", "prog", "/usr/bin/prog", 0, 0, True, True))
    p.funcs.append(Func("leaf", "prog", "/usr/bin/prog", 0, 0, True, True))
    work_a = next(i for i, f in enumerate(p.funcs) if f.name == "work_a")
    fid = next(i for i, f in enumerate(p.frame_func) if f == work_a)
    p.frame_inline[fid] = (helper, helper + 1)
    return p, fid


def test_paths_expand_and_fold() -> None:
    p, _fid = _with_chain()
    rows = {r["func"]: r for r in views.top(p, views.Filter(), sort="total")["rows"]}
    assert rows["leaf"]["self_samples"] == 60 and rows["leaf"]["inlined"] is True
    assert rows["helper"]["total_samples"] == 60 and "inlined" not in rows["work_a"]
    assert rows["work_a"]["self_samples"] == 0 and rows["work_a"]["total_samples"] == 60
    node = views.flame(p, views.Filter())["roots"][0]["children"][0]
    assert [node["func"], node["children"][0]["func"],
            node["children"][0]["children"][0]["func"]] == ["work_a", "helper", "leaf"]
    rows = {r["func"]: r for r in views.top(p, views.Filter(inline=False), sort="total")["rows"]}
    assert "leaf" not in rows and rows["work_a"]["self_samples"] == 60
    # exclusion drops one level of the chain only
    rows = {r["func"]: r for r in views.top(p, views.Filter(exclude=("leaf",)))["rows"]}
    assert rows["helper"]["self_samples"] == 60


def test_archive_keeps_chains_and_old_archives_load(tmp_path: Path) -> None:
    p, fid = _with_chain()
    a = fm.load(fm.save(p, str(tmp_path / "i.stax"), RUN)["path"])
    assert a.profile.frame_inline == {fid: p.frame_inline[fid]}
    assert [f.inlined for f in a.profile.funcs] == [f.inlined for f in p.funcs]
    assert views.top(a.profile, views.Filter()) == views.top(p, views.Filter())
    plain = fm.load(fm.save(build_profile(SPLIT), str(tmp_path / "n.stax"), RUN)["path"])
    assert plain.profile.frame_inline == {}


def test_exports_carry_chains() -> None:
    p, _fid = _with_chain()
    folded = converter("folded")(p).decode()
    assert "main;work_a;helper (inlined);leaf (inlined) 60" in folded
    ss = json.loads(converter("speedscope")(p))
    assert "leaf (inlined) (prog)" in {f["name"] for f in ss["shared"]["frames"]}
    gecko = json.loads(converter("gecko")(p))
    assert sorted(set(gecko["threads"][0]["frameTable"]["inlineDepth"])) == [0, 1, 2]
    prof = pb_decode(gzip.decompress(converter("pprof")(p)))
    strings = [s.decode() for s in prof[6]]
    names = {pb_decode(r)[1][0]: strings[pb_decode(r)[2][0]] for r in prof[5]}
    chains = [[names[pb_decode(x)[1][0]] for x in pb_decode(r)[4]] for r in prof[4]]
    assert ["leaf", "helper", "work_a"] in chains


def test_dwarf_index_on_compiled_program(tmp_path: Path) -> None:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path / "inlined"
    subprocess.run([gxx, "-O2", "-g", "-o", str(exe), str(ROOT / "tests/workloads/inlined.cpp")],
                   check=True)
    nm = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    start = next(int(line.split()[0], 16) for line in nm.splitlines() if "crunch" in line)
    chains = [inline.chain(str(exe), None, a) for a in range(start, start + 0x80)]
    names = {tuple(x.name for x in c) for c in chains}
    assert ("mix_step", "hash_word") in names, names
    hit = next(c for c in chains if len(c) == 2)
    assert hit[0].call_file.endswith("inlined.cpp") and hit[0].call_line > 0
    assert hit[1].call_line > hit[0].call_line  # hash_word is called in crunch, further down
    # no DWARF: no chains
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "-g", "-o", str(stripped), str(exe)], check=True)
    assert inline.chain(str(stripped), None, start + 8) == []


def _text_range(exe: Path) -> range:
    out = subprocess.run(["readelf", "-SW", str(exe)], capture_output=True, text=True,
                         check=True).stdout
    cols = next(line for line in out.splitlines() if " .text " in line).split()
    i = cols.index("PROGBITS")
    lo, size = int(cols[i + 1], 16), int(cols[i + 3], 16)
    return range(lo, lo + size)


def test_lean_die_reader_matches_pyelftools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           ) -> None:
    """The lean DIE reader gives the chains pyelftools gives, at every address of .text (C++
    -O2 -g with DWARF 5, and DWARF 4 range lists / forms)."""
    from stax.profile import dwarfdies

    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    for dwarf in ("-gdwarf-5", "-gdwarf-4"):
        exe = tmp_path / f"inlined{dwarf}"
        subprocess.run([gxx, "-O2", dwarf, "-o", str(exe),
                        str(ROOT / "tests/workloads/inlined.cpp")], check=True)
        addrs = _text_range(exe)
        inline.clear_caches()
        lean = [inline.chain(str(exe), None, a) for a in addrs]
        assert sum(1 for c in lean if c) > 50

        def unsupported(*_args: object) -> list:
            raise dwarfdies.Unsupported("forced")

        inline.clear_caches()
        with monkeypatch.context() as m:
            m.setattr(inline, "_decode_lean", unsupported)
            slow = [inline.chain(str(exe), None, a) for a in addrs]
        assert lean == slow, dwarf
    inline.clear_caches()


def test_complete_aranges_answer_misses_without_scanning(tmp_path: Path) -> None:
    """An address no unit covers (the PLT, _start of crt1 without DWARF) is answered from
    .debug_aranges when every unit with code is listed there: no decoding of every unit."""
    from stax.profile import srclines

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    exe = tmp_path / "spin"
    subprocess.run([gcc, "-O2", "-g", "-gdwarf-5", "-o", str(exe),
                    str(ROOT / "tests/workloads/spin.c")], check=True)
    nm = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    start = next(int(line.split()[0], 16) for line in nm.splitlines()
                 if line.endswith(" _start"))
    df = srclines.dwarf_file(str(exe))
    assert df is not None
    with df.lock:
        assert df.cu_offset_for(start) is None
        if df.aranges is not None:
            assert df.aranges_complete and df.cu_ranges is None
