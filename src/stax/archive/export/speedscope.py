"""speedscope's JSON file format: shared frames, one sampled profile per thread (on-CPU, in time
order, weights in nanoseconds) and one per thread for off-CPU intervals when there are any.

speedscope lays a sampled profile's samples end to end, so each profile spans exactly the sum
of its weights: ``endValue - startValue`` is that sum, ``startValue`` the profile's first time
relative to the earliest sample or interval of the export (never negative).
"""

from __future__ import annotations

from typing import Any

from stax import __version__
from stax.archive.export.common import Paths, intervals, reason_name, samples, thread_name
from stax.profile.tables import Profile
from stax.protocol import dumps

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def convert(p: Profile, tid: int | None = None, iv: dict[str, Any] | None = None,
            run: dict[str, Any] | None = None) -> bytes:
    paths = Paths(p)
    frames: list[dict[str, Any]] = []
    frame_index: dict[Any, int] = {}

    def frame(key: Any, name: str, file: str | None = None, line: int = 0) -> int:
        i = frame_index.get(key)
        if i is None:
            i = frame_index[key] = len(frames)
            f: dict[str, Any] = {"name": name}
            if file:
                f["file"] = file
            if line > 0:
                f["line"] = line
            frames.append(f)
        return i

    stack_memo: dict[int, list[int]] = {}

    def stack(sid: int) -> list[int]:
        got = stack_memo.get(sid)
        if got is None:
            got = []
            for func in paths.func_path(sid):
                fn = p.funcs[func]
                name = f"{fn.name} (inlined)" if fn.inlined else fn.name
                # a Python function: its .py file and first line (a native one: its binary)
                got.append(frame(("f", func), f"{name} ({fn.binary})", fn.path or None,
                                 fn.addr if fn.python else 0))
            stack_memo[sid] = got
        return got

    times, tids, stacks, weights = samples(p, tid)
    per_thread: dict[int, tuple[list[list[int]], list[int], int, int]] = {}
    last: dict[int, int] = {}
    for t, th, sid, w in zip(times.tolist(), tids.tolist(), stacks.tolist(), weights.tolist(),
                             strict=True):
        entry = per_thread.get(th)
        if entry is None:
            entry = per_thread[th] = ([], [], t, t)
        ss, ws, start, _end = entry
        if last.get(th) == sid and ws:  # merge runs of the same stack
            ws[-1] += w
        else:
            ss.append(stack(sid))
            ws.append(w)
            last[th] = sid
        per_thread[th] = (ss, ws, start, t + w)
    offcpu: dict[int, tuple[list[list[int]], list[int], int, int]] = {}
    for th, start, dur, reason, sid in sorted(intervals(iv, tid), key=lambda r: r[1]):
        ss, ws, s0, _e = offcpu.get(th, ([], [], start, start))
        st = stack(sid) + [frame(("r", reason), f"[off-cpu:{reason_name(p, reason)}]")]
        ss.append(st)
        ws.append(dur)
        offcpu[th] = (ss, ws, s0, start + dur)
    starts = [e[2] for e in per_thread.values()] + [e[2] for e in offcpu.values()]
    base = min(starts) if starts else 0
    profiles = []
    for kind, table in (("on-CPU", per_thread), ("off-CPU", offcpu)):
        for th in sorted(table):
            ss, ws, start, _end = table[th]
            profiles.append({"type": "sampled",
                             "name": f"{thread_name(p, th)} (tid {th}) {kind}",
                             "unit": "nanoseconds", "startValue": start - base,
                             "endValue": start - base + sum(ws), "samples": ss, "weights": ws})
    name = (run or {}).get("command") or "stax profile"
    doc = {"$schema": SCHEMA_URL, "shared": {"frames": frames}, "profiles": profiles,
           "name": str(name), "activeProfileIndex": 0, "exporter": f"stax {__version__}"}
    return dumps(doc, separators=(",", ":")).encode()
