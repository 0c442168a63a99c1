"""Unit tests on hand-built inputs: ring-buffer draining, record decoding, time ordering."""

from __future__ import annotations

import mmap
import os
import struct

from stax.capture import perf
from stax.capture import records as rec
from stax.profile.tables import Profile
from stax.profile.views import Filter, flame, threads, top

PAGE = mmap.PAGESIZE


def _tail(pid: int, tid: int, time: int, cpu: int = 0) -> bytes:
    return struct.pack("<IIQIIQ", pid, tid, time, cpu, 0, 7)


def sample(pid: int, tid: int, time: int, chain: list[int], period: int = 1_000_000) -> bytes:
    body = struct.pack("<QQIIQIIQQ", 7, chain[0], pid, tid, time, 0, 0, period, len(chain))
    body += struct.pack(f"<{len(chain)}Q", *chain)
    return struct.pack("<IHH", rec.RECORD_SAMPLE, 2, 8 + len(body)) + body


def comm(pid: int, tid: int, name: str, time: int, exec_: bool = False) -> bytes:
    raw = name.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 8)
    body = struct.pack("<II", pid, tid) + raw + _tail(pid, tid, time)
    misc = rec.MISC_COMM_EXEC if exec_ else 0
    return struct.pack("<IHH", rec.RECORD_COMM, misc, 8 + len(body)) + body


def mmap2(pid: int, addr: int, length: int, pgoff: int, path: str, time: int,
          build_id: bytes | None = None) -> bytes:
    body = struct.pack("<IIQQQ", pid, pid, addr, length, pgoff)
    misc = 0
    if build_id is not None:
        body += struct.pack("<BBH", len(build_id), 0, 0) + build_id.ljust(20, b"\0")
        misc = rec.MISC_MMAP_BUILD_ID
    else:
        body += b"\0" * 24
    body += struct.pack("<II", 5, 2)
    raw = path.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 8)
    body += raw + _tail(pid, pid, time)
    return struct.pack("<IHH", rec.RECORD_MMAP2, misc, 8 + len(body)) + body


def fork(pid: int, ppid: int, tid: int, ptid: int, time: int) -> bytes:
    body = struct.pack("<IIIIQ", pid, ppid, tid, ptid, time) + _tail(pid, tid, time)
    return struct.pack("<IHH", rec.RECORD_FORK, 0, 8 + len(body)) + body


def lost(n: int, time: int) -> bytes:
    body = struct.pack("<QQ", 1, n) + _tail(0, 0, time)
    return struct.pack("<IHH", rec.RECORD_LOST, 0, 8 + len(body)) + body


def test_ring_buffer_reads_records_split_across_the_end() -> None:
    pages = 2
    fd = os.memfd_create("rb")
    os.ftruncate(fd, PAGE * (1 + pages))
    rb = perf.RingBuffer(fd, pages)
    size = PAGE * pages
    data = b"".join(sample(1, 1, 100 + i, [0x1000 + i, 0x2000]) for i in range(3))
    # pretend the kernel has already written size-20 bytes that we consumed
    start = size - 20
    rb.tail = start
    struct.pack_into("<Q", rb.map, 1032, start)
    for i, byte in enumerate(data):
        rb.map[PAGE + (start + i) % size] = byte
    struct.pack_into("<Q", rb.map, 1024, start + len(data))
    out = rb.read()
    assert out == data
    assert struct.unpack_from("<Q", rb.map, 1032)[0] == start + len(data)
    assert rb.read() == b""
    got: list[rec.Sample] = []

    class S(Profile):
        def on_sample(self, s: rec.Sample) -> None:
            got.append(s)

    rec.decode(out, S())
    assert [g.time for g in got] == [100, 101, 102]
    assert got[0].chain == (0x1000, 0x2000)
    rb.close()
    os.close(fd)


