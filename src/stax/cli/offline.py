"""``stax record`` without a server: the same capture code runs in this process, and the run is
saved to an archive whose path is printed (``stax open PATH`` shows it later).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from typing import Any

from stax import __version__, paths
from stax.cli.common import die, esc, out, print_json


def archive_dir() -> str:
    return os.path.join(paths.state_dir(), "offline")


def _keep(profile: Any, name: str, summary: dict[str, Any],
          diag: dict[str, Any]) -> dict[str, Any] | None:
    """Save the archive in the state directory, or, when that cannot be written (read-only,
    full), in $TMPDIR (private to this user); None when neither works."""
    import tempfile

    from stax.archive.format import ArchiveError, save

    try:
        return save(profile, os.path.join(archive_dir(), name), summary, diag)
    except ArchiveError as e:
        first = e
    path = os.path.join(tempfile.gettempdir(), f"stax-{name}")
    out(f"warning: {esc(first)}; saving the recording in {esc(tempfile.gettempdir())} instead",
        err=True)
    old = os.umask(0o077)
    try:
        return save(profile, path, summary, diag, overwrite=False)
    except ArchiveError as e:
        out(f"warning: {esc(e)}", err=True)
        return None
    finally:
        os.umask(old)


def _summary(mode: str, pid: int, argv: list[str], args: argparse.Namespace, profile: Any,
             recorder: Any, started_wall: float, elapsed_s: float, end_reason: str | None,
             exit_status: int | None, error: str | None) -> dict[str, Any]:
    from stax.archive.diag import capture_fields

    p = profile
    with p.lock:
        samples = len(p.s_stack)
        oncpu = sum(p.s_weight[:samples])
        nthreads = len(p.threads)
        lost = p.counts["lost"]
    command = " ".join(argv)
    if not command:
        th = p.threads.get(pid)
        command = th.name if th is not None and th.name else f"pid {pid}"
    return {
        "id": 0, "state": "stopped", "mode": mode, "pid": pid, "command": command,
        "argv": argv, "frequency_hz": args.frequency,
        "time_limit_ms": round(args.time_limit * 1000) if args.time_limit else None,
        "samples": samples, "oncpu_ns": oncpu, **capture_fields(p, recorder),
        "lost_records": lost,
        "threads": nthreads, "started_at_unix_ms": int(started_wall * 1000),
        "elapsed_ms": round(elapsed_s * 1000, 3), "end_reason": end_reason,
        "exit_status": exit_status, "error": error,
        "kernel_frames": recorder.info.kernel_frames,
        "capture_mode": recorder.info.mode, "daemon_socket": recorder.info.daemon_socket,
        "notes": [*recorder.info.notes, "recorded in-process: stax-server was unreachable"],
        "recorded_by": f"stax {__version__} (in-process)",
    }


def record(args: argparse.Namespace, command: list[str], exe: str | None, reason: str) -> int:
    """Record a launched command (``exe``) or ``args.pid`` here, then save an archive."""
    from stax.archive.diag import run_diagnostics
    from stax.capture.recorder import CaptureError, Recorder
    from stax.cli.recording import exit_status, release, spawn_paused, summary_text
    from stax.profile.tables import Profile
    from stax.symbols import Symbolizer

    out(f"warning: stax-server unreachable ({esc(reason)}); recording in-process", err=True)
    # the same capture as the server's (Registry.start): DWARF unwinding unless turned off
    # (--no-dwarf-unwind, STAX_DWARF_UNWIND=0), off-CPU intervals and wakeups when permitted,
    # descriptors from staxd when its socket answers
    from stax.capture.broker import opener_for
    from stax.cli.recording import dwarf_unwind as _dwarf

    dwarf = _dwarf(args)
    profile = Profile(Symbolizer(), dwarf_unwind=dwarf)
    opener, note = opener_for(getattr(args, "daemon_socket", None))
    recorder = Recorder(profile, profile.lock, args.frequency, dwarf_unwind=dwarf,
                        opener=opener)
    if note:
        recorder.info.notes.append(note)
    stop = threading.Event()
    started_wall, started = time.time(), time.monotonic()
    deadline = started + args.time_limit if args.time_limit else None
    child = None
    if exe is not None:
        child, go_w, err_r = spawn_paused(exe, command)
        pid = child
        try:
            recorder.open_launch(pid)
        except CaptureError as e:
            os.close(go_w)
            os.waitpid(pid, 0)
            die(str(e))
    else:
        pid = args.pid
        try:
            recorder.open_attach(pid)
        except CaptureError as e:
            die(str(e))
        profile.seed_from_proc(pid, time.monotonic_ns())
        if recorder.info.offcpu:
            profile.seed_blocked(pid, time.monotonic_ns())
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except OSError:
        pidfd = None
    result: dict[str, Any] = {}

    def capture() -> None:
        try:
            result["end"] = recorder.run(stop, pidfd, deadline)
        except Exception as e:  # the recording must end with an archive whatever happened
            result["end"] = "error"
            result["error"] = f"capture failed: {e}"

    worker = threading.Thread(target=capture, name="capture", daemon=True)
    worker.start()
    status: int | None = None
    if child is not None:
        failure = release(go_w, err_r)
        _, wstatus = os.waitpid(child, 0)
        status = exit_status(wstatus)
        if failure is not None:
            stop.set()
            worker.join()
            recorder.close()
            die(f"cannot execute {command[0]}: {failure}")
    else:
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    while worker.is_alive():
        worker.join(0.1)
    recorder.close()
    if pidfd is not None:
        os.close(pidfd)
    elapsed = time.monotonic() - started
    summary = _summary("launch" if child is not None else "attach", pid, command, args,
                       profile, recorder, started_wall, elapsed, result.get("end"), status,
                       result.get("error"))
    diag = run_diagnostics(profile, summary, recorder, elapsed)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started_wall))
    saved = _keep(profile, f"run-{stamp}-{pid}.stax", summary, diag)
    if saved is None:  # nowhere to write: the run is lost, but the status stays the target's
        out(f"error: recorded {summary['samples']} samples but could not save them "
            "anywhere", err=True)
        if args.json:
            print_json(summary)
        return status if status is not None else 0
    summary["archive"] = saved["path"]
    if args.json:
        print_json(summary)
    else:
        lines = summary_text(summary)
        lines[0] = lines[0].replace("stax: run 0 stopped", "stax: in-process recording stopped")
        lines = [x for x in lines if "explore it with" not in x]
        for line in lines:
            out(line, err=True)
        out(f"stax: saved the recording to {esc(saved['path'])}", err=True)
        out(f"stax: view it with: stax open {esc(saved['path'])} (needs stax-server); "
            "stax compare reads it directly", err=True)
    return status if status is not None else 0
