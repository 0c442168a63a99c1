"""pprof: a gzipped ``profile.proto`` (samples, locations, functions, mappings, string table),
written with a small protobuf encoder; values are ``samples/count`` and ``cpu/nanoseconds``
(plus ``off_cpu/nanoseconds`` when off-CPU intervals exist). A Function is a function in one
source file (``filename``, ``start_line``), a Location's line the source line of its address
(a caller's: of the call); the binary is the Location's Mapping.
"""

from __future__ import annotations

import gzip
from typing import Any

from stax.archive.export.common import Paths, grouped, intervals, reason_name, thread_name
from stax.leb128 import encode_uleb
from stax.profile.framelines import FrameLines
from stax.profile.tables import KERNEL_BINARY, UNKNOWN_BINARY, Profile

# --- protobuf wire format (varint = 0, length-delimited = 2) ---------------------------------


def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64  # int64 negatives are ten-byte varints
    return encode_uleb(v)


def _int(field: int, v: int) -> bytes:
    return _varint(field << 3) + _varint(v) if v else b""


def _bool(field: int, v: bool) -> bytes:
    return _varint(field << 3) + b"\x01" if v else b""


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _packed(field: int, values: list[int]) -> bytes:
    if not values:
        return b""
    return _bytes(field, b"".join(_varint(v) for v in values))


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def convert(p: Profile, tid: int | None = None, iv: dict[str, Any] | None = None,
            run: dict[str, Any] | None = None) -> bytes:
    s = _Strings()
    paths = Paths(p)
    lines = FrameLines(p)
    offcpu_rows = intervals(iv, tid)
    types = [("samples", "count"), ("cpu", "nanoseconds")]
    if offcpu_rows:
        types.append(("off_cpu", "nanoseconds"))
    msg = bytearray()
    for t, u in types:
        msg += _bytes(1, _int(1, s(t)) + _int(2, s(u)))
    used_frames: dict[tuple[int, bool], None] = {}  # (frame, a caller's return address?)
    tid_key, name_key, reason_key = s("thread id"), s("thread name"), s("off-cpu reason")

    def labels(th: int) -> bytes:
        return (_bytes(3, _int(1, tid_key) + _int(3, th)) +
                _bytes(3, _int(1, name_key) + _int(2, s(thread_name(p, th)))))

    def locations(sid: int) -> list[int]:
        frames = paths.frame_path(sid)
        last = len(frames) - 1
        for i, f in enumerate(frames):
            used_frames[(f, i != last)] = None
        # leaf first, ids from 1; a frame as a caller is another location (its line is the call)
        return [2 * f + 1 + (i != last) for i, f in reversed(list(enumerate(frames)))]

    total_n = total_w = 0
    for th, sid, n, w in grouped(p, tid):
        total_n += n
        vals = [n, w] + ([0] if offcpu_rows else [])
        msg += _bytes(2, _packed(1, locations(sid)) + _packed(2, vals) + labels(th))
        total_w += w
    for th, _start, dur, reason, sid in offcpu_rows:
        vals = [0, 0, dur]
        msg += _bytes(2, _packed(1, locations(sid)) + _packed(2, vals) + labels(th) +
                      _bytes(3, _int(1, reason_key) + _int(2, s(reason_name(p, reason)))))
    used_binaries: dict[int, None] = {}
    lined_binaries: set[int] = set()
    funcs: dict[tuple[int, str | None], int] = {}  # (function, source file) -> Function id
    locs = bytearray()
    low: dict[int, int] = {}  # Function id -> lowest line of its locations
    for f, ret in sorted(used_frames):
        b = p.frame_binary[f]
        used_binaries[b] = None
        src = lines.frame(f, ret)
        if src is not None:
            lined_binaries.add(b)
        fkey = (p.func_of_frame(f), src[0] if src else None)
        fn_id = funcs.setdefault(fkey, len(funcs) + 1)
        if src is not None:
            low[fn_id] = min(low.get(fn_id, src[1]), src[1])
        # inlining, pprof's way: one Line per function, the innermost first, the function it
        # was all inlined into last (with the frame's source line)
        line = b"".join(_bytes(4, _int(1, funcs.setdefault((x, None), len(funcs) + 1)))
                        for x in reversed(p.frame_inline.get(f, ())))
        line += _bytes(4, _int(1, fn_id) + _int(2, src[1] if src else 0))
        locs += _bytes(4, _int(1, 2 * f + 1 + ret) + _int(2, b + 1) +
                       _int(3, p.frame_offset[f]) + line)
    # the first mapping is what pprof calls the main binary: files before kernel/[unknown]
    for b in sorted(used_binaries, key=lambda b: (b in (KERNEL_BINARY, UNKNOWN_BINARY), b)):
        binary = p.binaries[b]
        limit = (1 << 64) - 1 if b == KERNEL_BINARY else 1 << 47
        m = (_int(1, b + 1) + _int(2, 0) + _int(3, limit) +
             _int(5, s(binary.path)) + _int(6, s(binary.build_id or "")) +
             _bool(7, b != UNKNOWN_BINARY) + _bool(8, b in lined_binaries) +
             _bool(9, b in lined_binaries))
        msg += _bytes(3, m)
    msg += locs
    for (func, file), fn_id in funcs.items():
        fn = p.funcs[func]
        # the source file and the function's first line; the binary is the Mapping's. No
        # first line when code inlined from above it is attributed to it (pprof -list would
        # leave those lines out)
        entry = lines.func(func) if file is not None else None
        start = entry[1] if entry is not None and entry[0] == file else 0
        if start > low.get(fn_id, start):
            start = 0
        msg += _bytes(5, _int(1, fn_id) + _int(2, s(fn.name)) + _int(3, s(fn.name)) +
                      _int(4, s(file or "")) + _int(5, start))
    first = p.first_time
    period = total_w // total_n if total_n else 0
    tail = bytearray()
    started_ms = (run or {}).get("started_at_unix_ms")
    if isinstance(started_ms, int):
        tail += _int(9, started_ms * 1_000_000)
    tail += _int(10, max(0, p.last_time - first))
    tail += _bytes(11, _int(1, s("cpu")) + _int(2, s("nanoseconds")))
    tail += _int(12, period)
    tail += _int(14, s("cpu"))
    strings = b"".join(_bytes(6, x.encode()) for x in s.table)
    return gzip.compress(bytes(msg) + strings + bytes(tail), 6)
