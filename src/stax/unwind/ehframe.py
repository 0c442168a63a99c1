"""Call-frame information from .eh_frame / .eh_frame_hdr: CIE/FDE parsing, pointer encodings,
the CFA program interpreter, and per-image tables of decoded rows cached by build-id.

Rows are computed once per FDE (the whole PC range) and looked up by PC with a bisect.
"""

from __future__ import annotations

import bisect
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from stax.leb128 import read_sleb as sleb
from stax.leb128 import read_uleb as uleb

MASK64 = (1 << 64) - 1

# rule kinds for a register (and for the return-address column)
SAME = 0
UNDEF = 1
OFFSET = 2  # saved at CFA + n
VAL_OFFSET = 3  # value is CFA + n
REGISTER = 4  # value is in register n
EXPR = 5  # saved at the address the expression computes (CFA pushed first)
VAL_EXPR = 6  # value is what the expression computes

RA_X86_64 = 16
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
PT_LOAD = 1
PT_GNU_EH_FRAME = 0x6474E550


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


@dataclass(slots=True, frozen=True)
class Row:
    """The unwind rule for a PC range: the CFA (register + offset, or an expression) and the
    rules of the registers it restores; ``rules`` lists only registers not "same value"."""

    cfa_reg: int  # -1: cfa_expr computes the CFA
    cfa_off: int
    cfa_expr: bytes | None
    rules: tuple[tuple[int, int, int | bytes], ...]
    ra_reg: int
    signal: bool
    fast: tuple[int, int, int, tuple[tuple[int, int], ...]] | None = None
    """(CFA register, CFA offset, RA offset, ((register, offset), ...)) when the row is the
    common shape: CFA = register + offset and every rule "saved at CFA + n"."""


def _fast_form(cfa_reg: int, cfa_off: int, cfa_expr: bytes | None,
               rules: tuple[tuple[int, int, int | bytes], ...], ra_reg: int, signal: bool
               ) -> tuple[int, int, int, tuple[tuple[int, int], ...]] | None:
    if cfa_expr is not None or signal or not 0 <= cfa_reg < 17:
        return None
    ra_off = None
    saves: list[tuple[int, int]] = []
    for reg, kind, arg in rules:
        if kind != OFFSET or not isinstance(arg, int):
            return None
        if reg == ra_reg:
            ra_off = arg
        elif reg < 17:
            saves.append((reg, arg))
    if ra_off is None:
        return None
    return cfa_reg, cfa_off, ra_off, tuple(saves)


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


def _entry_bounds(buf: bytes, off: int) -> tuple[int, int]:
    """(start of the entry's contents after the length, end of the entry)."""
    length = _u32.unpack_from(buf, off)[0]
    if length == 0xFFFFFFFF:
        length = _u64.unpack_from(buf, off + 4)[0]
        return off + 12, off + 12 + length
    return off + 4, off + 4 + length


