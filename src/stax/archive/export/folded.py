"""Brendan Gregg's folded stacks (``main;f;g 123``): one line per distinct stack, root first,
weighted by samples; off-CPU stacks end in an ``[off-cpu:REASON]`` frame.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from stax.archive.export.common import Paths, grouped, intervals, reason_name
from stax.profile.tables import Profile


def _name(p: Profile, func: int) -> str:
    # ';' separates frames and the last space separates the count: keep both out of names
    f = p.funcs[func]
    name = f"{f.name} (inlined)" if f.inlined else f.name
    return name.replace(";", ":").replace("\n", " ")


def convert(p: Profile, tid: int | None = None, iv: dict[str, Any] | None = None,
            run: dict[str, Any] | None = None) -> bytes:
    paths = Paths(p)
    lines: dict[str, int] = defaultdict(int)
    period = 0
    total_n = total_w = 0
    for _tid, sid, n, w in grouped(p, tid):
        names = [_name(p, f) for f in paths.func_path(sid)] or ["[no stack]"]
        lines[";".join(names)] += n
        total_n += n
        total_w += w
    if total_n:
        period = max(1, total_w // total_n)
    blocked: dict[str, int] = defaultdict(int)
    for _tid, _start, dur, reason, sid in intervals(iv, tid):
        names = [_name(p, f) for f in paths.func_path(sid)]
        names.append(f"[off-cpu:{reason_name(p, reason)}]")
        blocked[";".join(names)] += dur
    for key, ns in blocked.items():
        # off-CPU time in units of the average on-CPU sample, so both share one scale; summed
        # per stack before rounding, so many short intervals are not rounded away one by one
        weight = round(ns / (period or 1_000_000))
        if weight > 0:
            lines[key] += weight
    out = [f"{k} {v}" for k, v in sorted(lines.items())]
    return ("\n".join(out) + ("\n" if out else "")).encode()
