"""Python stacks by time: a SnapshotStore keeps each snapshot of every Python thread's stack
stamped with CLOCK_MONOTONIC (the clock stax's perf samples carry), so a native sample can be
paired with the Python stack its thread had just before and just after it; snapshots older
than a window are dropped. Two producers fill it: the stack-reading process
(stax.pystacks.stream, the usual one: its own interpreter, so the server's work never delays a
read) and PyStackSampler below, a thread of the server that reads until that process is up, or
for good where it cannot start."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque

from stax.pystacks.procmem import RemoteReadError
from stax.pystacks.reader import PyFrame, PyStackReader

__all__ = ["PyStackSampler", "Snapshot", "SnapshotStore"]

Snapshot = dict[int, tuple[PyFrame, ...]]  # native thread id -> its stack, innermost first


class SnapshotStore:
    """Snapshots in time order; ``around(tid, t_ns)`` answers the ones either side."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_ns = int(window_s * 1e9)
        self._times: deque[int] = deque()
        self._snaps: deque[Snapshot] = deque()
        self._lock = threading.Lock()
        self.reads = 0
        self.failed_reads = 0
        self.read_ns = 0
        self.first_ns = 0  # stamp of the first snapshot

    def add(self, stamp: int, snap: Snapshot, read_ns: int) -> None:
        with self._lock:
            self.reads += 1
            self.read_ns += read_ns
            if not self.first_ns:
                self.first_ns = stamp
            times = self._times
            if not times or stamp >= times[-1]:
                times.append(stamp)
                self._snaps.append(snap)
            else:  # two producers overlapping for a moment
                i = bisect_left(times, stamp)
                times.insert(i, stamp)
                self._snaps.insert(i, snap)
            while times and times[0] < times[-1] - self.window_ns:
                times.popleft()
                self._snaps.popleft()

    def failed(self) -> None:
        with self._lock:
            self.failed_reads += 1

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
        """``tid``'s stack in the snapshot nearest ``t_ns``, if within ``tolerance_ns``."""
        best = None
        for snap in self.around(tid, t_ns):
            if snap is not None and abs(snap[0] - t_ns) <= tolerance_ns:
                if best is None or abs(snap[0] - t_ns) < abs(best[0] - t_ns):
                    best = snap
        return best[1] if best is not None else None


class PyStackSampler:
    """Reads every Python thread's stack ``hz`` times a second on a thread of this process,
    into ``store``, until ``stop()``."""

    def __init__(self, reader: PyStackReader, hz: float, store: SnapshotStore | None = None
                 ) -> None:
        self.reader = reader
        self.period = 1.0 / max(1.0, hz)
        self.store = store if store is not None else SnapshotStore()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stax-pystacks", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def snapshot(self) -> None:
        """Take one snapshot now."""
        t0 = time.monotonic_ns()
        try:
            threads = self.reader.threads()
        except (RemoteReadError, OSError):
            self.store.failed()
            return
        t1 = time.monotonic_ns()
        if self._stop.is_set():
            return  # the stack-reading process took over while this read ran
        self.store.add((t0 + t1) // 2, {t.native_tid: tuple(t.frames) for t in threads},
                       t1 - t0)

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
