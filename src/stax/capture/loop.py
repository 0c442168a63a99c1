"""The capture loop: drains a Recorder's ring buffers into its sink until the run ends, on time
and within bounded memory, shedding load on purpose when decoding cannot keep up.

Two threads: a reader copies the ring buffers out every few milliseconds into a backlog (so a
burst waits in memory instead of overflowing the kernel's buffers), and the loop decodes the
backlog in short, time-boxed steps, so a stop request, the deadline or the target's exit is
seen within a step however much is queued.

Load shedding (docs/architecture.md, "Overload"): every CONTROL_S the loop looks at how far
decoding lags behind the reader and whether the kernel reported lost records. When behind, it
(1) lowers the kernel's sampling rate on the events it holds (PERF_EVENT_IOC_PERIOD; threads
that inherited an event before keep its old rate), (2) keeps only one cpu-clock sample in N,
weighted N times so totals stay right, and (3) stores kept samples with a truncated stack
(kernel frames and the user leaf) instead of a DWARF walk. It eases off once it has caught up.

When the run ends the recorded span ends with it (records stamped later are left out); what is
still queued is decoded within END_BUDGET_S, samples are skipped for as long again, and the
rest is dropped and counted.
"""

from __future__ import annotations

import gc
import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stax.capture.records import Orderer

log = logging.getLogger("stax.capture")

READ_INTERVAL_S = 0.005  # how often the reader thread empties the ring buffers
STEP_S = 0.02  # the longest the loop decodes before it looks at stop/deadline/exit again
CONTROL_S = 0.2  # how often the load controller decides
LAG_HIGH_S = 1.0  # decoding this far behind the reader at two checks in a row: shed more
LAG_DROP_S = 3.0  # this far behind: keep no cpu-clock sample until caught up
LAG_LOW_S = 0.1  # caught up to within this: shed less (at most once per EASE_S)
EASE_S = 1.0
MAX_KEEP_EVERY = 1024
RATE_FLOOR_HZ = 1000  # the kernel rate is never lowered below this (or the requested rate)
# samples a second the server decodes on one core, roughly (bench/ingest.py): with a stack copy
# and a DWARF walk each, or with the kernel's frame-pointer chain. A -F that would bring more
# with a busy thread on every CPU opens the events at budget / CPUs Hz instead.
SAMPLE_BUDGET_DWARF = 25_000
SAMPLE_BUDGET_FP = 100_000
BACKLOG_MAX_BYTES = 128 << 20  # the reader leaves data in the kernel's buffers beyond this
END_BUDGET_S = 0.5  # decoding what is queued when the run ends (then shed, then drop)


@dataclass
class Shedding:
    """What the capture loop shed to keep up; all zero/None when it never had to."""

    requested_hz: int = 0
    rate_hz: int = 0  # the kernel rate of the events stax holds now
    capped_at_hz: int | None = None  # the rate the events were opened at, when below -F
    budget: int = 0  # the samples/s that cap was derived from
    keep_every: int = 1  # now: one cpu-clock sample in N decoded (0: none)
    max_keep_every: int = 1
    shed_samples: int = 0  # cpu-clock samples not decoded (their weight went to kept ones)
    stripped_stacks: int = 0  # samples stored with a truncated stack instead of a DWARF walk
    dropped_records: int = 0  # records still queued when the end budget ran out
    dropped_bytes: int = 0  # and bytes read from the ring buffers but not even indexed
    overloaded_s: float = 0.0  # time spent shedding
    max_lag_ms: float = 0.0  # the furthest decoding fell behind the reader

    @property
    def active(self) -> bool:
        return bool(self.rate_hz < self.requested_hz or self.max_keep_every != 1
                    or self.shed_samples or self.stripped_stacks or self.dropped_records
                    or self.dropped_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"requested_hz": self.requested_hz,
                "rate_lowered_to_hz": (self.rate_hz if self.rate_hz < self.requested_hz
                                       else None),
                "capped_at_start_hz": self.capped_at_hz,
                "keep_every": self.keep_every, "max_keep_every": self.max_keep_every,
                "shed_samples": self.shed_samples, "stripped_stacks": self.stripped_stacks,
                "dropped_records": self.dropped_records, "dropped_bytes": self.dropped_bytes,
                "overloaded_s": round(self.overloaded_s, 3),
                "max_lag_ms": round(self.max_lag_ms, 1)}

    def note(self) -> str:
        parts = []
        if self.capped_at_hz is not None:
            parts.append(f"sampled at {self.capped_at_hz} Hz from the start (about "
                         f"{self.budget} samples/s over all CPUs is what it can process)")
        if self.rate_hz < (self.capped_at_hz or self.requested_hz):
            parts.append(f"lowered the sampling rate to {self.rate_hz} Hz")
        if self.shed_samples:
            parts.append(f"skipped {self.shed_samples} samples (kept one in up to "
                         f"{self.max_keep_every or 'none'}, weighted so totals stay right)")
        if self.stripped_stacks:
            parts.append(f"kept {self.stripped_stacks} stacks truncated to their kernel "
                         "frames and leaf")
        if self.dropped_records or self.dropped_bytes:
            parts.append(f"dropped {self.dropped_records} records and {self.dropped_bytes} "
                         "bytes still queued when the run ended")
        what = "; ".join(parts) or "shed load"
        return (f"overloaded: -F {self.requested_hz} brought more records than stax could "
                f"process; it {what}; see stax diagnose")