class EhFrame:
    """The call-frame information of one ELF image, in image virtual addresses.

    ``buf`` holds .eh_frame (at ``vaddr``); ``index`` is the sorted (pc_begin, fde offset)
    table, from .eh_frame_hdr when present, else from one scan of .eh_frame.
    """

    def __init__(self, buf: bytes, vaddr: int, index: list[tuple[int, int]] | None,
                 loads: list[tuple[int, int, int]], entry: int = 0) -> None:
        self.buf = buf
        self.entry = entry  # e_entry: the hole in the table around it is the outermost frame
        self.vaddr = vaddr
        self.loads = loads  # (p_offset, p_vaddr, p_filesz) of PT_LOAD segments
        self._cies: dict[int, CIE] = {}
        self._rows: dict[int, tuple[list[int], list[Row]]] = {}
        self._pc_rows: dict[int, Row | None] = {}
        self._ends: dict[int, int] = {}
        self.lock = threading.Lock()
        if index is None:
            index = self._scan()
        index.sort()
        self.starts = [a for a, _ in index]
        self.offsets = [o for _, o in index]

    def __len__(self) -> int:
        return len(self.starts)

    def file_offset_to_vaddr(self, off: int) -> int | None:
        for p_offset, p_vaddr, p_filesz in self.loads:
            if p_offset <= off < p_offset + max(p_filesz, 1):
                return off - p_offset + p_vaddr
        return None

    def _scan(self) -> list[tuple[int, int]]:
        buf = self.buf
        out: list[tuple[int, int]] = []
        off = 0
        n = len(buf)
        while off + 4 <= n:
            length = _u32.unpack_from(buf, off)[0]
            if length == 0:
                break
            body, end = _entry_bounds(buf, off)
            if end > n:
                break
            if _u32.unpack_from(buf, body)[0] != 0:
                try:
                    fde = self._parse_fde(off)
                except (CFIError, IndexError, struct.error, ValueError):
                    fde = None
                if fde is not None and fde.pc_end > fde.pc_begin:
                    out.append((fde.pc_begin, off))
            off = end
        return out

    def _cie(self, off: int) -> CIE:
        cie = self._cies.get(off)
        if cie is None:
            body, end = _entry_bounds(self.buf, off)
            if _u32.unpack_from(self.buf, body)[0] != 0:
                raise CFIError(f"no CIE at {off:#x}")
            cie = self._cies[off] = parse_cie(self.buf, body + 4, end, self.vaddr)
        return cie

    def _parse_fde(self, off: int) -> FDE:
        buf = self.buf
        body, end = _entry_bounds(buf, off)
        cie_ptr = _u32.unpack_from(buf, body)[0]
        cie = self._cie(body - cie_ptr)
        p = body + 4
        pc_begin, p = read_encoded(buf, p, cie.fde_enc, self.vaddr)
        pc_range, p = read_encoded(buf, p, cie.fde_enc & 0x0F, self.vaddr)
        if cie.has_z:
            alen, p = uleb(buf, p)
            p += alen
        return FDE(pc_begin, pc_begin + pc_range, cie, buf[p:end])

    def find_fde(self, pc: int) -> FDE | None:
        i = bisect.bisect_right(self.starts, pc) - 1
        if i < 0:
            return None
        fde = self._parse_fde(self.offsets[i])
        if not fde.pc_begin <= pc < fde.pc_end:
            return None
        return fde

    def in_entry_gap(self, pc: int) -> bool:
        """True when no FDE covers ``pc`` and the same gap between FDEs holds the image's
        entry point (e.g. the dynamic loader's ``_start``, written without CFI)."""
        entry = self.entry
        if not entry:
            return False
        i = bisect.bisect_right(self.starts, pc) - 1
        j = bisect.bisect_right(self.starts, entry) - 1
        if i != j:
            return False
        if i >= 0:
            try:
                end = self._parse_fde(self.offsets[i]).pc_end
            except (CFIError, IndexError, struct.error, ValueError):
                return False
            return pc >= end and entry >= end
        return True

    def row_at(self, pc: int) -> Row | None:
        """The unwind row for ``pc`` (image vaddr), or None when no FDE covers it."""
        row = self._pc_rows.get(pc, False)
        if row is not False:
            return row  # type: ignore[return-value]
        with self.lock:
            row = self._row_at(pc)
            if len(self._pc_rows) > 200_000:
                self._pc_rows.clear()
            self._pc_rows[pc] = row
        return row

    def _row_at(self, pc: int) -> Row | None:
        i = bisect.bisect_right(self.starts, pc) - 1
        if i < 0:
            return None
        off = self.offsets[i]
        cached = self._rows.get(off)
        if cached is None:
            fde = self._parse_fde(off)
            if not fde.pc_begin <= pc < fde.pc_end:
                return None
            cached = self._rows[off] = run_program(fde, self.vaddr)
            self._ends[off] = fde.pc_end
        elif pc >= self._ends[off]:
            return None
        locs, rows = cached
        return rows[bisect.bisect_right(locs, pc) - 1]


