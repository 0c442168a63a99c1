"""The Firefox Profiler's processed profile format: one thread object per thread with column
tables (samples, stackTable, frameTable, funcTable, resourceTable, stringArray) and ``libs``.

Off-CPU intervals become samples in a second thread per thread, "NAME (off-CPU)" (its tid
"TID-offcpu", never the process's main thread): one sample per sampling period across each
interval (at most MAX_OFFCPU_SAMPLES_PER_INTERVAL; the step grows for longer waits, and the
period for runs blocked longer than MAX_OFFCPU_SAMPLES periods in all), weighted in milliseconds
that sum to the interval's duration. On-CPU samples carry ``threadCPUDelta`` (the
nanoseconds on CPU each stands for); libraries their Breakpad debug id.
"""

from __future__ import annotations

from typing import Any

from stax import __version__
from stax.archive.export.common import Paths, intervals, reason_name, samples, thread_name
from stax.limits import MAX_OFFCPU_SAMPLES, MAX_OFFCPU_SAMPLES_PER_INTERVAL
from stax.profile.framelines import FrameLines
from stax.profile.tables import KERNEL_BINARY, Profile
from stax.protocol import dumps

PROCESSED_VERSION = 47
GECKO_VERSION = 27
CATEGORIES = [
    {"name": "Other", "color": "grey", "subcategories": ["Other"]},
    {"name": "User", "color": "yellow", "subcategories": ["Other"]},
    {"name": "Kernel", "color": "orange", "subcategories": ["Other"]},
    {"name": "Off-CPU", "color": "blue", "subcategories": ["Other"]},
    {"name": "Python", "color": "green", "subcategories": ["Other"]},
]
PYTHON_CATEGORY = 4  # a Python function's frames (its .py file and line)


def breakpad_id(build_id: str | None) -> str:
    """The Breakpad debug id of an ELF build-id (hex): its first 16 bytes (zero-padded) read as
    a GUID whose first three fields are little-endian, written big-endian in upper-case hex,
    then the age "0" -- 33 characters, as the Firefox Profiler and symbol servers expect."""
    try:
        raw = bytes.fromhex(build_id or "")
    except ValueError:
        return ""
    if not raw:
        return ""
    g = raw[:16].ljust(16, b"\0")
    guid = g[3::-1] + g[5:3:-1] + g[7:5:-1] + g[8:]
    return guid.hex().upper() + "0"


def offcpu_steps(start_ns: int, dur_ns: int, period_ns: int) -> list[tuple[int, int]]:
    """(time_ns, weight_ns) samples spread over an off-CPU interval: one per period (more apart
    past MAX_OFFCPU_SAMPLES_PER_INTERVAL), the weights summing to the duration."""
    if dur_ns <= 0:
        return [(start_ns, max(0, dur_ns))]
    step = max(1, period_ns, -(-dur_ns // MAX_OFFCPU_SAMPLES_PER_INTERVAL))
    return [(start_ns + k, min(step, dur_ns - k)) for k in range(0, dur_ns, step)]


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
        self.frame_line: list[int | None] = []
        self.frame_depth: list[int] = []  # inlineDepth: 0 the function, 1.. inlined in it
        self.frame_ids: dict[Any, int] = {}
        self.func_name: list[int] = []
        self.func_resource: list[int] = []
        self.func_file: list[int | None] = []
        self.func_line: list[int | None] = []
        self.lines = FrameLines(p)  # source file/line of frames (framelines.py caches them)
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

    def _func(self, key: Any, name: str, binary: int | None, path: str | None,
              line: int | None = None) -> int:
        f = self.func_ids.get(key)
        if f is None:
            f = self.func_ids[key] = len(self.func_name)
            self.func_name.append(self.string(name))
            self.func_resource.append(self._resource(binary) if binary is not None else -1)
            self.func_file.append(self.string(path) if path else None)
            self.func_line.append(line)
        return f

    def frame(self, key: Any, func: int, address: int, category: int,
              line: int | None = None, depth: int = 0) -> int:
        fr = self.frame_ids.get(key)
        if fr is None:
            fr = self.frame_ids[key] = len(self.frame_func)
            self.frame_func.append(func)
            self.frame_address.append(address)
            self.frame_category.append(category)
            self.frame_line.append(line)
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
        frames = paths.frame_path(sid)
        for i, f in enumerate(frames):
            func = p.func_of_frame(f)
            fn = p.funcs[func]
            b = p.frame_binary[f]
            # source file and line (a caller's frame: of its call); a function per source file
            ret = i != len(frames) - 1
            src = self.lines.frame(f, ret)
            file = src[0] if src is not None else None
            entry = self.lines.func(func) if file is not None else None
            fid = self._func(("f", func, file), fn.name, b, file,
                             entry[1] if entry is not None and entry[0] == file else None)
            cat = 2 if b == KERNEL_BINARY else PYTHON_CATEGORY if fn.python else 1
            cur = self.push(cur, self.frame(("a", f, ret), fid, p.frame_offset[f], cat,
                                            src[1] if src is not None else None))
            # the functions inlined at this address: one frame each, at the same address
            for depth, ifunc in enumerate(p.frame_inline.get(f, ()), 1):
                ifn = p.funcs[ifunc]
                ifid = self._func(("f", ifunc, None), ifn.name, b, None, None)
                cur = self.push(cur, self.frame(("a", f, ret, depth), ifid, p.frame_offset[f],
                                                cat, None, depth))
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
                           "implementation": [None] * nf, "line": self.frame_line,
                           "column": [None] * nf},
            "funcTable": {"length": len(self.func_name), "name": self.func_name,
                          "isJS": [False] * len(self.func_name),
                          "relevantForJS": [False] * len(self.func_name),
                          "resource": self.func_resource, "fileName": self.func_file,
                          "lineNumber": self.func_line,
                          "columnNumber": [None] * len(self.func_name)},
            "resourceTable": {"length": len(self.res_name), "lib": self.res_lib,
                              "name": self.res_name, "host": [None] * len(self.res_name),
                              "type": [1] * len(self.res_name)},
            "nativeSymbols": {"length": 0, "libIndex": [], "address": [], "name": [],
                              "functionSize": []},
            "stringArray": self.strings,
        }


