"""Source file and line of frames (profile/framelines.py): the function's opening line at its
entry, a return address looked up at address - 1, nothing (never a guess) without line info,
and the exports on hand-built profiles whose binary is not on disk."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from types import SimpleNamespace

from archive_helpers import RUN, SPLIT, build_profile, pb_decode

from stax.archive.export import converter
from stax.profile import framelines, srclines
from stax.profile.linetable import LineTable
from stax.profile.model import Binary
from stax.profile.tables import KERNEL_BINARY


def test_first_row_at_an_address_is_the_functions_own_line() -> None:
    # at 0x10 the function's line (10) then the line of code inlined there (6): lookup gives
    # the code's line, lookup_first the function's
    t = LineTable([0x10, 0x18, 0x20], [0, 0, -1], [6, 7, 0], ["a.c"], {0x10: (0, 10)})
    assert t.lookup(0x10) == ("a.c", 6)
    assert t.lookup_first(0x10) == ("a.c", 10)
    assert t.lookup_first(0x18) == ("a.c", 7)
    assert t.lookup(0x20) is None and t.lookup(0x8) is None  # past the end, before the start


def test_read_aranges_matches_the_dwarf_layout() -> None:
    # two units (32-bit DWARF, 8-byte addresses): header 12 bytes padded to 16, then tuples
    def unit(cu: int, ranges: list[tuple[int, int]]) -> bytes:
        body = struct.pack("<HIBB", 2, cu, 8, 0) + b"\0" * 4
        body += b"".join(struct.pack("<QQ", lo, n) for lo, n in ranges) + b"\0" * 16
        return struct.pack("<I", len(body)) + body

    data = unit(0, [(0x2000, 0x100), (0x1000, 0x10)]) + unit(0x40, [(0x3000, 0x20)])

    class Stream:
        def seek(self, _off: int) -> None:
            pass

        def read(self, _n: int) -> bytes:
            return data

    dwarf = SimpleNamespace(debug_aranges_sec=SimpleNamespace(stream=Stream(), size=len(data)),
                            config=SimpleNamespace(little_endian=True))
    assert srclines.read_aranges(dwarf) == ([0x1000, 0x2000, 0x3000], [0x1010, 0x2100, 0x3020],
                                            [0, 0, 0x40])


def test_return_address_is_looked_up_before_itself(workloads: dict[str, Path]) -> None:
    path = str(workloads["split"])
    b = Binary(path, None, 1)
    debug = srclines.debug_elf_for(path, None)
    assert debug is not None
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        syms = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        text = elf.get_section_by_name(".text")
        delta = text["sh_offset"] - text["sh_addr"]  # file offset - address in .text
    table = srclines.line_table(debug, syms["main"])
    assert table is not None
    # a row boundary inside main where the line changes: the return address there belongs to
    # the line before it
    for a, prev, cur in zip(table.addrs[1:], table.lines, table.lines[1:], strict=False):
        if a > syms["main"] and prev and cur and prev != cur and table.lookup(a - 1):
            break
    else:
        raise AssertionError("no line change in main")
    assert framelines.lookup(b, a + delta) == table.lookup(a)
    assert framelines.lookup(b, a + delta, ret=True) == table.lookup(a - 1)
    assert table.lookup(a) != table.lookup(a - 1)
    # a function's first line: work_a's declaration
    src = Path(workloads.sources["split"]).read_text().splitlines()  # type: ignore[attr-defined]
    want = next(i for i, line in enumerate(src, 1) if "unsigned long work_a(" in line)
    assert framelines.lookup_vaddr(b, syms["work_a"])[1] == want  # type: ignore[index]


def test_no_line_info_gives_none() -> None:
    p = build_profile(SPLIT)  # its binary, /usr/bin/prog, is not on disk
    lines = framelines.FrameLines(p)
    assert lines.frame(0) is None and lines.frame(0, ret=True) is None
    assert lines.func(0) is None
    kfid = p.frame_id(KERNEL_BINARY, 0xFFFFFFFF81000000)
    assert lines.frame(kfid) is None
    assert framelines.lookup(Binary("/nonexistent/x", None, 1), 0x10) is None
    assert framelines.lookup(Binary("[vdso]", None, 1), 0x10) is None


def test_exports_without_line_info_carry_none() -> None:
    p = build_profile(SPLIT)
    prof = pb_decode(gzip.decompress(converter("pprof")(p, None, None, RUN)))
    strings = [s.decode() for s in prof[6]]
    for raw in prof[5]:
        fn = pb_decode(raw)
        assert strings[fn.get(4, [0])[0]] == "" and fn.get(5, [0])[0] == 0
    for raw in prof[4]:
        line = pb_decode(pb_decode(raw)[4][0])
        assert line.get(2, [0])[0] == 0
    maps = [pb_decode(m) for m in prof[3]]
    assert all(8 not in m and 9 not in m for m in maps)  # has_filenames / has_line_numbers
    assert "/usr/bin/prog" in strings  # the binary stays in the Mapping
    doc = json.loads(converter("gecko")(p, None, None, RUN))
    for th in doc["threads"]:
        assert set(th["funcTable"]["fileName"]) == {None}
        assert set(th["funcTable"]["lineNumber"]) == {None}
        assert set(th["frameTable"]["line"]) == {None}


def test_views_rows_have_file_and_line_keys() -> None:
    from stax.profile import views
    from stax.profile.selection import Filter

    p = build_profile(SPLIT)
    rows = views.top(p, Filter())["rows"]
    assert rows and all(r["file"] is None and r["line"] is None for r in rows)
    root = views.flame(p, Filter())["roots"][0]
    assert root["file"] is None and root["children"][0]["line"] is None