def run_program(fde: FDE, buf_vaddr: int = 0) -> tuple[list[int], list[Row]]:
    """Execute the CIE's initial instructions and the FDE's program: one row per location
    where the rules change, covering [pc_begin, pc_end)."""
    cie = fde.cie
    state = _State(cie)
    _execute(state, cie.instructions, cie, None, buf_vaddr)
    initial = dict(state.regs)
    state.initial = initial
    state.loc = fde.pc_begin

    # collect rows at every advance
    rows_at: list[tuple[int, Row]] = []

    def advance(new_loc: int) -> None:
        rows_at.append((state.loc, state.row()))
        state.loc = new_loc

    _execute(state, fde.instructions, cie, advance, buf_vaddr)
    rows_at.append((state.loc, state.row()))
    # keep the last row for each location (an advance of 0 replaces)
    out_locs: list[int] = []
    out_rows: list[Row] = []
    for loc, row in rows_at:
        if out_locs and out_locs[-1] == loc:
            out_rows[-1] = row
        elif out_locs and loc < out_locs[-1]:
            continue
        else:
            out_locs.append(loc)
            out_rows.append(row)
    return out_locs, out_rows


class _State:
    __slots__ = ("cfa_reg", "cfa_off", "cfa_expr", "regs", "stack", "initial", "loc", "cie")

    def __init__(self, cie: CIE) -> None:
        self.cie = cie
        self.cfa_reg = -1
        self.cfa_off = 0
        self.cfa_expr: bytes | None = None
        self.regs: dict[int, tuple[int, int | bytes]] = {}
        self.stack: list[tuple[int, int, bytes | None, dict[int, tuple[int, int | bytes]]]] = []
        self.initial: dict[int, tuple[int, int | bytes]] = {}
        self.loc = 0

    def row(self) -> Row:
        rules = tuple((r, k, a) for r, (k, a) in sorted(self.regs.items()) if k != SAME)
        cfa_reg = self.cfa_reg if self.cfa_expr is None else -1
        ra, sig = self.cie.ra_reg, self.cie.signal
        return Row(cfa_reg, self.cfa_off, self.cfa_expr, rules, ra, sig,
                   _fast_form(cfa_reg, self.cfa_off, self.cfa_expr, rules, ra, sig))


