"""ELF reading for symbolization: build-id notes, PT_LOAD offset->vaddr mapping, and
lazily-built function tables from .symtab/.dynsym (plus MiniDebugInfo and separate debug files)."""

from __future__ import annotations

import lzma
import struct
import threading
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, BinaryIO

from elftools.elf.elffile import ELFFile

from .table import SymbolRow, SymbolTable

if TYPE_CHECKING:
    from .debuginfo import DebugInfoFinder

__all__ = [
    "ElfHeader",
    "ElfImage",
    "ElfLoadError",
    "build_id_from_stream",
    "normalize_build_id",
    "raw_section_headers",
    "read_build_id",
    "read_elf_header",
    "same_build_id",
]

_PT_LOAD = 1
_PT_NOTE = 4
_SHT_SYMTAB = 2
_SHT_NOTE = 7
_SHT_DYNSYM = 11
_NT_GNU_BUILD_ID = 3
_SHF_EXECINSTR = 0x4
_SHN_LORESERVE = 0xFF00
_STT_NOTYPE = 0
_STT_FUNC = 2
_STT_GNU_IFUNC = 10
_BIND_RANK = {1: 3, 10: 3, 2: 2, 0: 1}  # GLOBAL, GNU_UNIQUE > WEAK > LOCAL
_MAX_NOTE_BYTES = 1 << 20
_MAX_HEADERS = 1 << 16
_MAX_SECTIONS = 1 << 20
_PAGE = 4096


class ElfLoadError(Exception):
    """The file is not a usable ELF image (not ELF, truncated, unreadable)."""


# --------------------------------------------------------------------------------------------
# Build-id: a tiny hand-rolled header walk so that only the ELF header, program headers and
# note payloads are read.


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


# --------------------------------------------------------------------------------------------
# Symbol tables.


