"""JIT symbols, kept per pid and re-read incrementally when their files grow: perf map files
(/tmp/perf-PID.map, "START SIZE name" lines in hex) and jitdump files (jit-PID.dump, binary).

JIT runtimes (node --perf-basic-prof / --perf-prof, the JVM with perf-map-agent, CPython -X perf,
...) write an entry for each piece of code they generate, before it runs; a later entry wins
over an earlier one at the same address. A jitdump is found through its mapping: the runtime
maps the file executable so that profilers see its path (``PerfMaps.add_jitdump``).
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time

from .table import SymbolRow, SymbolTable

__all__ = ["JitDump", "PerfMap", "PerfMaps", "perf_map_path", "is_jitdump_path"]

_RECHECK = 0.2  # seconds between stat() calls of one file
_RECHECK_MISS = 0.02  # the same, when an address is not found
_MAX_LINE = 1 << 16
_MAX_PIDS = 1024
_JITDUMP_NAME = re.compile(r"(?:^|/)jit-(\d+)\.dump$")
_JITDUMP_MAGIC = 0x4A695444  # "JiTD" as written by a little- or big-endian host
_JIT_CODE_LOAD = 0
_JIT_CODE_MOVE = 1
_JIT_CODE_CLOSE = 3
_MAX_RECORD = 1 << 28


def perf_map_path(pid: int, tmp: str = "/tmp") -> str:
    return os.path.join(tmp, f"perf-{pid}.map")


def is_jitdump_path(path: str) -> bool:
    return _JITDUMP_NAME.search(path) is not None


class _Source:
    """A file read incrementally: what was parsed, where reading stopped, a lookup table."""

    __slots__ = ("path", "rows", "offset", "ident", "table", "checked", "_partial")

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[SymbolRow] = []
        self.offset = 0
        self.ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file read
        self.table = SymbolTable()
        self.checked = 0.0
        self._partial = b""

    def _reset(self) -> None:
        self.rows, self.offset, self._partial = [], 0, b""

    def refresh(self) -> bool:
        """Read what was appended since the last call (all of it if the file was replaced or
        truncated). True when new entries were added."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        ident = (st.st_dev, st.st_ino)
        if ident != self.ident or st.st_size < self.offset:
            self._reset()
            self.ident = ident
        if st.st_size == self.offset:
            return False
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(st.st_size - self.offset)
        except OSError:
            return False
        self.offset += len(data)
        data = self._partial + data
        before = len(self.rows)
        used = self._parse(data)
        self._partial = data[used:]  # an entry still being written: finish it next time
        if len(self.rows) == before:
            return False
        self.table = SymbolTable.build(list(self.rows))
        return True

    def _parse(self, data: bytes) -> int:
        """Append rows for the complete entries in `data`; return how many bytes were used."""
        raise NotImplementedError

    def _add(self, start: int, size: int, name: str) -> None:
        if size <= 0 or start < 0 or start + size > 1 << 64 or not name:
            return
        # SymbolTable keeps the lowest `pref` among entries at one address: the newest.
        self.rows.append((start, -len(self.rows) - 1, size, name, 0))

    def lookup(self, addr: int) -> tuple[str, int, int] | None:
        i = self.table.lookup(addr)
        if i < 0:
            return None
        t = self.table
        return t.names[i], t.starts[i], t.sizes[i]


class PerfMap(_Source):
    """/tmp/perf-PID.map: one "START SIZE name" line (hex) per piece of code."""

    __slots__ = ()

    def _parse(self, data: bytes) -> int:
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > _MAX_LINE:
            return len(data)  # not a line file: give up on this chunk
        for line in data[:cut].splitlines():
            parts = line.split(None, 2)
            if len(parts) < 3:
                continue
            try:
                start = int(parts[0], 16)
                size = int(parts[1], 16)
            except ValueError:
                continue
            self._add(start, size, parts[2].strip().decode("utf-8", "replace"))
        return cut


