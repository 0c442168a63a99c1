"""DWARF (.eh_frame) unwinding of sampled user stacks for stax.
Public surface: Unwinder (bound to a Profile's mappings), REGS_MASK, STACK_SIZE."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from stax.binaries import locate
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

if TYPE_CHECKING:
    from stax.profile.tables import Profile

__all__ = ["REGS_MASK", "STACK_SIZE", "Unwinder", "dwarf_unwind_default"]

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


class Unwinder:
    """Walks the user stacks of one Profile's samples using the Profile's process mappings."""

    def __init__(self, profile: Profile, stack_size: int = STACK_SIZE) -> None:
        self.profile = profile
        self.walker = Walker(self.resolve, stack_size)
        # blocking stacks (sched_switch samples, smaller stack copies) are counted apart, so
        # the on-CPU completeness figures and the record warning stay about on-CPU samples
        self.blocked_walker = Walker(self.resolve, stack_size)
        self._tables: dict[int, EhFrame | None] = {}  # binary id -> table

    def forget(self, pid: int) -> None:
        self.walker.forget(pid)
        self.blocked_walker.forget(pid)

    def walk(self, pid: int, regs: tuple[int, ...], stack: bytes | None,
             blocked: bool = False) -> list[tuple[int, int]]:
        walker = self.blocked_walker if blocked else self.walker
        try:
            return walker.walk(pid, regs, stack)
        except Exception:  # a bug or a malformed binary must not end the recording
            log.exception("unwinding a sample of pid %d failed", pid)
            key = (_UNKNOWN_BINARY, INTERNAL)
            walker.stops[key] = walker.stops.get(key, 0) + 1
            return []

    def table(self, binary_id: int) -> EhFrame | None:
        if binary_id in self._tables:
            return self._tables[binary_id]
        b = self.profile.binaries[binary_id]
        table = None
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
        proc = self.profile.processes.get(pid)
        m = proc.find(addr) if proc is not None else None
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
        binaries = self.profile.binaries
        stops = [{"binary": binaries[b].name if b < len(binaries) else "?", "reason": r,
                  "samples": n} for (b, r), n in sorted(w.stops.items(), key=lambda kv: -kv[1])]
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
            "blocking_stacks": {"walks": self.blocked_walker.walks,
                                "complete": self.blocked_walker.complete,
                                "cut_short": self.blocked_walker.walks
                                - self.blocked_walker.complete},
        }


__all__ += ["NO_FDE", "NO_CFI", "UNMAPPED"]
