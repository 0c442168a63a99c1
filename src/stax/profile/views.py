"""Views over the profile tables: top, flame tree, threads, time buckets.

Each view is a pure function of the tables plus a filter (thread, time range); results are plain
JSON-ready dicts so the server can send them as they are. ``views.Filter`` is the Filter of
selection.py (what every view selects by), named here too for the views' callers.
"""

from __future__ import annotations

from collections import defaultdict

from stax.profile import offviews
from stax.profile.framelines import FrameLines
from stax.profile.selection import (
    Filter,
    FuncPaths,
    keep_mask,
    oncpu_weights,
    query_paths,
    sample_columns,
    transformed_groups,
)
from stax.profile.tables import KERNEL_BINARY, Profile


def func_row(p: Profile, func: int, lines: FrameLines | None = None) -> dict:
    """A function's identity in a row: name, binary and, with ``lines``, the source file and
    first line of the function (None without line info)."""
    f = p.funcs[func]
    row = {"func": f.name, "binary": f.binary}
    if f.inlined:  # a level of a frame's inline chain (stax.profile.inline)
        row["inlined"] = True
    if lines is not None:
        src = lines.func(func)
        row["file"], row["line"] = src if src is not None else (None, None)
    return row


def top(p: Profile, flt: Filter, sort: str = "self", limit: int = 20) -> dict:
    groups, total_n, total_w = oncpu_weights(p, flt)
    paths = query_paths(p, flt)
    if flt.transforms:
        groups, total_n, total_w = transformed_groups(groups, paths)
    self_n: dict[int, int] = defaultdict(int)
    self_w: dict[int, int] = defaultdict(int)
    tot_n: dict[int, int] = defaultdict(int)
    tot_w: dict[int, int] = defaultdict(int)
    for sid, (n, w) in groups.items():
        path = paths.path(sid)
        if not path:
            continue
        leaf = path[-1]
        self_n[leaf] += n
        self_w[leaf] += w
        for func in set(path):
            tot_n[func] += n
            tot_w[func] += w
    key = self_w if sort == "self" else tot_w
    candidates = self_n if sort == "self" else tot_n
    order = sorted(candidates, key=lambda f: (-key.get(f, 0), -tot_w[f], p.funcs[f].name))
    if limit > 0:
        order = order[:limit]
    rows = []
    lines = FrameLines(p)  # only the rows returned are looked up
    for func in order:
        row = func_row(p, func, lines)
        row.update({
            "self_samples": self_n.get(func, 0),
            "self_ns": self_w.get(func, 0),
            "self_pct": 100.0 * self_n.get(func, 0) / total_n if total_n else 0.0,
            "total_samples": tot_n[func],
            "total_ns": tot_w[func],
            "total_pct": 100.0 * tot_n[func] / total_n if total_n else 0.0,
        })
        rows.append(row)
    return {"sort": sort, "total_samples": total_n, "total_ns": total_w,
            "functions": len(candidates), "rows": rows}


