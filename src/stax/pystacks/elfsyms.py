"""A few named symbols of an ELF file, read straight from its section and symbol tables with
``struct`` (locating an interpreter must be quick: samples taken before it is found get no
Python frames, and pyelftools took ~180 ms over libpython's 2,000 dynamic symbols). 64-bit
little-endian files only; ``None`` for anything else, and the caller uses pyelftools."""

from __future__ import annotations

import struct

__all__ = ["Loads", "read_symbols"]

Loads = list[tuple[int, int, int]]  # PT_LOAD segments: (vaddr, file offset, file size)

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
_ET_EXEC, _PT_LOAD, _SHT_SYMTAB, _SHT_DYNSYM, _SHN_UNDEF = 2, 1, 2, 11, 0
_MAX_TABLE = 256 << 20


def _pread(f: object, off: int, size: int) -> bytes:
    f.seek(off)  # type: ignore[attr-defined]
    data = f.read(size)  # type: ignore[attr-defined]
    if len(data) != size:
        raise ValueError("truncated ELF file")
    return data


def read_symbols(path: str, names: tuple[str, ...]
                 ) -> tuple[dict[str, tuple[int, int]], int, Loads] | None:
    """The (file virtual address, size) of those of ``names`` that are defined in .dynsym,
    else .symtab; 1 if the file is ET_EXEC (fixed addresses); its PT_LOAD segments. None when
    the file is not a 64-bit little-endian ELF; OSError/ValueError when it cannot be read."""
    with open(path, "rb") as f:
        head = f.read(_EHDR.size)
        if len(head) < _EHDR.size or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        (_ident, e_type, _mach, _ver, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
         shentsize, shnum, _shstrndx) = _EHDR.unpack(head)
        loads: Loads = []
        if phnum and phentsize >= _PHDR.size:
            raw = _pread(f, phoff, phentsize * phnum)
            for i in range(phnum):
                p_type, _fl, p_off, p_vaddr, _pa, p_filesz, _memsz, _al = _PHDR.unpack_from(
                    raw, i * phentsize)
                if p_type == _PT_LOAD:
                    loads.append((p_vaddr, p_off, p_filesz))
        sections = []
        if shnum and shentsize >= _SHDR.size:
            raw = _pread(f, shoff, shentsize * shnum)
            sections = [_SHDR.unpack_from(raw, i * shentsize) for i in range(shnum)]
        found: dict[str, tuple[int, int]] = {}
        for want_type in (_SHT_DYNSYM, _SHT_SYMTAB):
            for sec in sections:
                if sec[1] != want_type or len(found) == len(names):
                    continue
                _name, _t, _fl, _addr, off, size, link, _info, _al, entsize = sec
                if not 0 <= link < len(sections) or entsize < _SYM.size or size > _MAX_TABLE:
                    continue
                strtab = sections[link]
                if strtab[5] > _MAX_TABLE:
                    continue
                strings = _pread(f, strtab[4], strtab[5])
                wanted = {}
                for name in names:
                    if name in found:
                        continue
                    needle = name.encode() + b"\0"
                    at = strings.find(needle)
                    while at >= 0:  # a name may also be the tail of a longer one
                        wanted[at] = name
                        at = strings.find(needle, at + 1)
                if not wanted:
                    continue
                table = _pread(f, off, size)
                for i in range(0, size - _SYM.size + 1, entsize):
                    st_name = int.from_bytes(table[i:i + 4], "little")
                    name = wanted.get(st_name)
                    if name is None or name in found:
                        continue
                    _n, _info, _other, shndx, value, sym_size = _SYM.unpack_from(table, i)
                    if shndx != _SHN_UNDEF and value:
                        found[name] = (value, sym_size)
    return found, 1 if e_type == _ET_EXEC else 0, loads
