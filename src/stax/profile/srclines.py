"""Source lines for code addresses: which ELF file holds the DWARF line tables of a binary, the
line table of the one compilation unit covering a function (cached), and source file text.

Used by ``annotate``. Only the compilation unit that covers the asked address is decoded (found
through ``.debug_aranges``, else the units' address ranges), and its rows are cached per file.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

_MAX_FILES = 16  # parsed DWARF files kept (their section bytes stay in memory)
_MAX_TABLES = 256  # decoded compilation-unit line tables kept
_MAX_SOURCES = 64  # source files kept
_MAX_SOURCE_BYTES = 16 << 20


def debug_elf_for(path: str, build_id: str | None) -> str | None:
    """The ELF file that holds the DWARF line tables for the binary at ``path``: the binary
    itself when it has ``.debug_line``, else its separate debug file found by build-id.

    This is the one place annotate asks where line tables live; richer debug-file lookups
    (``.gnu_debuglink``, debuginfod) plug in here.
    """
    if _has_section(path, ".debug_line"):
        return path
    from stax.symbols import elf as symelf

    finder = getattr(symelf, "debug_file_for", None)
    found = finder(build_id) if finder is not None and build_id else None
    if found and _has_section(found, ".debug_line"):
        return found
    return None


def _has_section(path: str, name: str) -> bool:
    try:
        from elftools.elf.elffile import ELFFile

        with open(path, "rb") as f:
            elf = ELFFile(f)
            sec = elf.get_section_by_name(name)
            return sec is not None and sec["sh_type"] != "SHT_NOBITS" and sec["sh_size"] > 0
    except Exception:
        return False


@dataclass(slots=True)
class LineTable:
    """The rows of one compilation unit's line program, sorted by address. ``ends`` marks
    addresses where a sequence ends (no line there)."""

    addrs: list[int]
    files: list[int]  # index into ``names``; -1 at an end of sequence
    lines: list[int]
    names: list[str]

    def lookup(self, addr: int) -> tuple[str, int] | None:
        i = bisect_right(self.addrs, addr) - 1
        if i < 0 or self.files[i] < 0 or not self.lines[i]:
            return None
        return self.names[self.files[i]], self.lines[i]


class _DwarfFile:
    """One opened ELF with DWARF: its section data, the address -> CU index, decoded tables."""

    def __init__(self, path: str) -> None:
        from elftools.elf.elffile import ELFFile

        self.path = path
        with open(path, "rb") as f:
            elf = ELFFile(f)
            # relocations only matter for relocatable objects; skipping them is faster
            self.dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        self.aranges: Any = None
        self.aranges_tried = False
        self.cu_ranges: list[tuple[int, int, int]] | None = None  # (lo, hi, cu offset)

    def cu_offset_for(self, addr: int) -> int | None:
        if not self.aranges_tried:
            self.aranges_tried = True
            try:
                self.aranges = self.dwarf.get_aranges()
            except Exception:
                self.aranges = None
        if self.aranges is not None:
            try:
                off = self.aranges.cu_offset_at_addr(addr)
            except Exception:
                off = None
            if off is not None:
                return off
        return self._scan_cus(addr)

    def _scan_cus(self, addr: int) -> int | None:
        """Without ``.debug_aranges`` (or a gap in it): each unit's low/high pc, else its line
        program's sequences."""
        if self.cu_ranges is None:
            ranges: list[tuple[int, int, int]] = []
            for cu in self.dwarf.iter_CUs():
                try:
                    top = cu.get_top_DIE()
                    lo = top.attributes.get("DW_AT_low_pc")
                    hi = top.attributes.get("DW_AT_high_pc")
                    if lo is not None and hi is not None and "DW_AT_ranges" not in top.attributes:
                        lo_v = lo.value
                        hi_v = hi.value
                        if hi.form not in ("DW_FORM_addr", "DW_FORM_addrx"):
                            hi_v = lo_v + hi_v  # DWARF 4+: high_pc is a length
                        ranges.append((lo_v, hi_v, cu.cu_offset))
                        continue
                    table = self.table_for_cu(cu.cu_offset)
                    if table is None:
                        continue
                    start = None
                    for a, fidx in zip(table.addrs, table.files, strict=True):
                        if start is None:
                            start = a
                        if fidx < 0:
                            ranges.append((start, a, cu.cu_offset))
                            start = None
                except Exception:
                    continue
            self.cu_ranges = ranges
        for lo, hi, off in self.cu_ranges:
            if lo <= addr < hi:
                return off
        return None

    def table_for_cu(self, cu_offset: int) -> LineTable | None:
        key = (self.path, cu_offset)
        with _LOCK:
            table = _TABLES.get(key)
            if table is not None:
                _TABLES.move_to_end(key)
                return table
        table = _decode(self.dwarf, cu_offset)
        if table is None:
            return None
        with _LOCK:
            _TABLES[key] = table
            while len(_TABLES) > _MAX_TABLES:
                _TABLES.popitem(last=False)
        return table


