"""Finding the ELF file that holds a binary's debug info (symbols, DWARF): the binary itself, the
build-id tree, .gnu_debuglink (CRC-checked) and debuginfod, in that order, with cached answers.

Lookup order of ``find_debug_file(path, build_id)`` (documented in docs/architecture.md):

1. the binary itself, when it carries what was asked for (``.debug_info``/``.debug_line`` for
   ``want="dwarf"``, a ``.symtab`` for ``want="symtab"``);
2. ``<root>/.build-id/xx/rest.debug`` for each debug root (default ``/usr/lib/debug``), its
   build-id checked;
3. ``.gnu_debuglink``: ``DIR/NAME``, ``DIR/.debug/NAME``, ``<root>/DIR/NAME`` where DIR is the
   binary's directory; the file's CRC-32 must equal the one in the link (and its build-id, when
   both have one, must match);
4. debuginfod (``debuginfod.DebuginfodClient``), by build-id.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from typing import Literal

from stax.elfread import (
    build_id_from_stream,
    normalize_build_id,
    raw_section_headers,
    read_elf_header,
    same_build_id,
)

from .debuginfod import DebuginfodClient

__all__ = [
    "DebugInfoFinder",
    "find_debug_file",
    "file_crc32",
    "read_debuglink",
    "DEBUG_ROOTS",
]

DEBUG_ROOTS: tuple[str, ...] = ("/usr/lib/debug",)
_SHT_NOBITS = 8
_POSITIVE_TTL = 300.0
_NEGATIVE_TTL = 30.0
_MAX_ENTRIES = 4096

Want = Literal["dwarf", "symtab", "separate"]


def _sections(path: str) -> tuple[str, dict[str, tuple[int, int, int]]] | None:
    """(endian, {name: (sh_type, sh_offset, sh_size)}) read with struct; None if not ELF."""
    try:
        with open(path, "rb") as f:
            h = read_elf_header(f)
            if h is None:
                return None
            endian = h.endian
            rows = raw_section_headers(f, h)
            if h.shstrndx >= len(rows):
                return endian, {}
            str_off, str_size = rows[h.shstrndx][4], rows[h.shstrndx][5]
            if str_size > 1 << 24:
                return endian, {}
            f.seek(str_off)
            names = f.read(str_size)
    except (OSError, struct.error, ValueError, OverflowError):
        return None
    out: dict[str, tuple[int, int, int]] = {}
    for row in rows:
        end = names.find(b"\0", row[0])
        name = names[row[0] : end if end >= 0 else len(names)].decode("utf-8", "replace")
        out.setdefault(name, (row[1], row[4], row[5]))
    return endian, out


def _has(sections: dict[str, tuple[int, int, int]], *names: str) -> bool:
    return any(n in sections and sections[n][0] != _SHT_NOBITS and sections[n][2] > 0
               for n in names)


def read_debuglink(path: str) -> tuple[str, int] | None:
    """(file name, CRC-32) from the ``.gnu_debuglink`` section of the ELF at `path`."""
    info = _sections(path)
    if info is None:
        return None
    endian, sections = info
    sec = sections.get(".gnu_debuglink")
    if sec is None or sec[0] == _SHT_NOBITS or not 5 <= sec[2] <= 4096:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(sec[1])
            data = f.read(sec[2])
    except OSError:
        return None
    end = data.find(b"\0")
    if end <= 0:
        return None
    crc_at = (end + 4) & ~3
    if crc_at + 4 > len(data):
        return None
    name = data[:end].decode("utf-8", "replace")
    if "/" in name:
        return None
    (crc,) = struct.unpack_from(endian + "I", data, crc_at)
    return name, crc


def file_crc32(path: str) -> int | None:
    """The CRC-32 (IEEE, as .gnu_debuglink uses) of the whole file, or None if unreadable."""
    crc = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
    except OSError:
        return None
    return crc & 0xFFFFFFFF


class DebugInfoFinder:
    """Thread-safe, caching debug-file lookup. One per Symbolizer; a default one backs
    ``find_debug_file``."""

    def __init__(
        self,
        debug_roots: tuple[str, ...] | None = None,
        debuginfod: DebuginfodClient | None = None,
    ) -> None:
        self.debug_roots = debug_roots if debug_roots is not None else DEBUG_ROOTS
        self.debuginfod = debuginfod if debuginfod is not None else DebuginfodClient()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str | None, str, bool], tuple[str | None, float]] = {}
        self.stats = {"lookups": 0, "build_id_dir": 0, "debuglink": 0, "debuglink_crc_mismatch": 0,
                      "debuginfod": 0, "not_found": 0}
        self.last_refusal = ""

    def find(self, path: str, build_id: str | None = None, want: Want = "dwarf",
             fetch: bool = True) -> str | None:
        """Path of the ELF file holding debug info for binary `path` (with `build_id`, read from
        the file when None); None when nothing was found. `want="separate"` skips step 1."""
        bid = normalize_build_id(build_id)
        if bid is None and os.path.isfile(path):
            bid = _build_id_of(path)
        key = (path, bid, want, fetch)
        now = time.monotonic()
        with self._lock:
            self.stats["lookups"] += 1
            hit = self._cache.get(key)
            if hit is not None and hit[1] > now:
                return hit[0]
        found = self._find(path, bid, want, fetch)
        with self._lock:
            if len(self._cache) >= _MAX_ENTRIES:
                self._cache.clear()
            ttl = _POSITIVE_TTL if found else _NEGATIVE_TTL
            self._cache[key] = (found, time.monotonic() + ttl)
            if found is None:
                self.stats["not_found"] += 1
        return found

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _find(self, path: str, bid: str | None, want: Want, fetch: bool) -> str | None:
        info = _sections(path) if os.path.isfile(path) else None
        if info is not None and want != "separate":
            sections = info[1]
            if want == "dwarf" and _has(sections, ".debug_info", ".debug_line"):
                return path
            if want == "symtab" and _has(sections, ".symtab"):
                return path
        if bid is not None:
            for root in self.debug_roots:
                cand = os.path.join(root, ".build-id", bid[:2], bid[2:] + ".debug")
                cand_bid = _build_id_of(cand) if os.path.isfile(cand) else None
                if cand_bid is not None and same_build_id(cand_bid, bid):
                    self._count("build_id_dir")
                    return cand
        if info is not None:
            link = read_debuglink(path)
            if link is not None:
                found = self._follow_debuglink(path, bid, *link)
                if found is not None:
                    self._count("debuglink")
                    return found
        if bid is not None:
            got = self.debuginfod.debuginfo(bid, fetch=fetch)
            if got is not None:
                self._count("debuginfod")
                return got
        return None

    def _follow_debuglink(self, path: str, bid: str | None, name: str, crc: int) -> str | None:
        real = os.path.realpath(path)
        directory = os.path.dirname(real)
        candidates = [os.path.join(directory, name), os.path.join(directory, ".debug", name)]
        candidates += [os.path.join(root, directory.lstrip("/"), name)
                       for root in self.debug_roots]
        for cand in candidates:
            if not os.path.isfile(cand) or os.path.realpath(cand) == real:
                continue
            if file_crc32(cand) != crc:
                self._count("debuglink_crc_mismatch")
                self.last_refusal = f"{cand}: CRC mismatch with {path}"
                continue
            cand_bid = _build_id_of(cand)
            if bid is not None and cand_bid is not None and not same_build_id(cand_bid, bid):
                continue
            return cand
        return None

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _build_id_of(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return normalize_build_id(build_id_from_stream(f))
    except (OSError, struct.error, ValueError, OverflowError):
        return None


_default: DebugInfoFinder | None = None
_default_lock = threading.Lock()


def default_finder() -> DebugInfoFinder:
    global _default
    with _default_lock:
        if _default is None:
            _default = DebugInfoFinder()
        return _default


def find_debug_file(path: str, build_id: str | None = None, want: Want = "dwarf",
                    fetch: bool = True) -> str | None:
    """The ELF file holding debug info for the binary at `path` (build-id optional: read from the
    file when None). `want`: "dwarf" (line tables, e.g. for annotate), "symtab" (function
    symbols) or "separate" (only a separate debug file). `fetch=False` never asks debuginfod
    over the network; an earlier download in its on-disk cache is still used."""
    return default_finder().find(path, build_id, want, fetch)
