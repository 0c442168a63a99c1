"""The .eh_frame record format: DW_EH_PE_* pointer encodings, entry bounds, CIE and FDE
records, and the binary search table of .eh_frame_hdr. What the records *mean* (the CFA
program) is interpreted by cfaprogram.py; ehframe.py indexes one image's records."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stax.leb128 import read_sleb as sleb
from stax.leb128 import read_uleb as uleb

MASK64 = (1 << 64) - 1

_u16 = struct.Struct("<H")
_s16 = struct.Struct("<h")
_u32 = struct.Struct("<I")
_s32 = struct.Struct("<i")
_u64 = struct.Struct("<Q")
_s64 = struct.Struct("<q")

DW_EH_PE_omit = 0xFF
# fixed-size DW_EH_PE_* value formats: absptr and udata8, udata4, sdata4, udata2, sdata2, sdata8
_FIXED_SIZE = {0x00: _u64, 0x04: _u64, 0x03: _u32, 0x0B: _s32, 0x02: _u16, 0x0A: _s16,
               0x0C: _s64}


class CFIError(Exception):
    """Malformed or unsupported call-frame information."""


def read_encoded(buf: bytes, pos: int, enc: int, buf_vaddr: int, datarel: int = 0
                 ) -> tuple[int, int]:
    """Decode a DW_EH_PE_* encoded pointer at ``pos``; ``buf_vaddr`` is the address of buf[0]."""
    if enc == DW_EH_PE_omit:
        return 0, pos
    start = pos
    fmt = enc & 0x0F
    fixed = _FIXED_SIZE.get(fmt)
    if fixed is not None:
        v = fixed.unpack_from(buf, pos)[0]
        pos += fixed.size
    elif fmt == 0x01:
        v, pos = uleb(buf, pos)
    elif fmt == 0x09:
        v, pos = sleb(buf, pos)
    else:
        raise CFIError(f"unknown pointer format {enc:#x}")
    app = enc & 0x70
    if app == 0x10:  # pcrel
        v += buf_vaddr + start
    elif app == 0x30:  # datarel (.eh_frame_hdr)
        v += datarel
    elif app != 0x00:
        raise CFIError(f"unsupported pointer application {enc:#x}")
    return v & MASK64, pos


@dataclass(slots=True)
class CIE:
    code_align: int
    data_align: int
    ra_reg: int
    fde_enc: int
    has_z: bool
    signal: bool
    instructions: bytes


@dataclass(slots=True)
class FDE:
    pc_begin: int
    pc_end: int
    cie: CIE
    instructions: bytes


def parse_cie(buf: bytes, pos: int, end: int, buf_vaddr: int) -> CIE:
    version = buf[pos]
    pos += 1
    nul = buf.index(b"\0", pos)
    aug = buf[pos:nul].decode("ascii", "replace")
    pos = nul + 1
    if "eh" in aug:
        pos += 8
    code_align, pos = uleb(buf, pos)
    data_align, pos = sleb(buf, pos)
    if version == 1:
        ra_reg = buf[pos]
        pos += 1
    else:
        ra_reg, pos = uleb(buf, pos)
    fde_enc = 0
    signal = False
    has_z = aug.startswith("z")
    if has_z:
        alen, pos = uleb(buf, pos)
        data_end = pos + alen
        p = pos
        for ch in aug[1:]:
            if ch == "R":
                fde_enc = buf[p]
                p += 1
            elif ch == "L":
                p += 1
            elif ch == "P":
                penc = buf[p]
                _v, p = read_encoded(buf, p + 1, penc & 0x0F, buf_vaddr)  # size only
            elif ch == "S":
                signal = True
            elif ch in "BG":
                pass
            else:
                break  # unknown: the length lets us skip the rest
        pos = data_end
    elif aug:
        raise CFIError(f"unsupported CIE augmentation {aug!r}")
    return CIE(code_align, data_align, ra_reg, fde_enc, has_z, signal, buf[pos:end])


def entry_bounds(buf: bytes, off: int) -> tuple[int, int]:
    """(start of the entry's contents after the length, end of the entry)."""
    length = _u32.unpack_from(buf, off)[0]
    if length == 0xFFFFFFFF:
        length = _u64.unpack_from(buf, off + 4)[0]
        return off + 12, off + 12 + length
    return off + 4, off + 4 + length


def parse_eh_frame_hdr(hdr: bytes, hdr_vaddr: int) -> tuple[int, list[tuple[int, int]] | None]:
    """(.eh_frame vaddr, [(pc, fde vaddr)] or None when the table is absent)."""
    if len(hdr) < 4 or hdr[0] != 1:
        raise CFIError("unsupported .eh_frame_hdr version")
    ptr_enc, count_enc, table_enc = hdr[1], hdr[2], hdr[3]
    eh_frame, p = read_encoded(hdr, 4, ptr_enc, hdr_vaddr, hdr_vaddr)
    if count_enc == DW_EH_PE_omit or table_enc == DW_EH_PE_omit:
        return eh_frame, None
    count, p = read_encoded(hdr, p, count_enc, hdr_vaddr, hdr_vaddr)
    if table_enc == 0x3B:  # datarel | sdata4: the usual case, decoded in one go
        n = min(count, (len(hdr) - p) // 8)
        vals = struct.unpack_from(f"<{2 * n}i", hdr, p)
        it = iter(vals)
        return eh_frame, [((a + hdr_vaddr) & MASK64, (b + hdr_vaddr) & MASK64)
                          for a, b in zip(it, it, strict=True)]
    out = []
    for _ in range(count):
        a, p = read_encoded(hdr, p, table_enc, hdr_vaddr, hdr_vaddr)
        b, p = read_encoded(hdr, p, table_enc, hdr_vaddr, hdr_vaddr)
        out.append((a, b))
    return eh_frame, out