def _execute(st: _State, code: bytes, cie: CIE, advance: Callable[[int], None] | None,
             buf_vaddr: int) -> None:
    p = 0
    n = len(code)
    caf = cie.code_align
    daf = cie.data_align
    regs = st.regs
    while p < n:
        op = code[p]
        p += 1
        hi = op & 0xC0
        low = op & 0x3F
        if hi == 0x40:  # advance_loc
            if advance is not None:
                advance(st.loc + low * caf)
            continue
        if hi == 0x80:  # offset
            off, p = uleb(code, p)
            regs[low] = (OFFSET, off * daf)
            continue
        if hi == 0xC0:  # restore
            _restore(st, low)
            continue
        if op == 0x00:
            pass
        elif op == 0x01:  # set_loc
            loc, p = read_encoded(code, p, cie.fde_enc, 0)
            if advance is not None:
                advance(loc)
        elif op in (0x02, 0x03, 0x04):  # advance_loc1/2/4
            if op == 0x02:
                delta = code[p]
                p += 1
            elif op == 0x03:
                delta = _u16.unpack_from(code, p)[0]
                p += 2
            else:
                delta = _u32.unpack_from(code, p)[0]
                p += 4
            if advance is not None:
                advance(st.loc + delta * caf)
        elif op == 0x05:  # offset_extended
            reg, p = uleb(code, p)
            off, p = uleb(code, p)
            regs[reg] = (OFFSET, off * daf)
        elif op == 0x06:  # restore_extended
            reg, p = uleb(code, p)
            _restore(st, reg)
        elif op == 0x07:  # undefined
            reg, p = uleb(code, p)
            regs[reg] = (UNDEF, 0)
        elif op == 0x08:  # same_value
            reg, p = uleb(code, p)
            regs[reg] = (SAME, 0)
        elif op == 0x09:  # register
            reg, p = uleb(code, p)
            reg2, p = uleb(code, p)
            regs[reg] = (REGISTER, reg2)
        elif op == 0x0A:  # remember_state
            st.stack.append((st.cfa_reg, st.cfa_off, st.cfa_expr, dict(regs)))
        elif op == 0x0B:  # restore_state
            if not st.stack:
                raise CFIError("restore_state with an empty stack")
            st.cfa_reg, st.cfa_off, st.cfa_expr, saved = st.stack.pop()
            regs.clear()
            regs.update(saved)
        elif op == 0x0C:  # def_cfa
            st.cfa_reg, p = uleb(code, p)
            st.cfa_off, p = uleb(code, p)
            st.cfa_expr = None
        elif op == 0x0D:  # def_cfa_register
            st.cfa_reg, p = uleb(code, p)
            st.cfa_expr = None
        elif op == 0x0E:  # def_cfa_offset
            st.cfa_off, p = uleb(code, p)
        elif op == 0x0F:  # def_cfa_expression
            ln, p = uleb(code, p)
            st.cfa_expr = bytes(code[p:p + ln])
            p += ln
        elif op == 0x10:  # expression
            reg, p = uleb(code, p)
            ln, p = uleb(code, p)
            regs[reg] = (EXPR, bytes(code[p:p + ln]))
            p += ln
        elif op == 0x11:  # offset_extended_sf
            reg, p = uleb(code, p)
            off, p = sleb(code, p)
            regs[reg] = (OFFSET, off * daf)
        elif op == 0x12:  # def_cfa_sf
            st.cfa_reg, p = uleb(code, p)
            off, p = sleb(code, p)
            st.cfa_off = off * daf
            st.cfa_expr = None
        elif op == 0x13:  # def_cfa_offset_sf
            off, p = sleb(code, p)
            st.cfa_off = off * daf
        elif op == 0x14:  # val_offset
            reg, p = uleb(code, p)
            off, p = uleb(code, p)
            regs[reg] = (VAL_OFFSET, off * daf)
        elif op == 0x15:  # val_offset_sf
            reg, p = uleb(code, p)
            off, p = sleb(code, p)
            regs[reg] = (VAL_OFFSET, off * daf)
        elif op == 0x16:  # val_expression
            reg, p = uleb(code, p)
            ln, p = uleb(code, p)
            regs[reg] = (VAL_EXPR, bytes(code[p:p + ln]))
            p += ln
        elif op == 0x2E:  # GNU_args_size
            _v, p = uleb(code, p)
        elif op == 0x2F:  # GNU_negative_offset_extended
            reg, p = uleb(code, p)
            off, p = uleb(code, p)
            regs[reg] = (OFFSET, -off * daf)
        else:
            raise CFIError(f"unknown CFA opcode {op:#x}")


def _restore(st: _State, reg: int) -> None:
    init = st.initial.get(reg)
    if init is None:
        st.regs.pop(reg, None)
    else:
        st.regs[reg] = init


# --- loading from ELF files -------------------------------------------------------------------


def _parse_hdr(hdr: bytes, hdr_vaddr: int) -> tuple[int, list[tuple[int, int]] | None]:
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


def load_image(path: str | None = None, data: bytes | None = None) -> EhFrame | None:
    """Parse the program headers of an ELF image, find PT_GNU_EH_FRAME (or the .eh_frame
    section when there is no header) and build its EhFrame; None when it has no CFI."""
    if data is None:
        assert path is not None
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size

            def pread(off: int, n: int) -> bytes:
                return os.pread(fd, n, off)

            return _load_with(pread, size)
        finally:
            os.close(fd)
    buf = data
    return _load_with(lambda off, n: bytes(buf[off:off + n]), len(buf))


