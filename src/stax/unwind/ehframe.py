"""Call-frame information of one ELF image: the FDE index (from .eh_frame_hdr, or one scan of
.eh_frame) and the decoded rows per PC, loading it from a file or an in-memory image, and the
process-wide table cache per build-id.

Rows are computed once per FDE (the whole PC range, by cfaprogram.run_program) and looked up by
PC with a bisect. The record format itself is parsed by cfi.py.
"""

from __future__ import annotations

import bisect
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable

from stax.leb128 import read_uleb as uleb
from stax.unwind.cfaprogram import Row, run_program
from stax.unwind.cfi import (
    CIE,
    FDE,
    CFIError,
    entry_bounds,
    parse_cie,
    parse_eh_frame_hdr,
    read_encoded,
)

_u32 = struct.Struct("<I")
_u64 = struct.Struct("<Q")

PT_LOAD = 1
PT_GNU_EH_FRAME = 0x6474E550


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
            body, end = entry_bounds(buf, off)
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
            body, end = entry_bounds(self.buf, off)
            if _u32.unpack_from(self.buf, body)[0] != 0:
                raise CFIError(f"no CIE at {off:#x}")
            cie = self._cies[off] = parse_cie(self.buf, body + 4, end, self.vaddr)
        return cie

    def _parse_fde(self, off: int) -> FDE:
        buf = self.buf
        body, end = entry_bounds(buf, off)
        cie_ptr = _u32.unpack_from(buf, body)[0]
        cie = self._cie(body - cie_ptr)
        p = body + 4
        pc_begin, p = read_encoded(buf, p, cie.fde_enc, self.vaddr)
        pc_range, p = read_encoded(buf, p, cie.fde_enc & 0x0F, self.vaddr)
        if cie.has_z:
            alen, p = uleb(buf, p)
            p += alen
        return FDE(pc_begin, pc_begin + pc_range, cie, buf[p:end])

    def fde_range(self, pc: int) -> tuple[int, int] | None:
        """[begin, end) of the FDE covering ``pc`` (the extent of its function), or None."""
        i = bisect.bisect_right(self.starts, pc) - 1
        if i < 0:
            return None
        try:
            fde = self._parse_fde(self.offsets[i])
        except (CFIError, IndexError, struct.error, ValueError):
            return None
        return (fde.pc_begin, fde.pc_end) if fde.pc_begin <= pc < fde.pc_end else None

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


# --- loading from ELF files -------------------------------------------------------------------


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
        eh_vaddr, index = parse_eh_frame_hdr(hdr, ehf[1])
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
