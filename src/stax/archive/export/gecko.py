"""The Firefox Profiler's processed profile format: one thread object per thread with column
tables (samples, stackTable, frameTable, funcTable, resourceTable, stringArray) and ``libs``.

Off-CPU intervals become samples weighted by their duration in a second "off-CPU" thread.
"""

from __future__ import annotations

from typing import Any

from stax import __version__
from stax.archive.export.common import Paths, intervals, reason_name, samples, thread_name
from stax.profile.tables import KERNEL_BINARY, Profile
from stax.protocol import dumps

PROCESSED_VERSION = 47
GECKO_VERSION = 27
CATEGORIES = [
    {"name": "Other", "color": "grey", "subcategories": ["Other"]},
    {"name": "User", "color": "yellow", "subcategories": ["Other"]},
    {"name": "Kernel", "color": "orange", "subcategories": ["Other"]},
    {"name": "Off-CPU", "color": "blue", "subcategories": ["Other"]},
]


class _Thread:
    """The interned tables of one exported thread."""

    def __init__(self, p: Profile, libs: dict[int, int]) -> None:
        self.p = p
        self.libs = libs
        self.strings: list[str] = []
        self.string_ids: dict[str, int] = {}
        self.stack_prefix: list[int | None] = []
        self.stack_frame: list[int] = []
        self.stack_category: list[int] = []
        self.stack_ids: dict[tuple[int, int], int] = {}
        self.frame_func: list[int] = []
        self.frame_address: list[int] = []
        self.frame_category: list[int] = []
        self.frame_depth: list[int] = []  # inlineDepth: 0 the function, 1.. inlined in it
        self.frame_ids: dict[Any, int] = {}
        self.func_name: list[int] = []
        self.func_resource: list[int] = []
        self.func_file: list[int | None] = []
        self.func_ids: dict[Any, int] = {}
        self.res_lib: list[int | None] = []
        self.res_name: list[int] = []
        self.res_ids: dict[int, int] = {}
        self.memo: dict[int, int | None] = {}

    def string(self, s: str) -> int:
        i = self.string_ids.get(s)
        if i is None:
            i = self.string_ids[s] = len(self.strings)
            self.strings.append(s)
        return i

    def _resource(self, binary: int) -> int:
        r = self.res_ids.get(binary)
        if r is None:
            r = self.res_ids[binary] = len(self.res_name)
            self.res_lib.append(self.libs.get(binary))
            self.res_name.append(self.string(self.p.binaries[binary].name))
        return r

    def _func(self, key: Any, name: str, binary: int | None, path: str | None) -> int:
        f = self.func_ids.get(key)
        if f is None:
            f = self.func_ids[key] = len(self.func_name)
            self.func_name.append(self.string(name))
            self.func_resource.append(self._resource(binary) if binary is not None else -1)
            self.func_file.append(self.string(path) if path else None)
        return f

    def frame(self, key: Any, func: int, address: int, category: int, depth: int = 0) -> int:
        fr = self.frame_ids.get(key)
        if fr is None:
            fr = self.frame_ids[key] = len(self.frame_func)
            self.frame_func.append(func)
            self.frame_address.append(address)
            self.frame_category.append(category)
            self.frame_depth.append(depth)
        return fr

    def push(self, prefix: int | None, frame: int) -> int:
        key = (-1 if prefix is None else prefix, frame)
        s = self.stack_ids.get(key)
        if s is None:
            s = self.stack_ids[key] = len(self.stack_frame)
            self.stack_prefix.append(prefix)
            self.stack_frame.append(frame)
            self.stack_category.append(self.frame_category[frame])
        return s

    def stack(self, paths: Paths, sid: int) -> int | None:
        if sid in self.memo:
            return self.memo[sid]
        p = self.p
        cur: int | None = None
        for f in paths.frame_path(sid):
            func = p.func_of_frame(f)
            fn = p.funcs[func]
            b = p.frame_binary[f]
            fid = self._func(("f", func), fn.name, b, fn.path or None)
            cat = 2 if b == KERNEL_BINARY else 1
            cur = self.push(cur, self.frame(("a", f), fid, p.frame_offset[f], cat))
            # the functions inlined at this address: one frame each, at the same address
            for depth, ifunc in enumerate(p.frame_inline.get(f, ()), 1):
                ifn = p.funcs[ifunc]
                ifid = self._func(("f", ifunc), ifn.name, b, ifn.path or None)
                cur = self.push(cur, self.frame(("a", f, depth), ifid, p.frame_offset[f], cat,
                                                depth))
        self.memo[sid] = cur
        return cur

    def tables(self) -> dict[str, Any]:
        nf = len(self.frame_func)
        return {
            "stackTable": {"length": len(self.stack_frame), "prefix": self.stack_prefix,
                           "frame": self.stack_frame, "category": self.stack_category,
                           "subcategory": [0] * len(self.stack_frame)},
            "frameTable": {"length": nf, "address": self.frame_address,
                           "inlineDepth": self.frame_depth, "category": self.frame_category,
                           "subcategory": [0] * nf, "func": self.frame_func,
                           "nativeSymbol": [None] * nf, "innerWindowID": [None] * nf,
                           "implementation": [None] * nf, "line": [None] * nf,
                           "column": [None] * nf},
            "funcTable": {"length": len(self.func_name), "name": self.func_name,
                          "isJS": [False] * len(self.func_name),
                          "relevantForJS": [False] * len(self.func_name),
                          "resource": self.func_resource, "fileName": self.func_file,
                          "lineNumber": [None] * len(self.func_name),
                          "columnNumber": [None] * len(self.func_name)},
            "resourceTable": {"length": len(self.res_name), "lib": self.res_lib,
                              "name": self.res_name, "host": [None] * len(self.res_name),
                              "type": [1] * len(self.res_name)},
            "nativeSymbols": {"length": 0, "libIndex": [], "address": [], "name": [],
                              "functionSize": []},
            "stringArray": self.strings,
        }


