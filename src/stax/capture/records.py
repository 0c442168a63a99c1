"""Decoding of PERF_RECORD_* byte streams into calls on a sink.

Layouts follow include/uapi/linux/perf_event.h for the sample_type stax asks for.
"""

from __future__ import annotations

import bisect
import os
import struct
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from stax.capture import perf

RECORD_MMAP = 1
RECORD_LOST = 2
RECORD_COMM = 3
RECORD_EXIT = 4
RECORD_THROTTLE = 5
RECORD_UNTHROTTLE = 6
RECORD_FORK = 7
RECORD_SAMPLE = 9
RECORD_MMAP2 = 10
RECORD_LOST_SAMPLES = 13
RECORD_SWITCH = 14
RECORD_SWITCH_CPU_WIDE = 15

MISC_CPUMODE_MASK = 7
MISC_KERNEL = 1
MISC_USER = 2
MISC_COMM_EXEC = 1 << 13
MISC_MMAP_BUILD_ID = 1 << 14
MISC_SWITCH_OUT = 1 << 13
MISC_SWITCH_OUT_PREEMPT = 1 << 14  # the task was preempted (still runnable)

# callchain context markers (as unsigned 64-bit)
CONTEXT_MAX = (1 << 64) - 4095
CONTEXT_KERNEL = (1 << 64) - 128
CONTEXT_USER = (1 << 64) - 512

SAMPLE_TYPE = (perf.SAMPLE_IDENTIFIER | perf.SAMPLE_IP | perf.SAMPLE_TID | perf.SAMPLE_TIME
               | perf.SAMPLE_CPU | perf.SAMPLE_PERIOD | perf.SAMPLE_CALLCHAIN)
"""What every event of a recording reports (all events share one layout; the identifier tells
which event a sample came from). Optional additions: SAMPLE_RAW (tracepoints),
SAMPLE_REGS_USER | SAMPLE_STACK_USER (DWARF unwinding)."""

_SUPPORTED = (perf.SAMPLE_IDENTIFIER | perf.SAMPLE_IP | perf.SAMPLE_TID | perf.SAMPLE_TIME
              | perf.SAMPLE_CPU | perf.SAMPLE_PERIOD | perf.SAMPLE_CALLCHAIN | perf.SAMPLE_RAW
              | perf.SAMPLE_REGS_USER | perf.SAMPLE_STACK_USER)
_REQUIRED = perf.SAMPLE_IDENTIFIER | perf.SAMPLE_IP | perf.SAMPLE_TID | perf.SAMPLE_TIME \
    | perf.SAMPLE_CPU | perf.SAMPLE_PERIOD | perf.SAMPLE_CALLCHAIN


class SampleLayout:
    """How sample records and sample_id trailers are laid out for one recording.

    ``kinds`` maps event ids (PERF_EVENT_IOC_ID) to a name such as "cpu-clock"; the recorder
    fills it as it opens events, and decoded samples carry the name of their event.
    """

    def __init__(self, sample_type: int = SAMPLE_TYPE, regs_user_mask: int = 0) -> None:
        if sample_type & ~_SUPPORTED or sample_type & _REQUIRED != _REQUIRED:
            raise ValueError(f"unsupported sample_type {sample_type:#x}")
        self.sample_type = sample_type
        self.regs_user_mask = regs_user_mask
        self.n_regs = bin(regs_user_mask).count("1")
        self.raw = bool(sample_type & perf.SAMPLE_RAW)
        self.regs = bool(sample_type & perf.SAMPLE_REGS_USER)
        self.stack = bool(sample_type & perf.SAMPLE_STACK_USER)
        self.kinds: dict[int, str] = {}
        # drop PERF_RECORD_SWITCH switch-outs before ordering (off-CPU capture only needs the
        # switch-ins; the sched_switch tracepoint reports switch-outs with more detail)
        self.skip_switch_out = False
        self.skipped_switch_out = 0
        # sample_id trailer (sample_id_all): pid/tid, time, cpu/res, identifier
        self.trailer_size = 32
        self.trailer_time_from_end = 24


DEFAULT_LAYOUT = SampleLayout()


class Sample:
    """One decoded PERF_RECORD_SAMPLE.

    ``chain`` is the kernel's call chain (with PERF_CONTEXT_* markers) or ``(ip,)``; ``regs``
    are the user registers in perf_regs order of the layout's mask (None when not sampled or
    the sample hit a kernel thread); ``stack`` is the valid part of the user stack copy, whose
    first byte is at the user stack pointer.
    """

    __slots__ = ("id", "kind", "ip", "pid", "tid", "time", "cpu", "period", "chain", "raw",
                 "abi", "regs", "stack")

    def __init__(self, id: int, kind: str, ip: int, pid: int, tid: int, time: int, cpu: int,
                 period: int, chain: tuple[int, ...], raw: bytes | None = None, abi: int = 0,
                 regs: tuple[int, ...] | None = None, stack: bytes | None = None) -> None:
        self.id = id
        self.kind = kind
        self.ip = ip
        self.pid = pid
        self.tid = tid
        self.time = time
        self.cpu = cpu
        self.period = period
        self.chain = chain
        self.raw = raw
        self.abi = abi
        self.regs = regs
        self.stack = stack