def flame(p: Profile, flt: Filter, max_depth: int = 0, threshold_pct: float = 0.0,
          mode: str = "cpu", inverted: bool = False) -> dict:
    """The merged call tree, roots at the top. ``max_depth``/``threshold_pct`` prune what is
    returned (0 = everything); pruned subtrees are summarised, never silently dropped.

    ``mode``: ``cpu`` (on-CPU samples), ``offcpu`` (blocking stacks weighted by blocked time;
    ``samples`` counts intervals) or ``wall`` (both). Outside ``cpu`` mode percentages and the
    threshold are shares of time, not of samples.

    ``inverted``: the bottom-up tree: each stack is merged leaf first, so the roots are the
    functions that were running (a root's weight is its self time) and a node's children are
    its callers."""
    oncpu_groups, oncpu_n, oncpu_w = oncpu_weights(p, flt)
    offcpu_groups, offcpu_n, offcpu_w = offviews.offcpu_weights(p, flt)
    paths = query_paths(p, flt)
    if flt.transforms:  # focus and drop leave stacks out: the totals are of what is left
        oncpu_groups, oncpu_n, oncpu_w = transformed_groups(oncpu_groups, paths)
        offcpu_groups, offcpu_n, offcpu_w = transformed_groups(offcpu_groups, paths)
    if mode == "offcpu":
        groups, total_n, total_w = offcpu_groups, offcpu_n, offcpu_w
    elif mode == "wall":
        groups = {k: list(v) for k, v in oncpu_groups.items()}
        for k, (n, w) in offcpu_groups.items():
            g = groups.setdefault(k, [0, 0])
            g[0] += n
            g[1] += w
        total_n, total_w = oncpu_n + offcpu_n, oncpu_w + offcpu_w
    else:
        groups, total_n, total_w = oncpu_groups, oncpu_n, oncpu_w
    by_time = mode != "cpu"
    reasons = offviews.offcpu_reasons(p, flt) if by_time else {}
    # node: [samples, weight, children dict, blocked ns per off-CPU reason]
    root: list = [0, 0, {}, {}]
    for sid, (n, w) in groups.items():
        node = root
        node[0] += n
        node[1] += w
        why = reasons.get(sid)
        path = paths.path(sid) or ()
        for func in (reversed(path) if inverted else path):
            child = node[2].get(func)
            if child is None:
                child = node[2][func] = [0, 0, {}, {}]
            child[0] += n
            child[1] += w
            if why:
                for r, ns in why.items():
                    child[3][r] = child[3].get(r, 0) + ns
            node = child
    min_n = (total_w if by_time else total_n) * threshold_pct / 100.0
    ki = 1 if by_time else 0  # which node field the threshold and percentages use
    total_k = total_w if by_time else total_n

    def depth_of(node: list) -> int:
        best = 0
        stack = [(node, 0)]
        while stack:
            nd, d = stack.pop()
            best = max(best, d)
            stack.extend((c, d + 1) for c in nd[2].values())
        return best

    lines = FrameLines(p)

    def emit(func: int, node: list, depth: int) -> dict:
        out = func_row(p, func, lines)
        out.update({"samples": node[0], "time_ns": node[1],
                    "pct": 100.0 * node[ki] / total_k if total_k else 0.0})
        if by_time:  # how much of the node's time was blocked, and why
            out["offcpu_ns"] = sum(node[3].values())
            out["reasons"] = dict(sorted(node[3].items(), key=lambda kv: -kv[1]))
        kids = sorted(node[2].items(), key=lambda kv: (-kv[1][1], -kv[1][0]))
        if max_depth and depth >= max_depth:
            if kids:
                out["children"] = []
                out["collapsed_frames"] = depth_of(node)
            else:
                out["children"] = []
            return out
        children = []
        hidden_n = hidden_w = hidden_nodes = 0
        for f, c in kids:
            if c[ki] < min_n:
                hidden_n += c[0]
                hidden_w += c[1]
                hidden_nodes += 1
                continue
            children.append(emit(f, c, depth + 1))
        out["children"] = children
        if hidden_nodes:
            out["hidden"] = {"nodes": hidden_nodes, "samples": hidden_n, "time_ns": hidden_w}
        return out

    top_nodes = sorted(root[2].items(), key=lambda kv: (-kv[1][1], -kv[1][0]))
    roots = []
    hidden = {"nodes": 0, "samples": 0, "time_ns": 0}
    for f, c in top_nodes:
        if c[ki] < min_n:
            hidden["nodes"] += 1
            hidden["samples"] += c[0]
            hidden["time_ns"] += c[1]
            continue
        roots.append(emit(f, c, 1))
    return {"total_samples": total_n, "oncpu_ns": oncpu_w, "offcpu_ns": offcpu_w, "mode": mode,
            "samples": oncpu_n, "intervals": offcpu_n, "total_ns": total_w, "roots": roots,
            "hidden": hidden, "inverted": inverted}


def threads(p: Profile, flt: Filter, limit: int = 20) -> dict:
    import numpy as np

    with p.lock:
        infos = {tid: (th.pid, th.name) for tid, th in p.threads.items()}
    _n, base, _stacks, weights, tids, times = sample_columns(p)
    if flt.start_ns is not None or flt.end_ns is not None:  # a time window (not the tid)
        keep = keep_mask(Filter(start_ns=flt.start_ns, end_ns=flt.end_ns), base, tids, times)
        weights, tids = weights[keep], tids[keep]
    cnt: dict[int, int] = {}
    wsum: dict[int, int] = {}
    if len(tids):
        uniq, inverse = np.unique(tids, return_inverse=True)
        c = np.bincount(inverse)
        w = np.bincount(inverse, weights=weights)
        for i, tid in enumerate(uniq.tolist()):
            cnt[tid] = int(c[i])
            wsum[tid] = int(round(w[i]))
    offcpu = offviews.per_thread(p, flt)
    rows = []
    for tid, (pid, name) in infos.items():
        offcpu_ns, n_intervals, blocked, by_reason = offcpu.get(tid, (0, 0, None, {}))
        rows.append({"pid": pid, "tid": tid, "name": name, "samples": cnt.get(tid, 0),
                     "oncpu_ns": wsum.get(tid, 0), "offcpu_ns": offcpu_ns, "blocked": blocked,
                     "intervals": n_intervals, "offcpu_by_reason": by_reason})
    if flt.start_ns is not None or flt.end_ns is not None:  # threads idle in the window: out
        rows = [r for r in rows if r["samples"] or r["intervals"]]
    rows.sort(key=lambda r: (-(r["oncpu_ns"] + r["offcpu_ns"]), r["tid"]))
    total = len(rows)
    if limit > 0:
        rows = rows[:limit]
    return {"threads": total, "rows": rows}