def _thread_obj(p: Profile, th: int, name: str, t: _Thread, times: list[float],
                stacks: list[int | None], weights: list[int], start_ms: float,
                end_ms: float) -> dict[str, Any]:
    info = p.threads.get(th)
    pid = info.pid if info is not None else th
    return {
        "name": name, "processName": thread_name(p, pid), "processType": "default",
        "pid": str(pid), "tid": th, "isMainThread": pid == th,
        "processStartupTime": 0, "processShutdownTime": None,
        "registerTime": start_ms, "unregisterTime": None, "pausedRanges": [],
        "samples": {"length": len(stacks), "stack": stacks, "time": times,
                    "weight": weights, "weightType": "tracing-ms"},
        "markers": {"length": 0, "category": [], "data": [], "endTime": [], "name": [],
                    "phase": [], "startTime": []},
        **t.tables(),
    }


def convert(p: Profile, tid: int | None = None, iv: dict[str, Any] | None = None,
            run: dict[str, Any] | None = None) -> bytes:
    paths = Paths(p)
    libs_list: list[dict[str, Any]] = []
    libs: dict[int, int] = {}
    for b, binary in enumerate(p.binaries):
        if binary.path.startswith("/"):
            libs[b] = len(libs_list)
            libs_list.append({"name": binary.name, "path": binary.path,
                              "debugName": binary.name, "debugPath": binary.path,
                              "breakpadId": (binary.build_id or "").upper(),
                              "codeId": binary.build_id, "arch": "x86_64"})
    times, tids, stacks, weights = samples(p, tid)
    base = p.first_time
    per: dict[int, tuple[list[float], list[int | None], list[int]]] = {}
    threads: dict[int, _Thread] = {}
    for t, th, sid, w in zip(times.tolist(), tids.tolist(), stacks.tolist(), weights.tolist(),
                             strict=True):
        tt = threads.get(th)
        if tt is None:
            tt = threads[th] = _Thread(p, libs)
            per[th] = ([], [], [])
        ts, ss, ws = per[th]
        ts.append((t - base) / 1e6)
        ss.append(tt.stack(paths, sid))
        ws.append(w / 1e6)
    end_ms = max(0, p.last_time - base) / 1e6
    out_threads = []
    for th in sorted(per):
        ts, ss, ws = per[th]
        out_threads.append(_thread_obj(p, th, f"{thread_name(p, th)} (on-CPU)", threads[th],
                                       ts, ss, ws, ts[0] if ts else 0.0, end_ms))
    offcpu: dict[int, tuple[_Thread, list[float], list[int | None], list[int]]] = {}
    for th, start, dur, reason, sid in sorted(intervals(iv, tid), key=lambda r: r[1]):
        if th not in offcpu:
            offcpu[th] = (_Thread(p, libs), [], [], [])
        tt, ts, ss, ws = offcpu[th]
        cur = tt.stack(paths, sid)
        fid = tt._func(("r", reason), f"[off-cpu:{reason_name(p, reason)}]", None, None)
        ss.append(tt.push(cur, tt.frame(("r", reason), fid, 0, 3)))
        ts.append((start - base) / 1e6)
        ws.append(dur / 1e6)
    for th in sorted(offcpu):
        tt, ts, ss, ws = offcpu[th]
        out_threads.append(_thread_obj(p, th, f"{thread_name(p, th)} (off-CPU)", tt, ts, ss,
                                       ws, ts[0] if ts else 0.0, end_ms))
    r = run or {}
    interval_ms = 1000.0 / r["frequency_hz"] if r.get("frequency_hz") else 1.0
    doc = {
        "meta": {
            "interval": interval_ms,
            "startTime": float(r.get("started_at_unix_ms") or 0),
            "processType": 0, "product": str(r.get("command") or "stax profile"),
            "stackwalk": 1, "debug": False, "version": GECKO_VERSION,
            "preprocessedProfileVersion": PROCESSED_VERSION, "symbolicated": True,
            "categories": CATEGORIES, "markerSchema": [],
            "importedFrom": f"stax {__version__}", "abi": "x86_64-gcc3", "oscpu": "Linux",
        },
        "libs": libs_list,
        "pages": [], "counters": [], "threads": out_threads,
    }
    return dumps(doc, separators=(",", ":")).encode()
