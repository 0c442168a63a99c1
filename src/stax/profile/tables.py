"""The interned profile tables every view reads: binaries, funcs, frames, stacks, samples, threads.

Samples are columns in ``array``s and a whole call stack is one integer (a prefix tree), so a
long recording costs a few bytes per sample, not a Python object per sample.
"""

from __future__ import annotations

import bisect
import os
import threading
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stax import sysctl
from stax.binaries import Binary, Pins, display, mapped_build_id
from stax.capture import records as rec
from stax.capture.sched import Formats
from stax.profile import offcpu

if TYPE_CHECKING:
    from stax.profile.access import Owner
    from stax.symbols import Symbolizer
    from stax.unwind import Unwinder

KERNEL_BINARY = 0  # binary id reserved for kernel addresses
UNKNOWN_BINARY = 1  # user addresses outside every known mapping
REGS_ABI_64 = 2  # PERF_SAMPLE_REGS_ABI_64: the sampled registers are x86-64 ones
ANON_PATH = "[anon]"  # anonymous executable memory (JIT code): one binary per process, and the
# frame offset is the absolute address, so the symbolizer can consult /tmp/perf-PID.map


def _is_anon(filename: str) -> bool:
    return not filename or filename.startswith("//anon") or filename.startswith("[anon")


@dataclass(slots=True)
class Mapping:
    start: int
    end: int
    pgoff: int
    binary: int


