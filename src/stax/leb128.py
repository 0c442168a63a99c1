"""LEB128 integers (DWARF's ULEB128/SLEB128, which protobuf calls varints): the readers the
.eh_frame, DWARF expression and line-table decoders use, and the writer the pprof export uses.
"""

from __future__ import annotations


def read_uleb(buf: bytes, pos: int) -> tuple[int, int]:
    """The unsigned LEB128 at ``buf[pos]`` and the position after it."""
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def read_sleb(buf: bytes, pos: int) -> tuple[int, int]:
    """The signed LEB128 at ``buf[pos]`` and the position after it."""
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos


def encode_uleb(v: int) -> bytes:
    """The unsigned LEB128 (protobuf varint) bytes of ``v >= 0``."""
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
