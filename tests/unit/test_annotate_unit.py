"""annotate in process: the view on hand-built samples of the compiled ``split`` workload
(placed and unplaced samples, filters, callers), disassembly, target parsing, and the line-table
lookup through a build-id debug file. Through a real server: e2e/test_annotate_e2e.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from build_helpers import func_sym as _func_sym

from stax.capture.records import Sample
from stax.profile import annotate as ann
from stax.profile import linetable, srclines
from stax.profile.tables import Profile
from stax.profile.views import Filter


def _split_profile(exe: Path, ips: list[int], base: int = 0x555555554000,
                   caller: int | None = None) -> Profile:
    """A profile whose only process maps ``exe`` at ``base`` (offset 0, as the whole file);
    each sample is ``ip`` (called from the return address ``caller``, if given)."""
    from stax.symbols import Symbolizer

    p = Profile(Symbolizer())
    size = (exe.stat().st_size + 0xFFF) & ~0xFFF
    with p.lock:
        p.on_mmap(10, 10, base, size, 0, 5, None, str(exe), 1)
        for t, ip in enumerate(ips):
            chain = (ip,) if caller is None else (ip, caller)
            p.on_sample(Sample(0, "cpu-clock", ip, 10, 10, 100 + t, 0, 1000, chain))
    return p


def test_unplaced_samples_are_counted(workloads: dict[str, Path]) -> None:
    exe = workloads["split"]
    addr, _size = _func_sym(exe, "work_a")
    base = 0x555555554000
    first = ann.annotate(_split_profile(exe, [base + addr]), Filter(), "work_a")
    wide = next(i for i in first["instructions"] if i["size"] > 1)
    # 3 samples on an instruction, 2 one byte into it (not a boundary)
    p = _split_profile(exe, [base + wide["addr"]] * 3 + [base + wide["addr"] + 1] * 2)
    res = ann.annotate(p, Filter(), "work_a")
    assert res["self_samples"] == 5
    assert res["placed_samples"] == 3 and res["unplaced_samples"] == 2
    assert res["unplaced"]["mid_instruction"] == 2
    assert res["unplaced_addrs"] == [{"addr": wide["addr"] + 1, "samples": 2,
                                      "reason": "mid_instruction"}]
    assert [i["samples"] for i in res["instructions"] if i["samples"]] == [3]
    # filters apply: another thread has none of these samples
    assert ann.annotate(p, Filter(tid=99), "work_a")["function"] is None
    # a run-time address inside the function finds it through the process's mappings
    by_rt = ann.annotate(p, Filter(), hex(base + wide["addr"] + 1))
    assert by_rt["matched_by"] == "address" and by_rt["function"]["func"] == "work_a"
    # a function seen only as a caller: disassembled from its symbol, nothing to place
    main_addr = _func_sym(exe, "main")[0]
    p2 = _split_profile(exe, [base + addr] * 4, caller=base + main_addr + 5)
    res = ann.annotate(p2, Filter(), "main", exact=True)
    assert res["function"]["func"] == "main" and res["instructions"]
    assert res["instructions"][0]["addr"] == main_addr
    assert res["self_samples"] == res["placed_samples"] == 0
    assert res["total_samples_in_function"] == 4
    # exact names (a UI passing back a name it was given)
    assert ann.annotate(p, Filter(), "work_a", exact=True)["function"]["func"] == "work_a"
    assert ann.annotate(p, Filter(), "work", exact=True)["function"] is None


def test_disassemble_skips_undecodable_bytes() -> None:
    # nop; (bad: a lone 0x0f 0x0b is ud2, so use 0xd6 which is invalid in 64-bit mode); ret
    insns = ann._disassemble(bytes([0x90, 0xD6, 0xC3]), 0x1000, "x86-64")
    assert [(a, s) for a, s, _t in insns] == [(0x1000, 1), (0x1001, 1), (0x1002, 1)]
    assert insns[0][2] == "nop" and insns[1][2] == "(bad)" and insns[2][2] == "ret"


def test_parse_target() -> None:
    assert ann.parse_target("0x401136") == 0x401136
    assert ann.parse_target("0X1f") == 0x1F
    assert ann.parse_target("add") is None  # hex digits but no 0x: a name
    assert ann.parse_target("work_a") is None


@pytest.mark.skipif(shutil.which("objcopy") is None, reason="objcopy (binutils) is missing")
def test_line_info_from_a_build_id_debug_file(workloads: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from stax import elfread as symelf

    exe = workloads["split"]
    bid = symelf.read_build_id(str(exe))
    assert bid
    root = tmp_path / "debug" / ".build-id"
    (root / bid[:2]).mkdir(parents=True)
    debug = root / bid[:2] / f"{bid[2:]}.debug"
    stripped = tmp_path / "split-stripped"
    # compressed, as distributions ship them (SHF_COMPRESSED: decompressed on first use)
    subprocess.run(["objcopy", "--only-keep-debug", "--compress-debug-sections=zlib-gabi",
                    str(exe), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-debug", str(exe), str(stripped)], check=True)
    from stax.symbols import debuginfo

    monkeypatch.setattr(debuginfo, "_default", debuginfo.DebugInfoFinder(
        debug_roots=(str(tmp_path / "debug"),)))
    srclines.clear_caches()

    assert srclines.debug_elf_for(str(exe), bid) == str(exe)  # it has its own line tables
    assert srclines.debug_elf_for(str(stripped), bid) == str(debug)
    assert srclines.debug_elf_for(str(stripped), "ab" * 20) is None  # another build
    addr, size = _func_sym(exe, "work_a")
    table = srclines.line_table(str(debug), addr)
    assert table is not None
    lines = {table.lookup(a) for a in range(addr, addr + size)} - {None}
    assert lines and all(f.endswith("split.c") for f, _line in lines)  # type: ignore[misc]
    assert 7 in {line for _f, line in lines}  # type: ignore[misc]

    # the whole view on the stripped binary finds the lines in the debug file
    p = _split_profile(stripped, [0x555555554000 + addr])
    res = ann.annotate(p, Filter(), "work_a")
    assert res["debug_file"] == str(debug) and res["has_line_info"]
    srclines.clear_caches()


def test_line_program_decoder_matches_pyelftools(workloads: dict[str, Path]) -> None:
    """The fast line-number state machine gives exactly pyelftools' rows."""
    from stax import elfread as symelf

    paths = [str(workloads["split"]), str(workloads["qsortcb_nofp"])]
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    debug = srclines.debug_elf_for(libc, symelf.read_build_id(libc))
    if debug is not None:
        paths.append(debug)  # many units, DWARF 5, compressed sections (libc6-dbg)
    for path in paths:
        df = srclines._dwarf_file(path)
        assert df is not None, path
        checked = 0
        for cu in df.dwarf.iter_CUs():
            prog = df.dwarf.line_program_for_CU(cu)
            if prog is None:
                continue
            fast = linetable.run_line_program(prog, df.dwarf.config.little_endian)
            assert fast == linetable.entries_rows(prog), (path, cu.cu_offset)
            checked += 1
            if checked >= 40:
                break
        assert checked, path
