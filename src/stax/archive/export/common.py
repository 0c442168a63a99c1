"""What every export format needs from the tables: sample columns in time order, samples grouped
per thread and stack, the off-CPU intervals as rows, reason and thread names, stack paths.

The formats (folded, speedscope, pprof, gecko) import this; the package only dispatches to them.
"""

from __future__ import annotations

from typing import Any

from stax.profile.selection import Filter, FuncPaths, keep_mask, memo_path, selected_samples
from stax.profile.tables import Profile


def samples(p: Profile, tid: int | None) -> tuple[Any, Any, Any, Any]:
    """Sample columns (time_ns, tid, stack, weight_ns) in time order, of one thread or all."""
    import numpy as np

    stacks, weights, tids, times = selected_samples(p, Filter(tid=tid))
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


def clip(p: Profile, iv: dict[str, Any] | None, start_ns: int | None,
         end_ns: int | None) -> dict[str, Any] | None:
    """Keep only the samples (and return only the off-CPU intervals) of a time window, its
    ends relative to the run's start; for an export of a window (``stax export --window``).
    ``p`` is changed: it must be a profile read for this export alone."""
    from array import array

    import numpy as np

    flt = Filter(start_ns=start_ns, end_ns=end_ns)
    with p.lock:
        n = len(p.s_stack)
        times = np.frombuffer(p.s_time[:n], dtype=np.int64) if n else np.zeros(0, np.int64)
        keep = keep_mask(flt, p.first_time, np.zeros(n, np.int32), times)
        idx = np.flatnonzero(keep)
        for attr in ("s_time", "s_tid", "s_stack", "s_weight", "s_cpu"):
            col = getattr(p, attr)
            kept = array(col.typecode)
            kept.frombytes(np.frombuffer(col[:n], dtype=np.dtype(col.typecode))[idx].tobytes()
                           if n else b"")
            setattr(p, attr, kept)
    if iv is None:
        return None
    keep = keep_mask(flt, p.first_time, iv["tid"], iv["start_ns"])
    return {k: col[keep] for k, col in iv.items()}


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
    """Function-id paths (root first) of stack ids, and frame-id paths for address formats.
    Function paths hold the inlined functions (``Profile.frame_inline``) as levels of their
    own; address formats read a frame's chain themselves. ``stax export --no-inline`` empties
    the chains first."""

    def __init__(self, p: Profile) -> None:
        self.p = p
        self.funcs = FuncPaths(p, ())
        self._frames: dict[int, tuple[int, ...]] = {-1: ()}

    def func_path(self, sid: int) -> tuple[int, ...]:
        return self.funcs.get(sid)

    def frame_path(self, sid: int) -> tuple[int, ...]:
        return memo_path(self._frames, self.p.stack_parent, sid, self.p.stack_frame.__getitem__)


def thread_name(p: Profile, tid: int) -> str:
    th = p.threads.get(tid)
    return th.name if th is not None and th.name else f"thread {tid}"
