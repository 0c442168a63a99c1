"""Python stacks read at a steady rate on a thread of their own, each snapshot stamped with
CLOCK_MONOTONIC (the clock stax's perf samples carry), so a native sample can be paired with
the Python stack its thread had closest in time. Snapshots older than a window are dropped."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque

from stax.pystacks.procmem import RemoteReadError
from stax.pystacks.reader import PyFrame, PyStackReader

__all__ = ["PyStackSampler"]


class PyStackSampler:
    """Reads every Python thread's stack ``hz`` times a second until ``stop()``; ``at(tid,
    t_ns)`` is the stack of the snapshot nearest ``t_ns`` within ``tolerance_ns``."""

    def __init__(self, reader: PyStackReader, hz: float, window_s: float = 30.0) -> None:
        self.reader = reader
        self.period = 1.0 / max(1.0, hz)
        self.window_ns = int(window_s * 1e9)
        self._times: deque[int] = deque()
        self._snaps: deque[dict[int, tuple[PyFrame, ...]]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reads = 0
        self.failed_reads = 0
        self.read_ns = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stax-pystacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def snapshot(self) -> None:
        """Take one snapshot now."""
        t0 = time.monotonic_ns()
        try:
            threads = self.reader.threads()
        except (RemoteReadError, OSError):
            self.failed_reads += 1
            return
        t1 = time.monotonic_ns()
        self.reads += 1
        self.read_ns += t1 - t0
        snap = {t.native_tid: tuple(t.frames) for t in threads}
        stamp = (t0 + t1) // 2
        with self._lock:
            self._times.append(stamp)
            self._snaps.append(snap)
            while self._times and self._times[0] < stamp - self.window_ns:
                self._times.popleft()
                self._snaps.popleft()

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            self.snapshot()
            nxt += self.period
            delay = nxt - time.monotonic()
            if delay < 0:  # behind (a slow read): skip ahead rather than burst
                nxt = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def around(self, tid: int, t_ns: int) -> tuple[
            tuple[int, tuple[PyFrame, ...] | None] | None,
            tuple[int, tuple[PyFrame, ...] | None] | None]:
        """The snapshots just before and just after ``t_ns`` as (time, ``tid``'s stack or
        None), each None where there is none (yet)."""
        with self._lock:
            times = self._times
            i = bisect_left(times, t_ns)
            before = (times[i - 1], self._snaps[i - 1].get(tid)) if i > 0 else None
            after = (times[i], self._snaps[i].get(tid)) if i < len(times) else None
            return before, after

    def at(self, tid: int, t_ns: int, tolerance_ns: int) -> tuple[PyFrame, ...] | None:
        with self._lock:
            times = self._times
            i = bisect_left(times, t_ns)
            best = None
            for j in (i - 1, i):
                if 0 <= j < len(times) and abs(times[j] - t_ns) <= tolerance_ns:
                    if best is None or abs(times[j] - t_ns) < abs(times[best] - t_ns):
                        best = j
            return self._snaps[best].get(tid) if best is not None else None