def _thread_obj(p: Profile, th: int, name: str, t: _Thread, times: list[float],
                stacks: list[int | None], weights: list[float], cpu_ns: list[int],
                start_ms: float, offcpu: bool) -> dict[str, Any]:
    info = p.threads.get(th)
    pid = info.pid if info is not None else th
    return {
        "name": name, "processName": thread_name(p, pid), "processType": "default",
        "pid": str(pid), "tid": f"{th}-offcpu" if offcpu else th,
        "isMainThread": pid == th and not offcpu,
        "processStartupTime": 0, "processShutdownTime": None,
        "registerTime": start_ms, "unregisterTime": None, "pausedRanges": [],
        "samples": {"length": len(stacks), "stack": stacks, "time": times,
                    "weight": weights, "weightType": "tracing-ms", "threadCPUDelta": cpu_ns},
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
                              "breakpadId": breakpad_id(binary.build_id),
                              "codeId": binary.build_id, "arch": "x86_64"})
    r = run or {}
    interval_ms = 1000.0 / r["frequency_hz"] if r.get("frequency_hz") else 1.0
    times, tids, stacks, weights = samples(p, tid)
    base = p.first_time
    per: dict[int, tuple[_Thread, list[float], list[int | None], list[float], list[int]]] = {}
    for t, th, sid, w in zip(times.tolist(), tids.tolist(), stacks.tolist(), weights.tolist(),
                             strict=True):
        if th not in per:
            per[th] = (_Thread(p, libs), [], [], [], [])
        tt, ts, ss, ws, cs = per[th]
        ts.append((t - base) / 1e6)
        ss.append(tt.stack(paths, sid))
        ws.append(w / 1e6)
        cs.append(int(w))
    offcpu: dict[int, tuple[_Thread, list[float], list[int | None], list[float], list[int]]] = {}
    rows = sorted(intervals(iv, tid), key=lambda r: r[1])
    blocked = sum(max(0, r[2]) for r in rows)
    period_ns = max(int(interval_ms * 1e6), -(-blocked // MAX_OFFCPU_SAMPLES))
    for th, start, dur, reason, sid in rows:
        if th not in offcpu:
            offcpu[th] = (_Thread(p, libs), [], [], [], [])
        tt, ts, ss, ws, cs = offcpu[th]
        cur = tt.stack(paths, sid)
        fid = tt._func(("r", reason), f"[off-cpu:{reason_name(p, reason)}]", None, None)
        leaf = tt.push(cur, tt.frame(("r", reason), fid, 0, 3))
        for t, w in offcpu_steps(start, dur, period_ns):
            ss.append(leaf)
            ts.append((t - base) / 1e6)
            ws.append(w / 1e6)
            cs.append(0)
    # no empty on-CPU copy for a thread that was never sampled on CPU (the main thread then has
    # none marked main): the Firefox Profiler's loader hangs on a thread without samples
    out_threads = []
    for th in sorted(per):
        tt, ts, ss, ws, cs = per[th]
        out_threads.append(_thread_obj(p, th, f"{thread_name(p, th)} (on-CPU)", tt, ts, ss,
                                       ws, cs, ts[0] if ts else 0.0, False))
    for th in sorted(offcpu):
        tt, ts, ss, ws, cs = offcpu[th]
        out_threads.append(_thread_obj(p, th, f"{thread_name(p, th)} (off-CPU)", tt, ts, ss,
                                       ws, cs, ts[0] if ts else 0.0, True))
    doc = {
        "meta": {
            "interval": interval_ms,
            "startTime": float(r.get("started_at_unix_ms") or 0),
            "processType": 0, "product": str(r.get("command") or "stax profile"),
            "stackwalk": 1, "debug": False, "version": GECKO_VERSION,
            "preprocessedProfileVersion": PROCESSED_VERSION, "symbolicated": True,
            "categories": CATEGORIES, "markerSchema": [],
            "sampleUnits": {"time": "ms", "eventDelay": "ms", "threadCPUDelta": "ns"},
            "importedFrom": f"stax {__version__}", "abi": "x86_64-gcc3", "oscpu": "Linux",
        },
        "libs": libs_list,
        "pages": [], "counters": [], "threads": out_threads,
    }
    return dumps(doc, separators=(",", ":")).encode()
