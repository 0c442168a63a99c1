"""Off-CPU classification of a profile's intervals: each blocking stack and state gets its
reason bucket (the rules are stax.profile.offcpu.classify), cached per (stack, state), off the
capture path since it needs symbols.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stax.profile import offcpu
from stax.profile.model import KERNEL_BINARY, Tables

if TYPE_CHECKING:
    from stax.symbols import Symbolizer


class OffcpuReasons(Tables):
    """The tables plus the reason cache; ``offcpu`` (the interval builder) is the record
    sink's."""

    offcpu: offcpu.Builder

    def __init__(self, symbolizer: Symbolizer | None = None) -> None:
        super().__init__(symbolizer)
        self._reason_cache: dict[tuple[int, int], int] = {}

    def reason_of(self, stack: int, state: int) -> int:
        """The reason code of an interval blocked at ``stack`` in ``state`` if already known,
        else -1 (classify_pending fills it in later, off the capture path)."""
        return self._reason_cache.get((stack, state), -1)

    def classify_pending(self) -> None:
        """Give every interval recorded since the last call its reason bucket. Symbolises the
        blocking stacks (outside the profile lock); views call this before reading."""
        with self.lock:
            todo = self.offcpu.unclassified
            if not todo:
                return
            self.offcpu.unclassified = []
            iv = self.intervals
            keys = {(iv.stack[i], iv.state[i]) for i in todo}
            keys -= self._reason_cache.keys()
        codes = {key: self._classify(*key) for key in keys}
        with self.lock:
            self._reason_cache.update(codes)
            cache = self._reason_cache
            iv = self.intervals
            for i in todo:
                iv.reason[i] = cache[(iv.stack[i], iv.state[i])]

    def _classify(self, stack: int, state: int) -> int:
        kernel: list[str] = []
        user: list[str] = []
        s = stack
        while s >= 0:
            fid = self.stack_frame[s]
            name = self.funcs[self.func_of_frame(fid)].name
            (kernel if self.frame_binary[fid] == KERNEL_BINARY else user).append(name)
            s = self.stack_parent[s]
        return offcpu.REASON_CODE[offcpu.classify(state, kernel, user)]
