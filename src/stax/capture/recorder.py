"""Opens the sampling events for a target (launched or attached) and drains them into a sink.

A library with no server imports: stax-server runs it in a thread, and the CLI can run it alone.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from stax.capture import perf, sched
from stax.capture import records as rec
from stax.capture.events import EventSpec, LocalOpener, Opener
from stax.capture.loop import Shedding

log = logging.getLogger("stax.capture")

DWARF_BUFFER_PAGES = 2048  # 8 MiB per CPU when every sample carries a stack copy
OFFCPU_BUFFER_PAGES = 8192  # 32 MiB per CPU when off-CPU capture is on
# user stack bytes copied at each switch-out (wakeup) for the DWARF walk of the blocking
# (waker's) stack: every context switch of the target pays for it (docs/offcpu.md measures)
SWITCH_STACK_SIZE = 2048
WAKING_STACK_SIZE = 2048
WAKERS_NEED_STAXD = "wakeups need the sched_waking tracepoint: run sudo stax setup (staxd)"


def side_stack_size(var: str, default: int) -> int:
    """$STAX_SWITCH_STACK / $STAX_WAKING_STACK (bytes, a multiple of 8 up to 65528: for
    measuring, bench/offcpu_stacks.py), else ``default``."""
    try:
        v = int(os.environ.get(var, ""))
    except ValueError:
        return default
    return v if 0 <= v <= 65528 and v % 8 == 0 else default




class CaptureError(Exception):
    """A target could not be recorded; the message is meant for the user."""


@dataclass
class CaptureInfo:
    """How the events were opened, for status and diagnose."""

    kernel_frames: bool = True
    build_ids: bool = True
    cpus: list[int] = field(default_factory=list)
    event_fds: int = 0
    buffer_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    dwarf_unwind: bool = False
    stack_copy_bytes: int = 0
    mode: str = "in-process"  # who opened the events: "in-process" or "staxd"
    daemon_socket: str | None = None  # the staxd socket, when mode is "staxd"
    offcpu: bool = False  # sched_switch events and switch records are open
    wakeups: bool = False  # sched_waking events are open
    offcpu_problem: str | None = None  # why off-CPU intervals are not recorded
    wakeups_problem: str | None = None  # why wakeup edges are not recorded
    tracefs: str | None = None
    # where off-CPU intervals come from: "tracepoints" (sched_switch), "switch records"
    # (context-switch records and /proc, without privilege), or None
    offcpu_source: str | None = None


class Recorder:
    """Per-thread, per-CPU cpu-clock events with inherit, one ring buffer per CPU; with off-CPU
    capture, per-thread sched_switch (plus context-switch records) and sched_waking tracepoint
    events writing into the same buffers."""

    def __init__(self, sink: rec.Sink, lock: AbstractContextManager[object], frequency: int,
                 buffer_pages: int = 256, dwarf_unwind: bool = False,
                 stack_size: int = 0, offcpu: bool = True,
                 opener: Opener | None = None) -> None:
        self.opener: Opener = opener if opener is not None else LocalOpener()
        self.target_pid = 0
        self.lock = lock
        self.stack_size = 0
        sample_type = rec.SAMPLE_TYPE
        regs_mask = 0
        if dwarf_unwind:
            from stax.unwind import REGS_MASK, STACK_SIZE

            self.stack_size = stack_size or STACK_SIZE
            sample_type |= perf.SAMPLE_REGS_USER | perf.SAMPLE_STACK_USER
            regs_mask = REGS_MASK
            # every sample carries the stack copy: size the buffers for ~0.5 s of two busy
            # threads per CPU at the default rate
            buffer_pages = max(buffer_pages, DWARF_BUFFER_PAGES)
        self.switch_stack = side_stack_size("STAX_SWITCH_STACK", SWITCH_STACK_SIZE)
        self.waking_stack = side_stack_size("STAX_WAKING_STACK", WAKING_STACK_SIZE)
        self.sched = sched.probe() if offcpu else sched.Probe(problem="disabled")
        if offcpu and not self.sched.switch_ok and hasattr(self.opener, "sched_probe"):
            self.sched = self.opener.sched_probe(self.sched)  # tracefs as staxd sees it
        self.info = CaptureInfo(dwarf_unwind=dwarf_unwind, stack_copy_bytes=self.stack_size,
                                mode=self.opener.mode,
                                daemon_socket=getattr(self.opener, "path", None))
        if self.sched.switch_ok:
            self.layout = rec.SampleLayout(sample_type | perf.SAMPLE_RAW, regs_mask)
            self.info.offcpu = True
            self.info.wakeups = self.sched.waking_ok
            self.info.tracefs = self.sched.tracefs
            self.info.offcpu_source = "tracepoints"
            self.layout.skip_switch_out = True
            # every context switch of the target adds a tracepoint sample with its stack and
            # two switch records, every wakeup a sample: bigger buffers
            buffer_pages = max(buffer_pages, OFFCPU_BUFFER_PAGES)
            setter = getattr(sink, "set_trace_formats", None)
            if setter is not None:
                setter(self.sched.formats)
            if self.sched.mounted_by_stax:
                self.info.notes.append(f"mounted tracefs at {self.sched.tracefs} for off-CPU "
                                       "capture")
            if not self.sched.waking_ok:
                self._no_wakeups(self.sched.waking_problem or "sched_waking unavailable")
        else:
            self.layout = rec.SampleLayout(sample_type, regs_mask)
            if offcpu:
                self._switch_records(sink, self.sched.problem or "scheduler tracepoints "
                                                                  "unavailable")
        unwinder = getattr(sink, "unwinder", None)
        if unwinder is not None and self.layout.stack:
            unwinder.set_copy_sizes(min(self.switch_stack, self.stack_size),
                                    min(self.waking_stack, self.stack_size))
        self.orderer = rec.Orderer(sink, self.layout)
        self.shedding = Shedding(requested_hz=frequency, rate_hz=frequency)
        self.frequency = self._rate_cap(frequency, len(perf.online_cpus()))
        self.buffer_pages = buffer_pages
        self.fds: list[int] = []
        self.buffers: list[perf.RingBuffer] = []
        self.opened_tids: set[int] = set()
        self._kernel = True
        self._build_id = True
        self._launch = False
        self.sample_fds: list[int] = []  # the cpu-clock events (lower_rate adjusts them)
        self.bytes_read = 0
        self.queued_bytes = 0  # read from the buffers (by the reader thread)
        self.taken_bytes = 0  # of those, taken up by the decoding loop
        self.opened_mono: float | None = None  # every event open: the recorded span begins
        self.span_end_mono: float | None = None  # events disabled: the recorded span ends
        self.on_span_end: Callable[[float], None] | None = None

    def _rate_cap(self, frequency: int, ncpus: int) -> int:
        """The rate the events open at: -F, unless busy threads on every CPU at that rate
        would bring more samples than stax can process (SAMPLE_BUDGET); then lower, from the
        start, and the shedding report says so."""
        from stax.capture.loop import RATE_FLOOR_HZ, SAMPLE_BUDGET_DWARF, SAMPLE_BUDGET_FP

        budget = SAMPLE_BUDGET_DWARF if self.stack_size else SAMPLE_BUDGET_FP
        cap = max(RATE_FLOOR_HZ, budget // max(1, ncpus))
        if frequency <= cap:
            return frequency
        self.shedding.rate_hz = cap
        self.shedding.capped_at_hz = cap
        self.shedding.budget = budget
        log.info("capture: -F %d is above what stax can process on %d CPUs (about %d "
                 "samples/s); sampling at %d Hz", frequency, ncpus, budget, cap)
        return cap

    def _no_offcpu(self, why: str) -> None:
        self.info.offcpu = False
        self.info.offcpu_source = None
        self.info.wakeups = False
        self.info.offcpu_problem = why
        self.info.notes.append(f"off-CPU intervals and wakeups unavailable: {why}; recording "
                               "on-CPU samples only")

    def _switch_records(self, sink: rec.Sink, why: str) -> None:
        """No scheduler tracepoints: off-CPU intervals from context-switch records (the
        "ctxsw" event, which any user may open on its own threads), reasons and blocking
        stacks from its samples or /proc; no wakeups."""
        use = getattr(sink, "use_switch_records", None)
        if use is None or os.environ.get("STAX_SWITCH_RECORDS") == "0":
            self._no_offcpu(why)
            return
        use(self.switch_stack)
        self.info.offcpu = True
        self.info.offcpu_source = "switch records"
        self.info.offcpu_problem = None
        self.info.wakeups = False
        self.info.wakeups_problem = WAKERS_NEED_STAXD
        self.info.notes.append(f"scheduler tracepoints unavailable ({why}): off-CPU intervals "
                               "from context-switch records, reasons from /proc; "
                               + WAKERS_NEED_STAXD)

    def _no_wakeups(self, why: str) -> None:
        self.info.wakeups = False
        self.info.wakeups_problem = why
        self.info.notes.append(f"wakeups unavailable: {why}")

    # --- opening ------------------------------------------------------------------------------

    def _spec(self, kind: str, stack_user_bytes: int | None = None, **extra: int) -> EventSpec:
        """An event of this recording's sample layout, ring-buffer size and privileges; its
        user stack copy is the recording's unless ``stack_user_bytes`` says otherwise."""
        if stack_user_bytes is None:
            stack_user_bytes = self.stack_size if self.layout.stack else 0
        return EventSpec(kind, launch=self._launch, kernel=self._kernel,
                         buffer_bytes=self.buffer_pages * 4096,
                         sample_type=self.layout.sample_type,
                         regs_user_mask=self.layout.regs_user_mask,
                         stack_user_bytes=stack_user_bytes, **extra)

    def _open_tracepoints(self, tid: int, cpu: int, out_fd: int) -> None:
        """The sched_switch and sched_waking events of one thread on one CPU, redirected into
        that CPU's buffer. A failure turns the feature off with a note, never the run."""
        wanted = []
        if self.info.offcpu:
            wanted.append("ctxsw" if self.info.offcpu_source == "switch records"
                          else "sched_switch")
        if self.info.wakeups:
            wanted.append("sched_waking")
        for kind in wanted:
            # small stack copies for blocking and waker stacks: see events.tracepoint_attr
            size = self.waking_stack if kind == "sched_waking" else self.switch_stack
            spec = self._spec(kind, stack_user_bytes=(
                min(size, self.stack_size) if self.layout.stack else 0))
            try:
                fd = self.opener.open(spec, self.target_pid or tid, tid, cpu)
            except perf.PerfError as e:
                if e.errno == errno.ESRCH:
                    raise
                why = sched.open_error(e, f"sched:{kind}")
                if kind != "sched_waking":
                    self._no_offcpu(why)
                    return
                self._no_wakeups(why)
                continue
            self.fds.append(fd)
            self.layout.kinds[perf.event_id(fd)] = kind
            try:
                perf.set_output(fd, out_fd)
            except OSError as e:
                why = f"could not share the ring buffer with sched:{kind}: {e.strerror}"
                if kind != "sched_waking":
                    self._no_offcpu(why)
                    return
                self._no_wakeups(why)

    def _open_one(self, tid: int, cpu: int) -> int:
        while True:
            spec = self._spec("sample", frequency=self.frequency, build_id=self._build_id)
            try:
                fd = self.opener.open(spec, self.target_pid or tid, tid, cpu)
                self.layout.kinds[perf.event_id(fd)] = "cpu-clock"
                self.sample_fds.append(fd)
                return fd
            except perf.PerfError as e:
                if e.errno in (errno.EACCES, errno.EPERM) and self._kernel:
                    self._kernel = False
                    self.info.kernel_frames = False
                    how = ("staxd is not running as root" if self.opener.mode == "staxd" else
                           "run `sudo stax setup` to start staxd, or record as root")
                    self.info.notes.append(
                        f"kernel frames unavailable (perf_event_paranoid="
                        f"{perf.paranoid_level()}): recording user stacks only; to get them: "
                        f"{how}")
                    continue
                if e.errno == errno.EINVAL and self._build_id:
                    self._build_id = False
                    self.info.build_ids = False
                    self.info.notes.append("kernel does not report build-ids in mmap records;"
                                           " reading them from the files instead")
                    continue
                raise

    def _open_tid(self, tid: int) -> None:
        cpus = self.info.cpus
        for i, cpu in enumerate(cpus):
            fd = self._open_one(tid, cpu)
            self.fds.append(fd)
            if len(self.buffers) < len(cpus):
                self.buffers.append(self._map(fd))
            else:
                perf.set_output(fd, self.buffers[i].fd)
            if self.info.offcpu:
                self._open_tracepoints(tid, cpu, self.buffers[i].fd)
        self.opened_tids.add(tid)
        self.info.event_fds = len(self.fds)

    def _map(self, fd: int) -> perf.RingBuffer:
        """Map a ring buffer, halving its size while the locked-memory limit refuses it
        (unprivileged users get perf_event_mlock_kb, 516 KiB by default, for all buffers)."""
        while True:
            try:
                return perf.RingBuffer(fd, self.buffer_pages)
            except PermissionError:
                if self.buffer_pages <= 8:
                    raise
                self.buffer_pages //= 2
                note = (f"ring buffers reduced to {self.buffer_pages * 4} KiB per CPU by the "
                        "locked-memory limit (perf_event_mlock_kb); samples may be lost")
                self.info.notes = [n for n in self.info.notes if "ring buffers" not in n]
                self.info.notes.append(note)

    def _fail(self, e: OSError, pid: int) -> CaptureError:
        if e.errno == errno.ESRCH:
            return CaptureError(f"no process with pid {pid}")
        if e.errno in (errno.EACCES, errno.EPERM):
            return CaptureError(
                f"not allowed to sample pid {pid} (perf_event_paranoid="
                f"{perf.paranoid_level()}): {e.strerror}")
        if e.errno == errno.ENOENT or e.errno == errno.ENODEV:
            return CaptureError(f"this kernel has no cpu-clock software event: {e.strerror}")
        return CaptureError(f"perf_event_open failed for pid {pid}: {e.strerror}")

    def open_launch(self, pid: int) -> None:
        """Open disabled events on a forked child that has not exec'd yet; they enable at exec."""
        self._launch = True
        self.target_pid = pid
        self.info.cpus = perf.online_cpus()
        try:
            self._open_tid(pid)
        except OSError as e:
            self.close()
            raise self._fail(e, pid) from None
        except CaptureError:
            self.close()
            raise
        finally:
            self.opener.close()
        self.info.buffer_bytes = len(self.buffers) * self.buffer_pages * 4096
        self.opened_mono = time.monotonic()

    def open_attach(self, pid: int) -> None:
        """Open events on every existing thread of ``pid``; threads created later inherit them."""
        self._launch = False
        self.target_pid = pid
        self.info.cpus = perf.online_cpus()
        if not os.path.exists(f"/proc/{pid}"):
            raise CaptureError(f"no process with pid {pid}")
        try:
            for _ in range(20):
                tids = self._list_tids(pid)
                if not tids and not self.opened_tids:
                    raise CaptureError(f"no process with pid {pid}")
                new = [t for t in tids if t not in self.opened_tids]
                if not new:
                    break
                for tid in new:
                    try:
                        self._open_tid(tid)
                    except perf.PerfError as e:
                        if e.errno == errno.ESRCH and tid != pid:
                            continue  # the thread exited meanwhile
                        raise
        except OSError as e:
            self.close()
            raise self._fail(e, pid) from None
        except CaptureError:
            self.close()
            raise
        finally:
            self.opener.close()
        self.info.buffer_bytes = len(self.buffers) * self.buffer_pages * 4096
        self.opened_mono = time.monotonic()

    @staticmethod
    def _list_tids(pid: int) -> list[int]:
        try:
            return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except OSError:
            return []

    # --- draining (stax.capture.loop runs the loop) -------------------------------------------

    def read_round(self) -> tuple[int, list[bytes]]:
        """Copy out whatever every buffer holds; every record stamped before the returned
        time (minus the orderer's margin) is in this round or an earlier one."""
        started = time.monotonic_ns()
        chunks = []
        for rb in self.buffers:
            data = rb.read()
            if data:
                chunks.append(data)
        return started, chunks

    def drain(self, final: bool = False) -> int:
        """Read every buffer and apply, in time order, the records that are safe to apply."""
        started, chunks = self.read_round()
        n = 0
        for data in chunks:
            n += len(data)
            self.orderer.add(data)
        self.bytes_read += n
        self.orderer.flush(None if final else started, None, self.lock)
        return n

    def run(self, stop: threading.Event, pidfd: int | None, deadline: float | None,
            interval: float = 0.05) -> str:
        """Drain until ``stop`` is set, the target exits (pidfd readable) or the deadline passes
        (a time.monotonic() value); returns why it ended: "stopped", "exited" or "time-limit".
        The events are disabled at that moment (``span_end_mono``); what is still queued is
        then decoded within a bounded time (stax.capture.loop)."""
        from stax.capture import loop

        return loop.run(self, stop, pidfd, deadline, interval)

    def lower_rate(self) -> int:
        """Halve the kernel sampling rate of the cpu-clock events this recorder holds (not
        below RATE_FLOOR_HZ or the requested rate); returns the rate now in force."""
        from stax.capture.loop import RATE_FLOOR_HZ

        st = self.shedding
        floor = min(st.requested_hz, RATE_FLOOR_HZ)
        new = max(floor, st.rate_hz // 2)
        if new >= st.rate_hz:
            return st.rate_hz
        # cpu-clock is an hrtimer event: the kernel turns -F into a period in nanoseconds at
        # open, so the new rate is given as a period
        period = struct.pack("<Q", 1_000_000_000 // new)
        for fd in self.sample_fds:
            try:
                fcntl.ioctl(fd, perf.PERF_EVENT_IOC_PERIOD, period)
            except OSError:
                pass
        log.info("capture: lowered the sampling rate from %d to %d Hz", st.rate_hz, new)
        st.rate_hz = new
        return new

    @property
    def backlog_bytes(self) -> int:
        """Read from the buffers, not decoded yet."""
        return self.queued_bytes - self.taken_bytes

    def unread_bytes(self) -> int:
        """Bytes the kernel has written that the capture loop has not read yet."""
        return sum(rb.unread() for rb in list(self.buffers)) + self.backlog_bytes

    def close(self) -> None:
        for rb in self.buffers:
            rb.close()
        self.buffers = []
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        self.sample_fds = []
