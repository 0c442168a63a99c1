"""Views over the profile tables: top, flame tree, threads, time buckets.

Each view is a pure function of the tables plus a filter (thread, time range); results are plain
JSON-ready dicts so the server can send them as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stax.profile.tables import KERNEL_BINARY, Profile


@dataclass(frozen=True, slots=True)
class Filter:
    tid: int | None = None
    start_ns: int | None = None  # relative to the run's first sample
    end_ns: int | None = None
    exclude: tuple[str, ...] = ()  # function names dropped from stacks


def _columns(p: Profile) -> tuple[int, int, Any, Any, Any, Any]:
    """A consistent snapshot of the sample columns as NumPy arrays (copies: the capture thread
    may grow the arrays meanwhile, and a live buffer export would block that)."""
    import numpy as np

    with p.lock:
        n = len(p.s_stack)
        base = p.first_time
        stacks = np.frombuffer(p.s_stack[:n], dtype=np.int32) if n else np.zeros(0, np.int32)
        weights = np.frombuffer(p.s_weight[:n], dtype=np.int64) if n else np.zeros(0, np.int64)
        tids = np.frombuffer(p.s_tid[:n], dtype=np.int32) if n else np.zeros(0, np.int32)
        times = np.frombuffer(p.s_time[:n], dtype=np.int64) if n else np.zeros(0, np.int64)
    return n, base, stacks, weights, tids, times


def keep_mask(flt: Filter, base: int, tids: Any, times: Any) -> Any:
    """Mask of the rows (samples, off-CPU intervals) the filter keeps: by thread, and by time
    (relative to the run's first sample ``base``) in the range."""
    import numpy as np

    keep = np.ones(len(tids), dtype=bool)
    if flt.tid is not None:
        keep &= tids == flt.tid
    if flt.start_ns is not None:
        keep &= times >= base + flt.start_ns
    if flt.end_ns is not None:
        keep &= times < base + flt.end_ns
    return keep


def selected_samples(p: Profile, flt: Filter) -> tuple[Any, Any, Any, Any]:
    """Sample columns (stack, weight_ns, tid, time_ns) of the samples the filter keeps."""
    _n, base, stacks, weights, tids, times = _columns(p)
    if flt.tid is None and flt.start_ns is None and flt.end_ns is None:
        return stacks, weights, tids, times
    keep = keep_mask(flt, base, tids, times)
    return stacks[keep], weights[keep], tids[keep], times[keep]


def group_by_stack(stacks: Any, weights: Any) -> tuple[dict[int, list[int]], int, int]:
    """Rows grouped by stack id: {stack: [rows, weight]}, plus the row count and total weight."""
    import numpy as np

    if not len(stacks):
        return {}, 0, 0
    # stack id -1 (an empty call chain) is shifted to bin 0
    counts = np.bincount(stacks + 1)
    sums = np.bincount(stacks + 1, weights=weights)
    ids = np.nonzero(counts)[0]
    out = {int(i) - 1: [int(counts[i]), int(round(sums[i]))] for i in ids}
    return out, int(len(stacks)), int(weights.sum())


def _stack_weights(p: Profile, flt: Filter) -> tuple[dict[int, list[int]], int, int]:
    """Samples grouped by stack id: {stack: [samples, weight_ns]}, plus totals."""
    stacks, weights, _tids, _times = selected_samples(p, flt)
    return group_by_stack(stacks, weights)


def memo_path(memo: dict[int, tuple[int, ...]], parent: Any, sid: int,
              item: Callable[[int], int | None]) -> tuple[int, ...]:
    """The path (root first) of stack ``sid``: ``item`` of each stack node, None dropping the
    node; memoised in ``memo`` (which holds -1: the empty path) for every node on the way."""
    path = memo.get(sid)
    if path is not None:
        return path
    # walk up to the nearest memoised ancestor, then build down
    chain = []
    s = sid
    while s not in memo:
        chain.append(s)
        s = parent[s]
    path = memo[s]
    for s in reversed(chain):
        x = item(s)
        if x is not None:
            path = path + (x,)
        memo[s] = path
    return path


class _Paths:
    """Function paths (root first) of stack ids, memoised per query."""

    def __init__(self, p: Profile, exclude: tuple[str, ...]) -> None:
        self.p = p
        # without exclusions a stack's path never changes: share the memo across queries
        self.memo: dict[int, tuple[int, ...]] = p.path_cache if not exclude else {-1: ()}
        self.excluded: set[int] | None = None
        if exclude:
            self.excluded = set()
            self.exclude = exclude

    def _skip(self, func: int) -> bool:
        if self.excluded is None:
            return False
        name = self.p.funcs[func].name
        return any(x in name for x in self.exclude)

    def _func(self, sid: int) -> int | None:
        func = self.p.func_of_frame(self.p.stack_frame[sid])
        return None if self._skip(func) else func

    def get(self, sid: int) -> tuple[int, ...]:
        return memo_path(self.memo, self.p.stack_parent, sid, self._func)


def func_row(p: Profile, func: int) -> dict:
    f = p.funcs[func]
    return {"func": f.name, "binary": f.binary}


def top(p: Profile, flt: Filter, sort: str = "self", limit: int = 20) -> dict:
    groups, total_n, total_w = _stack_weights(p, flt)
    paths = _Paths(p, flt.exclude)
    self_n: dict[int, int] = defaultdict(int)
    self_w: dict[int, int] = defaultdict(int)
    tot_n: dict[int, int] = defaultdict(int)
    tot_w: dict[int, int] = defaultdict(int)
    for sid, (n, w) in groups.items():
        path = paths.get(sid)
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
    for func in order:
        row = func_row(p, func)
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
          mode: str = "cpu") -> dict:
    """The merged call tree, roots at the top. ``max_depth``/``threshold_pct`` prune what is
    returned (0 = everything); pruned subtrees are summarised, never silently dropped.

    ``mode``: ``cpu`` (on-CPU samples), ``offcpu`` (blocking stacks weighted by blocked time;
    ``samples`` counts intervals) or ``wall`` (both). Outside ``cpu`` mode percentages and the
    threshold are shares of time, not of samples."""
    from stax.profile import offviews

    cpu_groups, cpu_n, cpu_w = _stack_weights(p, flt)
    off_groups, off_n, off_w = offviews.stack_weights(p, flt)
    if mode == "offcpu":
        groups, total_n, total_w = off_groups, off_n, off_w
    elif mode == "wall":
        groups = {k: list(v) for k, v in cpu_groups.items()}
        for k, (n, w) in off_groups.items():
            g = groups.setdefault(k, [0, 0])
            g[0] += n
            g[1] += w
        total_n, total_w = cpu_n + off_n, cpu_w + off_w
    else:
        groups, total_n, total_w = cpu_groups, cpu_n, cpu_w
    by_time = mode != "cpu"
    paths = _Paths(p, flt.exclude)
    # node: [samples, weight, children dict]
    root: list = [0, 0, {}]
    for sid, (n, w) in groups.items():
        node = root
        node[0] += n
        node[1] += w
        for func in paths.get(sid):
            child = node[2].get(func)
            if child is None:
                child = node[2][func] = [0, 0, {}]
            child[0] += n
            child[1] += w
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

    def emit(func: int, node: list, depth: int) -> dict:
        out = func_row(p, func)
        out.update({"samples": node[0], "time_ns": node[1],
                    "pct": 100.0 * node[ki] / total_k if total_k else 0.0})
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
    return {"total_samples": total_n, "oncpu_ns": cpu_w, "offcpu_ns": off_w, "mode": mode,
            "samples": cpu_n, "intervals": off_n, "total_ns": total_w, "roots": roots,
            "hidden": hidden}


