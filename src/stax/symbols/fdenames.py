"""Names for code no symbol covers (stripped binaries, code past a symbol's size).

Three sources, tried in this order for an address of one ELF image:

- the PLT: each stub of .plt / .plt.sec / .plt.got is named ``NAME@plt`` after the dynamic
  relocation of the GOT slot it jumps through (as perf shows them);
- the entry point (``e_entry``): the function holding it is ``_start``;
- the FDE ranges of ``.eh_frame`` (every function with unwind info has one): the function is
  known by its extent, and named ``binary+0xOFFSET`` after the file offset of its start, so
  every address of one function lands on the same name.

The .eh_frame index is the unwinder's (stax.unwind.ehframe), shared through its table cache.
"""

from __future__ import annotations

import bisect
import os
import struct
import threading
from dataclasses import dataclass
from io import BytesIO
from typing import BinaryIO

from elftools.elf.elffile import ELFFile

from stax.unwind.ehframe import TABLES, EhFrame, load_image

__all__ = ["Unnamed", "UnwindNames", "plt_names"]

_SHT_RELA = 4
_R_X86_64_GLOB_DAT = 6
_R_X86_64_JUMP_SLOT = 7
_R_AARCH64_JUMP_SLOT = 1026
_JMP_RIP = b"\xff\x25"  # jmp *disp32(%rip)
_RELA = struct.Struct("<QQq")
_SYM64 = struct.Struct("<IBBHQQ")
_MAX_PLT_SLOTS = 1 << 20


@dataclass(frozen=True, slots=True)
class Unnamed:
    """The function holding an address no symbol covers: ``name`` is None when only its
    extent is known (the caller names it by binary and offset)."""

    name: str | None
    start: int  # ELF vaddr
    size: int


def _dynsym_names(elf: ELFFile, link: int) -> tuple[bytes, bytes] | None:
    try:
        symtab = elf.get_section(link)
        return symtab.data(), elf.get_section(symtab["sh_link"]).data()
    except Exception:
        return None


def _sym_name(syms: tuple[bytes, bytes], index: int) -> str | None:
    data, strtab = syms
    pos = index * _SYM64.size
    if index <= 0 or pos + _SYM64.size > len(data):
        return None
    st_name = _SYM64.unpack_from(data, pos)[0]
    end = strtab.find(b"\0", st_name)
    raw = strtab[st_name:end] if end >= 0 else strtab[st_name:]
    return raw.decode("utf-8", "replace").split("@", 1)[0] or None


def _relocations(elf: ELFFile, name: str, types: tuple[int, ...]) -> list[tuple[int, str | None]]:
    """(GOT address, symbol name) of each relocation of section ``name`` of the given types,
    in table order."""
    sec = elf.get_section_by_name(name)
    if sec is None or sec["sh_type"] != "SHT_RELA":
        return []
    syms = _dynsym_names(elf, sec["sh_link"])
    if syms is None:
        return []
    data = sec.data()
    out: list[tuple[int, str | None]] = []
    for r_offset, r_info, _addend in _RELA.iter_unpack(data[: len(data) - len(data) % 24]):
        if r_info & 0xFFFFFFFF in types:
            out.append((r_offset, _sym_name(syms, r_info >> 32)))
    return out


