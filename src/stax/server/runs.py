"""The run registry: one active run at a time, an in-memory history, and each run's capture thread.

A Run owns its Profile and Recorder; the registry decides which run queries read.
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
from stax.protocol import E_BAD_REQUEST, E_BUSY, E_CAPTURE, E_NO_RUN, RPCError

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
    recorder: Recorder | None  # None for runs read from an archive
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
    archive: str | None = None  # where the run is kept on disk (saved history or opened file)
    stored: dict[str, Any] | None = None  # the summary an archive holds (archive-backed runs)
    stored_diag: dict[str, Any] | None = None
    loaded: bool = True  # False while only an archive's manifest has been read

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
            with open(f"/proc/{self.pid}/comm", errors="replace") as f:
                return f.read().strip()
        except OSError:
            return "?"

    def elapsed_s(self) -> float:
        end = self.stopped_mono if self.stopped_mono is not None else time.monotonic()
        return end - self.started_mono

    def summary(self) -> dict[str, Any]:
        if self.stored is not None:
            return {**self.stored, "id": self.id, "state": self.state, "archive": self.archive}
        assert self.recorder is not None
        p = self.profile
        with p.lock:
            samples = len(p.s_stack)
            counts = dict(p.counts)
            nthreads = len(p.threads)
            oncpu = sum(p.s_weight[:samples])
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
            "archive": self.archive,
            "capture_mode": info.mode,
            "daemon_socket": info.daemon_socket,
        }


class Registry:
    def __init__(self, symbolizer: Any, history: Any | None = None,
                 on_stopped: Callable[[Run], None] | None = None) -> None:
        self.symbolizer = symbolizer
        self.history = history  # stax.server.history.History, or None: keep nothing on disk
        self.on_stopped = on_stopped
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

    def materialize(self, run: Run) -> Run:
        """Read the tables of a run known only by its stored manifest (first query after a
        restart)."""
        if run.loaded:
            return run
        from stax.archive.format import ArchiveError, load

        with self.lock:
            if not run.loaded:
                assert run.archive is not None
                try:
                    a = load(run.archive)
                except ArchiveError as e:
                    raise RPCError(E_NO_RUN, f"run {run.id} cannot be read back: {e}") from None
                run.profile = a.profile
                run.loaded = True
        return run

    def restore(self) -> int:
        """Register the runs kept on disk (manifests only; tables load on first use)."""
        if self.history is None:
            return 0
        stored = self.history.scan()
        with self.lock:
            for st in stored:
                if st.id in self.runs:
                    continue
                run = self._archived_run(st.id, st.path, st.summary, st.diagnostics, None)
                run.loaded = False
                self.runs[run.id] = run
                self.next_id = max(self.next_id, st.id + 1)
            if stored and self.selected is None:
                self.selected = max(st.id for st in stored)
            self.runs = dict(sorted(self.runs.items()))
        return len(stored)

    def _archived_run(self, run_id: int, path: str, summary: dict[str, Any],
                      diag: dict[str, Any], profile: Profile | None) -> Run:
        s = _complete_summary(summary, profile)
        run = Run(run_id, str(s.get("mode") or "archive"), int(s.get("pid") or 0),
                  list(s.get("argv") or []), int(s.get("frequency_hz") or 0), None,
                  profile or Profile(None), None)
        run.state = "stopped"
        run.archive = path
        run.stored = s
        run.stored_diag = diag
        run.end_reason = s.get("end_reason")
        run.exit_status = s.get("exit_status")
        return run

    def open_archive(self, path: str) -> Run:
        """Load an archive as a new stopped run and make it the current query state."""
        from stax.archive.format import ArchiveError, load

        act = self.active
        if act is not None:
            raise RPCError(E_BUSY, f"run {act.id} is recording; stax open works once it has "
                                   "stopped (stax wait or stax stop)")
        try:
            a = load(path)
        except ArchiveError as e:
            raise RPCError(E_BAD_REQUEST, str(e)) from None
        with self.lock:
            act = self.active
            if act is not None:
                raise RPCError(E_BUSY, f"run {act.id} is recording; stax open works once it "
                                       "has stopped (stax wait or stax stop)")
            run = self._archived_run(self.next_id, a.path, a.run, a.diagnostics, a.profile)
            run.stored = {**(run.stored or {}), "opened_from": a.path}
            self.next_id += 1
            self.runs[run.id] = run
            self.selected = run.id
        return run

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
        return self.materialize(run)

    def start(self, mode: str, pid: int, argv: list[str], frequency: int,
              time_limit_s: float | None, dwarf_unwind: bool = False,
              daemon_socket: str | None = None) -> Run:
        with self.lock:
            act = self.active
            if act is not None:
                raise RPCError(E_BUSY, f"another run is already active (run {act.id}, pid "
                                       f"{act.pid}); stax wait or stax stop")
            profile = Profile(self.symbolizer, dwarf_unwind=dwarf_unwind)
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
            except CaptureError as e:
                opener.close()
                raise RPCError(E_CAPTURE, str(e)) from None
            try:
                pidfd: int | None = os.pidfd_open(pid)
            except OSError as e:
                recorder.close()
                raise RPCError(E_CAPTURE, f"no process with pid {pid} ({e.strerror})") from None
            profile.owner = Owner.of_pid(pid)  # unknown (None): only world-readable sources
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
        log.info("run %d started: %s pid %d (%s) at %d Hz, events opened %s", run.id, mode, pid,
                 run.label, frequency, recorder.info.mode)
        return run

    def _capture(self, run: Run, pidfd: int | None) -> None:
        recorder = run.recorder
        assert recorder is not None
        # the time limit counts from when every event is open (the recorded span's start);
        # it ends at the deadline, the stop or the exit (stax.capture.loop), before the rest of
        # what is queued is decoded
        if recorder.opened_mono is not None:
            run.started_mono = recorder.opened_mono
        deadline = (run.started_mono + run.time_limit_s) if run.time_limit_s else None

        def span_end(t: float) -> None:
            run.stopped_mono = t

        recorder.on_span_end = span_end
        try:
            run.end_reason = recorder.run(run.stop_event, pidfd, deadline)
        except Exception as e:  # the run must end cleanly whatever happened
            log.exception("capture of run %d failed", run.id)
            run.error = f"capture failed: {e}"
            run.end_reason = "error"
        finally:
            if run.stopped_mono is None:
                run.stopped_mono = time.monotonic()
            run.state = "stopped"  # waiters get the summary now; closing 1000s of fds is slow
            recorder.close()
            if pidfd is not None:
                os.close(pidfd)
            if self.on_stopped is not None:
                try:
                    self.on_stopped(run)
                except Exception:
                    log.exception("keeping run %d on disk failed", run.id)
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
        # let finished runs reach the disk before the server exits
        for run in list(self.runs.values()):
            if run.thread is not None:
                run.done.wait(60)


# every field of a run summary, with the type and value an archive's summary falls back to
# when it lacks the field or holds something else there
_SUMMARY_DEFAULTS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "mode": (str, "archive"), "pid": (int, 0), "command": (str, "?"), "argv": (list, []),
    "frequency_hz": (int, 0), "time_limit_ms": ((int, float, type(None)), None),
    "samples": (int, 0), "intervals": (int, 0), "oncpu_ns": (int, 0),
    "lost_records": (int, 0), "threads": (int, 0), "started_at_unix_ms": (int, 0),
    "elapsed_ms": ((int, float), 0.0), "end_reason": ((str, type(None)), None),
    "exit_status": ((int, type(None)), None), "error": ((str, type(None)), None),
    "kernel_frames": (bool, False), "notes": (list, []),
    "offcpu_ns": (int, 0), "wakeups": (int, 0),
    "offcpu": (dict, {"intervals_recorded": False, "wakeups_recorded": False,
                      "problem": "not recorded in this archive",
                      "wakeups_problem": "not recorded in this archive", "tracefs": None}),
    "unwinding": (str, "frame pointers"), "unwind": ((dict, type(None)), None),
    "shedding": ((dict, type(None)), None),
}


_NUM_LIMIT = 1 << 63  # an archive's numbers beyond int64 are not believed (nor converted)


def _complete_summary(summary: dict[str, Any], profile: Profile | None) -> dict[str, Any]:
    s = dict(summary)
    if profile is not None:  # counts from the tables themselves
        n = len(profile.s_stack)
        m = len(profile.intervals)
        s.update(samples=n, oncpu_ns=int(sum(profile.s_weight[:n])),
                 threads=len(profile.threads), intervals=m,
                 offcpu_ns=int(sum(profile.intervals.duration_ns[:m])),
                 wakeups=len(profile.wakeups))
    for key, (types, default) in _SUMMARY_DEFAULTS.items():
        v = s.get(key)
        if key not in s or not isinstance(v, types) or (isinstance(v, bool) and bool not in (
                types if isinstance(types, tuple) else (types,))) or (
                isinstance(v, int | float) and not -_NUM_LIMIT < v < _NUM_LIMIT):
            s[key] = default
    if s["intervals"] and not s["offcpu"].get("intervals_recorded"):
        # an archive that holds intervals but whose summary predates the off-CPU fields
        s["offcpu"] = {**s["offcpu"], "intervals_recorded": True, "problem": None,
                       "wakeups_recorded": s["wakeups"] > 0}
    s["argv"] = [str(a) for a in s["argv"]]
    s["notes"] = [str(a) for a in s["notes"]]
    return s