def threads(p: Profile, flt: Filter, limit: int = 20) -> dict:
    import numpy as np

    with p.lock:
        infos = {tid: (th.pid, th.name) for tid, th in p.threads.items()}
    _n, _base, _stacks, weights, tids, _times = _columns(p)
    cnt: dict[int, int] = {}
    wsum: dict[int, int] = {}
    if len(tids):
        uniq, inverse = np.unique(tids, return_inverse=True)
        c = np.bincount(inverse)
        w = np.bincount(inverse, weights=weights)
        for i, tid in enumerate(uniq.tolist()):
            cnt[tid] = int(c[i])
            wsum[tid] = int(round(w[i]))
    from stax.profile import offviews

    off = offviews.per_thread(p)
    rows = []
    for tid, (pid, name) in infos.items():
        off_ns, n_iv, blocked, by_reason = off.get(tid, (0, 0, None, {}))
        rows.append({"pid": pid, "tid": tid, "name": name, "samples": cnt.get(tid, 0),
                     "oncpu_ns": wsum.get(tid, 0), "offcpu_ns": off_ns, "blocked": blocked,
                     "intervals": n_iv, "offcpu_by_reason": by_reason})
    rows.sort(key=lambda r: (-(r["oncpu_ns"] + r["offcpu_ns"]), r["tid"]))
    total = len(rows)
    if limit > 0:
        rows = rows[:limit]
    return {"threads": total, "rows": rows}


def timeline(p: Profile, flt: Filter, buckets: int = 100) -> dict:
    """Samples per time bucket over the run (of one thread if the filter names one)."""
    import numpy as np

    _n, base, _stacks, _weights, tids, times = _columns(p)
    with p.lock:
        t1 = p.last_time
    span = max(1, t1 - base)
    width = max(1, -(-span // buckets))
    if flt.tid is not None:
        times = times[tids == flt.tid]
    idx = np.minimum((times - base) // width, buckets - 1)
    counts = np.bincount(idx, minlength=buckets)
    return {"start_ns": 0, "bucket_ns": int(width), "counts": [int(c) for c in counts]}


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
    groups, total_n, _ = _stack_weights(p, Filter())
    paths = _Paths(p, ())
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
