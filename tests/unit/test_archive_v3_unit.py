"""Archive format 3 on hand-built profiles: segments and embedded code round trip, annotate on
the read-back profile, the single-file form (atomic, checked, never extracted), versions 1 and
2 still open."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from archive_helpers import RUN, SPLIT, build_profile

from stax.archive import container
from stax.archive import format as fm
from stax.profile.annotate import annotate
from stax.profile.codestore import CodeStore, EmbeddedCode, segment_vaddr
from stax.profile.selection import Filter

PROG = 2  # the binary index build_profile gives /usr/bin/prog
SEGS = [(0, 0x2000, 0x400000)]


def _profile_with_store() -> object:
    p = build_profile(SPLIT)
    a = next(i for i, f in enumerate(p.funcs) if f.name == "work_a")
    addr = p.funcs[a].addr + 0x400000
    p.funcs[a] = p.funcs[a].__class__("work_a", "prog", "/nonexistent/prog", addr, 16, True)
    # x86-64: eight 2-byte `xchg ax, ax` (66 90)
    rows = [(addr, "/nonexistent/split.c", 10), (addr + 8, "/nonexistent/split.c", 11),
            (addr + 16, None, 0)]
    code = EmbeddedCode(PROG, addr, b"\x66\x90" * 8, "x86-64", rows)
    p.code_store = CodeStore({PROG: SEGS}, [code],  # type: ignore[attr-defined]
                             {"/nonexistent/split.c": {10: "int a;", 11: "a++;"}})
    return p


def test_segment_vaddr_has_page_slack() -> None:
    assert segment_vaddr(SEGS, 0x10) == 0x400010
    assert segment_vaddr([(0x1100, 0x100, 0x401100)], 0x1000) == 0x401000
    assert segment_vaddr(SEGS, 0x5000) is None


@pytest.mark.parametrize("single", [False, True])
def test_v3_round_trip_keeps_segments_code_and_sources(tmp_path: Path, single: bool) -> None:
    p = _profile_with_store()
    res = fm.save(p, str(tmp_path / "a.stax"), RUN, with_code=True, single_file=single)
    assert res["code_functions"] == 1
    assert Path(res["path"]).is_file() == single
    a = fm.load(res["path"])
    st = a.profile.code_store
    assert st.segments[PROG] == SEGS and a.manifest["version"] == 3
    assert st.code[0].code == b"\x66\x90" * 8
    assert st.source_line("/nonexistent/split.c", 11) == "a++;"
    got = annotate(a.profile, Filter(), "work_a")
    assert got["placed_samples"] == got["self_samples"] == 60
    assert got["has_line_info"] and [s["text"] for s in got["sources"]] == ["int a;", "a++;"]
    assert "code from the archive" in got["note"]
    # without the code: samples per address, the binary said missing
    plain = fm.load(fm.save(p, str(tmp_path / "b.stax"), RUN)["path"])
    got = annotate(plain.profile, Filter(), "work_a")
    assert got["binary_missing"] and got["instructions"] == []
    assert [(a["samples"], a["pct"]) for a in got["addresses"]] == [(60, 100.0)]


def test_v2_archives_still_open(tmp_path: Path) -> None:
    path = fm.save(build_profile(SPLIT), str(tmp_path / "o.stax"), RUN)["path"]
    main = Path(path) / fm.MAIN_FILE
    m = json.loads(main.read_text())
    m["version"] = 2
    m["binaries"] = [b[:3] for b in m["binaries"]]
    main.write_text(json.dumps(m))
    a = fm.load(path)
    assert a.profile.code_store.segments == {} and len(a.profile.s_stack) == 100
    got = annotate(a.profile, Filter(), "work_a")
    assert got["unplaced"]["no_address"] == 60  # what v2 could not keep


def test_single_file_replaces_atomically_and_keeps_its_form(tmp_path: Path) -> None:
    p = build_profile(SPLIT)
    path = str(tmp_path / "r.stax")
    fm.save(p, path, RUN, single_file=True)
    assert container.wants_file(path, None) and not container.wants_file(path, "dir")
    fm.save(p, path, RUN, single_file=True)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.stax"]  # no temporary left
    with pytest.raises(fm.ArchiveError, match="other form"):
        fm.save(p, path, RUN)
    fm.update_run(path, {"exit_status": 3})
    assert fm.load(path).run["exit_status"] == 3
    with tarfile.open(path) as t:
        assert t.getnames() == [fm.MAIN_FILE, fm.DATA_FILE]


def _tar(path: Path, members: list[tuple[str, bytes, bytes]]) -> str:
    with tarfile.open(path, "w") as t:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return str(path)


def test_bad_single_files_fail_cleanly_and_extract_nothing(tmp_path: Path) -> None:
    good = fm.save(build_profile(SPLIT), str(tmp_path / "g.stax"), RUN, single_file=True)
    with tarfile.open(good["path"]) as t:
        main = t.extractfile(fm.MAIN_FILE).read()  # type: ignore[union-attr]
        data = t.extractfile(fm.DATA_FILE).read()  # type: ignore[union-attr]
    cases = {
        "link": [(fm.MAIN_FILE, tarfile.REGTYPE, main), (fm.DATA_FILE, tarfile.SYMTYPE, b"")],
        "escape": [(fm.MAIN_FILE, tarfile.REGTYPE, main), ("../" + fm.DATA_FILE,
                                                           tarfile.REGTYPE, data)],
        "short": [(fm.MAIN_FILE, tarfile.REGTYPE, main), (fm.DATA_FILE, tarfile.REGTYPE,
                                                          data[:10])],
    }
    for name, members in cases.items():
        with pytest.raises(fm.ArchiveError) as e:
            fm.load(_tar(tmp_path / f"{name}.stax", members))
        assert "\n" not in str(e.value)
    assert not (tmp_path.parent / fm.DATA_FILE).exists()
    trunc = tmp_path / "t.stax"
    trunc.write_bytes(Path(good["path"]).read_bytes()[:1500])
    with pytest.raises(fm.ArchiveError):
        fm.load(str(trunc))
