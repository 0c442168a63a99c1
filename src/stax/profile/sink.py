"""The record sink that fills a profile's tables: PERF_RECORD_* calls (decoded by
stax.capture.records, in time order) turned into interned stacks, samples, threads, process
maps and off-CPU intervals. Called by the capture loop under the tables' lock.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from stax import sysctl
from stax.binaries import display
from stax.capture import records as rec
from stax.capture.sched import Formats
from stax.profile import offcpu
from stax.profile.model import (
    ANON_PATH,
    KERNEL_BINARY,
    REGS_ABI_64,
    TRUNCATED_OFFSET,
    UNKNOWN_BINARY,
    Mapping,
    MappingLookup,
    Process,
    is_anon,
)
from stax.profile.offclassify import OffcpuReasons

if TYPE_CHECKING:
    from stax.profile.pymerge import PyMerge
    from stax.symbols import Symbolizer
    from stax.unwind import Unwinder


# /proc reads for switch-outs without a tracepoint cost 40-250 us each: at most this many a
# second (of record time); the switch-outs beyond get no stack and reason "other"
PROBES_PER_S = 1000


class RecordSink(OffcpuReasons):
    """The tables plus what decoding records needs: the chain cache, the off-CPU interval
    builder, the tracepoint formats and, with DWARF unwinding, the unwinder (given the process
    maps through a MappingLookup)."""

    def __init__(self, symbolizer: Symbolizer | None = None, dwarf_unwind: bool = False,
                 stack_size: int = 0) -> None:
        super().__init__(symbolizer)
        self._chain_cache: dict[tuple[int, tuple[int, ...]], int] = {}
        self.max_chain = sysctl.read_int("kernel.perf_event_max_stack", 127)
        self.offcpu = offcpu.Builder(self.intervals, self.wakeups, self.reason_of)
        self.trace_formats = Formats()
        # off-CPU from context-switch records (no scheduler tracepoints): the user stack bytes
        # read from /proc for a blocking stack (0: that path is off), and the latest "ctxsw"
        # sample of each thread (its blocking stack, where the kernel lets them fire)
        self.switch_records_stack = 0
        self._ctxsw: dict[int, int] = {}
        self._probe_tokens = (float(PROBES_PER_S), 0)  # (tokens, at record time)
        self.unwinder: Unwinder | None = None
        self.python: PyMerge | None = None  # Python frames of a CPython target
        if dwarf_unwind:
            from stax.unwind import STACK_SIZE, Unwinder

            self.unwinder = Unwinder(MappingLookup(self), stack_size or STACK_SIZE)

    def intern_chain(self, pid: int, chain: tuple[int, ...]) -> int:
        """Turn a kernel callchain (leaf first, with context markers) into a stack id."""
        frames: list[int] = []
        context = rec.CONTEXT_USER
        first_in_context = True
        proc = self.processes.get(pid)
        for ip in chain:
            if ip >= rec.CONTEXT_MAX:
                context = ip
                first_in_context = True
                continue
            if ip == 0:  # no frame: a zero return address ends a frame-pointer walk, and a
                continue  # tracepoint can hit before the user stack exists (e.g. at exec)
            # callers are return addresses: look them up at ip - 1 (inside the call instruction)
            addr = ip if first_in_context else ip - 1
            first_in_context = False
            if context == rec.CONTEXT_KERNEL:
                frames.append(self.frame_id(KERNEL_BINARY, addr))
                continue
            m = proc.find(addr) if proc is not None else None
            if m is None:
                self.counts["unmapped_frames"] += 1
                frames.append(self.frame_id(UNKNOWN_BINARY, addr))
            else:
                frames.append(self.frame_id(m.binary, addr - m.start + m.pgoff))
        sid = -1
        for fid in reversed(frames):
            sid = self.stack_id(sid, fid)
        return sid

    def on_sample(self, s: rec.Sample) -> None:
        if s.kind not in ("", "cpu-clock"):
            self.on_event_sample(s)
            return
        tid, time = s.tid, s.time
        sid = self.sample_stack(s)
        if self.python is not None and s.pid == self.python.pid:
            cut = (self.unwinder is not None and s.stack is not None
                   and self.unwinder.last_stop is not None)  # (the walk just made)
            sid = self.python.apply(self, tid, time, sid, cut)
        if sid < 0:
            self.counts["empty_stacks"] += 1
        self.s_time.append(time)
        self.s_tid.append(tid)
        self.s_stack.append(sid)
        self.s_weight.append(s.period)
        self.s_cpu.append(s.cpu)
        self.counts["samples"] += 1
        self.last_time = time
        self._touch_thread(s.pid, tid, time)

    def sample_stack(self, s: rec.Sample) -> int:
        """The interned stack id of any sample (on-CPU or an event such as a tracepoint).

        With DWARF unwinding, the kernel part of the chain is followed by the user frames the
        unwinder recovers from the sampled registers and stack copy.
        """
        if (self.unwinder is not None and s.regs is not None and s.abi == REGS_ABI_64
                and s.stack is not None):  # events without a stack copy: frame-pointer chain
            return self.unwound_stack(s)
        pid, chain = s.pid, s.chain
        key = (pid, chain)
        sid = self._chain_cache.get(key)
        if sid is None:
            sid = self.intern_chain(pid, chain)
            if len(self._chain_cache) > 500_000:
                self._chain_cache.clear()
            self._chain_cache[key] = sid
        if len(chain) >= self.max_chain:
            self.counts["truncated_chains"] += 1
        return sid

    def unwound_stack(self, s: rec.Sample) -> int:
        assert self.unwinder is not None and s.regs is not None
        frames: list[int] = []
        in_kernel = False
        first = True
        chain = s.chain
        for ip in chain:
            if ip >= rec.CONTEXT_MAX:
                in_kernel = ip == rec.CONTEXT_KERNEL
                first = True
                continue
            if in_kernel:
                frames.append(self.frame_id(KERNEL_BINARY, ip if first else ip - 1))
                first = False
        if len(chain) >= self.max_chain:
            self.counts["truncated_chains"] += 1
        side = s.kind not in ("", "cpu-clock")  # blocking and waker stacks
        self._user_frames(frames, s.pid, s.regs, s.stack, side, s.kind == "sched_waking")
        sid = -1
        stack_id = self.stack_id
        for fid in reversed(frames):
            sid = stack_id(sid, fid)
        return sid

    def _user_frames(self, frames: list[int], pid: int, regs: tuple[int, ...],
                     stack: bytes | None, side: bool, waker: bool = False) -> None:
        """Append the DWARF-unwound user frames; a blocking or waker stack whose walk stopped
        early gets a ``[truncated]`` root frame."""
        assert self.unwinder is not None
        frame_id = self.frame_id
        for binary, offset in self.unwinder.walk(pid, regs, stack, side, waker):
            if binary == UNKNOWN_BINARY:
                self.counts["unmapped_frames"] += 1
            frames.append(frame_id(binary, offset))
        if side and self.unwinder.last_stop is not None:
            self.counts["truncated_offcpu_stacks"] = self.counts.get(
                "truncated_offcpu_stacks", 0) + 1
            frames.append(frame_id(UNKNOWN_BINARY, TRUNCATED_OFFSET))

    def on_event_sample(self, s: rec.Sample) -> None:
        """A sample from an event other than the cpu-clock sampler (e.g. a tracepoint)."""
        if s.kind == "sched_switch" and s.raw is not None:
            _prev, state = self.trace_formats.switch_out(s.raw)
            self._touch_thread(s.pid, s.tid, s.time)
            self.offcpu.switch_out(s.tid, s.time, state, self.sample_stack(s))
        elif s.kind == "sched_waking" and s.raw is not None:
            wakee, irq = self.trace_formats.waking_of(s.raw)
            if irq:  # an interrupt or timer that fired while a target thread was on CPU
                if wakee not in self.threads:
                    return  # it woke some other program: not part of this run
                chain = s.chain
                if rec.CONTEXT_USER in chain:
                    chain = chain[:chain.index(rec.CONTEXT_USER)]
                self.offcpu.waking(s.time, 0, wakee, self.intern_chain(s.pid, chain))
            else:
                self.offcpu.waking(s.time, s.tid, wakee, self.sample_stack(s))
        elif s.kind == "ctxsw":  # a context-switch software event: the blocking stack
            self._ctxsw[s.tid] = self.sample_stack(s)
        else:
            self.counts["other"] += 1

    def _touch_thread(self, pid: int, tid: int, time: int) -> None:
        if not self.first_time:
            self.first_time = time
        th = self.ensure_thread(pid, tid, time)
        th.end_ns = max(th.end_ns, time)

    def on_switch(self, out: bool, preempt: bool, pid: int, tid: int, time: int) -> None:
        """A context-switch record: switch-ins end off-CPU intervals (switch-outs come with
        their stack and state from the sched_switch tracepoint)."""
        self.counts["switches"] = self.counts.get("switches", 0) + 1
        if not out:
            self.offcpu.switch_in(tid, time)
            if self.python is not None:
                self.python.on_switch_in(pid, tid, time)
        elif self.switch_records_stack:
            self._switch_out_record(pid, tid, time, preempt)

    def use_switch_records(self, stack_bytes: int) -> None:
        """Off-CPU intervals come from context-switch records (no sched_switch tracepoint):
        switch-outs are read here, their reason and stack from a ctxsw sample or /proc."""
        self.switch_records_stack = max(8, stack_bytes)

    def _switch_out_record(self, pid: int, tid: int, time: int, preempt: bool) -> None:
        """A switch-out record without a sched_switch tracepoint: preempted threads are "ready";
        for blocked ones, the ctxsw sample's stack where there was one, else what /proc shows of
        the thread now (state, wchan, system call; the user stack read at its stack pointer)."""
        from stax.profile import blockprobe

        stack = self._ctxsw.pop(tid, -1)
        if preempt:
            self.offcpu.switch_out(tid, time, offcpu.STATE_PREEMPTED, stack)
            return
        self._touch_thread(pid, tid, time)
        tokens, at = self._probe_tokens
        tokens = min(float(PROBES_PER_S), tokens + max(0, time - at) * PROBES_PER_S / 1e9)
        b = None
        if stack < 0 and tokens >= 1:  # (a ctxsw sample's stack has the kernel frames)
            tokens -= 1
            b = blockprobe.probe(pid, tid, self.switch_records_stack)
        elif stack < 0:
            self.counts["switch_outs_not_probed"] = self.counts.get(
                "switch_outs_not_probed", 0) + 1
        self._probe_tokens = (tokens, time)
        if b is None:  # running again already (or not readable): the reason is unknown
            self.offcpu.switch_out(tid, time, offcpu.STATE_INTERRUPTIBLE, stack)
            return
        if stack < 0 and b.pc:
            frames: list[int] = []
            if self.unwinder is not None and b.stack:
                regs = (0,) * 7 + (b.sp, b.pc) + (0,) * 8  # perf_regs order: SP, IP known
                self._user_frames(frames, pid, regs, b.stack, True)
            else:
                proc = self.processes.get(pid)
                m = proc.find(b.pc) if proc is not None else None
                if m is not None:
                    frames.append(self.frame_id(m.binary, b.pc - m.start + m.pgoff))
            for fid in reversed(frames):
                stack = self.stack_id(stack, fid)
        why = b.reason()
        self.offcpu.switch_out(tid, time, b.state, stack,
                               offcpu.REASON_CODE[why] if why is not None else -1)

    def on_end(self, time: int) -> None:
        """The recording stopped at ``time``: threads still off CPU end their interval there."""
        self.offcpu.close_open(time)

    def set_trace_formats(self, formats: Formats) -> None:
        self.trace_formats = formats

    def on_mmap(self, pid: int, tid: int, addr: int, length: int, pgoff: int, prot: int,
                build_id: str | None, filename: str, time: int) -> None:
        self.counts["mmap"] += 1
        if not prot & 4:  # PROT_EXEC: only code matters for stacks
            return
        proc = self.processes.get(pid)
        if proc is None:
            proc = self.processes[pid] = Process(pid)
        if is_anon(filename):
            filename, pgoff = ANON_PATH, addr
        elif filename.endswith(".dump"):
            self._note_jitdump(pid, display(os.fsencode(filename)))
        elif filename.startswith("["):
            pgoff = 0 if filename != "[vdso]" else pgoff
        bid = self.binary_id(filename, build_id, pid, addr, addr + length)
        if self.python is not None:
            self.python.on_mmap(pid, filename)
        proc.add(Mapping(addr, addr + length, pgoff, bid))
        self._chain_cache.clear()
        if self.unwinder is not None:
            self.unwinder.forget(pid)

    def _note_jitdump(self, pid: int, path: str) -> None:
        """A JIT runtime maps its jitdump file executable so profilers can find it."""
        from stax.symbols.perfmap import is_jitdump_path

        if self.symbolizer is not None and is_jitdump_path(path):
            self.symbolizer.perf_maps.add_jitdump(pid, path)

    def on_comm(self, pid: int, tid: int, comm: str, exec_: bool, time: int) -> None:
        self.counts["comm"] += 1
        th = self.ensure_thread(pid, tid, time)
        th.names.append((time, comm))
        if exec_ and pid == tid:
            # a new program image: the old mappings are gone
            self.processes[pid] = Process(pid)
            self._chain_cache.clear()
            if self.unwinder is not None:
                self.unwinder.forget(pid)

    def on_fork(self, pid: int, ppid: int, tid: int, ptid: int, time: int) -> None:
        self.counts["fork"] += 1
        th = self.ensure_thread(pid, tid, time)
        parent = self.threads.get(ptid)
        if parent is not None and parent.names and not th.names:
            th.names.append((time, parent.name))
        if pid != ppid and pid not in self.processes and ppid in self.processes:
            self.processes[pid] = self.processes[ppid].copy(pid)

    def on_exit(self, pid: int, ppid: int, tid: int, ptid: int, time: int) -> None:
        self.counts["exit"] += 1
        th = self.threads.get(tid)
        if th is not None:
            th.end_ns = time
        self.offcpu.thread_exit(tid)

    def on_lost(self, lost: int) -> None:
        self.counts["lost"] += lost

    def on_throttle(self, throttled: bool, time: int) -> None:
        if throttled:
            self.counts["throttled"] += 1

    def on_other(self, rtype: int) -> None:
        self.counts["other"] += 1

    def ingest(self, buf: bytes, layout: rec.SampleLayout = rec.DEFAULT_LAYOUT) -> None:
        """Decode a stream of records in stream order (tests and offline input)."""
        with self.lock:
            self.counts["records"] += rec.decode(buf, self, layout)

