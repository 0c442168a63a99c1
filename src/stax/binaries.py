"""Where the bytes of a recorded binary are read: the one rule used by symbols, DWARF unwinding
and annotate.

A mapped file is recorded as a ``Binary``: the name the kernel gave it (bytes: Linux file names
need not be UTF-8, and a deleted file's name ends in `` (deleted)``), maybe its build-id, a
process that mapped it and the address range of that mapping. ``locate(binary)`` answers with a
``Located``: a file to open (a ``str`` from ``os.fsdecode``, so any byte name opens), or the image
itself (the vDSO), or a problem and a reason. The order:

1. ``[vdso]``: this process's own vDSO image (the kernel maps one image into every same-ABI
   process), if its build-id is the recorded one. Other ``[...]`` names and anonymous memory
   have no file.
2. A descriptor kept open since the mapping was first seen (``Pins``, below).
3. While the process lives: ``/proc/PID/root/PATH`` (the path as the process sees it:
   containers, chroots), unless the file was deleted; then ``/proc/PID/map_files/START-END``
   (the very file that is mapped, deleted or replaced; needs CAP_SYS_ADMIN or
   CAP_CHECKPOINT_RESTORE) and ``/proc/PID/exe`` when it names the same file (readable by the
   process's owner).
4. ``PATH`` itself (the process is gone, or its ``/proc`` entry is not readable).

A candidate must be a regular file and, when a build-id was recorded, carry that build-id
(symbols or CFI of another build would be silently wrong). A deleted file is accepted under its
old name only when the recorded build-id proves it is the same build. ``map_files`` and ``exe``
are accepted only when their link still names the recorded file.

Deleted binaries outlive their process only through a descriptor: ``Pins.consider`` runs when a
mapping's binary is first seen (record time, or the /proc scan of an attach) and, when the file
is only reachable through ``map_files``/``exe``, opens it and keeps the descriptor with the
``Binary`` (at most ``MAX_PINNED`` per run and ``MAX_PINNED_TOTAL`` in the process; closed
when the run is dropped). Symbols, unwinding
and annotate then read ``/proc/self/fd/N`` for as long as the run is in the server.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Literal

from stax.elfread import build_id_from_stream, normalize_build_id, same_build_id

__all__ = ["Binary", "Located", "Pinned", "Pins", "display", "files_report", "locate",
           "mapped_build_id", "read_vdso_image", "vdso_image"]

DELETED = b" (deleted)"
VDSO = "[vdso]"
MAX_PINNED = 64  # descriptors of deleted/replaced binaries one run keeps open
MAX_PINNED_TOTAL = 256  # ... all runs of this process together
_MAX_VDSO = 1 << 20
_open_pins = 0
_pins_lock = threading.Lock()

Problem = Literal["", "missing", "mismatch", "bad", "nofile"]


def display(raw: bytes) -> str:
    """A file name as text: bytes that are not UTF-8 shown as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


class Pinned:
    """An open descriptor of a binary's file, kept so that it can be read after the file was
    deleted and its process exited. Closed when garbage-collected (with its run)."""

    __slots__ = ("fd", "origin", "build_id")

    def __init__(self, fd: int, origin: str, build_id: str | None) -> None:
        global _open_pins
        self.fd = fd
        self.origin = origin  # where it was opened from, for messages
        self.build_id = build_id
        with _pins_lock:
            _open_pins += 1

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        global _open_pins
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with _pins_lock:
                _open_pins -= 1
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


@dataclass(slots=True)
class Binary:
    path: str  # the recorded name for display (non-UTF-8 bytes escaped), " (deleted)" kept
    build_id: str | None
    pid: int  # a process that mapped it (for /proc/PID/root, map_files, exe)
    raw: bytes = b""  # the name exactly as the kernel gave it; b"": path's own bytes
    start: int = 0  # that process's mapping of it (for /proc/PID/map_files/START-END)
    end: int = 0
    pinned: Pinned | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        if self.path.startswith("["):
            return self.path
        return self.path.rsplit("/", 1)[-1] or self.path

    @property
    def fs_name(self) -> bytes:
        return self.raw or os.fsencode(self.path)


@dataclass(frozen=True, slots=True)
class Located:
    path: str | None = None  # the file to open (os.fsdecode form); None with data / failure
    data: bytes | None = None  # the image itself (the vDSO)
    build_id: str | None = None  # of what was found
    how: str = ""  # "pinned", "root", "map_files", "exe", "path", "vdso"
    label: str = ""  # where it was read from, for display
    problem: Problem = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.path is not None or self.data is not None

    @property
    def transient(self) -> bool:
        """Readable now, maybe not later (the process may exit, the run be dropped): read what
        is needed at once."""
        return self.how in ("pinned", "map_files", "exe")


