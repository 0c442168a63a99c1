"""The run registry: one active run at a time, an in-memory history, and each run's capture thread.

A Run owns its Profile and Recorder; the registry decides which run queries read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from stax.capture.recorder import CaptureError, Recorder
from stax.profile.tables import Profile
from stax.protocol import E_BUSY, E_CAPTURE, E_NO_RUN, RPCError

log = logging.getLogger("stax.server")


@dataclass
class Run:
    id: int
    mode: str  # "launch" | "attach"
    pid: int
    argv: list[str]
    frequency: int
    time_limit_s: float | None
    profile: Profile
    recorder: Recorder
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

    @property
    def label(self) -> str:
        if self.mode == "attach" and not self.argv:
            return self.comm()
        return " ".join(self.argv)

    def comm(self) -> str:
        th = self.profile.threads.get(self.pid)
        if th is not None and th.name:
            return th.name
        try:
            with open(f"/proc/{self.pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return "?"

    def elapsed_s(self) -> float:
        end = self.stopped_mono if self.stopped_mono is not None else time.monotonic()
        return end - self.started_mono

    def summary(self) -> dict[str, Any]:
        p = self.profile
        with p.lock:
            samples = len(p.s_stack)
            counts = dict(p.counts)
            nthreads = len(p.threads)
            oncpu = sum(p.s_weight[:samples])
            intervals = len(p.intervals)
            offcpu_ns = sum(p.intervals.duration_ns[:intervals])
            wakeups = len(p.wakeups)
        info = self.recorder.info
        return {
            "id": self.id,
            "state": self.state,
            "mode": self.mode,
            "pid": self.pid,
            "command": self.label,
            "argv": self.argv,
            "frequency_hz": self.frequency,
            "time_limit_ms": (round(self.time_limit_s * 1000)
                              if self.time_limit_s is not None else None),
            "samples": samples,
            "intervals": intervals,
            "oncpu_ns": oncpu,
            "offcpu_ns": offcpu_ns,
            "wakeups": wakeups,
            "offcpu": {"intervals_recorded": info.offcpu, "wakeups_recorded": info.wakeups,
                       "problem": info.offcpu_problem,
                       "wakeups_problem": info.wakeups_problem, "tracefs": info.tracefs},
            "lost_records": counts["lost"],
            "threads": nthreads,
            "started_at_unix_ms": int(self.started_wall * 1000),
            "elapsed_ms": round(self.elapsed_s() * 1000, 3),
            "end_reason": self.end_reason,
            "exit_status": self.exit_status,
            "error": self.error,
            "kernel_frames": self.recorder.info.kernel_frames,
            "notes": list(self.recorder.info.notes),
        }


class Registry:
    def __init__(self, symbolizer: Any) -> None:
        self.symbolizer = symbolizer
        self.runs: dict[int, Run] = {}
        self.next_id = 1
        self.selected: int | None = None
        self.lock = threading.Lock()

    @property
    def active(self) -> Run | None:
        for run in self.runs.values():
            if run.state == "recording":
                return run
        return None

    def current(self) -> Run | None:
        run = self.active
        if run is not None:
            return run
        if self.selected is not None and self.selected in self.runs:
            return self.runs[self.selected]
        return None

    def get(self, run_id: int | None) -> Run:
        if run_id is None:
            run = self.current()
            if run is None:
                raise RPCError(E_NO_RUN, "no runs yet; start one with: stax record -- COMMAND")
            return run
        run = self.runs.get(run_id)
        if run is None:
            known = ", ".join(str(i) for i in self.runs) or "none"
            raise RPCError(E_NO_RUN, f"no run {run_id} (runs: {known})")
        return run

    def start(self, mode: str, pid: int, argv: list[str], frequency: int,
              time_limit_s: float | None) -> Run:
        with self.lock:
            act = self.active
            if act is not None:
                raise RPCError(E_BUSY, f"another run is already active (run {act.id}, pid "
                                       f"{act.pid}); stax wait or stax stop")
            profile = Profile(self.symbolizer)
            recorder = Recorder(profile, profile.lock, frequency)
            try:
                if mode == "launch":
                    recorder.open_launch(pid)
                else:
                    recorder.open_attach(pid)
            except CaptureError as e:
                raise RPCError(E_CAPTURE, str(e)) from None
            try:
                pidfd: int | None = os.pidfd_open(pid)
            except OSError as e:
                recorder.close()
                raise RPCError(E_CAPTURE, f"no process with pid {pid} ({e.strerror})") from None
            run = Run(self.next_id, mode, pid, argv, frequency, time_limit_s, profile,
                      recorder)
            if mode == "attach":
                profile.seed_from_proc(pid, time.monotonic_ns())
                if recorder.info.offcpu:
                    profile.seed_blocked(pid, time.monotonic_ns())
            self.next_id += 1
            self.runs[run.id] = run
            self.selected = run.id
        run.thread = threading.Thread(target=self._capture, args=(run, pidfd),
                                      name=f"capture-{run.id}", daemon=True)
        run.thread.start()
        log.info("run %d started: %s pid %d (%s) at %d Hz", run.id, mode, pid, run.label,
                 frequency)
        return run

    def _capture(self, run: Run, pidfd: int | None) -> None:
        deadline = (run.started_mono + run.time_limit_s) if run.time_limit_s else None
        try:
            run.end_reason = run.recorder.run(run.stop_event, pidfd, deadline)
        except Exception as e:  # the run must end cleanly whatever happened
            log.exception("capture of run %d failed", run.id)
            run.error = f"capture failed: {e}"
            run.end_reason = "error"
        finally:
            run.recorder.close()
            if pidfd is not None:
                os.close(pidfd)
            run.stopped_mono = time.monotonic()
            run.state = "stopped"
            run.done.set()
            s = run.summary()
            log.info("run %d stopped (%s): %d samples, %d lost", run.id, run.end_reason,
                     s["samples"], s["lost_records"])

    def stop(self, run: Run, timeout: float = 10.0) -> None:
        run.stop_event.set()
        run.done.wait(timeout)

    def stop_all(self) -> None:
        for run in list(self.runs.values()):
            if run.state == "recording":
                self.stop(run)
