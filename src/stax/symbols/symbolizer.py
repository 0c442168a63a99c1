"""The Symbolizer: maps (mapped file, file offset) and kernel addresses to Resolved frames.
Owns the thread-safe, bounded LRU cache of ElfImages keyed by build-id (or path+mtime+size)."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from io import BytesIO

from .debuginfo import DebugInfoFinder
from .demangle import demangle
from .elf import (
    ElfImage,
    ElfLoadError,
    build_id_from_stream,
    normalize_build_id,
    read_build_id,
    same_build_id,
)
from .kernel import KALLSYMS, KernelSymbols
from .perfmap import PerfMaps
from .vdso import VDSO_NAME, read_vdso_image

__all__ = ["Resolved", "Symbolizer", "KERNEL_BINARY", "JIT_BINARY"]

KERNEL_BINARY = "[kernel.kallsyms]"
JIT_BINARY = "[jit]"  # code named by a perf map file (/tmp/perf-PID.map)
_ANON_NAMES = frozenset({"", "//anon", "/anon_hugepage", "[anon]"})
_DELETED = " (deleted)"
_DEFAULT_MAX_BINARIES = 256
_NEGATIVE_TTL = 5.0  # seconds before re-trying a file that was missing / mismatched / broken
_REVALIDATE_TTL = 1.0  # seconds between re-checks of a path resolved without a build-id
_VERIFIED_TTL = 3600.0  # path entries whose build-id was checked against the caller's
_MAX_PATH_ENTRIES = 65536

# _paths cache key: (path, build_id, pid or None) -> _PathEntry
_PathKey = tuple[str, str | None, int | None]
_ImageKey = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Resolved:
    name: str  # demangled function name, or "<binary basename>+0x<hex offset>" when unresolved
    binary: str  # basename of the ELF, "[kernel.kallsyms]", "[modname]", "[vdso]", ...
    path: str  # full path of the binary ("" for kernel)
    func_addr: int  # function start: ELF vaddr (user) or absolute address (kernel); 0 if unknown
    func_size: int  # 0 when unknown
    resolved: bool


@dataclass(slots=True)
class _PathEntry:
    key: _ImageKey | None  # None: the file is unusable (reason says why)
    expires: float
    reason: str = ""


def _basename(path: str) -> str:
    base = os.path.basename(path.rstrip("/"))
    return base or path


class Symbolizer:
    """Thread-safe; caches loaded binaries per build-id (or per path+mtime+size when there is no
    build-id)."""

    def __init__(
        self,
        max_binaries: int = _DEFAULT_MAX_BINARIES,
        kallsyms_path: str = KALLSYMS,
        debug_finder: DebugInfoFinder | None = None,
        perf_maps: PerfMaps | None = None,
    ) -> None:
        self.debug_finder = debug_finder or DebugInfoFinder()
        self.perf_maps = perf_maps or PerfMaps()
        self._lock = threading.RLock()
        self._max_binaries = max(1, max_binaries)
        self._images: OrderedDict[_ImageKey, ElfImage] = OrderedDict()
        self._paths: dict[_PathKey, _PathEntry] = {}
        self._kallsyms_path = kallsyms_path
        self._kernel: KernelSymbols | None = None
        self._vdso: ElfImage | None = None
        self._vdso_tried = False
        self._stats: dict[str, int] = {
            "binaries_loaded": 0,
            "binaries_evicted": 0,
            "user_lookups": 0,
            "kernel_lookups": 0,
            "unresolved": 0,
            "missing_files": 0,
            "bad_files": 0,
            "build_id_mismatches": 0,
            "jit_resolved": 0,
        }

    # ---------------------------------------------------------------------------------------
    # public API

    def resolve_user(
        self, path: str, build_id: str | None, file_offset: int, pid: int | None = None
    ) -> Resolved:
        with self._lock:
            self._stats["user_lookups"] += 1
        try:
            return self._resolve_user(path, build_id, file_offset, pid)
        except Exception:  # never let a bad binary take the profiler down
            return self._unresolved(_basename(path) or "[unknown]", path, file_offset)

    def resolve_kernel(self, addr: int) -> Resolved:
        ks = self._kernel_symbols()
        with self._lock:
            self._stats["kernel_lookups"] += 1
        i = -1 if ks.restricted else ks.lookup(addr)
        if i < 0:
            with self._lock:
                self._stats["unresolved"] += 1
            return Resolved(f"[kernel]+0x{addr:x}", KERNEL_BINARY, "", 0, 0, False)
        module = ks.modules[i]
        binary = f"[{module}]" if module else KERNEL_BINARY
        return Resolved(ks.names[i], binary, "", ks.starts[i], 0, True)

    def file_offset_to_vaddr(self, path: str, build_id: str | None, file_offset: int) -> int | None:
        try:
            image = self._image_for(path, build_id, None)
            if image is None:
                return None
            return image.offset_to_vaddr(file_offset)
        except Exception:
            return None

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._stats)
            out["binaries_cached"] = len(self._images)
            out["symbols_cached"] = sum(img.symbol_count() for img in self._images.values())
            out["kernel_symbols"] = len(self._kernel) if self._kernel is not None else 0
        for name, value in self.debug_finder.stats.items():
            out[f"debug_{name}"] = value
        for name, value in self.debug_finder.debuginfod.stats.items():
            out[f"debuginfod_{name}"] = value
        return out

    def clear(self) -> None:
        """Drop every cached binary and negative-cache entry (kernel table is kept)."""
        with self._lock:
            self._images.clear()
            self._paths.clear()
        self.debug_finder.clear()

    # ---------------------------------------------------------------------------------------
    # user space

    def _unresolved(self, binary: str, path: str, file_offset: int) -> Resolved:
        with self._lock:
            self._stats["unresolved"] += 1
        return Resolved(f"{binary}+0x{file_offset:x}", binary, path, 0, 0, False)

    def _resolve_user(
        self, path: str, build_id: str | None, file_offset: int, pid: int | None
    ) -> Resolved:
        if path in _ANON_NAMES:
            # Anonymous executable memory (JIT code): `file_offset` is the absolute address.
            if pid is not None:
                hit = self.perf_maps.lookup(pid, file_offset)
                if hit is not None:
                    name, start, size, map_path = hit
                    with self._lock:
                        self._stats["jit_resolved"] += 1
                    return Resolved(demangle(name), JIT_BINARY, map_path, start, size, True)
            return self._unresolved("[anon]", "", file_offset)
        if path == VDSO_NAME:
            image = self._vdso_image(build_id)
            binary = VDSO_NAME
        elif path.startswith("["):
            return self._unresolved(path, "", file_offset)
        else:
            binary = _basename(path.removesuffix(_DELETED))
            image = self._image_for(path, build_id, pid)
        if image is None:
            return self._unresolved(binary, path, file_offset)
        vaddr = image.offset_to_vaddr(file_offset)
        if vaddr is None:
            return self._unresolved(binary, path, file_offset)
        was_loaded = image.symbols_loaded
        hit = image.lookup(vaddr)
        if not was_loaded and image.load_error is not None:
            with self._lock:
                self._stats["bad_files"] += 1
        if hit is None:
            return self._unresolved(binary, path, file_offset)
        name, start, size = hit
        return Resolved(demangle(name), binary, path, start, size, True)

    def _vdso_image(self, build_id: str | None) -> ElfImage | None:
        with self._lock:
            if not self._vdso_tried:
                self._vdso_tried = True
                data = read_vdso_image()
                if data is not None:
                    try:
                        bid = build_id_from_stream(BytesIO(data))
                        self._vdso = ElfImage.open(VDSO_NAME, bid, data=data)
                        self._vdso.finder = self.debug_finder
                        self._stats["binaries_loaded"] += 1
                    except (ElfLoadError, ValueError):
                        self._vdso = None
            image = self._vdso
        if image is None:
            return None
        bid = normalize_build_id(build_id)
        if bid and image.build_id and not same_build_id(bid, image.build_id):
            # e.g. a 32-bit process with the compat vDSO: not our image.
            with self._lock:
                self._stats["build_id_mismatches"] += 1
            return None
        return image

    def _image_for(self, path: str, build_id: str | None, pid: int | None) -> ElfImage | None:
        bid = normalize_build_id(build_id)
        deleted = path.endswith(_DELETED)
        if deleted:
            if bid is None:
                return None  # the file on disk (if any) is not the one that was mapped
            path = path[: -len(_DELETED)]
        now = time.monotonic()
        with self._lock:
            if bid is not None:
                image = self._images.get(("bid", bid))
                if image is not None:
                    self._images.move_to_end(("bid", bid))
                    return image
            image, fresh = self._cached_path(path, bid, None, now)
            if image is not None:
                return image
            if not fresh:
                image = self._open_candidate(path, path, bid, None, now)
                if image is not None:
                    return image
            if pid is None:
                return None
            # Containers / chroots: the path is relative to the process's root.
            image, fresh = self._cached_path(path, bid, pid, now)
            if image is not None or fresh:
                return image
            rooted = f"/proc/{pid}/root/{path.lstrip('/')}"
            return self._open_candidate(path, rooted, bid, pid, now)

    def _cached_path(
        self, path: str, bid: str | None, pid: int | None, now: float
    ) -> tuple[ElfImage | None, bool]:
        """Consult the path cache. Returns (image, fresh): fresh=True with image None means a
        recent failure that should not be retried yet."""
        entry = self._paths.get((path, bid, pid))
        if entry is None or entry.expires <= now:
            return None, False
        if entry.key is None:
            return None, True
        image = self._images.get(entry.key)
        if image is None:  # evicted: reload
            return None, False
        self._images.move_to_end(entry.key)
        return image, True

    def _remember(
        self,
        path: str,
        bid: str | None,
        pid: int | None,
        key: _ImageKey | None,
        ttl: float,
        now: float,
        reason: str = "",
    ) -> None:
        if len(self._paths) >= _MAX_PATH_ENTRIES:
            self._paths.clear()
        self._paths[(path, bid, pid)] = _PathEntry(key, now + ttl, reason)

    def _fail(
        self, path: str, bid: str | None, pid: int | None, now: float, counter: str, reason: str
    ) -> None:
        self._stats[counter] += 1
        self._remember(path, bid, pid, None, _NEGATIVE_TTL, now, reason)

    def _open_candidate(
        self, path: str, fs_path: str, bid: str | None, pid: int | None, now: float
    ) -> ElfImage | None:
        """Open `fs_path` (the on-disk location of mapped `path`); lock held."""
        try:
            st = os.stat(fs_path)
        except (OSError, ValueError):
            self._fail(path, bid, pid, now, "missing_files", "missing")
            return None
        if not stat.S_ISREG(st.st_mode):
            self._fail(path, bid, pid, now, "bad_files", "not a regular file")
            return None
        file_bid = normalize_build_id(read_build_id(fs_path))
        if bid is not None and (file_bid is None or not same_build_id(bid, file_bid)):
            # Symbols from a different build would be silently wrong: refuse them.
            self._fail(path, bid, pid, now, "build_id_mismatches", "build-id mismatch")
            return None
        if file_bid is not None:
            key: _ImageKey = ("bid", file_bid)
            ttl = _REVALIDATE_TTL if bid is None else _VERIFIED_TTL
        else:
            key = ("file", fs_path, st.st_mtime_ns, st.st_size, st.st_ino)
            ttl = _REVALIDATE_TTL
        image = self._images.get(key)
        if image is None:
            try:
                image = ElfImage.open(fs_path, file_bid)
            except ElfLoadError as exc:
                self._fail(path, bid, pid, now, "bad_files", str(exc))
                return None
            image.finder = self.debug_finder
            self._stats["binaries_loaded"] += 1
            self._images[key] = image
            while len(self._images) > self._max_binaries:
                self._images.popitem(last=False)
                self._stats["binaries_evicted"] += 1
        else:
            self._images.move_to_end(key)
        self._remember(path, bid, pid, key, ttl, now)
        return image

    # ---------------------------------------------------------------------------------------
    # kernel

    def _kernel_symbols(self) -> KernelSymbols:
        ks = self._kernel
        if ks is not None:
            return ks
        with self._lock:
            if self._kernel is None:
                self._kernel = KernelSymbols.load(self._kallsyms_path)
            return self._kernel