def timeline(p: Profile, flt: Filter, buckets: int = 100, per_thread: bool = False) -> dict:
    """Samples per time bucket over the run (to its last sample, off-CPU interval end or
    wakeup), or over the filter's time range when it has one (of one thread if the filter
    names one); ``per_thread`` adds the buckets of each thread."""
    import numpy as np

    _n, base, _stacks, _weights, tids, times = sample_columns(p)
    with p.lock:
        t1 = p.last_time
    c = offviews.columns(p)  # the axis runs to the last event: sample, interval end, wakeup
    if c["n"]:
        t1 = max(t1, int((c["start"] + c["dur"]).max()))
    if c["m"]:
        t1 = max(t1, int(c["w_time"].max()))
    lo = flt.start_ns or 0
    hi = flt.end_ns if flt.end_ns is not None else max(lo + 1, t1 - base)
    span = max(1, hi - lo)
    width = max(1, -(-span // buckets))
    keep = times >= base + lo
    if flt.end_ns is not None:
        keep &= times < base + hi
    if flt.tid is not None:
        keep &= tids == flt.tid
    times, tids = times[keep], tids[keep]
    idx = np.minimum((times - base - lo) // width, buckets - 1)
    counts = np.bincount(idx, minlength=buckets)
    res: dict = {"start_ns": int(lo), "bucket_ns": int(width), "counts": [int(c) for c in counts]}
    if per_thread:
        with p.lock:  # every thread recorded, sampled or not (a sleeper shows as a track too)
            names = {tid: th.name for tid, th in p.threads.items()}
        every = set(names) | set(np.unique(tids).tolist())
        if flt.tid is not None:
            every = {flt.tid}
        rows = []
        for tid in sorted(every):
            c = np.bincount(idx[tids == tid], minlength=buckets)
            rows.append({"tid": int(tid), "name": names.get(int(tid), "?"),
                         "samples": int(c.sum()), "counts": [int(x) for x in c]})
        rows.sort(key=lambda r: (-r["samples"], r["tid"]))
        res["threads"] = rows
    return res


def find_symbol(p: Profile, needle: str, start: int = 0) -> tuple[str | None, int]:
    """The first sampled function (from frame ``start`` on) whose name contains ``needle``
    (case-sensitive), and the frame index to resume from next time."""
    n = len(p.frame_func)
    for fid in range(start, n):
        name = p.funcs[p.func_of_frame(fid)].name
        if needle in name:
            return name, fid + 1
    return None, n


# Functions a complete user stack starts from (the outermost frame of a thread).
ROOT_FUNCS = frozenset({
    "_start", "__libc_start_main", "__libc_start_call_main", "start_thread", "clone", "clone3",
    "__clone", "__clone3", "__clone_internal", "_dl_start_user", "_dl_start", "thread_start",
})


def stack_health(p: Profile) -> dict:
    """How complete the stacks are: samples whose outermost frame is a thread entry point,
    and, for the rest, which binary the walk stopped in."""
    groups, total_n, _ = oncpu_weights(p, Filter())
    paths = FuncPaths(p, ())
    reached = 0
    stopped: dict[str, int] = defaultdict(int)
    unresolved_samples = 0
    for sid, (n, _w) in groups.items():
        if sid < 0:
            stopped["(empty stack)"] += n
            continue
        path = paths.get(sid)
        if any(not p.funcs[func].resolved for func in path):
            unresolved_samples += n
        root = sid
        while p.stack_parent[root] >= 0:
            root = p.stack_parent[root]
        f = p.funcs[path[0]]
        if f.name in ROOT_FUNCS or p.frame_binary[p.stack_frame[root]] == KERNEL_BINARY:
            reached += n
        else:
            stopped[f"{f.name} ({f.binary})"] += n
    worst = sorted(stopped.items(), key=lambda kv: -kv[1])[:10]
    return {
        "samples": total_n,
        "reaching_root": reached,
        "reaching_root_pct": 100.0 * reached / total_n if total_n else 0.0,
        "stopped_at": [{"frame": k, "samples": v} for k, v in worst],
        "samples_with_unresolved_frames": unresolved_samples,
    }