def plt_names(elf: ELFFile) -> list[tuple[int, int, str]]:
    """(start vaddr, size, ``NAME@plt``) of every PLT stub whose target is known, sorted."""
    if elf.elfclass != 64 or not elf.little_endian:
        return []
    machine = elf["e_machine"]
    out: list[tuple[int, int, str]] = []
    if machine == "EM_X86_64":
        slots = _relocations(elf, ".rela.plt", (_R_X86_64_JUMP_SLOT,))
        got: dict[int, str | None] = dict(slots)
        if elf.get_section_by_name(".plt.got") is not None:
            got.update(_relocations(elf, ".rela.dyn", (_R_X86_64_GLOB_DAT,)))
        for sec_name in (".plt", ".plt.sec", ".plt.got"):
            sec = elf.get_section_by_name(sec_name)
            if sec is None or sec["sh_type"] == "SHT_NOBITS":
                continue
            addr, code = sec["sh_addr"], sec.data()
            size = sec["sh_entsize"] or (8 if sec_name == ".plt.got" else 16)
            for k in range(min(len(code) // size, _MAX_PLT_SLOTS)):
                slot = code[k * size:(k + 1) * size]
                j = slot.find(_JMP_RIP)
                name = None
                if 0 <= j <= size - 6:
                    disp = struct.unpack_from("<i", slot, j + 2)[0]
                    name = got.get(addr + k * size + j + 6 + disp)
                elif sec_name == ".plt" and 1 <= k <= len(slots):
                    name = slots[k - 1][1]  # IBT .plt: pushes index k-1, jumps to PLT0
                if name:
                    out.append((addr + k * size, size, name + "@plt"))
    elif machine == "EM_AARCH64":
        slots = _relocations(elf, ".rela.plt", (_R_AARCH64_JUMP_SLOT,))
        sec = elf.get_section_by_name(".plt")
        if sec is not None and slots:
            addr = sec["sh_addr"]
            for k, (_got, name) in enumerate(slots[:_MAX_PLT_SLOTS]):
                if name:  # a 32-byte PLT0, then 16 bytes per stub in .rela.plt order
                    out.append((addr + 32 + 16 * k, 16, name + "@plt"))
    out.sort()
    return out


class UnwindNames:
    """The unnamed-code table of one ELF image, read on first use."""

    def __init__(self, path: str, build_id: str | None, data: bytes | None = None) -> None:
        self.path = path
        self.build_id = build_id
        self._data = data
        self._loaded = False
        self._lock = threading.Lock()
        self._eh: EhFrame | None = None
        self._entry = 0
        self._plt_starts: list[int] = []
        self._plt: list[tuple[int, int, str]] = []

    def _load(self) -> None:
        with self._lock:
            if not self._loaded:
                self._read()
                self._loaded = True

    def _read(self) -> None:
        try:
            stream: BinaryIO = (BytesIO(self._data) if self._data is not None
                                else open(self.path, "rb"))
            with stream:
                elf = ELFFile(stream)
                self._entry = elf["e_entry"]
                self._plt = plt_names(elf)
        except Exception:  # a broken file names nothing more
            self._plt = []
        self._plt_starts = [s for s, _, _ in self._plt]
        self._eh = self._eh_frame()

    def _eh_frame(self) -> EhFrame | None:
        data = self._data
        if data is not None:
            if self.build_id:
                return TABLES.get(("bid", self.build_id), lambda: load_image(data=data))
            try:
                return load_image(data=data)
            except Exception:
                return None
        if self.build_id:
            key: tuple[object, ...] = ("bid", self.build_id)
        else:
            try:
                st = os.stat(self.path)
            except OSError:
                return None
            key = ("file", self.path, st.st_mtime_ns, st.st_size, st.st_ino)
        return TABLES.get(key, lambda: load_image(path=self.path))

    def lookup(self, vaddr: int) -> Unnamed | None:
        if not self._loaded:
            self._load()
        i = bisect.bisect_right(self._plt_starts, vaddr) - 1
        if i >= 0:
            start, size, name = self._plt[i]
            if vaddr < start + size:
                return Unnamed(name, start, size)
        eh, entry = self._eh, self._entry
        if eh is None:
            return None
        rng = eh.fde_range(vaddr)
        if rng is not None:
            begin, end = rng
            return Unnamed("_start" if entry and begin <= entry < end else None, begin,
                           end - begin)
        if entry and vaddr >= entry and eh.in_entry_gap(vaddr):
            # the entry point written without CFI: up to the next function with unwind info
            k = bisect.bisect_right(eh.starts, vaddr)
            end = eh.starts[k] if k < len(eh.starts) else vaddr + 1
            return Unnamed("_start", entry, end - entry)
        return None
