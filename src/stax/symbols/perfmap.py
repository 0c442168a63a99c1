"""JIT symbols from perf map files (/tmp/perf-PID.map: "START SIZE name" lines in hex), kept per
pid and re-read incrementally when the file grows; later entries win over earlier ones.

JIT runtimes (node --perf-basic-prof, the JVM with perf-map-agent, CPython -X perf, ...) append
a line for each piece of code they generate, before it runs.
"""

from __future__ import annotations

import os
import threading
import time

from .table import SymbolRow, SymbolTable

__all__ = ["PerfMap", "PerfMaps", "perf_map_path"]

_RECHECK = 0.2  # seconds between stat() calls of one map file on lookup misses
_MAX_LINE = 1 << 16
_MAX_PIDS = 1024


def perf_map_path(pid: int, tmp: str = "/tmp") -> str:
    return os.path.join(tmp, f"perf-{pid}.map")


class PerfMap:
    """One map file: rows parsed so far, the byte offset read up to, and a lookup table."""

    __slots__ = ("path", "rows", "offset", "ident", "table", "checked", "_partial")

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[SymbolRow] = []
        self.offset = 0
        self.ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file read
        self.table = SymbolTable()
        self.checked = 0.0
        self._partial = b""

    def refresh(self) -> bool:
        """Read what was appended since the last call (all of it if the file was replaced or
        truncated). True when new entries were added."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        ident = (st.st_dev, st.st_ino)
        if ident != self.ident or st.st_size < self.offset:
            self.rows, self.offset, self.ident, self._partial = [], 0, ident, b""
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
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]  # a line still being written: finish it next time
        if len(self._partial) > _MAX_LINE:
            self._partial = b""
        before = len(self.rows)
        seq = before
        for line in data[:cut].splitlines():
            parts = line.split(None, 2)
            if len(parts) < 3:
                continue
            try:
                start = int(parts[0], 16)
                size = int(parts[1], 16)
            except ValueError:
                continue
            if size <= 0 or start < 0 or start >= 1 << 64:
                continue
            seq += 1
            name = parts[2].strip().decode("utf-8", "replace")
            # SymbolTable keeps the lowest `pref` among entries at one address: the newest.
            self.rows.append((start, -seq, size, name, 0))
        if len(self.rows) == before:
            return False
        self.table = SymbolTable.build(list(self.rows))
        return True

    def lookup(self, addr: int) -> tuple[str, int, int] | None:
        i = self.table.lookup(addr)
        if i < 0:
            return None
        t = self.table
        return t.names[i], t.starts[i], t.sizes[i]


class PerfMaps:
    """Thread-safe per-pid perf maps; a lookup re-reads what was appended to the file (checked at
    most every 0.2 s per pid)."""

    def __init__(self, tmp: str = "/tmp") -> None:
        self.tmp = tmp
        self._lock = threading.Lock()
        self._maps: dict[int, PerfMap] = {}

    def _paths(self, pid: int) -> list[str]:
        own = perf_map_path(pid, self.tmp)
        # a process in another mount namespace writes the file under its own /tmp
        return [own, f"/proc/{pid}/root{own}"]

    def lookup(self, pid: int, addr: int) -> tuple[str, int, int, str] | None:
        """(name, start, size, map path) of the JIT entry covering `addr` in process `pid`."""
        with self._lock:
            pm = self._maps.get(pid)
            if pm is None:
                path = next((p for p in self._paths(pid) if os.path.isfile(p)), None)
                if path is None:
                    return None
                if len(self._maps) >= _MAX_PIDS:
                    self._maps.clear()
                pm = self._maps[pid] = PerfMap(path)
                pm.refresh()
                pm.checked = time.monotonic()
            now = time.monotonic()
            if now - pm.checked >= _RECHECK:
                pm.checked = now
                pm.refresh()
            hit = pm.lookup(addr)
            if hit is None:
                return None
            return hit[0], hit[1], hit[2], pm.path

    def forget(self, pid: int) -> None:
        with self._lock:
            self._maps.pop(pid, None)