def test_attr_layout_matches_the_kernel_abi() -> None:
    attr = perf.EventAttr(sample_period_or_freq=900, sample_type=rec.SAMPLE_TYPE,
                          flags=("disabled", "inherit", "freq", "mmap2", "build_id"),
                          wakeup=4096)
    raw = attr.pack()
    assert len(raw) == perf.ATTR_SIZE == 128
    typ, size, config, freq, stype = struct.unpack_from("<IIQQQ", raw, 0)
    assert (typ, size, config, freq, stype) == (1, 128, 0, 900, rec.SAMPLE_TYPE)
    flags = struct.unpack_from("<Q", raw, 40)[0]
    assert flags == (1 << 0) | (1 << 1) | (1 << 10) | (1 << 23) | (1 << 34)
    assert struct.unpack_from("<I", raw, 48)[0] == 4096
    assert struct.unpack_from("<i", raw, 92)[0] == perf.CLOCK_MONOTONIC


def _build_profile() -> Profile:
    p = Profile()
    stream = b"".join([
        comm(10, 10, "prog", 1, exec_=True),
        mmap2(10, 0x400000, 0x10000, 0, "/bin/prog", 2, build_id=b"\xab" * 20),
        fork(10, 10, 11, 10, 3),
        comm(10, 11, "worker", 4),
        sample(10, 10, 10, [rec.CONTEXT_USER, 0x401000, 0x402005, 0x403005]),
        sample(10, 10, 11, [rec.CONTEXT_USER, 0x401000, 0x402005, 0x403005]),
        sample(10, 11, 12, [rec.CONTEXT_USER, 0x404000, 0x403005]),
        sample(10, 11, 13, [rec.CONTEXT_KERNEL, 0xffffffff81000000, rec.CONTEXT_USER,
                            0x404000, 0x403005]),
        lost(5, 14),
    ])
    p.ingest(stream)
    return p


def test_decoding_builds_interned_tables() -> None:
    p = _build_profile()
    assert p.counts["samples"] == 4 and p.counts["lost"] == 5 and p.counts["records"] == 9
    assert len(p.s_stack) == 4 and p.s_stack[0] == p.s_stack[1]
    assert p.binaries[2].path == "/bin/prog" and p.binaries[2].build_id == "ab" * 20
    assert p.threads[11].name == "worker" and p.threads[10].name == "prog"
    # callers are looked up at return address - 1; the leaf at its exact address
    offsets = sorted(p.frame_offset[i] for i in range(len(p.frame_offset)))
    assert 0x1000 in offsets and 0x2004 in offsets and 0x3004 in offsets
    assert 0xffffffff81000000 in offsets


def test_views_on_hand_built_tables() -> None:
    p = _build_profile()
    t = top(p, Filter(), "self", 0)
    assert t["total_samples"] == 4
    by = {r["func"]: r for r in t["rows"]}
    assert by["prog+0x1000"]["self_samples"] == 2
    assert by["prog+0x4000"]["self_samples"] == 1
    t = top(p, Filter(), "total", 0)
    assert t["rows"][0]["func"] == "prog+0x3004" and t["rows"][0]["total_samples"] == 4
    f = flame(p, Filter())
    assert [r["func"] for r in f["roots"]] == ["prog+0x3004"]
    assert f["roots"][0]["samples"] == 4
    assert top(p, Filter(tid=11), "self", 0)["total_samples"] == 2
    assert top(p, Filter(start_ns=0, end_ns=2), "self", 0)["total_samples"] == 2
    th = threads(p, Filter(), 0)
    assert {r["name"]: r["samples"] for r in th["rows"]} == {"prog": 2, "worker": 2}
    f = flame(p, Filter(), max_depth=1)
    assert f["roots"][0]["collapsed_frames"] >= 1


