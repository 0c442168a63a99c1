"""``stax record`` without a server: the same capture code runs in this process, and the run is
saved to an archive whose path is printed (``stax open PATH`` shows it later).
"""

from __future__ import annotations

import argparse
import os
import signal
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


def record(args: argparse.Namespace, command: list[str], exe: str | None, reason: str) -> int:
    """Record a launched command (``exe``) or ``args.pid`` here, then save an archive."""
    from stax.archive.diag import run_diagnostics
    from stax.capture.recorder import CaptureError
    from stax.cli.recording import exit_status, release, spawn_paused, summary_text
    from stax.server.session import Session, open_capture
    from stax.symbols import Symbolizer
    from stax.unwind import dwarf_unwind_default

    out(f"warning: stax-server unreachable ({esc(reason)}); recording in-process", err=True)
    # the same capture as the server's (stax.server.session): DWARF unwinding unless turned
    # off (--no-dwarf-unwind, STAX_DWARF_UNWIND=0), off-CPU intervals and wakeups when
    # permitted, descriptors from staxd when its socket answers
    dwarf = not args.no_dwarf_unwind and dwarf_unwind_default()
    mode = "launch" if exe is not None else "attach"
    started_wall, started = time.time(), time.monotonic()
    child = None
    if exe is not None:
        child, go_w, err_r = spawn_paused(exe, command)
        pid = child
    else:
        pid = args.pid
    try:
        profile, recorder, pidfd = open_capture(mode, pid, args.frequency, dwarf,
                                                getattr(args, "daemon_socket", None),
                                                Symbolizer(),
                                                not getattr(args, "no_python", False))
    except CaptureError as e:
        if child is not None:
            os.close(go_w)
            os.waitpid(child, 0)
        die(str(e))
    session = Session(mode=mode, pid=pid, argv=command, frequency=args.frequency,
                      time_limit_s=args.time_limit or None, profile=profile,
                      recorder=recorder, started_wall=started_wall, started_mono=started)
    session.start(pidfd)
    status: int | None = None
    if child is not None:
        failure = release(go_w, err_r)
        _, wstatus = os.waitpid(child, 0)
        status = exit_status(wstatus)
        if failure is not None:
            session.stop_event.set()
            session.done.wait()
            die(f"cannot execute {command[0]}: {failure}")
    else:
        signal.signal(signal.SIGINT, lambda *_: session.stop_event.set())
    while not session.done.wait(0.1):
        pass
    session.exit_status = status
    th = profile.threads.get(pid)
    live = session.capture_summary(0, " ".join(command) or (
        th.name if th is not None and th.name else f"pid {pid}"), None)
    summary = {**live, "notes": [*live["notes"], "recorded in-process: stax-server was "
                                 "unreachable"],
               "recorded_by": f"stax {__version__} (in-process)"}
    elapsed = session.elapsed_s()
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
        for line in summary_text(summary):
            out(line, err=True)
        out(f"stax: saved the recording to {esc(saved['path'])}", err=True)
        out(f"stax: view it with: stax open {esc(saved['path'])} (needs stax-server); "
            "stax compare reads it directly", err=True)
    return status if status is not None else 0
