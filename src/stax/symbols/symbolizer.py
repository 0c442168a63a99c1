"""The Symbolizer: maps (mapped file, file offset) and kernel addresses to Resolved frames.
Owns the thread-safe, bounded LRU cache of ElfImages keyed by build-id (or path+mtime+size)."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from stax.binaries import VDSO, Binary, Located, display, locate, vdso_image
from stax.elfread import normalize_build_id

from .debuginfo import DebugInfoFinder
from .demangle import demangle
from .elf import ElfImage, ElfLoadError
from .kernel import KALLSYMS, KernelSymbols
from .perfmap import PerfMaps

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

# _paths cache key: (file name as recorded, build_id, pid, mapping start, kept fd) -> _PathEntry
_PathKey = tuple[bytes, str | None, int, int, int]
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
            "by_unwind_info": 0,
        }

    # ---------------------------------------------------------------------------------------
    # public API

    def resolve_user(
        self, path: str, build_id: str | None, file_offset: int, pid: int | None = None
    ) -> Resolved:
        """Resolve an offset into the file named ``path`` (a ``str`` as ``os.fsdecode`` gives
        it) of process ``pid``; ``resolve_binary`` when the mapping is known."""
        raw = os.fsencode(path)
        return self.resolve_binary(Binary(display(raw), build_id, pid or 0, raw), file_offset,
                                   pid)

    def resolve_binary(self, b: Binary, file_offset: int, pid: int | None = None) -> Resolved:
        """Resolve an offset into recorded binary ``b`` (``pid``: the process whose frame it is,
        for JIT maps; ``b.pid`` by default)."""
        with self._lock:
            self._stats["user_lookups"] += 1
        try:
            return self._resolve_user(b, file_offset, b.pid if pid is None else pid)
        except Exception:  # never let a bad binary take the profiler down
            return self._unresolved(_basename(b.path) or "[unknown]", b.path, file_offset)

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
        raw = os.fsencode(path)
        return self.offset_to_vaddr(Binary(display(raw), build_id, 0, raw), file_offset)

    def offset_to_vaddr(self, b: Binary, file_offset: int) -> int | None:
        """The ELF virtual address of a file offset of recorded binary ``b``."""
        try:
            image = self._image_for(b)
            if image is None:
                return None
            return image.offset_to_vaddr(file_offset)
        except Exception:
            return None

    def segments(self, b: Binary) -> list[tuple[int, int, int]] | None:
        """The loadable segments ``(file offset, file size, vaddr)`` of recorded binary ``b``
        (what maps its file offsets to ELF addresses; archives keep them), or None."""
        try:
            image = self._image_for(b)
        except Exception:
            return None
        return None if image is None else [(o, n, v) for o, n, v, _lo in image.segments]

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

    def _resolve_user(self, b: Binary, file_offset: int, pid: int | None) -> Resolved:
        path = b.path
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
        if path == VDSO:
            binary = VDSO
        elif path.startswith("["):
            return self._unresolved(path, "", file_offset)
        else:
            binary = _basename(path.removesuffix(_DELETED))
        image = self._image_for(b)
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
            return self._by_extent(image, binary, path, vaddr, file_offset)
        name, start, size = hit
        return Resolved(demangle(name), binary, path, start, size, True)

    def _by_extent(self, image: ElfImage, binary: str, path: str, vaddr: int,
                   file_offset: int) -> Resolved:
        """Code no symbol covers: a PLT stub (``NAME@plt``), the entry point (``_start``) or
        the function its FDE spans, named ``binary+0xOFFSET`` after the FDE's start (not a
        symbol: ``resolved`` False with a known extent)."""
        u = image.unnamed(vaddr)
        if u is None:
            return self._unresolved(binary, path, file_offset)
        if u.name is not None:
            return Resolved(u.name, binary, path, u.start, u.size, True)
        sym = image.lookup(u.start)
        if sym is not None:  # past the end of a symbol whose size is too small
            name, start, size = sym
            return Resolved(demangle(name), binary, path, start,
                            max(size, u.start + u.size - start), True)
        off = image.vaddr_to_offset(u.start)
        with self._lock:
            self._stats["by_unwind_info"] += 1
        return Resolved(f"{binary}+0x{u.start if off is None else off:x}", binary, path,
                        u.start, u.size, False)

    def _image_for(self, b: Binary) -> ElfImage | None:
        """The ELF image of recorded binary ``b``, found by ``stax.binaries.locate``."""
        bid = normalize_build_id(b.build_id)
        if b.path == VDSO and bid is None:
            bid = vdso_image()[1]
        now = time.monotonic()
        pin = b.pinned.fd if b.pinned is not None else -1
        pkey: _PathKey = (b.fs_name, bid, b.pid, b.start, pin)
        with self._lock:
            if bid is not None:
                image = self._images.get(("bid", bid))
                if image is not None:
                    self._images.move_to_end(("bid", bid))
                    return image
            entry = self._paths.get(pkey)
            if entry is not None and entry.expires > now:
                if entry.key is None:
                    return None  # a recent failure: not retried yet
                image = self._images.get(entry.key)
                if image is not None:
                    self._images.move_to_end(entry.key)
                    return image
            loc = locate(b)
            if not loc.ok:
                counter = {"mismatch": "build_id_mismatches", "bad": "bad_files",
                           "nofile": "unresolved"}.get(loc.problem, "missing_files")
                if counter != "unresolved":
                    self._fail(pkey, now, counter, loc.reason)
                return None
            return self._open_located(pkey, b, loc, bid, now)

    def _remember(self, pkey: _PathKey, key: _ImageKey | None, ttl: float, now: float,
                  reason: str = "") -> None:
        if len(self._paths) >= _MAX_PATH_ENTRIES:
            self._paths.clear()
        self._paths[pkey] = _PathEntry(key, now + ttl, reason)

    def _fail(self, pkey: _PathKey, now: float, counter: str, reason: str) -> None:
        self._stats[counter] += 1
        self._remember(pkey, None, _NEGATIVE_TTL, now, reason)

    def _open_located(self, pkey: _PathKey, b: Binary, loc: Located, bid: str | None,
                      now: float) -> ElfImage | None:
        """Open the image ``loc`` points at; lock held."""
        if loc.build_id is not None:
            key: _ImageKey = ("bid", loc.build_id)
            ttl = _REVALIDATE_TTL if bid is None else _VERIFIED_TTL
        else:
            try:
                st = os.stat(loc.path) if loc.path is not None else None
            except OSError:
                self._fail(pkey, now, "missing_files", f"{b.path}: vanished")
                return None
            key = (("file", loc.path, st.st_mtime_ns, st.st_size, st.st_ino)
                   if st is not None else ("data", b.path, len(loc.data or b"")))
            ttl = _REVALIDATE_TTL
        image = self._images.get(key)
        if image is None:
            try:
                image = ElfImage.open(loc.path or b.path, loc.build_id, data=loc.data)
            except ElfLoadError as exc:
                self._fail(pkey, now, "bad_files", str(exc))
                return None
            image.finder = self.debug_finder
            if loc.transient:
                image.tables()  # read now: the process (or the run keeping it) may go
            self._stats["binaries_loaded"] += 1
            self._images[key] = image
            while len(self._images) > self._max_binaries:
                self._images.popitem(last=False)
                self._stats["binaries_evicted"] += 1
        else:
            self._images.move_to_end(key)
        self._remember(pkey, key, ttl, now)
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