class JitDump(_Source):
    """jit-PID.dump: a file header, then records (JIT_CODE_LOAD names code, JIT_CODE_MOVE moves
    it); debug, unwinding and unknown records are skipped."""

    __slots__ = ("_endian", "_by_index", "_closed")

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._endian = ""
        self._by_index: dict[int, str] = {}
        self._closed = False

    def _reset(self) -> None:
        super()._reset()
        self._endian, self._by_index, self._closed = "", {}, False

    def _parse(self, data: bytes) -> int:
        pos = 0
        if not self._endian:
            if len(data) < 40:
                return 0
            for endian in ("<", ">"):
                if struct.unpack_from(endian + "I", data, 0)[0] == _JITDUMP_MAGIC:
                    self._endian = endian
                    break
            else:
                self._closed = True
                return len(data)
            pos = struct.unpack_from(self._endian + "I", data, 8)[0]  # total header size
            if pos < 40:
                self._closed = True
                return len(data)
        e = self._endian
        n = len(data)
        while not self._closed and pos + 16 <= n:
            rid, size = struct.unpack_from(e + "II", data, pos)
            if size < 16 or size > _MAX_RECORD:
                self._closed = True  # corrupt: stop reading this file
                return n
            if pos + size > n:
                break
            body = pos + 16
            if rid == _JIT_CODE_LOAD and size >= 16 + 40:
                _pid, _tid, _vma, addr, csize, index = struct.unpack_from(e + "IIQQQQ", data, body)
                end = data.find(b"\0", body + 40, pos + size)
                if end >= 0:
                    name = data[body + 40 : end].decode("utf-8", "replace")
                    self._by_index[index] = name
                    self._add(addr, csize, name)
            elif rid == _JIT_CODE_MOVE and size >= 16 + 48:
                _pid, _tid, _vma, _old, new, csize, index = struct.unpack_from(
                    e + "IIQQQQQ", data, body
                )
                name = self._by_index.get(index)
                if name is not None:
                    self._add(new, csize, name)
            elif rid == _JIT_CODE_CLOSE:
                self._closed = True
            pos += size
        return n if self._closed else pos


def _trusted(path: str, pid: int) -> bool:
    """A regular file owned by us, by root or by the process's owner: /tmp is world-writable,
    and names planted by another user must not be shown as the target's."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not os.path.isfile(path):
        return False
    if st.st_uid in (0, os.geteuid()):
        return True
    try:
        return os.stat(f"/proc/{pid}").st_uid == st.st_uid
    except OSError:
        return False


class PerfMaps:
    """Thread-safe per-pid JIT symbol sources; a lookup re-reads what was appended to the files
    (checked at most every 0.2 s per file, or 0.02 s when the address was not found)."""

    def __init__(self, tmp: str = "/tmp") -> None:
        self.tmp = tmp
        self._lock = threading.Lock()
        self._maps: dict[int, PerfMap] = {}
        self._dumps: dict[int, list[JitDump]] = {}

    def _paths(self, pid: int) -> list[str]:
        own = perf_map_path(pid, self.tmp)
        # a process in another mount namespace writes the file under its own /tmp
        return [own, f"/proc/{pid}/root{own}"]

    def add_jitdump(self, pid: int, path: str) -> None:
        """Use the jitdump file at `path` (seen mapped by process `pid`) for its JIT code."""
        with self._lock:
            dumps = self._dumps.setdefault(pid, [])
            if any(d.path == path for d in dumps):
                return
            if len(self._dumps) >= _MAX_PIDS:
                self._dumps.clear()
                dumps = self._dumps[pid] = []
            dumps.append(JitDump(path))

    def _sources(self, pid: int) -> list[_Source]:
        out: list[_Source] = []
        pm = self._maps.get(pid)
        if pm is None:
            path = next((p for p in self._paths(pid) if _trusted(p, pid)), None)
            if path is not None:
                if len(self._maps) >= _MAX_PIDS:
                    self._maps.clear()
                pm = self._maps[pid] = PerfMap(path)
        if pm is not None:
            out.append(pm)
        out.extend(self._dumps.get(pid, ()))
        return out

    def lookup(self, pid: int, addr: int) -> tuple[str, int, int, str] | None:
        """(name, start, size, file path) of the JIT entry covering `addr` in process `pid`."""
        with self._lock:
            now = time.monotonic()
            sources = self._sources(pid)
            for src in sources:
                if now - src.checked >= _RECHECK:
                    src.checked = now
                    src.refresh()
                hit = src.lookup(addr)
                if hit is not None:
                    return hit[0], hit[1], hit[2], src.path
            # A miss is memoised by the caller: first make sure nothing was appended meanwhile.
            for src in sources:
                if now - src.checked >= _RECHECK_MISS:
                    src.checked = now
                    if src.refresh() and (hit := src.lookup(addr)) is not None:
                        return hit[0], hit[1], hit[2], src.path
            return None

    def forget(self, pid: int) -> None:
        with self._lock:
            self._maps.pop(pid, None)
            self._dumps.pop(pid, None)
