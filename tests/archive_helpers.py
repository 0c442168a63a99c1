"""Hand-built profiles and a minimal protobuf reader shared by the archive tests."""

from __future__ import annotations

import gzip
from typing import Any

from stax.leb128 import read_uleb
from stax.profile.tables import Func, Profile, Thread


def build_profile(spec: dict[tuple[str, ...], int], tid_of: dict[str, int] | None = None,
                  period: int = 1_000_000, start: int = 10_000_000_000) -> Profile:
    """A profile whose samples follow ``spec``: {(root, ..., leaf): samples}. The leaf's name
    picks the thread through ``tid_of`` (default tid 100)."""
    p = Profile(None)
    funcs: dict[str, int] = {}

    def func(name: str) -> int:
        if name not in funcs:
            funcs[name] = len(p.funcs)
            p.funcs.append(Func(name, "prog", "/usr/bin/prog", 0x1000 + 16 * len(p.funcs), 16,
                                True))
        return funcs[name]

    prog = p.binary_id("/usr/bin/prog", "abcd1234", 1)
    t = start
    rows = []
    for path, n in spec.items():
        sid = -1
        for name in path:
            fid = p.frame_id(prog, 0x1000 + 16 * func(name))
            p.frame_func[fid] = funcs[name]
            sid = p.stack_id(sid, fid)
        tid = (tid_of or {}).get(path[-1], 100)
        rows += [(sid, tid)] * n
    for i, (sid, tid) in enumerate(rows):
        # interleave stacks over time, deterministically
        p.s_time.append(t + i * period)
        p.s_tid.append(tid)
        p.s_stack.append(sid)
        p.s_weight.append(period)
        p.s_cpu.append(i % 2)
        if tid not in p.threads:
            p.threads[tid] = Thread(1, tid, [(t, f"worker-{tid}")], t, t)
        p.threads[tid].end_ns = t + i * period
    p.first_time = start
    p.last_time = start + max(0, len(rows) - 1) * period
    p.counts["samples"] = len(rows)
    return p


SPLIT = {("main", "work_a"): 60, ("main", "work_b"): 30, ("main", "work_c"): 10}
# the summary of the run these profiles come from, as archives store it
RUN = {"id": 1, "state": "stopped", "command": "./prog", "samples": 100, "mode": "launch",
       "pid": 1, "argv": ["./prog"], "frequency_hz": 1000}


def pb_decode(data: bytes) -> dict[int, list[Any]]:
    """Decode one protobuf message: {field: [int for varints | bytes for length-delimited]}."""
    out: dict[int, list[Any]] = {}
    i = 0
    while i < len(data):
        key, i = read_uleb(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val: Any
            val, i = read_uleb(data, i)
        elif wire == 2:
            n, i = read_uleb(data, i)
            val = data[i:i + n]
            i += n
        else:
            raise ValueError(f"unexpected wire type {wire}")
        out.setdefault(field, []).append(val)
    return out


def pb_packed(data: bytes) -> list[int]:
    vals = []
    i = 0
    while i < len(data):
        v, i = read_uleb(data, i)
        vals.append(v)
    return vals


def pprof_stacks(blob: bytes) -> tuple[dict[str, int], list[str], dict[int, list[Any]]]:
    """Folded stacks (root;…;leaf → first sample value) read back from a gzipped pprof."""
    prof = pb_decode(gzip.decompress(blob))
    strings = [s.decode() for s in prof[6]]
    funcs = {}
    for raw in prof.get(5, []):
        f = pb_decode(raw)
        funcs[f[1][0]] = strings[f.get(2, [0])[0]]
    locs = {}
    for raw in prof.get(4, []):
        loc = pb_decode(raw)
        line = pb_decode(loc[4][0])
        locs[loc[1][0]] = funcs[line[1][0]]
    stacks: dict[str, int] = {}
    for raw in prof.get(2, []):
        s = pb_decode(raw)
        ids = pb_packed(s[1][0]) if 1 in s else []
        vals = pb_packed(s[2][0])
        key = ";".join(locs[i] for i in reversed(ids))
        stacks[key] = stacks.get(key, 0) + vals[0]
    return stacks, strings, prof
