"""Views over the off-CPU tables: per-thread blocked time, interval lists, wakeup edges.

Same conventions as views.py: pure functions of the tables plus a Filter (selection.py),
JSON-ready results. Names: ``offcpu`` is the off-CPU side as a whole (``oncpu`` the on-CPU side,
whose rows are samples); its rows are ``intervals`` (switch-out to switch-in) and ``wakeups``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from stax.profile.offcpu import REASONS, state_letter
from stax.profile.selection import Filter, group_by_stack, keep_mask
from stax.profile.tables import Profile


def columns(p: Profile) -> dict[str, Any]:
    """A consistent snapshot of the interval and wakeup columns as NumPy arrays."""
    import numpy as np

    def snap(a: Any, n: int, dtype: Any) -> Any:
        return np.frombuffer(a[:n], dtype=dtype) if n else np.zeros(0, dtype)

    p.classify_pending()
    with p.lock:
        iv, wk = p.intervals, p.wakeups
        n, m = len(iv), len(wk)
        base = p.first_time
        return {
            "base": base, "n": n, "m": m,
            "tid": snap(iv.tid, n, np.int32), "start": snap(iv.start_ns, n, np.int64),
            "dur": snap(iv.duration_ns, n, np.int64), "reason": snap(iv.reason, n, np.int8),
            "stack": snap(iv.stack, n, np.int32), "state": snap(iv.state, n, np.int32),
            "wakeup": snap(iv.wakeup, n, np.int32),
            "w_time": snap(wk.time_ns, m, np.int64), "w_waker": snap(wk.waker_tid, m, np.int32),
            "w_wakee": snap(wk.wakee_tid, m, np.int32),
            "w_stack": snap(wk.waker_stack, m, np.int32),
        }


def _keep(c: dict[str, Any], flt: Filter) -> Any:
    """Mask of the intervals the filter keeps (by thread, and by start time in the range)."""
    return keep_mask(flt, c["base"], c["tid"], c["start"])


def offcpu_weights(p: Profile, flt: Filter) -> tuple[dict[int, list[int]], int, int]:
    """Off-CPU intervals grouped by blocking stack: {stack: [intervals, blocked_ns]}, plus
    totals (the off-CPU side of selection.oncpu_weights)."""
    c = columns(p)
    keep = _keep(c, flt)
    return group_by_stack(c["stack"][keep], c["dur"][keep])


def offcpu_reasons(p: Profile, flt: Filter) -> dict[int, dict[str, int]]:
    """Blocked ns per reason of each blocking stack, over the intervals ``flt`` keeps (what
    the flamegraph colours its off-CPU frames by)."""
    import numpy as np

    c = columns(p)
    keep = _keep(c, flt)
    if not c["n"] or not keep.any():
        return {}
    key = (c["stack"][keep].astype(np.int64) + 1) * len(REASONS) + c["reason"][keep]
    uniq, inverse = np.unique(key, return_inverse=True)
    sums = np.bincount(inverse, weights=c["dur"][keep])
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for k, ns in zip(uniq.tolist(), sums.tolist(), strict=True):
        out[k // len(REASONS) - 1][REASONS[k % len(REASONS)]] = int(round(ns))
    return out


def per_thread(p: Profile, flt: Filter | None = None,
               ) -> dict[int, tuple[int, int, str | None, dict[str, int]]]:
    """tid -> (off-CPU ns, intervals, largest reason bucket, ns per reason); of the intervals
    that start in ``flt``'s time range when given (its thread is not applied)."""
    c = columns(p)
    out: dict[int, tuple[int, int, str | None, dict[str, int]]] = {}
    if not c["n"]:
        return out
    tids, reasons, durs = c["tid"], c["reason"], c["dur"]
    if flt is not None and (flt.start_ns is not None or flt.end_ns is not None):
        keep = _keep(c, Filter(start_ns=flt.start_ns, end_ns=flt.end_ns))
        tids, reasons, durs = tids[keep], reasons[keep], durs[keep]
    acc: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    cnt: dict[int, int] = defaultdict(int)
    for tid, reason, dur in zip(tids.tolist(), reasons.tolist(), durs.tolist(), strict=True):
        acc[tid][reason] += dur
        cnt[tid] += 1
    for tid, by in acc.items():
        total = sum(by.values())
        top = max(by.items(), key=lambda kv: kv[1])[0] if total else None
        out[tid] = (total, cnt[tid], REASONS[top] if top is not None else None,
                    {REASONS[r]: ns for r, ns in sorted(by.items(), key=lambda kv: -kv[1])})
    return out


def stack_frames(p: Profile, sid: int, limit: int = 64) -> list[dict[str, str]]:
    """The frames of a stack, leaf first."""
    out = []
    while sid >= 0 and len(out) < limit:
        f = p.funcs[p.func_of_frame(p.stack_frame[sid])]
        out.append({"func": f.name, "binary": f.binary})
        sid = p.stack_parent[sid]
    return out


def _names(p: Profile) -> dict[int, str]:
    with p.lock:
        return {tid: th.name for tid, th in p.threads.items()}


