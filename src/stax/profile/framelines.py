"""Source file and line of sampled code, for the views (``file``/``line`` on rows and flame
nodes) and the exports (pprof lines, the Firefox Profiler's fileName/line).

A frame is ``(binary, file offset)``: ``lookup`` turns the offset into the ELF virtual address
(through the binary's PT_LOAD segments, as annotate does) and asks the DWARF line table of the
compilation unit covering it (srclines.py, the tables annotate reads). A return address (every
frame but the leaf) is looked up at ``address - 1``, so its line is the call site, as perf and
pprof do. Results are cached per (binary, offset, return?) and computed only when asked; no line
info gives None, never a guess. Separate debug files are taken from disk (build-id tree,
``.gnu_debuglink``, debuginfod's cache) but never fetched over the network from here: a view
must not wait on it.

A Python frame (stax.profile.pymerge) carries its own line: its file is its function's .py
file, its line is in its offset (the line it was running, a caller's the line of the call); a
Python function's first line is its ``addr``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from stax.profile.model import KERNEL_BINARY, UNKNOWN_BINARY, python_line

if TYPE_CHECKING:
    from stax.profile.model import Binary
    from stax.profile.tables import Profile
    from stax.symbols.elf import ElfImage

Source = tuple[str, int]  # (source file, line)
_BinKey = tuple[bytes, str, int]

_MAX_BINARIES = 256
_MAX_LINES = 1 << 16
_MISS_TTL = 30.0  # a binary not found (or without line tables) is looked for again after this

_LOCK = threading.Lock()
# binary -> (ELF image for offset -> address, the file with its line tables, found at)
_BINARIES: OrderedDict[_BinKey, tuple[ElfImage | None, str | None, float]] = OrderedDict()
_LINES: OrderedDict[tuple[_BinKey, int, bool], Source | None] = OrderedDict()


def _key(b: Binary) -> _BinKey:
    # a build-id names the file wherever it is; without one the process that mapped it counts
    return (b.fs_name, b.build_id or "", 0 if b.build_id else b.pid)


def _binary(b: Binary) -> tuple[ElfImage | None, str | None]:
    key = _key(b)
    now = time.monotonic()
    with _LOCK:
        hit = _BINARIES.get(key)
        if hit is not None and (hit[1] is not None or now - hit[2] < _MISS_TTL):
            _BINARIES.move_to_end(key)
            return hit[0], hit[1]
    image: ElfImage | None = None
    debug: str | None = None
    try:
        from stax.binaries import locate
        from stax.profile import srclines
        from stax.symbols.elf import ElfImage

        loc = locate(b)
        if loc.path is not None:  # an in-memory image (the vDSO) has no line tables
            image = ElfImage.open(loc.path, loc.build_id)
            debug = srclines.debug_elf_for(loc.path, loc.build_id or b.build_id, fetch=False)
    except Exception:
        image, debug = None, None
    with _LOCK:
        _BINARIES[key] = (image, debug, now)
        while len(_BINARIES) > _MAX_BINARIES:
            _BINARIES.popitem(last=False)
    return image, debug


def _at(debug: str, vaddr: int, first: bool = False) -> Source | None:
    from stax.profile import srclines

    table = srclines.line_table(debug, vaddr)
    if table is None:
        return None
    return table.lookup_first(vaddr) if first else table.lookup(vaddr)


def lookup(b: Binary, offset: int, ret: bool = False) -> Source | None:
    """(source file, line) of the code at file ``offset`` of binary ``b``; with ``ret`` the
    offset is a return address and the call instruction before it is what is looked up."""
    key = (_key(b), offset, ret)
    with _LOCK:
        if key in _LINES:
            _LINES.move_to_end(key)
            return _LINES[key]
    image, debug = _binary(b)
    src: Source | None = None
    if image is not None and debug is not None:
        vaddr = image.offset_to_vaddr(offset)
        if vaddr is not None:
            try:
                src = _at(debug, vaddr - 1 if ret and vaddr > 0 else vaddr)
            except Exception:
                src = None
    if src is None and debug is None:
        return None  # not cached: the binary is retried after _MISS_TTL
    with _LOCK:
        _LINES[key] = src
        while len(_LINES) > _MAX_LINES:
            _LINES.popitem(last=False)
    return src


def lookup_vaddr(b: Binary, vaddr: int) -> Source | None:
    """(source file, line) at ELF virtual address ``vaddr`` of binary ``b`` (a function's
    entry: its opening line, not the line of code inlined at its first instruction)."""
    key = (_key(b), -1 - vaddr, False)  # negative: never an offset's key
    with _LOCK:
        if key in _LINES:
            _LINES.move_to_end(key)
            return _LINES[key]
    _image, debug = _binary(b)
    if debug is None:
        return None
    try:
        src = _at(debug, vaddr, first=True)
    except Exception:
        src = None
    with _LOCK:
        _LINES[key] = src
        while len(_LINES) > _MAX_LINES:
            _LINES.popitem(last=False)
    return src


class FrameLines:
    """Source lines of one profile's frames and functions, memoised for one view or export."""

    def __init__(self, p: Profile) -> None:
        self.p = p
        self._frames: dict[tuple[int, bool], Source | None] = {}
        self._funcs: dict[int, Source | None] = {}
        self._by_path: dict[str, int] = {}
        self._paths_seen = 0

    def frame(self, fid: int, ret: bool = False) -> Source | None:
        """Of frame ``fid``; ``ret``: it is a caller's frame (a return address)."""
        k = (fid, ret)
        if k in self._frames:
            return self._frames[k]
        p = self.p
        b = p.frame_binary[fid]
        src = None
        func = p.frame_func[fid]
        if func >= 0 and p.funcs[func].python:  # the line is in the frame itself
            line = python_line(p.frame_offset[fid])
            src = (p.funcs[func].path, line) if line > 0 else None
        elif b not in (KERNEL_BINARY, UNKNOWN_BINARY) and 0 <= b < len(p.binaries):
            src = lookup(p.binaries[b], p.frame_offset[fid], ret)
        self._frames[k] = src
        return src

    def func(self, func: int) -> Source | None:
        """The first line of function ``func`` (the line of its entry address)."""
        if func in self._funcs:
            return self._funcs[func]
        p = self.p
        f = p.funcs[func]
        src = None
        if f.python:
            src = (f.path, f.addr) if f.addr > 0 else None
        elif f.resolved and f.path.startswith("/"):
            b = self._binary_of(f.path)
            if b is not None:
                src = lookup_vaddr(p.binaries[b], f.addr)
        self._funcs[func] = src
        return src

    def _binary_of(self, path: str) -> int | None:
        binaries = self.p.binaries
        if self._paths_seen < len(binaries):
            for i in range(self._paths_seen, len(binaries)):
                if i not in (KERNEL_BINARY, UNKNOWN_BINARY):
                    self._by_path.setdefault(binaries[i].path, i)
            self._paths_seen = len(binaries)
        return self._by_path.get(path)


def clear_caches() -> None:
    with _LOCK:
        _BINARIES.clear()
        _LINES.clear()
