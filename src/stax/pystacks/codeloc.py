"""The line of an instruction from a code object's location table (``co_linetable``, the
format of CPython 3.11+, Objects/locations.md): entries of a header byte (bit 7 set, code in
bits 3-6, length-1 in code units in bits 0-2) and varint payloads."""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["LineRanges", "decode_lines", "line_at", "line_for_offset"]

# (ends, lines): code units [ends[i-1], ends[i]) have line lines[i] (None: no line)
LineRanges = tuple[list[int], list[int | None]]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    val = 0
    shift = 0
    while pos < len(buf):
        b = buf[pos]
        pos += 1
        val |= (b & 0x3F) << shift
        shift += 6
        if not b & 0x40:
            break
    return val, pos


def _svarint(buf: bytes, pos: int) -> tuple[int, int]:
    v, pos = _varint(buf, pos)
    return (-(v >> 1) if v & 1 else v >> 1), pos


def decode_lines(table: bytes, firstlineno: int) -> LineRanges:
    """The whole table decoded once into sorted ranges of code units and their lines (a table
    that loses sync ends there)."""
    ends: list[int] = []
    lines: list[int | None] = []
    line = firstlineno
    addr = 0
    pos = 0
    n = len(table)
    while pos < n:
        head = table[pos]
        pos += 1
        if not head & 0x80:
            break  # lost sync: not a location table
        code = (head >> 3) & 0x0F
        has_line = True
        if code == 15:  # no location
            has_line = False
        elif code == 14:  # long form: line delta, end line, column, end column
            delta, pos = _svarint(table, pos)
            line += delta
            for _ in range(3):
                _, pos = _varint(table, pos)
        elif code == 13:  # no column
            delta, pos = _svarint(table, pos)
            line += delta
        elif code >= 10:  # one-line forms: delta in the code, two column bytes
            line += code - 10
            pos += 2
        else:  # short form: same line, one column byte
            pos += 1
        addr += (head & 7) + 1
        ends.append(addr)
        lines.append(line if has_line else None)
    return ends, lines


def line_at(ranges: LineRanges, index: int) -> int | None:
    """The line of the code unit at ``index`` (in 2-byte code units), or None."""
    ends, lines = ranges
    if index < 0:
        return None
    i = bisect_right(ends, index)
    return lines[i] if i < len(lines) else None


def line_for_offset(table: bytes, firstlineno: int, index: int) -> int | None:
    """The source line of the code unit at ``index`` (in 2-byte code units), or None when the
    instruction has no line or lies past the table."""
    return line_at(decode_lines(table, firstlineno), index)
