"""pprof: a gzipped ``profile.proto`` (samples, locations, functions, mappings, string table),
written with a small protobuf encoder; values are ``samples/count`` and ``cpu/nanoseconds``
(plus ``off_cpu/nanoseconds`` when off-CPU intervals exist).
"""

from __future__ import annotations

import gzip
from typing import Any

from stax.archive.export.common import Paths, grouped, intervals, reason_name, thread_name
from stax.leb128 import encode_uleb
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
    offcpu_rows = intervals(iv, tid)
    types = [("samples", "count"), ("cpu", "nanoseconds")]
    if offcpu_rows:
        types.append(("off_cpu", "nanoseconds"))
    msg = bytearray()
    for t, u in types:
        msg += _bytes(1, _int(1, s(t)) + _int(2, s(u)))
    used_frames: dict[int, None] = {}
    tid_key, name_key, reason_key = s("thread id"), s("thread name"), s("off-cpu reason")

    def labels(th: int) -> bytes:
        return (_bytes(3, _int(1, tid_key) + _int(3, th)) +
                _bytes(3, _int(1, name_key) + _int(2, s(thread_name(p, th)))))

    def locations(sid: int) -> list[int]:
        frames = paths.frame_path(sid)
        for f in frames:
            used_frames[f] = None
        return [f + 1 for f in reversed(frames)]  # leaf first, ids from 1

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
    used_funcs: dict[int, None] = {}
    for f in used_frames:
        used_binaries[p.frame_binary[f]] = None
        used_funcs[p.func_of_frame(f)] = None
        for func in p.frame_inline.get(f, ()):
            used_funcs[func] = None
    # the first mapping is what pprof calls the main binary: files before kernel/[unknown]
    for b in sorted(used_binaries, key=lambda b: (b in (KERNEL_BINARY, UNKNOWN_BINARY), b)):
        binary = p.binaries[b]
        limit = (1 << 64) - 1 if b == KERNEL_BINARY else 1 << 47
        m = (_int(1, b + 1) + _int(2, 0) + _int(3, limit) +
             _int(5, s(binary.path)) + _int(6, s(binary.build_id or "")) +
             _bool(7, b != UNKNOWN_BINARY))
        msg += _bytes(3, m)
    for f in sorted(used_frames):
        func = p.func_of_frame(f)
        # inlining, pprof's way: one Line per function, the innermost first, the function it
        # was all inlined into last
        chain = (*reversed(p.frame_inline.get(f, ())), func)
        lines = b"".join(_bytes(4, _int(1, x + 1)) for x in chain)
        loc = _int(1, f + 1) + _int(2, p.frame_binary[f] + 1) + _int(3, p.frame_offset[f]) + lines
        msg += _bytes(4, loc)
    for func in sorted(used_funcs):
        fn = p.funcs[func]
        msg += _bytes(5, _int(1, func + 1) + _int(2, s(fn.name)) + _int(3, s(fn.name)) +
                      _int(4, s(fn.path)))
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
