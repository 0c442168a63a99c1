"""Exports of a run to other tools' formats: one small module per format over the tables.

Every converter takes the Profile, an optional thread filter and an optional off-CPU intervals
table (NumPy columns tid/start_ns/duration_ns/reason/stack/state/wakeup) and returns the file's
bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stax.profile import views
from stax.profile.tables import Profile

FORMATS = ("folded", "speedscope", "pprof", "gecko")


def converter(fmt: str) -> Callable[..., bytes]:
    if fmt == "folded":
        from stax.archive.export.folded import convert
    elif fmt == "speedscope":
        from stax.archive.export.speedscope import convert
    elif fmt == "pprof":
        from stax.archive.export.pprof import convert
    elif fmt == "gecko":
        from stax.archive.export.gecko import convert
    else:
        raise ValueError(f"unknown export format {fmt!r} (one of: {', '.join(FORMATS)})")
    return convert


def samples(p: Profile, tid: int | None) -> tuple[Any, Any, Any, Any]:
    """Sample columns (time_ns, tid, stack, weight_ns) in time order, of one thread or all."""
    import numpy as np

    stacks, weights, tids, times = views.selected_samples(p, views.Filter(tid=tid))
    order = np.argsort(times, kind="stable")
    return times[order], tids[order], stacks[order], weights[order]


def grouped(p: Profile, tid: int | None) -> list[tuple[int, int, int, int]]:
    """(tid, stack, samples, weight_ns) per distinct thread and stack."""
    import numpy as np

    _t, tids, stacks, weights = samples(p, tid)
    if not len(stacks):
        return []
    key = (tids.astype(np.int64) << 32) | (stacks.astype(np.int64) & 0xFFFFFFFF)
    uniq, inverse = np.unique(key, return_inverse=True)
    counts = np.bincount(inverse)
    sums = np.bincount(inverse, weights=weights)
    out = []
    for i, k in enumerate(uniq.tolist()):
        s = k & 0xFFFFFFFF
        out.append((k >> 32, s - (1 << 32) if s >= 1 << 31 else s, int(counts[i]),
                    int(round(sums[i]))))
    return out


def intervals(iv: dict[str, Any] | None, tid: int | None) -> list[tuple[int, int, int, int, int]]:
    """(tid, start_ns, duration_ns, reason, stack) rows of the off-CPU table, one thread or all."""
    if iv is None or not len(iv["tid"]):
        return []
    rows = zip(iv["tid"].tolist(), iv["start_ns"].tolist(), iv["duration_ns"].tolist(),
               iv["reason"].tolist(), iv["stack"].tolist(), strict=True)
    return [r for r in rows if tid is None or r[0] == tid]


def reason_name(p: Profile, code: int) -> str:
    """The off-CPU reason bucket a code stands for (profile/offcpu.py REASONS)."""
    from stax.profile.offcpu import REASONS

    return REASONS[code] if 0 <= code < len(REASONS) else "other"


class Paths:
    """Function-id paths (root first) of stack ids, and frame-id paths for address formats."""

    def __init__(self, p: Profile) -> None:
        self.p = p
        self.funcs = views._Paths(p, ())
        self._frames: dict[int, tuple[int, ...]] = {-1: ()}

    def func_path(self, sid: int) -> tuple[int, ...]:
        return self.funcs.get(sid)

    def frame_path(self, sid: int) -> tuple[int, ...]:
        return views.memo_path(self._frames, self.p.stack_parent, sid,
                               self.p.stack_frame.__getitem__)


def thread_name(p: Profile, tid: int) -> str:
    th = p.threads.get(tid)
    return th.name if th is not None and th.name else f"thread {tid}"