def _decode(dwarf: Any, cu_offset: int) -> LineTable | None:
    cu = dwarf.get_CU_at(cu_offset)
    prog = dwarf.line_program_for_CU(cu)
    if prog is None:
        return None
    top = cu.get_top_DIE()
    comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) \
        if "DW_AT_comp_dir" in top.attributes else ""
    header = prog.header
    version = header["version"]
    dirs = [_text(d) for d in header["include_directory"]]
    entries = header["file_entry"]
    names: list[str] = []
    for fe in entries:
        name = _text(fe.name)
        d = fe.dir_index
        if version >= 5:
            base = dirs[d] if d < len(dirs) else ""
        else:
            base = dirs[d - 1] if 0 < d <= len(dirs) else comp_dir
        if not os.path.isabs(base):
            base = os.path.join(comp_dir, base)
        names.append(os.path.normpath(os.path.join(base, name)))
    shift = 0 if version >= 5 else 1  # DWARF < 5 numbers files from 1
    rows: list[tuple[int, int, int, int]] = []  # (addr, order, file, line)
    for n, entry in enumerate(prog.get_entries()):
        st = entry.state
        if st is None:
            continue
        if st.end_sequence:
            rows.append((st.address, n, -1, 0))
            continue
        fidx = st.file - shift
        rows.append((st.address, n, fidx if 0 <= fidx < len(names) else -1, st.line))
    rows.sort()
    addrs: list[int] = []
    files: list[int] = []
    lines: list[int] = []
    for addr, _n, fidx, line in rows:
        if addrs and addrs[-1] == addr:
            # several rows at one address (views): the last non-end row describes the code there
            if fidx < 0 and files[-1] >= 0:
                continue
            files[-1] = fidx
            lines[-1] = line
            continue
        addrs.append(addr)
        files.append(fidx)
        lines.append(line)
    return LineTable(addrs, files, lines, names)


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


_LOCK = threading.Lock()
_FILES: OrderedDict[tuple[str, int, int], _DwarfFile | None] = OrderedDict()
_TABLES: OrderedDict[tuple[str, int], LineTable] = OrderedDict()
_SOURCES: OrderedDict[tuple[str, int, int], list[str] | None] = OrderedDict()


def _dwarf_file(path: str) -> _DwarfFile | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    with _LOCK:
        if key in _FILES:
            _FILES.move_to_end(key)
            return _FILES[key]
    try:
        df: _DwarfFile | None = _DwarfFile(path)
    except Exception:
        df = None
    with _LOCK:
        _FILES[key] = df
        while len(_FILES) > _MAX_FILES:
            _FILES.popitem(last=False)
    return df


def line_table(debug_path: str, addr: int) -> LineTable | None:
    """The line table of the compilation unit of ``debug_path`` that covers ``addr`` (an ELF
    virtual address), or None."""
    df = _dwarf_file(debug_path)
    if df is None:
        return None
    try:
        off = df.cu_offset_for(addr)
        return df.table_for_cu(off) if off is not None else None
    except Exception:
        return None


def source_lines(path: str) -> list[str] | None:
    """The lines of a source file (cached per path, mtime and size), or None if unreadable."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    with _LOCK:
        if key in _SOURCES:
            _SOURCES.move_to_end(key)
            return _SOURCES[key]
    text: list[str] | None = None
    if st.st_size <= _MAX_SOURCE_BYTES:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            text = None
    with _LOCK:
        _SOURCES[key] = text
        while len(_SOURCES) > _MAX_SOURCES:
            _SOURCES.popitem(last=False)
    return text


def clear_caches() -> None:
    with _LOCK:
        _FILES.clear()
        _TABLES.clear()
        _SOURCES.clear()