_hdr = struct.Struct("<IHH")
_sample_fixed = struct.Struct("<QQIIQIIQQ")  # id, ip, pid, tid, time, cpu, res, period, nr
_u64 = struct.Struct("<Q")
_u32x2 = struct.Struct("<II")
_mmap2 = struct.Struct("<IIQQQ")  # pid, tid, addr, len, pgoff
_fork = struct.Struct("<IIIIQ")  # pid, ppid, tid, ptid, time
_lost = struct.Struct("<QQ")
_throttle = struct.Struct("<QQQ")
_id_tail = struct.Struct("<IIQIIQ")  # sample_id: pid, tid, time, cpu, res, identifier
_u32 = struct.Struct("<I")
_REGS_IP = 8  # the user IP's place in sampled registers (perf_regs order: AX..SP, IP, R8..)


class Sink(Protocol):
    def on_sample(self, s: Sample) -> None: ...
    def on_mmap(self, pid: int, tid: int, addr: int, length: int, pgoff: int, prot: int,
                build_id: str | None, filename: str, time: int) -> None: ...
    def on_comm(self, pid: int, tid: int, comm: str, exec_: bool, time: int) -> None: ...
    def on_fork(self, pid: int, ppid: int, tid: int, ptid: int, time: int) -> None: ...
    def on_exit(self, pid: int, ppid: int, tid: int, ptid: int, time: int) -> None: ...
    def on_lost(self, lost: int) -> None: ...
    def on_throttle(self, throttled: bool, time: int) -> None: ...
    def on_other(self, rtype: int) -> None: ...
    def on_switch(self, out: bool, preempt: bool, pid: int, tid: int, time: int) -> None: ...


def _cstr(buf: bytes, off: int, end: int) -> str:
    nul = buf.find(b"\0", off, end)
    if nul < 0:
        nul = end
    return buf[off:nul].decode("utf-8", "replace")


def _cpath(buf: bytes, off: int, end: int) -> str:
    """A mapped file's name: any bytes (os.fsdecode keeps non-UTF-8 ones, os.fsencode gives
    them back); stax.binaries.display shows it."""
    nul = buf.find(b"\0", off, end)
    return os.fsdecode(buf[off:end if nul < 0 else nul])


def index(buf: bytes, layout: SampleLayout = DEFAULT_LAYOUT) -> list[tuple[int, int]]:
    """(timestamp, offset) of every complete record in ``buf``, in stream order.

    Samples carry the time at body+24 (after identifier, ip, pid/tid); every other record ends
    with the sample_id trailer (pid/tid, time, cpu/res, identifier) because sample_id_all is set.
    """
    out: list[tuple[int, int]] = []
    off = 0
    end = len(buf)
    hdr_unpack = _hdr.unpack_from
    u64 = _u64.unpack_from
    trailer = layout.trailer_size
    back = layout.trailer_time_from_end
    skipped = 0
    while off + 8 <= end:
        rtype, misc, size = hdr_unpack(buf, off)
        if size < 8 or off + size > end:
            break
        if rtype == RECORD_SWITCH and misc & MISC_SWITCH_OUT and layout.skip_switch_out:
            off += size  # switch-outs come with stack and state from sched_switch instead
            skipped += 1
            continue
        if rtype == RECORD_SAMPLE:
            t = u64(buf, off + 32)[0]
        elif size >= 8 + trailer:
            t = u64(buf, off + size - back)[0]
        else:
            t = 0
        out.append((t, off))
        off += size
    if skipped:
        layout.skipped_switch_out += skipped
    return out


def decode(buf: bytes, sink: Sink, layout: SampleLayout = DEFAULT_LAYOUT) -> int:
    """Decode every record in ``buf`` in stream order; returns the number of records."""
    return sum(1 for _t, off in index(buf, layout) if decode_at(buf, off, sink, layout))