OUTSIDE = "[not traced]"  # a thread outside the target (its name is not recorded)


def waker_name(names: dict[int, str], tid: int) -> str:
    if tid == 0:
        return "[interrupt]"
    return names.get(tid, OUTSIDE)


def intervals(p: Profile, flt: Filter, limit: int = 100, reason: str | None = None,
              min_duration_ns: int = 0, stacks: bool = True) -> dict:
    """Off-CPU intervals (longest first), with their blocking stacks and the wakeup that ended
    each. Times are relative to the run's first event."""
    import numpy as np

    c = columns(p)
    keep = _keep(c, flt)
    if reason is not None:
        keep &= c["reason"] == REASONS.index(reason)
    if min_duration_ns:
        keep &= c["dur"] >= min_duration_ns
    idx = np.nonzero(keep)[0]
    total_ns = int(c["dur"][idx].sum()) if len(idx) else 0
    by_reason: dict[str, int] = defaultdict(int)
    for r, d in zip(c["reason"][idx].tolist(), c["dur"][idx].tolist(), strict=True):
        by_reason[REASONS[r]] += d
    order = idx[np.argsort(-c["dur"][idx], kind="stable")]
    if limit > 0:
        order = order[:limit]
    names = _names(p)
    rows = []
    base = c["base"]
    for i in order.tolist():
        wk = int(c["wakeup"][i])
        row: dict[str, Any] = {
            "index": i, "tid": int(c["tid"][i]),
            "thread": names.get(int(c["tid"][i]), OUTSIDE),
            "start_ns": int(c["start"][i]) - base, "duration_ns": int(c["dur"][i]),
            "reason": REASONS[int(c["reason"][i])], "state": state_letter(int(c["state"][i])),
            "wakeup": None,
        }
        if wk >= 0 and wk < c["m"]:
            waker = int(c["w_waker"][wk])
            wt = int(c["w_time"][wk])
            end = int(c["start"][i]) + int(c["dur"][i])
            row["wakeup"] = {"index": wk, "time_ns": wt - base,
                             "waker_tid": waker, "waker": waker_name(names, waker),
                             # from the wakeup to running again: waiting for a CPU
                             "runnable_ns": max(0, end - wt)}
        if stacks:
            row["stack"] = stack_frames(p, int(c["stack"][i]))
        rows.append(row)
    return {"intervals": int(len(idx)), "offcpu_ns": total_ns,
            "by_reason": dict(sorted(by_reason.items(), key=lambda kv: -kv[1])), "rows": rows}


def wakers(p: Profile, flt: Filter, limit: int = 20) -> dict:
    """Wakeup edges aggregated per (waker, wakee): how many wakeups, how much blocked time the
    wakeups ended, and the waker's most frequent stack. ``flt.tid`` keeps edges where that
    thread is either side; the time range applies to the wakeup time."""
    c = columns(p)
    base = c["base"]
    m = c["m"]
    ended: dict[int, int] = {}  # wakeup index -> blocked ns of the interval it ended
    for wk, dur in zip(c["wakeup"].tolist(), c["dur"].tolist(), strict=True):
        if wk >= 0:
            ended[wk] = ended.get(wk, 0) + dur
    edges: dict[tuple[int, int], list[Any]] = {}
    wakers_ = c["w_waker"].tolist()
    wakees = c["w_wakee"].tolist()
    times = c["w_time"].tolist()
    stacks = c["w_stack"].tolist()
    for i in range(m):
        a, b = wakers_[i], wakees[i]
        if flt.tid is not None and flt.tid not in (a, b):
            continue
        if flt.start_ns is not None and times[i] < base + flt.start_ns:
            continue
        if flt.end_ns is not None and times[i] >= base + flt.end_ns:
            continue
        e = edges.get((a, b))
        if e is None:
            e = edges[(a, b)] = [0, 0, 0, defaultdict(int)]
        e[0] += 1
        blocked = ended.get(i)
        if blocked is not None:
            e[1] += 1
            e[2] += blocked
        e[3][stacks[i]] += 1
    order = sorted(edges.items(), key=lambda kv: (-kv[1][2], -kv[1][0], kv[0]))
    total = len(order)
    if limit > 0:
        order = order[:limit]
    names = _names(p)
    with p.lock:
        pids = {tid: th.pid for tid, th in p.threads.items()}
    rows = []
    for (a, b), (n, n_ended, blocked, st) in order:
        hot = max(st.items(), key=lambda kv: kv[1])[0] if st else -1
        rows.append({"waker_tid": a, "waker": waker_name(names, a),
                     "waker_pid": pids.get(a), "wakee_tid": b, "wakee": names.get(b, OUTSIDE),
                     "wakee_pid": pids.get(b), "wakeups": n, "ended_intervals": n_ended,
                     "blocked_ns": blocked, "stack": stack_frames(p, hot), "stack_wakeups": st[hot]
                     if st else 0})
    return {"edges": total, "wakeups": m, "rows": rows}
