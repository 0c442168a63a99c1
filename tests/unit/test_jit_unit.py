"""JIT symbols on hand-written files: perf maps and jitdumps (parsing, re-reading), anonymous
executable mappings kept per process with absolute addresses, perf maps of other users ignored.
node end to end is in e2e/test_jit_e2e.py."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from stax.capture import records as rec
from stax.profile.tables import Profile
from stax.symbols import Symbolizer
from stax.symbols.perfmap import JitDump, PerfMap, PerfMaps, is_jitdump_path
from stax.symbols.symbolizer import JIT_BINARY


def test_perf_map_parse_and_grow(tmp_path: Path) -> None:
    path = tmp_path / "perf-42.map"
    path.write_text("1000 100 LazyCompile:*hot a.js:1\n2000 20 Builtin:Foo\nbogus line\n30")
    pm = PerfMap(str(path))
    assert pm.refresh()
    assert pm.lookup(0x1000) == ("LazyCompile:*hot a.js:1", 0x1000, 0x100)
    assert pm.lookup(0x10FF) is not None and pm.lookup(0x1100) is None
    assert pm.lookup(0x2013) == ("Builtin:Foo", 0x2000, 0x20)
    assert pm.lookup(0x3000) is None  # "30" is an unfinished line: not read yet
    assert not pm.refresh()
    with open(path, "a") as f:
        f.write("00 10 finished later\n1000 100 recompiled hot\n")
    assert pm.refresh()
    assert pm.lookup(0x3005) == ("finished later", 0x3000, 0x10)
    assert pm.lookup(0x1010) is not None
    assert pm.lookup(0x1010)[0] == "recompiled hot"  # type: ignore[index]  # newest wins
    # replaced by a shorter file: read from the start again
    path.write_text("5000 10 fresh\n")
    pm.refresh()
    assert pm.lookup(0x5001) == ("fresh", 0x5000, 0x10)
    assert pm.lookup(0x2013) is None


def test_perf_maps_per_pid_and_symbolizer(tmp_path: Path) -> None:
    (tmp_path / "perf-100.map").write_text("7f0000001000 40 JS:*alpha x.js:3\n")
    (tmp_path / "perf-200.map").write_text("7f0000001000 40 JS:*beta y.js:9\n")
    maps = PerfMaps(tmp=str(tmp_path))
    sym = Symbolizer(perf_maps=maps)
    a = sym.resolve_user("[anon]", None, 0x7F0000001010, pid=100)
    b = sym.resolve_user("[anon]", None, 0x7F0000001010, pid=200)
    assert (a.name, a.binary, a.resolved) == ("JS:*alpha x.js:3", JIT_BINARY, True)
    assert a.func_addr == 0x7F0000001000 and a.func_size == 0x40
    assert b.name == "JS:*beta y.js:9"
    miss = sym.resolve_user("[anon]", None, 0x7F0000009000, pid=100)
    assert not miss.resolved and miss.name == "[anon]+0x7f0000009000"
    assert not sym.resolve_user("[anon]", None, 0x1000, pid=300).resolved  # no map file
    assert sym.stats()["jit_resolved"] == 2
    # the file grows while the process runs: new entries are found
    with open(tmp_path / "perf-100.map", "a") as f:
        f.write("7f0000009000 80 JS:*gamma x.js:7\n")
    time.sleep(0.05)  # a miss re-reads the file at most every 0.02 s
    got = sym.resolve_user("[anon]", None, 0x7F0000009010, pid=100)
    assert got.name == "JS:*gamma x.js:7"


def test_profile_anon_frames_keep_pid_and_address(tmp_path: Path) -> None:
    (tmp_path / "perf-11.map").write_text("7f0000002000 100 JS:*eleven\n")
    (tmp_path / "perf-22.map").write_text("7f0000002000 100 JS:*twentytwo\n")
    prof = Profile(Symbolizer(perf_maps=PerfMaps(tmp=str(tmp_path))))
    for pid in (11, 22):
        prof.on_mmap(pid, pid, 0x7F0000000000, 0x10000, 0, 5, None, "//anon", 1)
    chain = (rec.CONTEXT_USER, 0x7F0000002010)
    names = []
    for pid in (11, 22):
        sid = prof.intern_chain(pid, chain)
        fid = prof.stack_frame[sid]
        assert prof.frame_offset[fid] == 0x7F0000002010  # absolute, not mapping-relative
        names.append(prof.funcs[prof.func_of_frame(fid)].name)
    assert names == ["JS:*eleven", "JS:*twentytwo"]
    # a zero return address (the end of a frame-pointer walk) is dropped, not fatal
    sid = prof.intern_chain(11, (rec.CONTEXT_USER, 0x7F0000002010, 0))
    assert prof.stack_parent[sid] == -1


def _jd_header(pid: int = 7) -> bytes:
    return struct.pack("<IIIIIIQQ", 0x4A695444, 1, 40, 62, 0, pid, 0, 0)


def _jd_load(addr: int, size: int, index: int, name: str) -> bytes:
    body = struct.pack("<IIQQQQ", 7, 7, addr, addr, size, index) + name.encode() + b"\0"
    body += b"\x90" * size  # the code bytes follow the name
    return struct.pack("<IIQ", 0, 16 + len(body), 0) + body


def _jd_move(old: int, new: int, size: int, index: int) -> bytes:
    body = struct.pack("<IIQQQQQ", 7, 7, new, old, new, size, index)
    return struct.pack("<IIQ", 1, 16 + len(body), 0) + body


def test_jitdump_parse_move_and_grow(tmp_path: Path) -> None:
    path = tmp_path / "jit-7.dump"
    assert is_jitdump_path(str(path)) and not is_jitdump_path(str(tmp_path / "core.dump"))
    debug_rec = struct.pack("<IIQ", 2, 24, 0) + b"\0" * 8  # JIT_CODE_DEBUG_INFO: skipped
    load2 = _jd_load(0x9000, 0x20, 2, "JS:*second")
    path.write_bytes(_jd_header() + _jd_load(0x8000, 0x40, 1, "JS:*first") + debug_rec
                     + load2[:30])  # the second record is still being written
    jd = JitDump(str(path))
    assert jd.refresh()
    assert jd.lookup(0x8010) == ("JS:*first", 0x8000, 0x40)
    assert jd.lookup(0x9001) is None
    with open(path, "ab") as f:
        f.write(load2[30:] + _jd_move(0x8000, 0xA000, 0x40, 1))
    assert jd.refresh()
    assert jd.lookup(0x9001) == ("JS:*second", 0x9000, 0x20)
    assert jd.lookup(0xA03F) == ("JS:*first", 0xA000, 0x40)
    # a garbage file is ignored, not fatal
    bad = tmp_path / "jit-8.dump"
    bad.write_bytes(b"\xff" * 100)
    assert not JitDump(str(bad)).refresh()


def test_profile_finds_jitdump_through_its_mapping(tmp_path: Path) -> None:
    path = tmp_path / "jit-33.dump"
    path.write_bytes(_jd_header(33) + _jd_load(0x7F0000003000, 0x80, 1, "JS:*dumped"))
    prof = Profile(Symbolizer(perf_maps=PerfMaps(tmp=str(tmp_path / "none"))))
    prof.on_mmap(33, 33, 0x7F0000000000, 0x10000, 0, 5, None, "//anon", 1)
    prof.on_mmap(33, 33, 0x7F1000000000, 0x1000, 0, 5, None, str(path), 1)  # PROT_READ|EXEC
    sid = prof.intern_chain(33, (rec.CONTEXT_USER, 0x7F0000003004))
    func = prof.funcs[prof.func_of_frame(prof.stack_frame[sid])]
    assert (func.name, func.binary) == ("JS:*dumped", JIT_BINARY)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file another owner")
def test_perf_map_of_another_user_is_ignored(tmp_path: Path) -> None:
    pid = 2**30 + 7  # above any pid_max: no /proc entry, so only the file's owner counts
    path = tmp_path / f"perf-{pid}.map"
    path.write_text("1000 100 planted\n")
    os.chown(path, 54321, 54321)
    assert PerfMaps(tmp=str(tmp_path)).lookup(pid, 0x1010) is None
    os.chown(path, 0, 0)
    assert PerfMaps(tmp=str(tmp_path)).lookup(pid, 0x1010) == ("planted", 0x1000, 0x100,
                                                                 str(path))