def _decode_sample(buf: bytes, off: int, size: int, layout: SampleLayout) -> Sample | None:
    end = off + size
    body = off + 8
    if body + _sample_fixed.size > end:
        return None
    id_, ip, pid, tid, time, cpu, _res, period, nr = _sample_fixed.unpack_from(buf, body)
    p = body + _sample_fixed.size
    if p + 8 * nr > end:
        return None
    chain = struct.unpack_from(f"<{nr}Q", buf, p) if nr else (ip,)
    p += 8 * nr
    s = Sample(id_, layout.kinds.get(id_, ""), ip, pid, tid, time, cpu, period, chain)
    if layout.raw:
        if p + 4 > end:
            return None
        rsize = _u32.unpack_from(buf, p)[0]
        if p + 4 + rsize > end:
            return None
        s.raw = buf[p + 4: p + 4 + rsize]
        p += 4 + rsize
    if layout.regs:
        if p + 8 > end:
            return None
        abi = _u64.unpack_from(buf, p)[0]
        p += 8
        s.abi = abi
        if abi:
            n = layout.n_regs
            if p + 8 * n > end:
                return None
            s.regs = struct.unpack_from(f"<{n}Q", buf, p)
            p += 8 * n
    if layout.stack:
        if p + 8 > end:
            return None
        ssize = _u64.unpack_from(buf, p)[0]
        p += 8
        if ssize:
            if p + ssize + 8 > end:
                return None
            dyn = _u64.unpack_from(buf, p + ssize)[0]
            s.stack = buf[p: p + min(dyn, ssize)]
    return s


def decode_at(buf: bytes, off: int, sink: Sink, layout: SampleLayout = DEFAULT_LAYOUT) -> bool:
    """Decode the one record at ``off``; False if it is malformed."""
    rtype, misc, size = _hdr.unpack_from(buf, off)
    if size < 8 or off + size > len(buf):
        return False
    body = off + 8
    if rtype == RECORD_SAMPLE:
        s = _decode_sample(buf, off, size, layout)
        if s is None:
            return False
        sink.on_sample(s)
        return True
    if size < 8 + layout.trailer_size:
        sink.on_other(rtype)
        return True
    tail = off + size - layout.trailer_size
    if rtype == RECORD_MMAP2:
        pid, tid, addr, length, pgoff = _mmap2.unpack_from(buf, body)
        p = body + _mmap2.size
        build_id = None
        if misc & MISC_MMAP_BUILD_ID:
            bid_size = buf[p]
            build_id = buf[p + 4: p + 4 + min(bid_size, 20)].hex()
        p += 24
        prot, _flags = _u32x2.unpack_from(buf, p)
        p += 8
        name = _cpath(buf, p, tail)
        sink.on_mmap(pid, tid, addr, length, pgoff, prot, build_id, name,
                     _id_tail.unpack_from(buf, tail)[2])
    elif rtype == RECORD_MMAP:
        pid, tid, addr, length, pgoff = _mmap2.unpack_from(buf, body)
        name = _cpath(buf, body + _mmap2.size, tail)
        sink.on_mmap(pid, tid, addr, length, pgoff, 5, None, name,
                     _id_tail.unpack_from(buf, tail)[2])
    elif rtype == RECORD_COMM:
        pid, tid = _u32x2.unpack_from(buf, body)
        comm = _cstr(buf, body + 8, tail)
        sink.on_comm(pid, tid, comm, bool(misc & MISC_COMM_EXEC),
                     _id_tail.unpack_from(buf, tail)[2])
    elif rtype == RECORD_FORK:
        sink.on_fork(*_fork.unpack_from(buf, body))
    elif rtype == RECORD_EXIT:
        sink.on_exit(*_fork.unpack_from(buf, body))
    elif rtype == RECORD_LOST:
        sink.on_lost(_lost.unpack_from(buf, body)[1])
    elif rtype == RECORD_LOST_SAMPLES:
        sink.on_lost(_u64.unpack_from(buf, body)[0])
    elif rtype == RECORD_SWITCH:
        pid, tid, time = _id_tail.unpack_from(buf, tail)[:3]
        sink.on_switch(bool(misc & MISC_SWITCH_OUT), bool(misc & MISC_SWITCH_OUT_PREEMPT),
                       pid, tid, time)
    elif rtype in (RECORD_THROTTLE, RECORD_UNTHROTTLE):
        sink.on_throttle(rtype == RECORD_THROTTLE, _throttle.unpack_from(buf, body)[0])
    else:
        sink.on_other(rtype)
    return True


