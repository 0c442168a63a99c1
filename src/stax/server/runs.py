"""The run registry: one active run at a time, an in-memory history, and each run's capture thread.

A Run owns its Profile and Recorder; the registry decides which run queries read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stax.capture.recorder import CaptureError
from stax.profile.tables import Profile
from stax.profile.window import marks
from stax.protocol import E_BAD_REQUEST, E_BUSY, E_CAPTURE, E_NO_RUN, RPCError
from stax.server.session import Session, open_capture

log = logging.getLogger("stax.server")


@dataclass(kw_only=True)
class Run(Session):
    """A capture session the server hosts (live), or a run read back from an archive."""

    id: int
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

    def summary(self) -> dict[str, Any]:
        if self.stored is not None:
            return {**self.stored, "id": self.id, "state": self.state, "archive": self.archive}
        return self.capture_summary(self.id, self.label, self.archive)


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
        run = Run(id=run_id, mode=str(s.get("mode") or "archive"), pid=int(s.get("pid") or 0),
                  argv=list(s.get("argv") or []), frequency=int(s.get("frequency_hz") or 0),
                  time_limit_s=None, profile=profile or Profile(None), recorder=None)
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
              daemon_socket: str | None = None, python: bool = True) -> Run:
        with self.lock:
            act = self.active
            if act is not None:
                raise RPCError(E_BUSY, f"another run is already active (run {act.id}, pid "
                                       f"{act.pid}); stax wait or stax stop")
            try:
                profile, recorder, pidfd = open_capture(mode, pid, frequency, dwarf_unwind,
                                                        daemon_socket, self.symbolizer, python)
            except CaptureError as e:
                raise RPCError(E_CAPTURE, str(e)) from None
            run = Run(id=self.next_id, mode=mode, pid=pid, argv=argv, frequency=frequency,
                      time_limit_s=time_limit_s, profile=profile, recorder=recorder)
            self.next_id += 1
            self.runs[run.id] = run
            self.selected = run.id
        run.start(pidfd, f"run {run.id}", self.on_stopped)
        log.info("run %d started: %s pid %d (%s) at %d Hz, events opened %s", run.id, mode, pid,
                 run.label, frequency, recorder.info.mode)
        return run

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
                      "wakeups_problem": "not recorded in this archive", "tracefs": None,
                      "source": None}),
    "unwinding": (str, "frame pointers"), "unwind": ((dict, type(None)), None),
    "shedding": ((dict, type(None)), None), "marks": (list, []),
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
                 wakeups=len(profile.wakeups), marks=marks(profile))
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
    s["marks"] = [m for m in s["marks"] if isinstance(m, dict) and isinstance(
        m.get("label"), str) and isinstance(m.get("time_ns"), int)]
    return s
