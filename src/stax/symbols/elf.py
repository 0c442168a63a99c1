"""ELF reading for symbolization: PT_LOAD offset->vaddr mapping and lazily-built function
tables from .symtab/.dynsym (plus MiniDebugInfo and separate debug files). Build-id notes and
raw headers are read by stax.elfread."""

from __future__ import annotations

import lzma
import struct
import threading
from io import BytesIO
from typing import BinaryIO

from elftools.elf.elffile import ELFFile

from stax.elfread import build_id_from_stream, same_build_id

from .debuginfo import DebugInfoFinder, default_finder
from .fdenames import Unnamed, UnwindNames
from .table import SymbolRow, SymbolTable

__all__ = ["ElfImage", "ElfLoadError"]

_SHT_SYMTAB = 2
_SHT_DYNSYM = 11
_SHF_EXECINSTR = 0x4
_SHN_LORESERVE = 0xFF00
_STT_NOTYPE = 0
_STT_FUNC = 2
_STT_GNU_IFUNC = 10
_BIND_RANK = {1: 3, 10: 3, 2: 2, 0: 1}  # GLOBAL, GNU_UNIQUE > WEAK > LOCAL
_MAX_SECTIONS = 1 << 20
_PAGE = 4096


class ElfLoadError(Exception):
    """The file is not a usable ELF image (not ELF, truncated, unreadable)."""


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
        "_unwind_names",
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
        self._unwind_names: UnwindNames | None = None

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

    def vaddr_to_offset(self, vaddr: int) -> int | None:
        for off, filesz, seg_vaddr, _lo in self.segments:
            if seg_vaddr <= vaddr < seg_vaddr + filesz:
                return vaddr - seg_vaddr + off
        return None

    def unnamed(self, vaddr: int) -> Unnamed | None:
        """The function holding ``vaddr`` when no symbol does: a PLT stub, the entry point or
        the extent of its FDE (stax.symbols.fdenames)."""
        names = self._unwind_names
        if names is None:
            names = self._unwind_names = UnwindNames(self.path, self.build_id, self._data)
        return names.lookup(vaddr)

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