class Orderer:
    """Merges the per-CPU streams into one time-ordered stream.

    Each CPU's buffer is in time order, but buffers are read one after another, so a thread's
    COMM or MMAP on one CPU could otherwise be applied after its samples on another. Records are
    held until their timestamp is older than the moment the read round began minus a small
    margin: by then every record with an earlier timestamp has been written (the kernel writes a
    record microseconds after stamping it; stax stamps with CLOCK_MONOTONIC).

    Load shedding (set by the capture loop when decoding falls behind): ``keep_every`` N keeps
    one cpu-clock sample in N and gives it N times the weight, so totals stay right (0 keeps
    none); ``strip_stacks`` drops the user stack copy of the samples it keeps, so they cost a
    frame-pointer chain instead of a DWARF walk. Side-band records (mmap, comm, fork, exit,
    lost) are never shed.
    """

    MARGIN_NS = 20_000_000
    SLICE = 128  # records decoded per hold of the lock (queries wait at most one slice)

    def __init__(self, sink: Sink, layout: SampleLayout = DEFAULT_LAYOUT) -> None:
        self.sink = sink
        self.layout = layout
        self.pending: list[tuple[int, int, bytes, int]] = []
        self.seq = 0
        self.records = 0
        self.malformed = 0
        self.behind = False  # the last flush ran out of time with ready records left
        self.keep_every = 1
        self.strip_stacks = False
        self.shed_samples = 0  # cpu-clock samples not decoded (their weight went to others)
        self.stripped_stacks = 0  # samples kept without their user stack copy
        self._nth = 0
        self._sorted = 0  # how many leading pending records are known to be in order
        self.end_ns: int | None = None  # set_end

    def add(self, buf: bytes) -> None:
        seq = self.seq
        pending = self.pending
        end = self.end_ns
        for t, off in index(buf, self.layout):
            if end is not None and t > end:
                continue  # written after the recorded span ended
            pending.append((t, seq, buf, off))
            seq += 1
        self.seq = seq

    def set_end(self, end_ns: int) -> None:
        """The recorded span ends at ``end_ns``: records stamped later are left out."""
        self.end_ns = end_ns
        self.pending = [r for r in self.pending if r[0] <= end_ns]
        self._sorted = 0

    def flush(self, before_ns: int | None, until: float | None = None,
              lock: AbstractContextManager[object] | None = None) -> int:
        """Decode every held record stamped before ``before_ns`` (all of them when None).

        With ``until`` (a time.monotonic() value) it stops once that time has passed and leaves
        the rest pending (``behind`` says so); with ``lock`` it holds the lock one slice of
        records at a time."""
        if not self.pending:
            self.behind = False
            return 0
        if self._sorted < len(self.pending):
            self.pending.sort(key=lambda r: (r[0], r[1]))
            self._sorted = len(self.pending)
        if before_ns is None:
            n = len(self.pending)
        else:
            n = bisect.bisect_left(self.pending, before_ns - self.MARGIN_NS,
                                   key=lambda r: r[0])
        done = 0
        ctx = lock if lock is not None else nullcontext()
        while done < n:
            if until is not None and done and time.monotonic() >= until:
                break
            end = min(n, done + self.SLICE)
            with ctx:
                self._decode(self.pending[done:end])
            done = end
        del self.pending[:done]
        self._sorted -= done
        self.behind = done < n
        self.records += done
        return done

    def discard(self) -> int:
        """Forget every held record; returns how many there were."""
        n = len(self.pending)
        self.pending = []
        self._sorted = 0
        self.behind = False
        return n

    def _decode(self, ready: list[tuple[int, int, bytes, int]]) -> None:
        sink = self.sink
        layout = self.layout
        kinds = layout.kinds
        shedding = self.keep_every != 1 or self.strip_stacks
        for _t, _seq, buf, off in ready:
            try:
                if shedding and _hdr.unpack_from(buf, off)[0] == RECORD_SAMPLE:
                    ok = self._decode_shed(buf, off, kinds.get(_u64.unpack_from(buf, off + 8)[0],
                                                              ""))
                else:
                    ok = decode_at(buf, off, sink, layout)
            except (ValueError, OverflowError, IndexError, KeyError, struct.error):
                # one record the tables cannot take must not end the recording
                ok = False
            if not ok:
                self.malformed += 1

    def _decode_shed(self, buf: bytes, off: int, kind: str) -> bool:
        """A sample while shedding load: skipped, or decoded with its weight scaled and its
        stack copy dropped as ``keep_every`` and ``strip_stacks`` say."""
        scale = 1
        if kind in ("", "cpu-clock"):
            k = self.keep_every
            self._nth += 1
            if k == 0 or self._nth % k:
                self.shed_samples += 1
                return True
            scale = k
        s = _decode_sample(buf, off, _hdr.unpack_from(buf, off)[2], self.layout)
        if s is None:
            return False
        s.period *= scale
        if self.strip_stacks and s.stack is not None:
            # a truncated stack: the kernel frames and the user leaf (the sampled IP), no walk
            chain = s.chain
            if CONTEXT_KERNEL in chain and s.regs is not None and len(s.regs) > _REGS_IP:
                if CONTEXT_USER in chain:
                    chain = chain[:chain.index(CONTEXT_USER)]
                s.chain = (*chain, CONTEXT_USER, s.regs[_REGS_IP])
            s.stack = None
            s.regs = None
            self.stripped_stacks += 1
        self.sink.on_sample(s)
        return True
