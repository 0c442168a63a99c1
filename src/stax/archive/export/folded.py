"""Brendan Gregg's folded stacks (``main;f;g 123``): one line per distinct stack, root first,
one weight per file, chosen by ``mode``:

- ``cpu`` (the default): on-CPU samples only, weighted by sample count;
- ``offcpu``: blocking stacks only, each ending in an ``[off-cpu:REASON]`` frame, weighted by
  the time blocked in nanoseconds;
- ``wall``: both, in nanoseconds (an on-CPU stack weighs its samples' on-CPU time).

With ``per_thread`` every stack starts with a ``NAME (TID)`` root frame.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from stax.archive.export.common import Paths, grouped, intervals, reason_name, thread_name
from stax.profile.tables import Profile

MODES = ("cpu", "offcpu", "wall")


def _clean(name: str) -> str:
    # ';' separates frames and the last space separates the count: keep both out of names
    return name.replace(";", ":").replace("\n", " ")


def convert(p: Profile, tid: int | None = None, iv: dict[str, Any] | None = None,
            run: dict[str, Any] | None = None, mode: str = "cpu",
            per_thread: bool = False) -> bytes:
    if mode not in MODES:
        raise ValueError(f"unknown folded mode {mode!r} (one of: {', '.join(MODES)})")
    paths = Paths(p)
    names: dict[int, str] = {}

    def stack(th: int, sid: int) -> list[str]:
        out = [f"{_clean(thread_name(p, th))} ({th})"] if per_thread else []
        for f in paths.func_path(sid):
            n = names.get(f)
            if n is None:
                fn = p.funcs[f]
                n = names[f] = _clean(f"{fn.name} (inlined)" if fn.inlined else fn.name)
            out.append(n)
        return out

    roots = 1 if per_thread else 0
    lines: dict[str, int] = defaultdict(int)
    if mode in ("cpu", "wall"):
        for th, sid, n, w in grouped(p, tid):
            frames = stack(th, sid)
            if len(frames) == roots:
                frames.append("[no stack]")
            lines[";".join(frames)] += n if mode == "cpu" else w
    if mode in ("offcpu", "wall"):
        for th, _start, dur, reason, sid in intervals(iv, tid):
            frames = stack(th, sid)
            frames.append(f"[off-cpu:{reason_name(p, reason)}]")
            lines[";".join(frames)] += dur
    out = [f"{k} {v}" for k, v in sorted(lines.items()) if v > 0]
    return ("\n".join(out) + ("\n" if out else "")).encode()