def _section_headers(elf: ELFFile) -> list[tuple[int, int, int, int, int]]:
    """(sh_name, sh_type, sh_flags, sh_addr, sh_size) of every section. Read with struct from
    the raw header table: pyelftools would also parse e.g. the GNU hash table of each section."""
    shoff = elf["e_shoff"]
    count = elf.num_sections()
    entsize = elf["e_shentsize"]
    endian = "<" if elf.little_endian else ">"
    fmt = endian + ("IIQQQQIIQQ" if elf.elfclass == 64 else "IIIIIIIIII")
    if not shoff or count <= 0 or count > _MAX_SECTIONS or entsize < struct.calcsize(fmt):
        return []
    elf.stream.seek(shoff)
    table = elf.stream.read(entsize * count)
    out = []
    for i in range(len(table) // entsize):
        f = struct.unpack_from(fmt, table, i * entsize)
        out.append((f[0], f[1], f[2], f[3], f[5]))
    return out


def _find_section(
    elf: ELFFile, headers: list[tuple[int, int, int, int, int]], name: str
) -> int | None:
    try:
        shstrtab = elf.get_section(elf.get_shstrndx()).data()
    except Exception:
        return None
    wanted = name.encode() + b"\0"
    for idx, (name_off, *_rest) in enumerate(headers):
        if shstrtab[name_off : name_off + len(wanted)] == wanted:
            return idx
    return None


def _collect_symbols(elf: ELFFile, funcs: list[SymbolRow], notype: list[SymbolRow]) -> bool:
    """Append function rows from every SHT_SYMTAB/SHT_DYNSYM of `elf`; True if a .symtab was
    present. Individual broken sections are skipped."""
    headers = _section_headers(elf)
    exec_ends: dict[int, int] = {}
    symtabs: list[int] = []
    for idx, (_name, sh_type, sh_flags, sh_addr, sh_size) in enumerate(headers):
        if sh_flags & _SHF_EXECINSTR:
            exec_ends[idx] = sh_addr + sh_size
        if sh_type == _SHT_SYMTAB or sh_type == _SHT_DYNSYM:
            symtabs.append(idx)
    has_symtab = False
    thumb = elf["e_machine"] == "EM_ARM"
    endian = "<" if elf.little_endian else ">"
    is64 = elf.elfclass == 64
    fmt = endian + ("IBBHQQ" if is64 else "IIIBBH")
    entsize = struct.calcsize(fmt)
    bind_rank = _BIND_RANK
    for idx in symtabs:
        if headers[idx][1] == _SHT_SYMTAB:
            has_symtab = True
        try:
            sec = elf.get_section(idx)
            if sec["sh_entsize"] not in (0, entsize):
                continue
            data = sec.data()
            strtab = elf.get_section(sec["sh_link"]).data()
        except Exception:
            continue
        data = data[: len(data) - len(data) % entsize]
        for entry in struct.iter_unpack(fmt, data):
            if is64:
                st_name, st_info, _other, shndx, value, size = entry
            else:
                st_name, value, size, st_info, _other, shndx = entry
            if shndx == 0 or shndx >= _SHN_LORESERVE:
                continue
            typ = st_info & 0xF
            if typ == _STT_FUNC or typ == _STT_GNU_IFUNC:
                target = funcs
            elif typ == _STT_NOTYPE and shndx in exec_ends:
                target = notype
            else:
                continue
            end = strtab.find(b"\0", st_name)
            raw = strtab[st_name:end] if end >= 0 else strtab[st_name:]
            if not raw:
                continue
            if target is notype and (raw[:1] == b"$" or raw[:2] == b".L"):
                continue  # ARM/AArch64 mapping symbols and assembler-local labels
            name = raw.decode("utf-8", "replace")
            versioned = "@" in name
            if versioned:
                name = name.split("@", 1)[0]
                if not name:
                    continue
            if thumb:
                value &= ~1
            # Alias preference, lower sorts first: binding, unversioned, sized, fewer leading
            # underscores, shorter name.
            rank = bind_rank.get(st_info >> 4, 0) * 4 + (0 if versioned else 2) + (size > 0)
            length = len(name)
            leading = length - len(name.lstrip("_")) if name[0] == "_" else 0
            pref = ((15 - rank) << 16) | (leading << 8 if leading < 256 else 0xFF00)
            pref |= length if length < 256 else 255
            target.append((value, pref, size, name, exec_ends.get(shndx, 0)))
    return has_symtab


def _collect_minidebuginfo(elf: ELFFile, funcs: list[SymbolRow], notype: list[SymbolRow]) -> bool:
    """Fedora-style MiniDebugInfo: an xz-compressed ELF with a .symtab in .gnu_debugdata."""
    try:
        idx = _find_section(elf, _section_headers(elf), ".gnu_debugdata")
        if idx is None:
            return False
        inner = ELFFile(BytesIO(lzma.decompress(elf.get_section(idx).data())))
        return _collect_symbols(inner, funcs, notype)
    except Exception:
        return False


def _collect_debug_file(
    path: str,
    build_id: str | None,
    finder: DebugInfoFinder | None,
    funcs: list[SymbolRow],
    notype: list[SymbolRow],
) -> bool:
    """Symbols from a separate debug file (build-id tree, .gnu_debuglink, debuginfod)."""
    from .debuginfo import default_finder

    debug_path = (finder or default_finder()).find(path, build_id, "separate")
    if debug_path is None:
        return False
    try:
        with open(debug_path, "rb") as f:
            return _collect_symbols(ELFFile(f), funcs, notype)
    except Exception:
        return False


class ElfImage:
    """One ELF binary: PT_LOAD segments (read at open) and function tables (read on demand)."""

    __slots__ = (
        "path",
        "build_id",
        "segments",
        "load_error",
        "_data",
        "_lock",
        "_funcs",
        "_notype",
        "finder",
    )

    def __init__(
        self,
        path: str,
        build_id: str | None,
        segments: list[tuple[int, int, int, int]],
        data: bytes | None = None,
    ) -> None:
        self.path = path
        self.build_id = build_id
        # (p_offset, p_filesz, p_vaddr, page_lo) sorted by offset
        self.segments = segments
        self.load_error: str | None = None
        self._data = data
        self._lock = threading.Lock()
        self._funcs: SymbolTable | None = None
        self._notype: SymbolTable | None = None
        self.finder: DebugInfoFinder | None = None  # where separate debug files are looked up

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, build_id: str | None, data: bytes | None = None) -> ElfImage:
        """Parse the ELF header and program headers only. Raises ElfLoadError."""
        try:
            stream: BinaryIO = BytesIO(data) if data is not None else open(path, "rb")
        except OSError as exc:
            raise ElfLoadError(f"{path}: {exc.strerror or exc}") from exc
        try:
            with stream:
                elf = ELFFile(stream)
                segments = []
                for seg in elf.iter_segments():
                    if seg["p_type"] != "PT_LOAD":
                        continue
                    off = seg["p_offset"]
                    segments.append((off, seg["p_filesz"], seg["p_vaddr"], off & ~(_PAGE - 1)))
        except Exception as exc:  # pyelftools raises a variety of errors on bad input
            raise ElfLoadError(f"{path}: {exc}") from exc
        segments.sort()
        return cls(path, build_id, segments, data)

    # -- queries -----------------------------------------------------------------------------
    def offset_to_vaddr(self, file_offset: int) -> int | None:
        for off, filesz, vaddr, _lo in self.segments:
            if off <= file_offset < off + filesz:
                return file_offset - off + vaddr
        # Page-granular slack: the kernel maps whole pages, so bytes just before/after a
        # segment's file range can be executed through the same mapping.
        for off, filesz, vaddr, lo in self.segments:
            hi = (off + filesz + _PAGE - 1) & ~(_PAGE - 1)
            if lo <= file_offset < hi:
                return file_offset - off + vaddr
        return None

    def tables(self) -> tuple[SymbolTable, SymbolTable]:
        funcs, notype = self._funcs, self._notype
        if funcs is not None and notype is not None:
            return funcs, notype
        with self._lock:
            if self._funcs is None or self._notype is None:
                self._funcs, self._notype = self._load_tables()
            return self._funcs, self._notype

    @property
    def symbols_loaded(self) -> bool:
        return self._funcs is not None

    def symbol_count(self) -> int:
        funcs, notype = self._funcs, self._notype
        return (len(funcs) if funcs else 0) + (len(notype) if notype else 0)

    def lookup(self, vaddr: int) -> tuple[str, int, int] | None:
        """(raw name, start vaddr, size) of the function containing `vaddr`."""
        funcs, notype = self.tables()
        i = funcs.lookup(vaddr)
        if i >= 0:
            return funcs.names[i], funcs.starts[i], funcs.sizes[i]
        i = notype.lookup(vaddr)
        if i >= 0:
            return notype.names[i], notype.starts[i], notype.sizes[i]
        return None

    # -- loading -----------------------------------------------------------------------------
    def _load_tables(self) -> tuple[SymbolTable, SymbolTable]:
        funcs: list[SymbolRow] = []
        notype: list[SymbolRow] = []
        try:
            stream: BinaryIO = (
                BytesIO(self._data) if self._data is not None else open(self.path, "rb")
            )
        except OSError as exc:
            self.load_error = f"{self.path}: {exc.strerror or exc}"
            return SymbolTable(), SymbolTable()
        try:
            with stream:
                if self._data is None:
                    # The file may have been replaced since the headers were read.
                    current = build_id_from_stream(stream)
                    if (current or self.build_id) and not (
                        current and self.build_id and same_build_id(current, self.build_id)
                    ):
                        self.load_error = f"{self.path}: build-id changed on disk"
                        return SymbolTable(), SymbolTable()
                elf = ELFFile(stream)
                has_symtab = _collect_symbols(elf, funcs, notype)
                if not has_symtab and not _collect_debug_file(
                    self.path, self.build_id, self.finder, funcs, notype
                ):
                    _collect_minidebuginfo(elf, funcs, notype)
        except Exception as exc:
            # Keep whatever was collected before the damage was hit.
            self.load_error = f"{self.path}: {exc}"
        func_starts = sorted({row[0] for row in funcs})
        label_starts = sorted({row[0] for row in notype})
        # Size-0 functions end at the next label and vice versa.
        return SymbolTable.build(funcs, label_starts), SymbolTable.build(notype, func_starts)
