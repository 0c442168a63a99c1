"""The stalls view: where threads stopped making progress.

Two kinds of stall, ranked together by duration:

* ``offcpu``: an off-CPU interval (switch-out to switch-in) of at least ``min_ns``; its reason,
  blocking stack and the wakeup that ended it come from the interval (offviews.py).
* ``gap``: a hole in the samples of a thread that was busy. The sampler (cpu-clock) samples a
  running thread once per period P of its CPU time (P is the sample's weight, so a shed run
  uses its effective period). For consecutive samples t0 < t1 of a thread, the time it was not
  seen running is the gap ``(t0, t1 - P]``, of length ``t1 - t0 - P``. It is a stall when

  - the thread was busy on both sides: its sample before t0 and its sample after t1 are each
    close, within BUSY_PERIODS periods or within 1/BUSY_RATIO of the gap (a busy thread on a
    loaded machine is sampled less regularly; a thread that only wakes now and then for a
    sample or two is never busy: its samples are all about as far apart as its gaps);
  - the gap is at least ``min_ns`` and longer than GAP_PERIODS periods;
  - no off-CPU interval of the thread overlaps it (an interval that does explains it: it is
    that interval, reported as such when long enough, and the gap is not reported).

  What is left is time the thread was runnable but not running without a recorded switch-out,
  or time the sampler lost (lost or throttled records, long interrupt-disabled sections). When
  off-CPU intervals are not recorded, every wait of a busy thread (a sleep between two busy
  stretches, a preemption) shows as a gap. A gap's stack is that of the sample before it (where
  the thread was last seen running).

A stall is kept when it overlaps the filter's time range (start_ns..end_ns, relative to the
run's first event) and, with ``flt.tid``, belongs to that thread.
"""

from __future__ import annotations

from typing import Any

from stax.profile import offviews
from stax.profile.offcpu import REASONS, state_letter
from stax.profile.selection import Filter, sample_columns
from stax.profile.tables import Profile

BUSY_PERIODS = 3  # a neighbouring sample within this many periods: the thread was busy
BUSY_RATIO = 4  # or within a quarter of the gap
GAP_PERIODS = 4  # a gap must also be longer than this many periods
DEFAULT_MIN_NS = 10_000_000
MAX_BUCKETS = 10_000


class StallsError(ValueError):
    """A request the view cannot answer (too many histogram buckets); the message says why."""


