"""Low-level ELF reading with ``struct`` (no pyelftools): the file header, the section header
table and the build-id note, so that only those few bytes of a file are read. The bottom layer
of binary handling: the binary locator (stax.binaries), symbolization and debug-file lookup
(stax.symbols) build on it."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "ElfHeader",
    "build_id_from_stream",
    "normalize_build_id",
    "raw_section_headers",
    "read_build_id",
    "read_elf_header",
    "same_build_id",
]

_PT_NOTE = 4
_SHT_NOTE = 7
_NT_GNU_BUILD_ID = 3
_MAX_NOTE_BYTES = 1 << 20
_MAX_HEADERS = 1 << 16



def normalize_build_id(build_id: str | bytes | None) -> str | None:
    if build_id is None:
        return None
    if isinstance(build_id, bytes | bytearray):
        build_id = bytes(build_id).hex()
    bid = build_id.strip().lower()
    if not bid or not bid.strip("0"):
        return None
    return bid


def same_build_id(a: str, b: str) -> bool:
    """Compare normalized build-ids, tolerating zero padding to 20 bytes (perf records)."""
    if a == b:
        return True
    if len(a) != len(b):
        return a.rstrip("0") == b.rstrip("0")
    return False


def _note_build_id(buf: bytes, endian: str, align: int) -> str | None:
    pos = 0
    n = len(buf)
    fmt = endian + "III"
    while pos + 12 <= n:
        namesz, descsz, ntype = struct.unpack_from(fmt, buf, pos)
        pos += 12
        name = buf[pos : pos + namesz]
        pos += (namesz + align - 1) & ~(align - 1)
        desc = buf[pos : pos + descsz]
        pos += (descsz + align - 1) & ~(align - 1)
        if ntype == _NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU":
            if descsz and len(desc) == descsz:
                return desc.hex()
            return None
    return None


@dataclass(frozen=True, slots=True)
class ElfHeader:
    """The fields of an ELF file header that locate its program and section header tables."""

    endian: str  # struct byte-order prefix
    is64: bool
    phoff: int
    shoff: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int
    shstrndx: int


def read_elf_header(f: BinaryIO) -> ElfHeader | None:
    """The header of the ELF in `f` (read from its start); None when `f` is not ELF."""
    f.seek(0)
    hdr = f.read(64)
    if len(hdr) < 52 or hdr[:4] != b"\x7fELF":
        return None
    endian = {1: "<", 2: ">"}.get(hdr[5])
    if endian is None:
        return None
    if hdr[4] == 2:
        if len(hdr) < 64:
            return None
        phoff, shoff = struct.unpack_from(endian + "QQ", hdr, 32)
        rest = struct.unpack_from(endian + "HHHHH", hdr, 54)
    elif hdr[4] == 1:
        phoff, shoff = struct.unpack_from(endian + "II", hdr, 28)
        rest = struct.unpack_from(endian + "HHHHH", hdr, 42)
    else:
        return None
    return ElfHeader(endian, hdr[4] == 2, phoff, shoff, *rest)


def raw_section_headers(f: BinaryIO, h: ElfHeader) -> list[tuple[int, ...]]:
    """Every section header of the ELF in `f` as its ten Elf_Shdr fields (sh_name, sh_type,
    sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize); empty
    when the table is missing or implausible."""
    fmt = h.endian + ("IIQQQQIIQQ" if h.is64 else "IIIIIIIIII")
    if not h.shoff or not 0 < h.shnum < _MAX_HEADERS or h.shentsize < struct.calcsize(fmt):
        return []
    f.seek(h.shoff)
    table = f.read(h.shentsize * h.shnum)
    return [struct.unpack_from(fmt, table, i * h.shentsize)
            for i in range(len(table) // h.shentsize)]


def build_id_from_stream(f: BinaryIO) -> str | None:
    """Return the NT_GNU_BUILD_ID of the ELF in `f` as lowercase hex, or None."""
    h = read_elf_header(f)
    if h is None:
        return None
    endian = h.endian
    if h.is64:
        ph_fmt, ph_min = endian + "IIQQQQQQ", 56
    else:
        ph_fmt, ph_min = endian + "IIIIIIII", 32

    regions: list[tuple[int, int, int]] = []  # (offset, size, align)
    if h.phoff and 0 < h.phnum < _MAX_HEADERS and h.phentsize >= ph_min:
        f.seek(h.phoff)
        table = f.read(h.phentsize * h.phnum)
        for i in range(len(table) // h.phentsize):
            fields = struct.unpack_from(ph_fmt, table, i * h.phentsize)
            if h.is64:
                p_type, _flags, p_offset, _va, _pa, p_filesz, _msz, p_align = fields
            else:
                p_type, p_offset, _va, _pa, p_filesz, _msz, _flags, p_align = fields
            if p_type == _PT_NOTE:
                regions.append((p_offset, p_filesz, p_align))
    for offset, size, align in regions:
        bid = _read_notes(f, offset, size, align, endian)
        if bid:
            return bid
    # No PT_NOTE carried it (relocatable objects, odd links): fall back to SHT_NOTE sections.
    for fields in raw_section_headers(f, h):
        if fields[1] == _SHT_NOTE:
            bid = _read_notes(f, fields[4], fields[5], fields[8], endian)
            if bid:
                return bid
    return None


def _read_notes(f: BinaryIO, offset: int, size: int, align: int, endian: str) -> str | None:
    if size <= 0 or size > _MAX_NOTE_BYTES:
        return None
    f.seek(offset)
    buf = f.read(size)
    return _note_build_id(buf, endian, 8 if align == 8 else 4)


def read_build_id(path: str) -> str | None:
    """Hex NT_GNU_BUILD_ID of the ELF file at `path`; None if absent or unreadable."""
    try:
        with open(path, "rb") as f:
            return build_id_from_stream(f)
    except (OSError, struct.error, ValueError, OverflowError):
        return None
