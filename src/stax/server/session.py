"""One capture session: the Profile and Recorder of a launched or attached process, its capture
loop on a thread of its own, and the run summary.

stax-server's runs (server/runs.py: a Run is a Session the server hosts) and the in-process
fallback of ``stax record`` (cli/offline.py) both record through this module, so they open the
same events with the same options and describe the result with the same fields.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stax.archive.diag import capture_fields
from stax.capture.broker import opener_for
from stax.capture.recorder import CaptureError, Recorder
from stax.profile.access import Owner
from stax.profile.tables import Profile
from stax.profile.window import marks

log = logging.getLogger("stax.server")


@dataclass(kw_only=True)
class Session:
    """What was asked (mode, pid, argv, frequency, time limit) and, while it records, the
    Profile its Recorder fills; ``recorder`` is None for a run read back from an archive."""

    mode: str  # "launch" | "attach"
    pid: int
    argv: list[str]
    frequency: int
    time_limit_s: float | None
    profile: Profile
    recorder: Recorder | None
    started_wall: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    stopped_mono: float | None = None
    state: str = "recording"
    end_reason: str | None = None
    exit_status: int | None = None
    error: str | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def elapsed_s(self) -> float:
        end = self.stopped_mono if self.stopped_mono is not None else time.monotonic()
        return end - self.started_mono

    def capture_summary(self, run_id: int, command: str,
                        archive: str | None) -> dict[str, Any]:
        """The summary of a live (or just finished) recording."""
        assert self.recorder is not None
        p = self.profile
        with p.lock:
            samples = len(p.s_stack)
            counts = dict(p.counts)
            nthreads = len(p.threads)
            oncpu = sum(p.s_weight[:samples])
        info = self.recorder.info
        return {
            "id": run_id,
            "state": self.state,
            "mode": self.mode,
            "pid": self.pid,
            "command": command,
            "argv": self.argv,
            "frequency_hz": self.frequency,
            "time_limit_ms": (round(self.time_limit_s * 1000)
                              if self.time_limit_s is not None else None),
            "samples": samples,
            "oncpu_ns": oncpu,
            **capture_fields(p, self.recorder),  # intervals, off-CPU, wakeups, unwinding
            "lost_records": counts["lost"],
            "threads": nthreads,
            "started_at_unix_ms": int(self.started_wall * 1000),
            "elapsed_ms": round(self.elapsed_s() * 1000, 3),
            "end_reason": self.end_reason,
            "exit_status": self.exit_status,
            "error": self.error,
            "kernel_frames": info.kernel_frames,
            "notes": list(info.notes) + ([self.recorder.shedding.note()]
                                         if self.recorder.shedding.active else []),
            "archive": archive,
            "marks": marks(p),
            "capture_mode": info.mode,
            "daemon_socket": info.daemon_socket,
        }

    def start(self, pidfd: int | None, name: str | None = None,
              on_stopped: Callable[[Any], None] | None = None) -> None:
        """Run the capture loop on its own thread until the target exits, the time limit
        passes or ``stop_event`` is set; ``done`` is set once it ended and ``on_stopped`` (given
        this session) returned. A ``name`` ("run 3") logs the failures and the end to the
        server's log; without one (the in-process fallback) the caller reports them."""
        self.thread = threading.Thread(target=self._capture, args=(pidfd, name, on_stopped),
                                       name=f"capture ({name})" if name else "capture",
                                       daemon=True)
        self.thread.start()

    def _capture(self, pidfd: int | None, name: str | None,
                 on_stopped: Callable[[Any], None] | None) -> None:
        recorder = self.recorder
        assert recorder is not None
        # the time limit counts from when every event is open (the recorded span's start);
        # it ends at the deadline, the stop or the exit (stax.capture.loop), before the rest of
        # what is queued is decoded
        if recorder.opened_mono is not None:
            self.started_mono = recorder.opened_mono
        deadline = (self.started_mono + self.time_limit_s) if self.time_limit_s else None

        def span_end(t: float) -> None:
            self.stopped_mono = t

        recorder.on_span_end = span_end
        try:
            self.end_reason = recorder.run(self.stop_event, pidfd, deadline)
        except Exception as e:  # the run must end cleanly whatever happened
            if name is not None:
                log.exception("capture of %s failed", name)
            self.error = f"capture failed: {e}"
            self.end_reason = "error"
        finally:
            if self.profile.python is not None:  # its snapshots stay for lookups
                self.profile.python.watch.stop()
            if self.stopped_mono is None:
                self.stopped_mono = time.monotonic()
            self.state = "stopped"  # waiters get the summary now; closing 1000s of fds is slow
            recorder.close()
            if pidfd is not None:
                os.close(pidfd)
            if on_stopped is not None:
                try:
                    on_stopped(self)
                except Exception:
                    log.exception("keeping %s on disk failed", name)
            self.done.set()
            if name is not None:
                counts = self.profile.counts
                log.info("%s stopped (%s): %d samples, %d lost", name, self.end_reason,
                         len(self.profile.s_stack), counts["lost"])


def open_capture(mode: str, pid: int, frequency: int, dwarf_unwind: bool,
                 daemon_socket: str | None, symbolizer: Any,
                 python: bool = True) -> tuple[Profile, Recorder, int]:
    """A Profile and a Recorder whose events are open on ``pid`` (``launch``: a child paused
    before exec; ``attach``: a running process, its threads and blocked states read from
    /proc), and a pidfd of the target. Descriptors come from staxd when ``daemon_socket``
    answers. CaptureError (everything opened closed again) when the events cannot be opened.
    ``python``: a CPython target's Python stacks are read beside it (stax.pystacks.live) and
    merged into its samples."""
    profile = Profile(symbolizer, dwarf_unwind=dwarf_unwind)
    opener, note = opener_for(daemon_socket)
    recorder = Recorder(profile, profile.lock, frequency, dwarf_unwind=dwarf_unwind,
                        opener=opener)
    if note:
        recorder.info.notes.append(note)
    try:
        if mode == "launch":
            recorder.open_launch(pid)
        else:
            recorder.open_attach(pid)
    except CaptureError:
        opener.close()
        raise
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        recorder.close()
        raise CaptureError(f"no process with pid {pid} ({e.strerror})") from None
    profile.owner = Owner.of_pid(pid)  # annotate shows only sources this owner could read
    if mode == "attach":
        profile.seed_from_proc(pid, time.monotonic_ns())
        if recorder.info.offcpu:
            profile.seed_blocked(pid, time.monotonic_ns())
    if python:
        from stax.profile.pymerge import PyMerge
        from stax.pystacks.live import PythonWatch

        # a launched child execs once released: the sink's mmap of a python binary triggers it
        profile.python = PyMerge(PythonWatch(pid, frequency, wait_for_exec=mode == "launch",
                                             daemon_socket=daemon_socket))
    return profile, recorder, pidfd