# --- the vDSO ---------------------------------------------------------------------------------
# Copied out of this process's own memory: the kernel maps the same image into every (same-ABI)
# process.


def _vdso_range(maps_path: str) -> tuple[int, int] | None:
    with open(maps_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.rstrip().endswith(VDSO):
                lo, _, hi = line.split(None, 1)[0].partition("-")
                return int(lo, 16), int(hi, 16)
    return None


def read_vdso_image(
    maps_path: str = "/proc/self/maps", mem_path: str = "/proc/self/mem"
) -> bytes | None:
    """Bytes of this process's vDSO mapping, or None when there is none or it is unreadable."""
    try:
        rng = _vdso_range(maps_path)
        if rng is None:
            return None
        lo, hi = rng
        size = hi - lo
        if size <= 0 or size > _MAX_VDSO:
            return None
        fd = os.open(mem_path, os.O_RDONLY)
        try:
            data = os.pread(fd, size, lo)
        finally:
            os.close(fd)
    except (OSError, ValueError, OverflowError):
        return None
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return None
    return data


_vdso_lock = threading.Lock()
_vdso: tuple[bytes | None, str | None] | None = None


def vdso_image() -> tuple[bytes | None, str | None]:
    """(image, build-id) of this process's vDSO, read once."""
    global _vdso
    with _vdso_lock:
        if _vdso is None:
            data = read_vdso_image()
            bid = None
            if data is not None:
                try:
                    bid = normalize_build_id(build_id_from_stream(BytesIO(data)))
                except Exception:
                    bid = None
            _vdso = (data, bid)
        return _vdso


# --- candidates --------------------------------------------------------------------------------


def _norm(bid: str | None) -> str | None:
    return normalize_build_id(bid)


def _same(a: str, b: str) -> bool:
    return same_build_id(a, b)


def _file_build_id(fs: bytes | str) -> tuple[Problem, str | None, str]:
    """("", build-id, "") for a readable regular file, else (problem, None, why)."""
    try:
        # O_NONBLOCK: a FIFO put where a deleted file was must not hang the reader
        fd = os.open(fs, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "bad", None, "not a regular file"
            try:
                return "", _norm(build_id_from_stream(f)), ""
            except Exception:
                return "", None, ""
    except FileNotFoundError:
        return "missing", None, "not found"
    except (OSError, ValueError) as e:
        return "missing", None, getattr(e, "strerror", None) or str(e)


def _alive(pid: int) -> bool:
    return pid > 0 and os.path.exists(f"/proc/{pid}")


def _shares_our_root(proc: bytes) -> bool:
    """Whether the process sees the file system from our root (no container, no chroot)."""
    try:
        theirs, ours = os.stat(proc + b"/root"), os.stat("/")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def _link_names(link: bytes, raw: bytes) -> bool:
    """Whether a /proc magic link still names the recorded file (deleted or not since). The
    link is read from our root, the name was recorded from the process's: a process in a
    container shows its files under a longer path here."""
    try:
        target = os.readlink(link).removesuffix(DELETED)
    except OSError:
        return False
    name = raw.removesuffix(DELETED)
    return target == name or (target.endswith(name) and name.startswith(b"/"))


def _candidates(b: Binary) -> Iterator[tuple[str, bytes]]:
    """(how, file name) in the order they are tried; the /proc links only when they still
    name the recorded file."""
    raw = b.fs_name
    deleted = raw.endswith(DELETED)
    name = raw.removesuffix(DELETED)
    path_tried = False
    if _alive(b.pid):
        proc = b"/proc/%d" % b.pid
        if not deleted:
            if _shares_our_root(proc):
                # the same file by its own name, a name that outlives the process (a
                # /proc/PID/root name read after the exit fails)
                path_tried = True
                yield "path", name
            else:
                yield "root", proc + b"/root" + name
        if b.end > b.start:
            mf = proc + b"/map_files/%x-%x" % (b.start, b.end)
            if _link_names(mf, raw):
                yield "map_files", mf
        if _link_names(proc + b"/exe", raw):
            yield "exe", proc + b"/exe"
        if deleted:  # the old name last: it may be another file by now
            yield "root", proc + b"/root" + name
    if not path_tried:
        yield "path", name


def locate(b: Binary) -> Located:
    """Where to read the bytes of binary ``b`` now (see the module docstring for the rule)."""
    want = _norm(b.build_id)
    raw = b.fs_name
    shown = display(raw)
    if b.path == VDSO or raw == VDSO.encode():
        data, have = vdso_image()
        if data is None:
            return Located(problem="missing", reason="[vdso]: the vDSO image is not readable")
        if want and not (have and _same(want, have)):
            return Located(problem="mismatch",
                           reason="[vdso]: this kernel's vDSO is not the one recorded")
        return Located(data=data, build_id=have, how="vdso", label=VDSO)
    if not raw.startswith(b"/"):
        return Located(problem="nofile", reason=f"{shown or 'anonymous memory'}: no file")
    pin = b.pinned
    if pin is not None and pin.fd >= 0:
        return Located(path=pin.path, build_id=pin.build_id, how="pinned",
                       label=f"{pin.origin} (kept open since recording)")
    deleted = raw.endswith(DELETED)
    seen: list[tuple[str, Problem, str]] = []
    for how, fs in _candidates(b):
        problem, have, why = _file_build_id(fs)
        if not problem:
            if want and not (have and _same(want, have)):
                problem, why = "mismatch", "build-id differs"
            elif deleted and how in ("root", "path") and not want:
                problem, why = "mismatch", "deleted, and no build-id to prove the file is the same"
        if not problem:
            return Located(path=os.fsdecode(fs), build_id=have, how=how, label=display(fs))
        seen.append((how, problem, why))
    return _failure(b, shown, deleted, seen)


def _failure(b: Binary, shown: str, deleted: bool,
             seen: list[tuple[str, Problem, str]]) -> Located:
    problems = {p for _h, p, _w in seen}
    problem: Problem = ("mismatch" if "mismatch" in problems
                        else "bad" if "bad" in problems else "missing")
    if deleted:
        if not _alive(b.pid):
            why = f"deleted, and its process {b.pid} is gone (nothing kept it open)"
        else:
            why = (f"deleted, and /proc/{b.pid}/map_files is not readable (it needs "
                   "CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)")
        if problem == "mismatch":
            why += "; the file now at its name is another build"
    elif problem == "mismatch":
        why = "the file on disk is not the binary that was recorded (build-id differs)"
    else:
        why = "; ".join(dict.fromkeys(w for _h, _p, w in seen)) or "not found"
        why += " on disk" if why == "not found" else ""
        if not _alive(b.pid) and b.pid > 0:
            why += f", and its process {b.pid} is gone"
    return Located(problem=problem, reason=f"{shown}: {why}")


def mapped_build_id(pid: int, raw: bytes, start: int, end: int) -> str | None:
    """Build-id of the file mapped at [start, end) in live process ``pid`` (read from the
    mapping itself when /proc allows, so a replaced file is not mistaken for it)."""
    b = Binary(display(raw), None, pid, raw, start, end)
    for how, fs in _candidates(b):
        if how == "path" or (how == "root" and raw.endswith(DELETED)):
            continue  # a name alone does not prove which file was mapped
        problem, have, _why = _file_build_id(fs)
        if not problem:
            return have
    if raw.endswith(DELETED):
        return None
    problem, have, _why = _file_build_id(raw)
    return have if not problem else None


class Pins:
    """Descriptors one run keeps of binaries only reachable through the process (deleted or
    replaced files): at most ``limit``."""

    def __init__(self, limit: int = MAX_PINNED) -> None:
        self.limit = limit
        self.kept = 0
        self.failed = 0
        self.over_limit = 0

    def consider(self, b: Binary) -> None:
        """Called when binary ``b`` is first seen, while its process may still live."""
        if b.pinned is not None or not b.fs_name.startswith(b"/"):
            return
        loc = locate(b)
        if not loc.ok:
            if b.fs_name.endswith(DELETED):
                self.failed += 1
            return
        if loc.how not in ("map_files", "exe") or loc.path is None:
            return  # reachable by name: nothing to keep
        if self.kept >= self.limit or _open_pins >= MAX_PINNED_TOTAL:
            self.over_limit += 1
            return
        try:
            fd = os.open(loc.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.failed += 1
            return
        b.pinned = Pinned(fd, loc.label, loc.build_id)
        self.kept += 1

    def stats(self) -> dict[str, int]:
        return {"kept_open": self.kept, "keep_failed": self.failed,
                "over_limit": self.over_limit}


def files_report(binaries: list[Binary], pins: Pins, listed: int = 20) -> dict[str, object]:
    """Where each of a run's binaries is read from now, for diagnostics: counts by source, the
    descriptors kept, and the binaries that cannot be read, with the reason."""
    how: dict[str, int] = {}
    missing: list[dict[str, str]] = []
    for b in binaries:
        if b.path.startswith("[") and b.path != VDSO:
            continue
        loc = locate(b)
        if loc.ok:
            how[loc.how] = how.get(loc.how, 0) + 1
        else:
            missing.append({"binary": b.path, "problem": loc.problem, "reason": loc.reason})
    return {"found": sum(how.values()), "found_by": how, "missing": len(missing),
            "missing_listed": missing[:listed], **pins.stats()}