class Drainable(Protocol):
    """What the loop drives: a recorder's buffers, orderer and counters
    (stax.capture.recorder.Recorder)."""

    orderer: Orderer
    lock: AbstractContextManager[object]
    shedding: Shedding
    queued_bytes: int
    taken_bytes: int
    bytes_read: int
    span_end_mono: float | None
    on_span_end: Callable[[float], None] | None

    def read_round(self) -> tuple[int, list[bytes]]: ...

    def lower_rate(self) -> int: ...


class _Controller:
    """Decides, every CONTROL_S, how much load the loop sheds."""

    def __init__(self, recorder: Drainable, sink: Any) -> None:
        self.recorder = recorder
        self.orderer = recorder.orderer
        self.sink = sink
        self.st = recorder.shedding
        self.next = time.monotonic() + CONTROL_S
        self.last_raise = 0.0
        self.last_change = 0.0
        self.lost_seen = 0
        self.was_behind = False
        self.since: float | None = None

    def _lost(self) -> int:
        counts = getattr(self.sink, "counts", None)
        return int(counts.get("lost", 0)) if isinstance(counts, dict) else 0

    def update(self, lag_s: float, now: float) -> None:
        st = self.st
        st.max_lag_ms = max(st.max_lag_ms, lag_s * 1000)
        if now < self.next:
            return
        self.next = now + CONTROL_S
        lost = self._lost()
        new_lost = lost > self.lost_seen
        self.lost_seen = lost
        o = self.orderer
        # a lag seen at two checks in a row, not a one-off stall (loading a big binary's
        # unwind tables, a full GC)
        behind = lag_s >= LAG_HIGH_S and self.was_behind
        self.was_behind = lag_s >= LAG_HIGH_S
        if lag_s >= LAG_DROP_S and o.keep_every != 0:
            self._set(0, now, lag_s)
        elif (behind or new_lost) and now - self.last_raise >= CONTROL_S * 2:
            self.last_raise = now
            self.recorder.lower_rate()
            if behind and o.keep_every != 0:
                self._set(min(MAX_KEEP_EVERY, o.keep_every * 2), now, lag_s)
        elif lag_s < LAG_LOW_S and o.keep_every != 1 and now - self.last_change >= EASE_S:
            self._set(1 if o.keep_every in (0, 2) else o.keep_every // 2, now, lag_s)
        if o.keep_every != 1:
            if self.since is None:
                self.since = now
        self.sync(now)

    def _set(self, keep_every: int, now: float, lag_s: float = 0.0) -> None:
        o = self.orderer
        if keep_every != o.keep_every:
            log.info("capture: decoding %.0f ms behind; keeping one cpu-clock sample in %s",
                     lag_s * 1000, keep_every or "none")
        o.keep_every = keep_every
        o.strip_stacks = keep_every != 1
        self.last_change = now
        st = self.st
        st.keep_every = keep_every
        if keep_every == 0 or (st.max_keep_every and keep_every > st.max_keep_every):
            st.max_keep_every = keep_every

    def sync(self, now: float) -> None:
        st = self.st
        o = self.orderer
        st.shed_samples = o.shed_samples
        st.stripped_stacks = o.stripped_stacks
        if self.since is not None:
            st.overloaded_s += now - self.since
            self.since = now if (o.keep_every != 1) else None


def run(recorder: Drainable, stop: threading.Event, pidfd: int | None,
        deadline: float | None, interval: float = 0.05) -> str:
    """Drain until ``stop`` is set, the target exits (pidfd readable) or the deadline passes;
    returns why it ended: "stopped", "exited" or "time-limit"."""
    backlog: deque[tuple[int, list[bytes], int]] = deque()
    done_reading = threading.Event()
    orderer = recorder.orderer
    sink = orderer.sink
    lock = recorder.lock
    ctl = _Controller(recorder, sink)

    def reader() -> None:
        while not done_reading.is_set():
            if recorder.queued_bytes - recorder.taken_bytes < BACKLOG_MAX_BYTES:
                _read_into(recorder, backlog)
            done_reading.wait(READ_INTERVAL_S)

    last_started = time.monotonic_ns()

    def step(until: float) -> None:
        """Decode queued records until ``until`` or until nothing is ready."""
        nonlocal last_started
        while True:
            if backlog:
                started, chunks, nbytes = backlog.popleft()
                recorder.taken_bytes += nbytes
                for data in chunks:
                    orderer.add(data)
                recorder.bytes_read += nbytes
                last_started = started
            elif not orderer.behind:
                return
            orderer.flush(last_started, until, lock)
            if time.monotonic() >= until:
                return

    def lag_s(now_ns: int) -> float:
        if backlog:
            return (now_ns - backlog[0][0]) / 1e9
        return (now_ns - last_started) / 1e9 if orderer.behind else 0.0

    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    thread = threading.Thread(target=reader, name="ring-reader", daemon=True)
    # The cyclic garbage collector's full passes walk every tracked object of the profile
    # (interned tuples, caches) and hold the GIL for 100+ ms on big runs: long enough for
    # the reader to miss its rounds and the kernel to drop records. Tables and caches make
    # no cycles, so while recording only the young generations are collected, at a steady
    # pace from this thread; full collections resume when the recording ends.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    next_gc = time.monotonic() + 1.0
    thread.start()
    reason = "stopped"
    try:
        while True:
            now = time.monotonic()
            if stop.is_set():
                break
            if deadline is not None and now >= deadline:
                reason = "time-limit"
                break
            busy = bool(backlog) or orderer.behind
            wait = 0.0 if busy else interval
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - now))
            exited = bool(poller.poll(wait * 1000))
            now = time.monotonic()
            if deadline is not None:
                step(min(now + STEP_S, deadline))
            else:
                step(now + STEP_S)
            now = time.monotonic()
            ctl.update(lag_s(time.monotonic_ns()), now)
            if now >= next_gc:
                gc.collect(1)
                next_gc = time.monotonic() + 1.0
            if exited:
                reason = "exited"
                break
    finally:
        done_reading.set()
        thread.join()
        if gc_was_enabled:
            gc.enable()
    # The recorded span ends here (at the deadline itself for a time limit): records stamped
    # later are left out, so the span is exact even when this thread ran late. The events stay
    # enabled until the recorder is closed; nothing reads them meanwhile.
    end = deadline if reason == "time-limit" and deadline is not None else time.monotonic()
    recorder.span_end_mono = end
    orderer.set_end(int(end * 1e9))
    if recorder.on_span_end is not None:
        recorder.on_span_end(end)
    _finish(recorder, backlog, step, ctl)
    return reason


