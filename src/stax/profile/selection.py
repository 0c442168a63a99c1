"""What the views select from the tables: the Filter (thread, time range, excluded functions),
snapshots of the sample columns, rows grouped by stack and the function paths of stacks.

The shared ground of views.py (on-CPU views), offviews.py (off-CPU views), annotate and the
exports; it depends on the tables alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stax.profile.tables import Profile


@dataclass(frozen=True, slots=True)
class Filter:
    tid: int | None = None
    start_ns: int | None = None  # relative to the run's first sample
    end_ns: int | None = None
    exclude: tuple[str, ...] = ()  # function names dropped from stacks
    inline: bool = True  # frames expanded into their inline chains (False: --no-inline)
    # transforms of the stack paths (top, flamegraph): see FuncPaths
    focus: str | None = None  # only stacks through this function, rooted at it
    focus_path: tuple[str, ...] = ()  # only stacks starting with this path, rooted at its end
    drop: tuple[str, ...] = ()  # samples whose stack holds one of these functions are dropped
    collapse_binary: tuple[str, ...] = ()  # a binary's consecutive frames become one node
    merge_recursion: bool = False  # a function calling itself directly is one level

    @property
    def transforms(self) -> bool:
        return bool(self.focus or self.focus_path or self.drop or self.collapse_binary
                    or self.merge_recursion)


def sample_columns(p: Profile) -> tuple[int, int, Any, Any, Any, Any]:
    """A consistent snapshot of the sample columns as NumPy arrays: (rows, first time, stack,
    weight_ns, tid, time_ns). Copies: the capture thread may grow the arrays meanwhile, and a
    live buffer export would block that."""
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
    _n, base, stacks, weights, tids, times = sample_columns(p)
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


def oncpu_weights(p: Profile, flt: Filter) -> tuple[dict[int, list[int]], int, int]:
    """On-CPU samples grouped by stack id: {stack: [samples, weight_ns]}, plus totals."""
    stacks, weights, _tids, _times = selected_samples(p, flt)
    return group_by_stack(stacks, weights)


def memo_path(memo: dict[int, tuple[int, ...]], parent: Any, sid: int,
              item: Callable[[int], Any]) -> tuple[int, ...]:
    """The path (root first) of stack ``sid``: ``item`` of each stack node (an int, a tuple of
    ints for several levels, or None dropping the node); memoised in ``memo`` (which holds -1:
    the empty path) for every node on the way."""
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
        if isinstance(x, tuple):
            path = path + x
        elif x is not None:
            path = path + (x,)
        memo[s] = path
    return path


class FuncPaths:
    """Function paths (root first) of stack ids, without the excluded functions; memoised per
    query (and across queries when nothing is excluded).

    With ``inline`` a frame is its function followed by the functions inlined at its address
    (``Profile.frame_inline``, outermost first), each a level of the path; without, the
    function alone."""

    def __init__(self, p: Profile, exclude: tuple[str, ...], inline: bool = True) -> None:
        self.p = p
        self.inline = inline
        # without exclusions a stack's path never changes: share the memo across queries
        shared = p.path_cache if inline else p.path_cache_outer
        self.memo: dict[int, tuple[int, ...]] = shared if not exclude else {-1: ()}
        self.excluded: set[int] | None = None
        if exclude:
            self.excluded = set()
            self.exclude = exclude

    def _skip(self, func: int) -> bool:
        if self.excluded is None:
            return False
        name = self.p.funcs[func].name
        return any(x in name for x in self.exclude)

    def _func(self, sid: int) -> int | tuple[int, ...] | None:
        fid = self.p.stack_frame[sid]
        func = self.p.func_of_frame(fid)
        chain = self.p.frame_inline.get(fid) if self.inline else None
        if chain:
            return tuple(f for f in (func, *chain) if not self._skip(f))
        return None if self._skip(func) else func

    def get(self, sid: int) -> tuple[int, ...]:
        return memo_path(self.memo, self.p.stack_parent, sid, self._func)

    def path(self, sid: int) -> tuple[int, ...] | None:
        """The path of the views: here ``get``; with transforms None drops the stack."""
        return self.get(sid)


class TransformedPaths(FuncPaths):
    """FuncPaths with the Filter's transforms applied, in this order: ``drop`` (the path is
    None: the stack's samples are left out), ``collapse_binary`` (consecutive frames of such a
    binary become one node named after it), ``merge_recursion`` (consecutive calls of one
    function become one level), ``focus`` (None unless the function is on the path; else the
    path from its outermost call), ``focus_path`` (None unless the path so far starts with those
    names; else the path from its last one). Each works on the tree the ones before it leave,
    so a path picked in a view shown with the others applied keeps its meaning. Names are
    matched exactly; a binary by its path or file name."""

    def __init__(self, p: Profile, flt: Filter) -> None:
        super().__init__(p, flt.exclude, flt.inline)
        self.flt = flt
        self.names: dict[int, str] = {}
        self.out: dict[int, tuple[int, ...] | None] = {}
        self.collapsed: dict[int, int | None] = {}  # func -> its binary's node (None: kept)

    def name(self, func: int) -> str:
        n = self.names.get(func)
        if n is None:
            n = self.names[func] = self.p.funcs[func].name
        return n

    def _node(self, func: int) -> int | None:
        if func in self.collapsed:
            return self.collapsed[func]
        binary = self.p.funcs[func].binary
        node = None
        if binary in self.flt.collapse_binary or \
                binary.rsplit("/", 1)[-1] in self.flt.collapse_binary:
            node = self.p.collapsed_func(binary)
        self.collapsed[func] = node
        return node

    def path(self, sid: int) -> tuple[int, ...] | None:
        if sid in self.out:
            return self.out[sid]
        res = self._transform(self.get(sid))
        self.out[sid] = res
        return res

    def _transform(self, path: tuple[int, ...]) -> tuple[int, ...] | None:
        flt = self.flt
        if flt.drop and any(self.name(f) in flt.drop for f in path):
            return None
        if flt.collapse_binary:
            out: list[int] = []
            for f in path:
                node = self._node(f)
                f = f if node is None else node
                if node is None or not out or out[-1] != node:
                    out.append(f)
            path = tuple(out)
        if flt.merge_recursion:
            path = tuple(f for i, f in enumerate(path) if i == 0 or path[i - 1] != f)
        if flt.focus:
            at = next((i for i, f in enumerate(path) if self.name(f) == flt.focus), None)
            if at is None:
                return None
            path = path[at:]
        if flt.focus_path:
            k = len(flt.focus_path)
            if len(path) < k or tuple(self.name(f) for f in path[:k]) != flt.focus_path:
                return None
            path = path[k - 1:]
        return path


def transformed_groups(groups: dict[int, list[int]], paths: FuncPaths
                       ) -> tuple[dict[int, list[int]], int, int]:
    """``groups`` (stack -> [rows, weight]) without the stacks the transforms leave out, and
    the new row count and total weight."""
    kept = {sid: g for sid, g in groups.items() if paths.path(sid) is not None}
    return kept, sum(g[0] for g in kept.values()), sum(g[1] for g in kept.values())


def query_paths(p: Profile, flt: Filter) -> FuncPaths | TransformedPaths:
    return TransformedPaths(p, flt) if flt.transforms else FuncPaths(p, flt.exclude, flt.inline)
