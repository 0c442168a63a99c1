"""Samples in time order with their stacks: what a stack chart draws.

A pure view like the others in stax.profile: the samples the filter keeps (thread, time range),
evenly thinned to at most ``max_samples`` when there are more, each as ``[time_ns, stack]`` with
the stack an index into a table of distinct function paths (root first), whose entries index a
table of functions. Shared tables keep a reply small: a thread's samples repeat few stacks.
The Filter's transforms apply as in the other views: the samples a transform leaves out
(``drop``, ``focus``, ``focus_path``) are not there, the others have their transformed paths.
"""

from __future__ import annotations

from stax.profile.selection import Filter, keep_mask, query_paths, sample_columns
from stax.profile.tables import Profile

DEFAULT_MAX = 5000


def samples(p: Profile, flt: Filter, max_samples: int = DEFAULT_MAX) -> dict:
    """``{samples: [[time_ns, stack], ...] (time order), stacks: [[func, ...] root first],
    funcs: [{func, binary}], total, returned, step, interval_ns}``; ``step`` is the stride of
    the thinning (1: every sample), ``interval_ns`` the median gap between the samples returned
    (what one sample stands for when drawn)."""
    import numpy as np

    _n, base, stacks, _w, tids, times = sample_columns(p)
    keep = keep_mask(flt, base, tids, times)
    stacks, times = stacks[keep], times[keep]
    paths = query_paths(p, flt)
    if flt.transforms and len(stacks):  # leave out the samples the transforms drop
        uniq, inverse = np.unique(stacks, return_inverse=True)
        kept = np.array([paths.path(int(s)) is not None for s in uniq.tolist()], dtype=bool)
        stacks, times = stacks[kept[inverse]], times[kept[inverse]]
    order = np.argsort(times, kind="stable")
    stacks, times = stacks[order], times[order]
    total = len(times)
    step = max(1, -(-total // max_samples)) if max_samples > 0 else 1
    stacks, times = stacks[::step], times[::step]
    stack_ix: dict[int, int] = {}
    func_ix: dict[int, int] = {}
    stack_rows: list[list[int]] = []
    funcs: list[dict] = []
    out = []
    for sid, t in zip(stacks.tolist(), times.tolist(), strict=True):
        k = stack_ix.get(sid)
        if k is None:
            row = []
            for func in paths.path(sid) or ():
                f = func_ix.get(func)
                if f is None:
                    f = func_ix[func] = len(funcs)
                    fn = p.funcs[func]
                    funcs.append({"func": fn.name, "binary": fn.binary})
                row.append(f)
            k = stack_ix[sid] = len(stack_rows)
            stack_rows.append(row)
        out.append([t - base, k])
    gaps = np.diff(times) if len(times) > 1 else np.zeros(0, np.int64)
    interval = int(np.median(gaps)) if len(gaps) else 0
    return {"samples": out, "stacks": stack_rows, "funcs": funcs, "total": int(total),
            "returned": len(out), "step": int(step), "interval_ns": interval}