def test_orderer_applies_records_in_time_order_across_cpus() -> None:
    p = Profile()
    o = rec.Orderer(p)
    # CPU 1's buffer (read first) has the thread's samples; CPU 0's has its fork and name
    o.add(sample(10, 11, 50, [rec.CONTEXT_USER, 0x401000]))
    o.add(fork(10, 10, 11, 10, 20) + comm(10, 11, "worker", 30))
    assert o.flush(40 + rec.Orderer.MARGIN_NS) == 2  # the sample at t=50 is held back
    assert p.threads[11].name == "worker"
    assert p.counts["samples"] == 0
    o.flush(None)
    assert p.counts["samples"] == 1 and p.threads[11].name == "worker"


def test_truncated_stream_is_not_a_crash() -> None:
    data = sample(1, 1, 1, [0x1000])
    p = Profile()
    p.ingest(data[:-3])
    p.ingest(b"\xff" * 7)
    assert p.counts["samples"] == 0


def test_sample_layout_decodes_raw_user_registers_and_stack() -> None:
    stype = rec.SAMPLE_TYPE | perf.SAMPLE_RAW | perf.SAMPLE_REGS_USER | perf.SAMPLE_STACK_USER
    layout = rec.SampleLayout(stype, regs_user_mask=(1 << 6) | (1 << 7) | (1 << 8))
    layout.kinds[9] = "tracepoint"
    body = struct.pack("<QQIIQIIQQ", 9, 0x1000, 5, 6, 42, 1, 0, 1, 1) + struct.pack("<Q", 0x1000)
    body += struct.pack("<I", 4) + b"abcd"  # raw, padded to 8 bytes overall by the kernel
    body += struct.pack("<Q3Q", 2, 0x7ff0, 0x7fe0, 0x1000)  # abi 64, bp, sp, ip
    stack = bytes(range(16))
    body += struct.pack("<Q", 32) + stack + bytes(16) + struct.pack("<Q", 16)
    data = struct.pack("<IHH", rec.RECORD_SAMPLE, 2, 8 + len(body)) + body
    got: list[rec.Sample] = []

    class S(Profile):
        def on_sample(self, s: rec.Sample) -> None:
            got.append(s)

    assert rec.decode(data, S(), layout) == 1
    s = got[0]
    assert (s.kind, s.pid, s.tid, s.time, s.cpu) == ("tracepoint", 5, 6, 42, 1)
    assert s.raw == b"abcd" and s.abi == 2 and s.regs == (0x7ff0, 0x7fe0, 0x1000)
    assert s.stack == stack
    assert rec.index(data, layout) == [(42, 0)]
    assert rec.decode(data[:-8], S(), layout) == 0  # truncated: not a crash


def test_a_zero_caller_address_is_not_a_crash() -> None:
    """Frame-pointer walks can end on a 0 return address (seen right after exec)."""
    p = Profile()
    p.ingest(b"".join([comm(10, 10, "prog", 1, exec_=True),
                       sample(10, 10, 2, [rec.CONTEXT_USER, 0x401000, 0])]))
    assert p.counts["samples"] == 1 and len(p.s_stack) == 1


def test_inverted_flame_roots_are_the_running_functions_children_their_callers() -> None:
    p = _build_profile()
    f = flame(p, Filter(), inverted=True)
    assert f["inverted"] is True and f["total_samples"] == 4
    selfs = {r["func"]: r["self_samples"] for r in top(p, Filter(), "self", 0)["rows"]}
    roots = {r["func"]: r for r in f["roots"]}
    assert {k: r["samples"] for k, r in roots.items()} == selfs  # a root's weight: self time
    assert sum(r["pct"] for r in f["roots"]) == 100.0
    leaf = roots["prog+0x1000"]
    assert [c["func"] for c in leaf["children"]] == ["prog+0x2004"]
    assert [c["func"] for c in leaf["children"][0]["children"]] == ["prog+0x3004"]
    assert [c["func"] for c in roots["prog+0x4000"]["children"]] == ["prog+0x3004"]
    assert flame(p, Filter())["inverted"] is False
