"""Source lines for code addresses: which ELF file holds the DWARF line tables of a binary, the
line table of the one compilation unit covering a function (cached). Source file text is read
by ``stax.profile.access.source_lines``, for the run's owner's eyes.

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

from stax.leb128 import read_sleb, read_uleb
from stax.profile import access

_MAX_FILES = 16  # open DWARF files kept (compressed sections stay decompressed in memory)
_MAX_TABLES = 256  # decoded compilation-unit line tables kept


def debug_elf_for(path: str, build_id: str | None) -> str | None:
    """The ELF file that holds the DWARF line tables for the binary at ``path``: the binary
    itself when it has ``.debug_line``, else its separate debug file (build-id tree,
    ``.gnu_debuglink``, debuginfod: ``stax.symbols.find_debug_file``). The one place annotate
    asks where line tables live."""
    if _has_section(path, ".debug_line"):
        return path
    from stax.symbols import find_debug_file

    found = find_debug_file(path, build_id, "separate")
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
    """The rows of one compilation unit's line program, sorted by address; a row with file -1
    is the end of a sequence (no line from there on)."""

    addrs: list[int]
    files: list[int]  # index into ``names``; -1 at an end of sequence
    lines: list[int]
    names: list[str]

    def lookup(self, addr: int) -> tuple[str, int] | None:
        i = bisect_right(self.addrs, addr) - 1
        if i < 0 or self.files[i] < 0 or not self.lines[i]:
            return None
        return self.names[self.files[i]], self.lines[i]


# DWARFInfo argument -> section: only what the unit index, a unit's top DIE and its line
# program can need (no location lists, frames, pubnames or type units)
_SECTIONS = {
    "debug_info_sec": ".debug_info", "debug_aranges_sec": ".debug_aranges",
    "debug_abbrev_sec": ".debug_abbrev", "debug_str_sec": ".debug_str",
    "debug_line_sec": ".debug_line", "debug_addr_sec": ".debug_addr",
    "debug_str_offsets_sec": ".debug_str_offsets", "debug_line_str_sec": ".debug_line_str",
    "debug_ranges_sec": ".debug_ranges", "debug_rnglists_sec": ".debug_rnglists",
}


class _Window:
    """A read-only seekable stream over part of a file, read on demand (an uncompressed debug
    section: only the bytes of the unit asked for are ever read)."""

    BLOCK = 1 << 16

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd = fd
        self.start = start
        self.size = size
        self.pos = 0
        self.block = b""  # the bytes at [block_at, block_at + len(block)) of the section
        self.block_at = 0

    def read(self, n: int = -1) -> bytes:
        pos = self.pos
        left = self.size - pos
        if n is None or n < 0 or n > left:
            n = max(left, 0)
        rel = pos - self.block_at
        if not (0 <= rel and rel + n <= len(self.block)):
            # the DWARF decoder reads a few bytes at a time: fetch a block ahead
            self.block = os.pread(self.fd, min(max(n, self.BLOCK), left), self.start + pos)
            self.block_at = pos
            rel = 0
        data = self.block[rel:rel + n]
        self.pos = pos + len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.pos, self.size)[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


class _Lazy:
    """A stream whose bytes (a compressed section, decompressed) are produced on first use."""

    def __init__(self, section: Any) -> None:
        self.section = section
        self.buf: Any = None

    def _io(self) -> Any:
        if self.buf is None:
            from io import BytesIO

            self.buf = BytesIO(self.section.data())
            self.section = None
        return self.buf

    def read(self, n: int = -1) -> bytes:
        return self._io().read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._io().seek(offset, whence)

    def tell(self) -> int:
        return self._io().tell()


def _open_dwarf(f: Any) -> Any:
    """A pyelftools DWARFInfo over the open file ``f`` that reads sections lazily."""
    from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(f)
    if elf.has_section(".zdebug_info") or elf["e_type"] == "ET_REL":
        # old GNU compression or relocatable objects: pyelftools' own full reader
        return elf.get_dwarf_info(relocate_dwarf_sections=elf["e_type"] == "ET_REL",
                                  follow_links=False)
    secs: dict[str, Any] = {}
    for arg, name in _SECTIONS.items():
        sec = elf.get_section_by_name(name)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            secs[arg] = None
            continue
        if sec.compressed:
            stream: Any = _Lazy(sec)
        else:
            stream = _Window(f.fileno(), sec["sh_offset"], sec["sh_size"])
        secs[arg] = DebugSectionDescriptor(stream=stream, name=name,
                                           global_offset=sec["sh_offset"],
                                           size=sec.data_size, address=sec["sh_addr"])
    config = DwarfConfig(little_endian=elf.little_endian, default_address_size=elf.elfclass // 8,
                         machine_arch=elf.get_machine_arch())
    return DWARFInfo(config=config, debug_frame_sec=None, eh_frame_sec=None,
                     debug_loc_sec=None, debug_pubtypes_sec=None, debug_pubnames_sec=None,
                     debug_loclists_sec=None, debug_sup_sec=None, gnu_debugaltlink_sec=None,
                     debug_types_sec=None, **secs)


class _DwarfFile:
    """One opened ELF with DWARF: lazily read sections, the address -> CU index, decoded
    tables. Keeps the file open while cached."""

    def __init__(self, path: str, key: tuple[str, int, int]) -> None:
        self.path = path
        self.key = key  # (path, mtime, size): decoded tables are cached under it
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close() on eviction
        try:
            self.dwarf = _open_dwarf(self.file)
        except Exception:
            self.file.close()
            raise
        self.lock = threading.Lock()
        self.aranges: Any = None
        self.aranges_tried = False
        self.cu_ranges: list[tuple[int, int, int]] | None = None  # (lo, hi, cu offset)

    def close(self) -> None:
        self.file.close()

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
        key = (*self.key, cu_offset)
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
    try:
        comp_dir = _text(top.attributes["DW_AT_comp_dir"].value)
    except Exception:  # absent, or a string in a supplementary file
        comp_dir = ""
    header = prog.header
    version = header["version"]
    dirs = [_text(d) for d in header["include_directory"]]
    entries = header["file_entry"]
    names: list[str] = []
    for fe in entries:
        name = _text(fe.name)
        d = fe.dir_index
        # DWARF 5: directory 0 is the compilation directory, others are relative to it;
        # before 5, directory 0 means the compilation directory and the list starts at 1
        if version >= 5:
            cdir = (dirs[0] if dirs else "") or comp_dir
            base = cdir if d == 0 else (dirs[d] if d < len(dirs) else "")
        else:
            cdir = comp_dir
            base = dirs[d - 1] if 0 < d <= len(dirs) else comp_dir
        if base is not cdir and not os.path.isabs(base):
            base = os.path.join(cdir, base)
        names.append(os.path.normpath(os.path.join(base, name)))
    shift = 0 if version >= 5 else 1  # DWARF < 5 numbers files from 1
    try:
        raw = _run_line_program(prog, dwarf.config.little_endian)
    except Exception:  # an opcode this decoder does not know: pyelftools' slower decoder
        raw = _entries_rows(prog)
    rows: list[tuple[int, int, int, int]] = []  # (addr, order, file, line)
    nfiles = len(names)
    for n, (addr, file, line) in enumerate(raw):
        if file < 0:
            rows.append((addr, n, -1, 0))
            continue
        fidx = file - shift
        rows.append((addr, n, fidx if 0 <= fidx < nfiles else -1, line))
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


def _entries_rows(prog: Any) -> list[tuple[int, int, int]]:
    """(address, file, line) rows through pyelftools; file -1 marks an end of sequence."""
    out = []
    for entry in prog.get_entries():
        st = entry.state
        if st is None:
            continue
        out.append((st.address, -1 if st.end_sequence else st.file, st.line))
    return out


def _run_line_program(prog: Any, little: bool) -> list[tuple[int, int, int]]:
    """The DWARF line-number state machine (DWARF 2-5, section 6.2) over the program bytes,
    emitting (address, file, line) rows; file -1 marks an end of sequence. pyelftools decodes
    the header; this loop replaces its per-opcode object decoding, which is ~10x slower on
    large units. Raises ValueError on an opcode it cannot skip safely."""
    h = prog.header
    stream = prog.stream
    stream.seek(prog.program_start_offset)
    data = stream.read(prog.program_end_offset - prog.program_start_offset)
    min_len = h["minimum_instruction_length"]
    line_base = h["line_base"]
    line_range = h["line_range"]
    opcode_base = h["opcode_base"]
    std_lengths = list(h["standard_opcode_lengths"])
    if not line_range:
        raise ValueError("line_range 0")
    order = "little" if little else "big"
    out: list[tuple[int, int, int]] = []
    emit = out.append
    addr, file, line = 0, 1, 1
    i, n = 0, len(data)

    const_add = ((255 - opcode_base) // line_range) * min_len
    while i < n:
        op = data[i]
        i += 1
        if op >= opcode_base:
            adj = op - opcode_base
            addr += (adj // line_range) * min_len
            line += line_base + adj % line_range
            emit((addr, file, line))
        elif op == 0:  # extended
            length, i = read_uleb(data, i)
            end = i + length
            if length:
                sub = data[i]
                if sub == 1:  # end_sequence
                    emit((addr, -1, line))
                    addr, file, line = 0, 1, 1
                elif sub == 2:  # set_address
                    addr = int.from_bytes(data[i + 1:end], order)
                # define_file (3), set_discriminator (4), vendor ops: nothing a row needs
            i = end
        elif op == 1:  # copy
            emit((addr, file, line))
        elif op == 2:  # advance_pc
            v, i = read_uleb(data, i)
            addr += v * min_len
        elif op == 3:  # advance_line
            v, i = read_sleb(data, i)
            line += v
        elif op == 4:  # set_file
            file, i = read_uleb(data, i)
        elif op == 8:  # const_add_pc
            addr += const_add
        elif op == 9:  # fixed_advance_pc
            addr += int.from_bytes(data[i:i + 2], order)
            i += 2
        elif op in (5, 12):  # set_column, set_isa
            _v, i = read_uleb(data, i)
        elif op in (6, 7, 10, 11):  # negate_stmt, basic_block, prologue_end, epilogue_begin
            pass
        elif op - 1 < len(std_lengths):  # an opcode this version does not name: skip args
            for _ in range(std_lengths[op - 1]):
                _v, i = read_uleb(data, i)
        else:
            raise ValueError(f"line program opcode {op}")
    return out


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


_LOCK = threading.Lock()
_FILES: OrderedDict[tuple[str, int, int], _DwarfFile | None] = OrderedDict()
_TABLES: OrderedDict[tuple[str, int, int, int], LineTable] = OrderedDict()


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
    df = _dwarf_file(debug_path)
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