def _gaps(p: Profile, flt: Filter, min_ns: int, c: dict[str, Any]) -> list[tuple[int, ...]]:
    """(tid, start, duration, stack) of the sample gaps of busy threads (absolute times)."""
    import numpy as np

    _n, _base, stacks, weights, tids, times = sample_columns(p)
    if flt.tid is not None:
        keep = tids == flt.tid
        stacks, weights, tids, times = stacks[keep], weights[keep], tids[keep], times[keep]
    if len(times) < 4:
        return []
    order = np.lexsort((times, tids))
    stacks, weights, tids, times = stacks[order], weights[order], tids[order], times[order]
    d = np.diff(times)  # d[i] = times[i+1] - times[i]
    same = tids[1:] == tids[:-1]
    period = weights[1:]  # the sample after the gap covers (t1 - P, t1]
    length = d - period
    cand = same & (length >= max(1, min_ns)) & (length > GAP_PERIODS * period)
    idx = np.nonzero(cand)[0]
    if not len(idx):
        return []
    # iv sorted per thread: starts and ends, to find an interval overlapping a gap
    by_tid: dict[int, tuple[Any, Any]] = {}
    if c["n"]:
        io = np.lexsort((c["start"], c["tid"]))
        it, ist, idur = c["tid"][io], c["start"][io], c["dur"][io]
        for tid in np.unique(it).tolist():
            m = it == tid
            by_tid[tid] = (ist[m], ist[m] + idur[m])
    n = len(times)
    out = []
    for i in idx.tolist():
        # busy on both sides: samples close before t0 and after t1
        j = i + 1
        near = max(BUSY_PERIODS * int(weights[j]), int(length[i]) // BUSY_RATIO)
        if i == 0 or tids[i - 1] != tids[i] or times[i] - times[i - 1] > near:
            continue
        if j + 1 >= n or tids[j + 1] != tids[j] or times[j + 1] - times[j] > near:
            continue
        tid = int(tids[i])
        a, b = int(times[i]), int(times[j] - weights[j])
        ivs = by_tid.get(tid)
        if ivs is not None:
            starts, ends = ivs
            k = int(np.searchsorted(starts, b, side="left")) - 1
            # a thread's intervals do not overlap: the last one starting before b ends last
            if k >= 0 and ends[k] > a:
                continue
        out.append((tid, a, b - a, int(stacks[i])))
    return out


def stalls(p: Profile, flt: Filter, limit: int = 20, min_ns: int = DEFAULT_MIN_NS,
           bucket_ns: int = 0, reason: str | None = None, stacks: bool = True) -> dict:
    """Off-CPU intervals and sample gaps of busy threads of at least ``min_ns``, longest first
    (``limit`` rows, 0 = all); with ``bucket_ns``, a histogram of them over time. ``reason``
    keeps one off-CPU reason, or ``gap`` for the gaps only."""
    import numpy as np

    c = offviews.columns(p)
    base = c["base"]
    with p.lock:
        last = p.last_time
    lo = base + flt.start_ns if flt.start_ns is not None else None
    hi = base + flt.end_ns if flt.end_ns is not None else None

    # (kind, tid, start, duration, reason, stack, interval index)
    rows: list[tuple[str, int, int, int, str, int, int]] = []
    if reason != "gap":
        keep = c["dur"] >= max(0, min_ns)
        if flt.tid is not None:
            keep &= c["tid"] == flt.tid
        if reason is not None:
            keep &= c["reason"] == REASONS.index(reason)
        for i in np.nonzero(keep)[0].tolist():
            r = int(c["reason"][i])
            rows.append(("offcpu", int(c["tid"][i]), int(c["start"][i]), int(c["dur"][i]),
                         REASONS[r] if 0 <= r < len(REASONS) else "other",
                         int(c["stack"][i]), i))
    if reason is None or reason == "gap":
        for tid, start, dur, sid in _gaps(p, flt, min_ns, c):
            rows.append(("gap", tid, start, dur, "gap", sid, -1))
    if lo is not None or hi is not None:
        rows = [r for r in rows if (lo is None or r[2] + r[3] > lo)
                and (hi is None or r[2] < hi)]
    rows.sort(key=lambda r: (-r[3], r[2], r[1]))
    total_ns = sum(r[3] for r in rows)
    by_reason: dict[str, list[int]] = {}
    for r in rows:
        acc = by_reason.setdefault(r[4], [0, 0])
        acc[0] += 1
        acc[1] += r[3]
    result: dict[str, Any] = {
        "stalls": len(rows), "stalled_ns": total_ns, "min_ns": min_ns,
        "gaps": sum(1 for r in rows if r[0] == "gap"),
        "by_reason": {k: {"stalls": v[0], "stalled_ns": v[1]}
                      for k, v in sorted(by_reason.items(), key=lambda kv: -kv[1][1])},
    }
    if bucket_ns:
        t0 = lo if lo is not None else base
        t1 = hi if hi is not None else max(last, base + 1)
        result["histogram"] = histogram(rows, t0, t1, bucket_ns, base)
    shown = rows[:limit] if limit > 0 else rows
    names = _names(p)
    out = []
    for kind, tid, start, dur, why, sid, i in shown:
        row: dict[str, Any] = {"kind": kind, "tid": tid,
                               "thread": names.get(tid, offviews.OUTSIDE),
                               "reason": why, "start_ns": start - base, "duration_ns": dur,
                               "state": state_letter(int(c["state"][i])) if i >= 0 else None,
                               "waker": None}
        if i >= 0:
            wk = int(c["wakeup"][i])
            if 0 <= wk < c["m"]:
                waker = int(c["w_waker"][wk])
                row["waker"] = {"tid": waker, "name": offviews.waker_name(names, waker),
                                "time_ns": int(c["w_time"][wk]) - base,
                                "runnable_ns": max(0, start + dur - int(c["w_time"][wk]))}
        if stacks:
            row["stack"] = frames(p, sid)
        out.append(row)
    result["rows"] = out
    return result


def histogram(rows: list[tuple[Any, ...]], t0: int, t1: int, bucket_ns: int,
              base: int) -> dict[str, Any]:
    """Stalls per time bucket from ``t0`` to ``t1`` (absolute): ``started`` counts the stalls
    that began in a bucket, ``stalled_ns`` the stalled thread-time inside it (a long stall
    spreads over the buckets it spans; several threads stalled at once add up)."""
    n = max(1, -(-(t1 - t0) // bucket_ns))
    if n > MAX_BUCKETS:
        raise StallsError(f"bucket too small: {n} buckets over the range (max "
                          f"{MAX_BUCKETS}); use a larger bucket")
    started = [0] * n
    stalled = [0] * n
    full = [0] * (n + 1)  # difference array: buckets a stall covers whole
    end = t0 + n * bucket_ns
    for r in rows:
        start, dur = r[2], r[3]
        b = (start - t0) // bucket_ns
        if 0 <= b < n:
            started[b] += 1
        a, e = max(start, t0), min(start + dur, end)
        if a >= e:
            continue
        ka, ke = (a - t0) // bucket_ns, (e - 1 - t0) // bucket_ns
        if ka == ke:
            stalled[ka] += e - a
            continue
        stalled[ka] += t0 + (ka + 1) * bucket_ns - a
        stalled[ke] += e - (t0 + ke * bucket_ns)
        full[ka + 1] += 1
        full[ke] -= 1
    covering = 0
    for k in range(n):
        covering += full[k]
        stalled[k] += covering * bucket_ns
    return {"start_ns": t0 - base, "bucket_ns": bucket_ns,
            "buckets": [{"start_ns": t0 - base + k * bucket_ns, "started": started[k],
                         "stalled_ns": stalled[k]} for k in range(n)]}


def _names(p: Profile) -> dict[int, str]:
    with p.lock:
        return {tid: th.name for tid, th in p.threads.items()}


frames = offviews.stack_frames  # the frames of a stack, leaf first
