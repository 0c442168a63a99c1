"""Compact address -> symbol table: sorted starts/ends/sizes arrays plus a names list.
Owns alias selection (global over local, unversioned over versioned) and range lookup."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence

__all__ = ["SymbolTable", "SymbolRow"]

_MAX_ADDR = (1 << 64) - 1
_BACKSCAN = 16  # how many preceding symbols to try when the nearest one does not cover addr

# (start, pref, size, name, section_end). Rows sort naturally: among aliases at one address
# the lowest `pref` wins. section_end bounds size-0 symbols (0 when unknown).
SymbolRow = tuple[int, int, int, str, int]


class SymbolTable:
    """Immutable, sorted, de-duplicated function table; lookups are a bisect."""

    __slots__ = ("starts", "ends", "sizes", "names", "_maxend")

    def __init__(self) -> None:
        self.starts: array[int] = array("Q")
        self.ends: array[int] = array("Q")
        self.sizes: array[int] = array("Q")
        self.names: list[str] = []
        self._maxend: array[int] = array("Q")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, rows: list[SymbolRow], boundaries: Sequence[int] = ()) -> SymbolTable:
        """Build from rows (sorted in place). `boundaries` are extra sorted addresses (e.g. the
        starts of another symbol class) that also terminate size-0 symbols."""
        table = cls()
        if not rows:
            return table
        rows.sort()
        starts: list[int] = []
        sizes: list[int] = []
        names: list[str] = []
        sec_ends: list[int] = []
        prev = -1
        for start, _pref, size, name, sec_end in rows:
            if start == prev:
                # alias at the same address: the first (best-ranked) keeps its name, but a
                # known size from any alias is better than none.
                if sizes[-1] == 0 and size > 0:
                    sizes[-1] = size
                if sec_ends[-1] == 0 and sec_end > 0:
                    sec_ends[-1] = sec_end
                continue
            prev = start
            starts.append(start)
            sizes.append(size)
            names.append(name)
            sec_ends.append(sec_end)
        n = len(starts)
        ends: list[int] = []
        maxend: list[int] = []
        running = 0
        nb = len(boundaries)
        for i in range(n):
            start = starts[i]
            size = sizes[i]
            if size > 0:
                end = start + size
                if end > _MAX_ADDR:
                    end = _MAX_ADDR
            else:
                end = starts[i + 1] if i + 1 < n else _MAX_ADDR
                sec_end = sec_ends[i]
                if start < sec_end < end:
                    end = sec_end
                if nb:
                    k = bisect_right(boundaries, start)
                    if k < nb and boundaries[k] < end:
                        end = boundaries[k]
            ends.append(end)
            if end > running:
                running = end
            maxend.append(running)
        table.starts = array("Q", starts)
        table.ends = array("Q", ends)
        table.sizes = array("Q", sizes)
        table.names = names
        table._maxend = array("Q", maxend)
        return table

    def lookup(self, addr: int) -> int:
        """Index of the symbol covering `addr`, or -1."""
        starts = self.starts
        if not starts or addr < starts[0] or addr > _MAX_ADDR:
            return -1
        i = bisect_right(starts, addr) - 1
        if addr < self.ends[i]:
            return i
        # The nearest symbol ended before addr; an earlier, larger one may still enclose it.
        ends = self.ends
        maxend = self._maxend
        j = i - 1
        stop = max(-1, i - 1 - _BACKSCAN)
        while j > stop and maxend[j] > addr:
            if addr < ends[j]:
                return j
            j -= 1
        return -1
