"""DWARF (.eh_frame) unwinding of sampled user stacks for stax.
Public surface: Unwinder (given a Mappings lookup), Mappings, Mapped, REGS_MASK, STACK_SIZE.

The unwinder never reads a profile: whoever tracks the target's memory map (the profile's
record sink) hands it a ``Mappings`` lookup, and calls ``forget`` when a process's map changes.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

from stax.binaries import Binary, locate
from stax.unwind.cfaprogram import Row
from stax.unwind.ehframe import TABLES, EhFrame, load_image
from stax.unwind.walker import (
    NO_CFI,
    NO_FDE,
    OUTERMOST,
    REGS_MASK,
    UNMAPPED,
    Walker,
)

__all__ = ["REGS_MASK", "STACK_SIZE", "Mapped", "Mappings", "Unwinder", "dwarf_unwind_default"]

STACK_SIZE = 32768
"""Bytes of user stack copied with every sample (see docs/architecture.md for the choice)."""

_UNKNOWN_BINARY = 1
INTERNAL = "unwinder error"
log = logging.getLogger("stax.unwind")


def dwarf_unwind_default() -> bool:
    """DWARF unwinding is on by default on x86-64 unless STAX_DWARF_UNWIND=0."""
    return os.uname().machine == "x86_64" and os.environ.get("STAX_DWARF_UNWIND") != "0"


def _image_key(build_id: str | None, fs_path: str) -> tuple[Any, ...] | None:
    if build_id:
        return ("bid", build_id)
    try:
        st = os.stat(fs_path)
    except OSError:
        return None
    return ("file", fs_path, st.st_mtime_ns, st.st_size, st.st_ino)


class Mapped(Protocol):
    """An executable mapping of a sampled process: its start address, the file offset mapped
    there, and the id of its binary (the key of the table cache and of the frames returned)."""

    start: int
    pgoff: int
    binary: int


class Mappings(Protocol):
    """The memory maps the unwinder walks through, kept by whoever decodes the records."""

    def find(self, pid: int, addr: int) -> Mapped | None:
        """The mapping of process ``pid`` that holds ``addr``, or None."""
        ...

    def binary(self, binary_id: int) -> Binary | None:
        """The binary of that id (where its bytes are read), or None if there is none."""
        ...


class Unwinder:
    """Walks the user stacks of one recording's samples through its process mappings."""

    def __init__(self, mappings: Mappings, stack_size: int = STACK_SIZE) -> None:
        self.mappings = mappings
        self.walker = Walker(self.resolve, stack_size)
        # blocking stacks (sched_switch samples, smaller stack copies) are counted apart, so
        # the on-CPU completeness figures and the record warning stay about on-CPU samples
        self.blocked_walker = Walker(self.resolve, stack_size)
        self.waker_walker = Walker(self.resolve, stack_size)  # sched_waking samples
        self.last_stop: str | None = None  # why the latest walk stopped early, if it did
        self._tables: dict[int, EhFrame | None] = {}  # binary id -> table

    def forget(self, pid: int) -> None:
        self.walker.forget(pid)
        self.blocked_walker.forget(pid)
        self.waker_walker.forget(pid)

    def set_copy_sizes(self, blocked: int, waker: int) -> None:
        """The user stack bytes the blocking-stack and waker events copy (smaller than the
        on-CPU samples'): a walk that runs off such a copy stopped because it was full."""
        if blocked > 0:
            self.blocked_walker.stack_size = blocked
        if waker > 0:
            self.waker_walker.stack_size = waker

    def walk(self, pid: int, regs: tuple[int, ...], stack: bytes | None,
             blocked: bool = False, waker: bool = False) -> list[tuple[int, int]]:
        walker = (self.waker_walker if waker else self.blocked_walker if blocked
                  else self.walker)
        try:
            frames = walker.walk(pid, regs, stack)
            self.last_stop = walker.last_stop
            return frames
        except Exception:  # a bug or a malformed binary must not end the recording
            log.exception("unwinding a sample of pid %d failed", pid)
            key = (_UNKNOWN_BINARY, INTERNAL)
            walker.stops[key] = walker.stops.get(key, 0) + 1
            self.last_stop = INTERNAL
            return []

    def table(self, binary_id: int) -> EhFrame | None:
        if binary_id in self._tables:
            return self._tables[binary_id]
        b = self.mappings.binary(binary_id)
        table = None
        if b is None:
            self._tables[binary_id] = None
            return None
        loc = locate(b)  # the one rule for finding a binary's bytes (stax.binaries)
        if loc.data is not None:
            data = loc.data
            table = TABLES.get(("bid", loc.build_id) if loc.build_id else ("vdso", ""),
                               lambda: load_image(data=data))
        elif loc.path is not None:
            key = _image_key(loc.build_id, loc.path)
            if key is not None:
                table = TABLES.get(key, lambda p=loc.path: load_image(path=p))
        self._tables[binary_id] = table
        return table

    def resolve(self, pid: int, addr: int) -> tuple[Row | None, int, int, str | None]:
        m = self.mappings.find(pid, addr)
        if m is None:
            return None, _UNKNOWN_BINARY, addr, UNMAPPED
        offset = addr - m.start + m.pgoff
        table = self.table(m.binary)
        if table is None:
            return None, m.binary, offset, NO_CFI
        vaddr = table.file_offset_to_vaddr(offset)
        if vaddr is None:
            return None, m.binary, offset, NO_FDE
        try:
            row = table.row_at(vaddr)
        except Exception:  # malformed CFI for this function: count it, keep going
            row = None
        if row is None:
            return None, m.binary, offset, OUTERMOST if table.in_entry_gap(vaddr) else NO_FDE
        return row, m.binary, offset, None

    def stats(self) -> dict[str, Any]:
        w = self.walker
        stops = [{"binary": self._name(b), "reason": r, "samples": n}
                 for (b, r), n in sorted(w.stops.items(), key=lambda kv: -kv[1])]
        cut = w.walks - w.complete
        return {
            "method": "dwarf",
            "stack_copy_bytes": w.stack_size,
            "walks": w.walks,
            "complete": w.complete,
            "cut_short": cut,
            "cut_short_pct": round(100.0 * cut / w.walks, 2) if w.walks else 0.0,
            "frames": w.frames,
            "frame_pointer_frames": w.fp_frames,
            "max_stack_used_bytes": w.max_used,
            "stops": stops,
            "tables_cached": len(TABLES),
            "blocking_stacks": self._side(self.blocked_walker),
            "waker_stacks": self._side(self.waker_walker),
        }

    @staticmethod
    def _side(w: Walker) -> dict[str, Any]:
        """Walks of the off-CPU events' smaller stack copies, and why those cut short
        stopped (each such stack ends in a ``[truncated]`` root frame)."""
        reasons: dict[str, int] = {}
        for (_b, r), n in w.stops.items():
            reasons[r] = reasons.get(r, 0) + n
        return {"walks": w.walks, "complete": w.complete, "cut_short": w.walks - w.complete,
                "stack_copy_bytes": w.stack_size,
                "truncated_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}

    def _name(self, binary_id: int) -> str:
        b = self.mappings.binary(binary_id)
        return b.name if b is not None else "?"


__all__ += ["NO_FDE", "NO_CFI", "UNMAPPED"]
