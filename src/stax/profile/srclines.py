"""Source lines for code addresses: which ELF file holds the DWARF line tables of a binary, the
line table of the one compilation unit covering a function (cached). Source file text is read
by ``stax.profile.access.source_lines``, for the run's owner's eyes.

Used by ``annotate``. Only the compilation unit that covers the asked address is decoded (found
through ``.debug_aranges``, else the units' address ranges), and its rows are cached per file.
Reading the sections lazily is dwarfsections.py's job, decoding a unit's line program
linetable.py's; this module finds the files and keeps the caches.
"""

from __future__ import annotations

import os
import struct
import threading
from bisect import bisect_right
from collections import OrderedDict
from typing import Any

from stax.profile import access
from stax.profile.dwarfsections import open_dwarf
from stax.profile.linetable import LineTable, decode_unit

_MAX_FILES = 16  # open DWARF files kept (compressed sections stay decompressed in memory)
_MAX_TABLES = 256  # decoded compilation-unit line tables kept


def debug_elf_for(path: str, build_id: str | None, fetch: bool = True) -> str | None:
    """The ELF file that holds the DWARF line tables for the binary at ``path``: the binary
    itself when it has ``.debug_line``, else its separate debug file (build-id tree,
    ``.gnu_debuglink``, debuginfod: ``stax.symbols.find_debug_file``). The one place annotate
    asks where line tables live. ``fetch=False``: never ask debuginfod over the network."""
    if has_section(path, ".debug_line"):
        return path
    from stax.symbols import find_debug_file

    found = find_debug_file(path, build_id, "separate", fetch)
    if found and has_section(found, ".debug_line"):
        return found
    return None


def has_section(path: str, name: str) -> bool:
    try:
        from elftools.elf.elffile import ELFFile

        with open(path, "rb") as f:
            elf = ELFFile(f)
            sec = elf.get_section_by_name(name)
            return sec is not None and sec["sh_type"] != "SHT_NOBITS" and sec["sh_size"] > 0
    except Exception:
        return False


class _DwarfFile:
    """One opened ELF with DWARF: lazily read sections, the address -> CU index, decoded
    tables. Keeps the file open while cached."""

    def __init__(self, path: str, key: tuple[str, int, int, int]) -> None:
        self.path = path
        self.key = key  # (path, mtime, size, inode): decoded tables are cached under it
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close() on eviction
        try:
            self.dwarf = open_dwarf(self.file)
        except Exception:
            self.file.close()
            raise
        self.lock = threading.Lock()
        self.aranges: Any = None
        self.aranges_tried = False
        self.aranges_complete = False  # every unit with code has its ranges there
        self.cu_ranges: list[tuple[int, int, int]] | None = None  # (lo, hi, cu offset)

    def close(self) -> None:
        self.file.close()

    def cu_offset_for(self, addr: int) -> int | None:
        if not self.aranges_tried:
            self.aranges_tried = True
            try:
                self.aranges = read_aranges(self.dwarf)
                if self.aranges is not None:
                    self.aranges_complete = _units_without_code(self.dwarf,
                                                                set(self.aranges[2]))
            except Exception:
                self.aranges = None
        if self.aranges is not None:
            starts, ends, offs = self.aranges
            i = bisect_right(starts, addr) - 1
            if i >= 0 and addr < ends[i]:
                return offs[i]
            if self.aranges_complete:
                return None  # no unit covers it (PLT, _start, ...): no need to scan them all
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
        key = (*self.key, cu_offset)
        with _LOCK:
            table = _TABLES.get(key)
            if table is not None:
                _TABLES.move_to_end(key)
                return table
        table = decode_unit(self.dwarf, cu_offset)
        if table is None:
            return None
        with _LOCK:
            _TABLES[key] = table
            while len(_TABLES) > _MAX_TABLES:
                _TABLES.popitem(last=False)
        return table


def _units_without_code(dwarf: Any, listed: set[int]) -> bool:
    """Whether every unit missing from ``.debug_aranges`` has no code (no pc range on its top
    DIE: the early-debug units of an LTO build, type-only units), so that an address it does not
    cover is in no unit. Cheap next to ``_scan_cus``, which decodes every unit's line table."""
    for cu in dwarf.iter_CUs():
        if cu.cu_offset in listed:
            continue
        attrs = cu.get_top_DIE().attributes
        if "DW_AT_low_pc" in attrs or "DW_AT_ranges" in attrs:
            return False
    return True


def read_aranges(dwarf: Any) -> tuple[list[int], list[int], list[int]] | None:
    """``.debug_aranges`` as sorted (starts, ends, unit offsets), read with struct (DWARF 2-5,
    section 6.1.2): pyelftools builds an object per entry, ~20x slower on a libc's table."""
    sec = dwarf.debug_aranges_sec
    if sec is None:
        return None
    sec.stream.seek(0)
    data = sec.stream.read(sec.size)
    e = "<" if dwarf.config.little_endian else ">"
    rows: list[tuple[int, int, int]] = []
    pos, n = 0, len(data)
    while pos + 4 <= n:
        (length,) = struct.unpack_from(e + "I", data, pos)
        hdr = 4
        off_fmt = "I"
        if length == 0xFFFFFFFF:
            (length,) = struct.unpack_from(e + "Q", data, pos + 4)
            hdr, off_fmt = 12, "Q"
        end = pos + hdr + length
        p = pos + hdr + 2  # version
        (cu,) = struct.unpack_from(e + off_fmt, data, p)
        p += struct.calcsize(off_fmt)
        asize, seg = data[p], data[p + 1]
        p += 2
        if asize not in (4, 8) or seg:
            return None  # segmented or odd addresses: pyelftools' scan of units instead
        tup = 2 * asize
        p = pos + -(-(p - pos) // tup) * tup  # tuples are aligned to their size
        fmt = e + ("II" if asize == 4 else "QQ")
        while p + tup <= min(end, n):
            lo, size = struct.unpack_from(fmt, data, p)
            p += tup
            if lo == 0 and size == 0:
                break
            if size:
                rows.append((lo, lo + size, cu))
        pos = end
    rows.sort()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


_LOCK = threading.Lock()
# the inode is in the key: a path like /proc/self/fd/N (stax.binaries) names different files
_FILES: OrderedDict[tuple[str, int, int, int], _DwarfFile | None] = OrderedDict()
_TABLES: OrderedDict[tuple[str, int, int, int, int], LineTable] = OrderedDict()


def dwarf_file(path: str) -> _DwarfFile | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size, st.st_ino)
    with _LOCK:
        if key in _FILES:
            _FILES.move_to_end(key)
            return _FILES[key]
    try:
        df: _DwarfFile | None = _DwarfFile(path, key)
    except Exception:
        df = None
    with _LOCK:
        _FILES[key] = df
        while len(_FILES) > _MAX_FILES:
            _key, old = _FILES.popitem(last=False)
            if old is not None:
                old.close()
    return df


def line_table(debug_path: str, addr: int) -> LineTable | None:
    """The line table of the compilation unit of ``debug_path`` that covers ``addr`` (an ELF
    virtual address), or None."""
    df = dwarf_file(debug_path)
    if df is None:
        return None
    try:
        with df.lock:  # the section streams have one position each
            off = df.cu_offset_for(addr)
            return df.table_for_cu(off) if off is not None else None
    except Exception:
        return None


def clear_caches() -> None:
    with _LOCK:
        for df in _FILES.values():
            if df is not None:
                df.close()
        _FILES.clear()
        _TABLES.clear()
    access.clear_sources()
_dwarf_file = dwarf_file  # the older private name
