"""DWARF line tables: one compilation unit's line program decoded into rows sorted by address
(a fast state machine over the program bytes, pyelftools' decoder as the fallback), and the
LineTable that answers address -> (file, line).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from stax.leb128 import read_sleb, read_uleb


@dataclass(slots=True)
class LineTable:
    """The rows of one compilation unit's line program, sorted by address; a row with file -1
    is the end of a sequence (no line from there on)."""

    addrs: list[int]
    files: list[int]  # index into ``names``; -1 at an end of sequence
    lines: list[int]
    names: list[str]
    # addr -> (file, line) of the first row where several rows share an address and differ:
    # at a function's entry that is the function's own line, before its inlined callees'
    firsts: dict[int, tuple[int, int]] = field(default_factory=dict)

    def lookup(self, addr: int) -> tuple[str, int] | None:
        i = bisect_right(self.addrs, addr) - 1
        if i < 0 or self.files[i] < 0 or not self.lines[i]:
            return None
        return self.names[self.files[i]], self.lines[i]

    def lookup_first(self, addr: int) -> tuple[str, int] | None:
        """Like ``lookup``, but the first row at exactly ``addr`` when several are there (a
        function's entry: its opening line, not that of code inlined into it)."""
        first = self.firsts.get(addr)
        if first is not None and first[0] >= 0 and first[1]:
            return self.names[first[0]], first[1]
        return self.lookup(addr)


def decode_unit(dwarf: Any, cu_offset: int) -> LineTable | None:
    """The line table of the unit at ``cu_offset`` of ``dwarf`` (a DWARFInfo), or None when it
    has no line program."""
    cu = dwarf.get_CU_at(cu_offset)
    prog = dwarf.line_program_for_CU(cu)
    if prog is None:
        return None
    version = prog.header["version"]
    names = _file_names(prog, cu)
    shift = 0 if version >= 5 else 1  # DWARF < 5 numbers files from 1
    try:
        raw = run_line_program(prog, dwarf.config.little_endian)
    except Exception:  # an opcode this decoder does not know: pyelftools' slower decoder
        raw = entries_rows(prog)
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
    firsts: dict[int, tuple[int, int]] = {}
    for addr, _n, fidx, line in rows:
        if addrs and addrs[-1] == addr:
            if fidx >= 0 and addr not in firsts and (files[-1], lines[-1]) != (fidx, line):
                firsts[addr] = (files[-1], lines[-1])
            # several rows at one address (views): the last non-end row describes the code there
            if fidx < 0 and files[-1] >= 0:
                continue
            files[-1] = fidx
            lines[-1] = line
            continue
        addrs.append(addr)
        files.append(fidx)
        lines.append(line)
    return LineTable(addrs, files, lines, names, firsts)


def unit_file_names(dwarf: Any, cu_offset: int) -> tuple[list[str], int] | None:
    """The file names of the line program of the unit at ``cu_offset`` (from its header only,
    without running the program) and its DWARF version, or None when it has no line program."""
    cu = dwarf.get_CU_at(cu_offset)
    prog = dwarf.line_program_for_CU(cu)
    if prog is None:
        return None
    return _file_names(prog, cu), int(prog.header["version"])


def _file_names(prog: Any, cu: Any) -> list[str]:
    top = cu.get_top_DIE()
    try:
        comp_dir = _text(top.attributes["DW_AT_comp_dir"].value)
    except Exception:  # absent, or a string in a supplementary file
        comp_dir = ""
    header = prog.header
    version = header["version"]
    dirs = [_text(d) for d in header["include_directory"]]
    names: list[str] = []
    for fe in header["file_entry"]:
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
    return names


def entries_rows(prog: Any) -> list[tuple[int, int, int]]:
    """(address, file, line) rows through pyelftools; file -1 marks an end of sequence."""
    out = []
    for entry in prog.get_entries():
        st = entry.state
        if st is None:
            continue
        out.append((st.address, -1 if st.end_sequence else st.file, st.line))
    return out


def run_line_program(prog: Any, little: bool) -> list[tuple[int, int, int]]:
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