def _load_with(rd: Callable[[int, int], bytes], size: int) -> EhFrame | None:
    """``rd(offset, n)`` reads n bytes of the image at a file offset."""
    ehdr = rd(0, 64)
    if len(ehdr) < 64 or ehdr[:4] != b"\x7fELF" or ehdr[4] != 2 or ehdr[5] != 1:
        raise CFIError("not a 64-bit little-endian ELF image")
    phoff = _u64.unpack_from(ehdr, 32)[0]
    shoff = _u64.unpack_from(ehdr, 40)[0]
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", ehdr, 54)
    entry = _u64.unpack_from(ehdr, 24)[0]
    loads: list[tuple[int, int, int]] = []
    ehf: tuple[int, int, int] | None = None
    if phoff and phnum and phentsize >= 56:
        table = rd(phoff, phentsize * phnum)
        for i in range(len(table) // phentsize):
            p_type, _fl, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from(
                "<IIQQQQ", table, i * phentsize)
            if p_type == PT_LOAD:
                loads.append((p_offset, p_vaddr, p_filesz))
            elif p_type == PT_GNU_EH_FRAME:
                ehf = (p_offset, p_vaddr, p_filesz)

    def vaddr_to_offset(va: int) -> tuple[int, int] | None:
        for p_offset, p_vaddr, p_filesz in loads:
            if p_vaddr <= va < p_vaddr + p_filesz:
                return va - p_vaddr + p_offset, p_vaddr + p_filesz - va
        return None

    if ehf is not None and ehf[2] > 0:
        hdr = rd(ehf[0], ehf[2])
        eh_vaddr, index = _parse_hdr(hdr, ehf[1])
        loc = vaddr_to_offset(eh_vaddr)
        if loc is None:
            raise CFIError(".eh_frame outside every PT_LOAD segment")
        buf = rd(loc[0], loc[1])
        if index is not None:
            index = [(pc, fde - eh_vaddr) for pc, fde in index]
        return EhFrame(buf, eh_vaddr, index, loads, entry)
    # no header: find .eh_frame among the sections
    if not shoff or not shnum or shentsize < 64 or shstrndx >= shnum:
        return None
    sh = rd(shoff, shentsize * shnum)
    secs = [struct.unpack_from("<IIQQQQ", sh, i * shentsize) for i in range(shnum)]
    _n, _t, _f, _a, str_off, str_size = secs[shstrndx]
    names = rd(str_off, str_size)
    for name_off, sh_type, _flags, addr, off, sz in secs:
        end = names.find(b"\0", name_off)
        if names[name_off:end] == b".eh_frame" and sh_type != 8 and sz:
            return EhFrame(rd(off, sz), addr, None, loads, entry)
    return None


class TableCache:
    """Parsed CFI per image, keyed by build-id (or path, mtime and size without one)."""

    def __init__(self, max_images: int = 256) -> None:
        self.max_images = max_images
        self._tables: OrderedDict[object, EhFrame | None] = OrderedDict()
        self.lock = threading.Lock()
        self.loaded = 0
        self.failed = 0

    def get(self, key: object, loader: Callable[[], EhFrame | None]) -> EhFrame | None:
        with self.lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                return self._tables[key]
        try:
            table = loader()
            self.loaded += 1
        except (OSError, CFIError, struct.error, IndexError, ValueError):
            table = None
            self.failed += 1
        with self.lock:
            self._tables[key] = table
            while len(self._tables) > self.max_images:
                self._tables.popitem(last=False)
        return table

    def __len__(self) -> int:
        return len(self._tables)


TABLES = TableCache()
"""Process-wide: every run of a server shares the parsed tables of the same binaries."""
