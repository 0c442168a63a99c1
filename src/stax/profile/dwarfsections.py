"""A pyelftools DWARFInfo that reads its sections lazily: an uncompressed section is a window
over the file read on demand (only the bytes of the unit asked for are read), a compressed one is
decompressed on first use. Only the sections a unit index, a unit's top DIE and its line program
need are given.
"""

from __future__ import annotations

import os
from typing import Any

# DWARFInfo argument -> section: only what the unit index, a unit's top DIE and its line
# program can need (no location lists, frames, pubnames or type units)
_SECTIONS = {
    "debug_info_sec": ".debug_info", "debug_aranges_sec": ".debug_aranges",
    "debug_abbrev_sec": ".debug_abbrev", "debug_str_sec": ".debug_str",
    "debug_line_sec": ".debug_line", "debug_addr_sec": ".debug_addr",
    "debug_str_offsets_sec": ".debug_str_offsets", "debug_line_str_sec": ".debug_line_str",
    "debug_ranges_sec": ".debug_ranges", "debug_rnglists_sec": ".debug_rnglists",
}


class _Window:
    """A read-only seekable stream over part of a file, read on demand (an uncompressed debug
    section: only the bytes of the unit asked for are ever read)."""

    BLOCK = 1 << 16

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd = fd
        self.start = start
        self.size = size
        self.pos = 0
        self.block = b""  # the bytes at [block_at, block_at + len(block)) of the section
        self.block_at = 0

    def read(self, n: int = -1) -> bytes:
        pos = self.pos
        left = self.size - pos
        if n is None or n < 0 or n > left:
            n = max(left, 0)
        rel = pos - self.block_at
        if not (0 <= rel and rel + n <= len(self.block)):
            # the DWARF decoder reads a few bytes at a time: fetch a block ahead
            self.block = os.pread(self.fd, min(max(n, self.BLOCK), left), self.start + pos)
            self.block_at = pos
            rel = 0
        data = self.block[rel:rel + n]
        self.pos = pos + len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.pos, self.size)[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


class _Lazy:
    """A stream whose bytes (a compressed section, decompressed) are produced on first use."""

    def __init__(self, section: Any) -> None:
        self.section = section
        self.buf: Any = None

    def _io(self) -> Any:
        if self.buf is None:
            from io import BytesIO

            self.buf = BytesIO(self.section.data())
            self.section = None
        return self.buf

    def read(self, n: int = -1) -> bytes:
        return self._io().read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._io().seek(offset, whence)

    def tell(self) -> int:
        return self._io().tell()


def open_dwarf(f: Any) -> Any:
    """A pyelftools DWARFInfo over the open file ``f`` that reads sections lazily."""
    from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(f)
    if elf.has_section(".zdebug_info") or elf["e_type"] == "ET_REL":
        # old GNU compression or relocatable objects: pyelftools' own full reader
        return elf.get_dwarf_info(relocate_dwarf_sections=elf["e_type"] == "ET_REL",
                                  follow_links=False)
    secs: dict[str, Any] = {}
    for arg, name in _SECTIONS.items():
        sec = elf.get_section_by_name(name)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            secs[arg] = None
            continue
        if sec.compressed:
            stream: Any = _Lazy(sec)
        else:
            stream = _Window(f.fileno(), sec["sh_offset"], sec["sh_size"])
        secs[arg] = DebugSectionDescriptor(stream=stream, name=name,
                                           global_offset=sec["sh_offset"],
                                           size=sec.data_size, address=sec["sh_addr"])
    config = DwarfConfig(little_endian=elf.little_endian, default_address_size=elf.elfclass // 8,
                         machine_arch=elf.get_machine_arch())
    return DWARFInfo(config=config, debug_frame_sec=None, eh_frame_sec=None,
                     debug_loc_sec=None, debug_pubtypes_sec=None, debug_pubnames_sec=None,
                     debug_loclists_sec=None, debug_sup_sec=None, gnu_debugaltlink_sec=None,
                     debug_types_sec=None, **secs)