@dataclass(slots=True)
class Process:
    pid: int
    starts: list[int] = field(default_factory=list)
    maps: list[Mapping] = field(default_factory=list)

    def add(self, m: Mapping) -> None:
        # a new mapping replaces whatever it overlaps (mmap over an existing range)
        keep = [x for x in self.maps if x.end <= m.start or x.start >= m.end]
        keep.append(m)
        keep.sort(key=lambda x: x.start)
        self.maps = keep
        self.starts = [x.start for x in keep]

    def find(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0:
            m = self.maps[i]
            if addr < m.end:
                return m
        return None

    def copy(self, pid: int) -> Process:
        return Process(pid, list(self.starts), list(self.maps))


@dataclass(slots=True)
class Thread:
    pid: int
    tid: int
    names: list[tuple[int, str]] = field(default_factory=list)  # (time_ns, name)
    start_ns: int = 0
    end_ns: int = 0

    @property
    def name(self) -> str:
        return self.names[-1][1] if self.names else ""


@dataclass(slots=True)
class Func:
    name: str
    binary: str
    path: str
    addr: int  # function start (ELF vaddr for user code, absolute for kernel); 0 if unknown
    size: int
    resolved: bool


class Profile:
    """All tables of one run. The capture thread appends; query threads read.

    Appends happen under ``lock``; readers take a consistent sample count under the lock and then
    read the append-only columns without it.
    """

    def __init__(self, symbolizer: Symbolizer | None = None, dwarf_unwind: bool = False,
                 stack_size: int = 0) -> None:
        self.lock = threading.RLock()
        self.sym_lock = threading.Lock()
        self.symbolizer = symbolizer
        self.binaries: list[Binary] = [Binary("[kernel.kallsyms]", None, 0),
                                       Binary("[unknown]", None, 0)]
        self._binary_ids: dict[tuple[bytes, str | None, int], int] = {}
        self.pins = Pins()  # deleted / replaced binaries kept open (stax.binaries)
        self.frame_binary = array("i")
        self.frame_offset = array("Q")
        self.frame_func = array("i")  # -1 until symbolised
        self._frame_ids: dict[tuple[int, int], int] = {}
        self.funcs: list[Func] = []
        self._func_ids: dict[tuple[str, str, int], int] = {}
        self.stack_parent = array("i")
        self.stack_frame = array("i")
        self._stack_ids: dict[tuple[int, int], int] = {}
        self.s_time = array("q")
        self.s_tid = array("i")
        self.s_stack = array("i")
        self.s_weight = array("q")
        self.s_cpu = array("h")
        self.threads: dict[int, Thread] = {}
        self.processes: dict[int, Process] = {}
        self._chain_cache: dict[tuple[int, tuple[int, ...]], int] = {}
        self.path_cache: dict[int, tuple[int, ...]] = {-1: ()}  # stack -> func ids (views)
        self.counts: dict[str, int] = {
            "records": 0, "samples": 0, "lost": 0, "throttled": 0, "mmap": 0, "comm": 0,
            "fork": 0, "exit": 0, "other": 0, "empty_stacks": 0, "unmapped_frames": 0,
            "decode_errors": 0, "truncated_chains": 0,
        }
        self.max_chain = sysctl.read_int("kernel.perf_event_max_stack", 127)
        # off-CPU: intervals and wakeup edges (profile/offcpu.py builds them)
        self.intervals = offcpu.Intervals()
        self.wakeups = offcpu.Wakeups()
        self.offcpu = offcpu.Builder(self.intervals, self.wakeups, self.reason_of)
        self.trace_formats = Formats()
        self._reason_cache: dict[tuple[int, int], int] = {}
        # the recorded program's ids: annotate shows only sources this owner could read
        self.owner: Owner | None = None
        self.first_time = 0
        self.marks: list[tuple[int, str]] = []  # (monotonic ns, label): stax mark
        self.last_time = 0
        self.unwinder: Unwinder | None = None
        if dwarf_unwind:
            from stax.unwind import STACK_SIZE, Unwinder

            self.unwinder = Unwinder(self, stack_size or STACK_SIZE)

    # --- interning --------------------------------------------------------------------------

    def binary_id(self, path: str | bytes, build_id: str | None, pid: int, start: int = 0,
                  end: int = 0) -> int:
        """The id of a mapped file, by its name exactly as recorded (bytes, or a str from
        ``os.fsdecode``), its build-id and, for anonymous memory, its process. A new binary
        remembers the mapping it was seen in, and is kept open when its file is only reachable
        through that process (deleted or replaced: ``stax.binaries.Pins``)."""
        raw = path if isinstance(path, bytes) else os.fsencode(path)
        key = (raw, build_id, pid if raw == b"[anon]" else 0)
        bid = self._binary_ids.get(key)
        if bid is None:
            bid = len(self.binaries)
            b = Binary(display(raw), build_id, pid, raw, start, end)
            self.binaries.append(b)
            self._binary_ids[key] = bid
            if raw.startswith(b"/"):
                self.pins.consider(b)
        return bid

    def frame_id(self, binary: int, offset: int) -> int:
        key = (binary, offset)
        fid = self._frame_ids.get(key)
        if fid is None:
            fid = len(self.frame_binary)
            self.frame_binary.append(binary)
            self.frame_offset.append(offset)
            self.frame_func.append(-1)
            self._frame_ids[key] = fid
        return fid

    def stack_id(self, parent: int, frame: int) -> int:
        key = (parent, frame)
        sid = self._stack_ids.get(key)
        if sid is None:
            sid = len(self.stack_parent)
            self.stack_parent.append(parent)
            self.stack_frame.append(frame)
            self._stack_ids[key] = sid
        return sid

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

    # --- the record sink (called by the capture loop under self.lock) ------------------------

    def on_sample(self, s: rec.Sample) -> None:
        if s.kind not in ("", "cpu-clock"):
            self.on_event_sample(s)
            return
        tid, time = s.tid, s.time
        sid = self.sample_stack(s)
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
        frame_id = self.frame_id
        blocked = s.kind not in ("", "cpu-clock")
        for binary, offset in self.unwinder.walk(s.pid, s.regs, s.stack, blocked):
            if binary == UNKNOWN_BINARY:
                self.counts["unmapped_frames"] += 1
            frames.append(frame_id(binary, offset))
        sid = -1
        stack_id = self.stack_id
        for fid in reversed(frames):
            sid = stack_id(sid, fid)
        return sid

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
        else:
            self.counts["other"] += 1

    def _touch_thread(self, pid: int, tid: int, time: int) -> None:
        if not self.first_time:
            self.first_time = time
        th = self.threads.get(tid)
        if th is None:
            th = self.threads[tid] = Thread(pid, tid, start_ns=time)
        th.end_ns = max(th.end_ns, time)

    def on_switch(self, out: bool, preempt: bool, pid: int, tid: int, time: int) -> None:
        """A context-switch record: switch-ins end off-CPU intervals (switch-outs come with
        their stack and state from the sched_switch tracepoint)."""
        self.counts["switches"] = self.counts.get("switches", 0) + 1
        if not out:
            self.offcpu.switch_in(tid, time)

    def on_end(self, time: int) -> None:
        """The recording stopped at ``time``: threads still off CPU end their interval there."""
        self.offcpu.close_open(time)

    def set_trace_formats(self, formats: Formats) -> None:
        self.trace_formats = formats

    def reason_of(self, stack: int, state: int) -> int:
        """The reason code of an interval blocked at ``stack`` in ``state`` if already known,
        else -1 (classify_pending fills it in later, off the capture path)."""
        return self._reason_cache.get((stack, state), -1)

    def classify_pending(self) -> None:
        """Give every interval recorded since the last call its reason bucket. Symbolises the
        blocking stacks (outside the profile lock); views call this before reading."""
        with self.lock:
            todo = self.offcpu.unclassified
            if not todo:
                return
            self.offcpu.unclassified = []
            iv = self.intervals
            keys = {(iv.stack[i], iv.state[i]) for i in todo}
            keys -= self._reason_cache.keys()
        codes = {key: self._classify(*key) for key in keys}
        with self.lock:
            self._reason_cache.update(codes)
            cache = self._reason_cache
            iv = self.intervals
            for i in todo:
                iv.reason[i] = cache[(iv.stack[i], iv.state[i])]

    def _classify(self, stack: int, state: int) -> int:
        kernel: list[str] = []
        user: list[str] = []
        s = stack
        while s >= 0:
            fid = self.stack_frame[s]
            name = self.funcs[self.func_of_frame(fid)].name
            (kernel if self.frame_binary[fid] == KERNEL_BINARY else user).append(name)
            s = self.stack_parent[s]
        return offcpu.REASON_CODE[offcpu.classify(state, kernel, user)]

    def on_mmap(self, pid: int, tid: int, addr: int, length: int, pgoff: int, prot: int,
                build_id: str | None, filename: str, time: int) -> None:
        self.counts["mmap"] += 1
        if not prot & 4:  # PROT_EXEC: only code matters for stacks
            return
        proc = self.processes.get(pid)
        if proc is None:
            proc = self.processes[pid] = Process(pid)
        if _is_anon(filename):
            filename, pgoff = ANON_PATH, addr
        elif filename.endswith(".dump"):
            self._note_jitdump(pid, display(os.fsencode(filename)))
        elif filename.startswith("["):
            pgoff = 0 if filename != "[vdso]" else pgoff
        bid = self.binary_id(filename, build_id, pid, addr, addr + length)
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
        th = self.threads.get(tid)
        if th is None:
            th = self.threads[tid] = Thread(pid, tid, start_ns=time)
        th.names.append((time, comm))
        if exec_ and pid == tid:
            # a new program image: the old mappings are gone
            self.processes[pid] = Process(pid)
            self._chain_cache.clear()
            if self.unwinder is not None:
                self.unwinder.forget(pid)

    def on_fork(self, pid: int, ppid: int, tid: int, ptid: int, time: int) -> None:
        self.counts["fork"] += 1
        th = self.threads.get(tid)
        if th is None:
            th = self.threads[tid] = Thread(pid, tid, start_ns=time)
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

    # --- seeding from /proc (attach) -------------------------------------------------------

    def seed_from_proc(self, pid: int, time: int) -> None:
        """Mappings and thread names of an already-running process, read from /proc. File
        names stay bytes; build-ids are read from the mapped files themselves where /proc
        allows (so a deleted or replaced file is still the one identified)."""
        with self.lock:
            proc = self.processes[pid] = Process(pid)
            try:
                with open(f"/proc/{pid}/maps", "rb") as f:
                    lines = f.read().split(b"\n")
            except OSError:
                lines = []
            build_ids: dict[bytes, str | None] = {}
            for line in lines:
                parts = line.split(None, 5)
                if len(parts) < 5 or b"x" not in parts[1]:
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split(b"-"))
                raw = parts[5].strip(b" ") if len(parts) > 5 else b""
                pgoff = int(parts[2], 16)
                if raw.startswith(b"/") and raw not in build_ids:
                    build_ids[raw] = mapped_build_id(pid, raw, lo, hi)
                if _is_anon(display(raw)):
                    raw, pgoff = ANON_PATH.encode(), lo
                elif raw.endswith(b".dump"):
                    self._note_jitdump(pid, display(raw))
                bid = self.binary_id(raw, build_ids.get(raw), pid, lo, hi)
                proc.add(Mapping(lo, hi, pgoff, bid))
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                tids = []
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8",
                              errors="replace") as f:  # as records decode a comm
                        name = f.read().strip()
                except OSError:
                    continue
                th = self.threads.setdefault(tid, Thread(pid, tid, start_ns=time))
                th.names.append((time, name))
            self._chain_cache.clear()
            if self.unwinder is not None:
                self.unwinder.forget(pid)

    def seed_blocked(self, pid: int, time: int) -> int:
        """Threads of ``pid`` already blocked when an attach began: their off-CPU interval
        starts now, classified from /proc (state and wchan, the kernel function they wait in)
        since their blocking stack was not recorded. Returns how many."""
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return 0
        n = 0
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", errors="replace") as f:
                    stat = f.read()
                with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                    wchan = f.read().strip()
            except OSError:
                continue
            letter = stat[stat.rfind(")") + 2:][:1]
            state = {"S": offcpu.STATE_INTERRUPTIBLE, "D": offcpu.STATE_UNINTERRUPTIBLE}.get(
                letter)
            if state is None:
                continue
            kernel = [wchan] if wchan and wchan != "0" else []
            code = offcpu.REASON_CODE[offcpu.classify(state, kernel, [])]
            with self.lock:
                self.offcpu.seed(tid, time, state, code)
            n += 1
        return n

    # --- symbolisation --------------------------------------------------------------------

    def func_of_frame(self, fid: int) -> int:
        func = self.frame_func[fid]
        if func >= 0:
            return func
        with self.sym_lock:
            return self._resolve_frame(fid)

    def _resolve_frame(self, fid: int) -> int:
        func = self.frame_func[fid]
        if func >= 0:
            return func
        binary = self.binaries[self.frame_binary[fid]]
        offset = self.frame_offset[fid]
        bin_id = self.frame_binary[fid]
        if self.symbolizer is None:
            f = Func(f"{binary.name}+0x{offset:x}", binary.name, binary.path, 0, 0, False)
        elif bin_id == KERNEL_BINARY:
            r = self.symbolizer.resolve_kernel(offset)
            f = Func(r.name, r.binary, r.path, r.func_addr, r.func_size, r.resolved)
        elif bin_id == UNKNOWN_BINARY:
            f = Func(f"[unknown]+0x{offset:x}", "[unknown]", "", 0, 0, False)
        else:
            r = self.symbolizer.resolve_binary(binary, offset)
            f = Func(r.name, r.binary, r.path, r.func_addr, r.func_size, r.resolved)
        key = (f.name, f.binary, f.addr if f.resolved else offset)
        func = self._func_ids.get(key)
        if func is None:
            func = len(self.funcs)
            self.funcs.append(f)
            self._func_ids[key] = func
        self.frame_func[fid] = func
        return func