def _read_into(recorder: Drainable, backlog: deque[tuple[int, list[bytes], int]]) -> None:
    started, chunks = recorder.read_round()
    if chunks:
        n = sum(len(c) for c in chunks)
        recorder.queued_bytes += n  # only this (reader) thread adds, only the loop takes
        backlog.append((started, chunks, n))


def _finish(recorder: Drainable, backlog: deque[tuple[int, list[bytes], int]],
            step: Any, ctl: _Controller) -> None:
    """Decode what is left within END_BUDGET_S; then skip samples for as long again; then drop
    whatever is still queued, counting it."""
    orderer = recorder.orderer
    _read_into(recorder, backlog)  # the last records the kernel wrote before the disable
    start = time.monotonic()
    step(start + END_BUDGET_S)
    if backlog or orderer.behind:
        ctl._set(0, time.monotonic())  # keep no more cpu-clock samples, truncate the rest
        step(start + 2 * END_BUDGET_S)
    while backlog:  # never looked at: counted in bytes
        _started, _chunks, nbytes = backlog.popleft()
        recorder.taken_bytes += nbytes
        recorder.bytes_read += nbytes
        ctl.st.dropped_bytes += nbytes
    if not orderer.behind:  # caught up: the records held back for ordering, time-boxed
        orderer.flush(None, start + 2 * END_BUDGET_S, recorder.lock)
    dropped = orderer.discard()
    if dropped or ctl.st.dropped_bytes:
        log.warning("capture: dropped %d records and %d bytes still queued when the run ended",
                    dropped, ctl.st.dropped_bytes)
    ctl.st.dropped_records += dropped
    ctl.sync(time.monotonic())
    on_end = getattr(orderer.sink, "on_end", None)
    if on_end is not None:
        with recorder.lock:  # threads still off CPU end their interval with the span
            on_end(orderer.end_ns if orderer.end_ns is not None else time.monotonic_ns())
