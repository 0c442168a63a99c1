"""``stax record`` once its arguments are checked (``stax.cli.commands.record``): launch or
attach, hand the target to stax-server, follow it, summarise.

The recording lives in the server: killing this process loses nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from stax import paths
from stax.cli.common import CLIError, die, esc, isatty, out, print_json
from stax.cli.recording import dwarf_unwind as _dwarf
from stax.cli.recording import exit_status, release, spawn_paused, summary_text
from stax.client import Client, RemoteError, ServerUnavailable


def resolve_command(cmd: str) -> str:
    """The executable the shell would run, or a clear error (before anything is started)."""
    if "/" in cmd:
        if not os.path.exists(cmd):
            die(f"command not found: {cmd}")
        if os.path.isdir(cmd):
            die(f"cannot execute {cmd}: is a directory")
        if not os.access(cmd, os.X_OK):
            die(f"cannot execute {cmd}: permission denied")
        return cmd
    found = shutil.which(cmd)
    if found is None:
        die(f"command not found: {cmd}")
    return found


def _server_log() -> tuple[str, Any]:
    """The autostarted server's log, opened for appending: in the state directory, or in
    $TMPDIR when that cannot be written (a read-only or full disk must not stop recording)."""
    log_path = paths.server_log()
    try:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        return log_path, open(log_path, "ab")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        import tempfile

        fallback = os.path.join(tempfile.gettempdir(), f"stax-server-{os.getuid()}.log")
        out(f"warning: cannot write {esc(log_path)} ({esc(e.strerror or e)}); the server logs "
            f"to {esc(fallback)}", err=True)
        try:
            fd = os.open(fallback, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                         0o600)
            return fallback, os.fdopen(fd, "ab")
        except OSError:
            return os.devnull, open(os.devnull, "ab")  # noqa: SIM115


class Unreachable(Exception):
    """No server answers and none could be started; the message says why."""


def ensure_server() -> Client:
    """Connect, starting a detached stax-server first when none answers; raises Unreachable."""
    try:
        return Client()
    except ServerUnavailable:
        pass
    if os.environ.get("STAX_NO_AUTOSTART") == "1":
        raise Unreachable(f"no server on {paths.server_socket()} and STAX_NO_AUTOSTART=1")
    sock = os.path.abspath(paths.server_socket())
    log_path, logf = _server_log()
    try:
        with open(os.devnull, "rb") as devnull, logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stax.server.main", "--socket", sock, "--log-file",
                 log_path],
                stdin=devnull, stdout=logf, stderr=logf, start_new_session=True,
                close_fds=True, cwd="/")
    except OSError as e:
        raise Unreachable(f"could not start stax-server: {e.strerror or e}") from None
    from stax.server.lock import holder

    deadline = time.monotonic() + 10.0
    ours = True
    while time.monotonic() < deadline:
        try:
            client = Client()
        except ServerUnavailable:
            if ours and proc.poll() is not None:
                # it lost the race to a server another stax started at the same moment (it
                # exits at once when the socket's lock is taken): connect to the winner
                ours = False
            if not ours and holder(sock) in (None, proc.pid):
                break
            time.sleep(0.05)
            continue
        if ours:
            out(f"stax: started stax-server (pid {proc.pid}, socket {esc(sock)}, log "
                f"{esc(log_path)})", err=True)
        return client
    raise Unreachable(f"could not start stax-server (socket {sock}); see its log: {log_path}")


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False

    def show(self, run: dict[str, Any]) -> None:
        if not self.enabled:
            return
        sys.stderr.write(f"\r\x1b[Kstax: recording run {run['id']}: {run['samples']} samples, "
                         f"{run['elapsed_ms'] / 1000:.1f} s")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def _finish(client: Client, run_id: int, args: argparse.Namespace, progress: _Progress,
            status: int, obstacle: str | None = None) -> int:
    """Wait for the run to end and print its summary; ``obstacle`` (why perf could not sample
    the target) is added as a note when the run has no samples."""
    try:
        res = client.call("wait", timeout=5, patient=True, run=run_id)
        run = res["run"]
    except (RemoteError, ServerUnavailable) as e:
        progress.clear()
        out(f"warning: lost contact with stax-server before the run summary ({esc(e)}); "
            f"its log may say why: {esc(paths.server_log())}", err=True)
        return status
    progress.clear()
    if args.json:
        print_json(run)
    else:
        if obstacle and not run.get("samples"):
            run = {**run, "notes": [*(run.get("notes") or []), obstacle]}
        for line in summary_text(run):
            out(line, err=True)
    return status


def launch(args: argparse.Namespace, command: list[str]) -> int:
    from stax.cli.setid import launch_obstacle

    exe = resolve_command(command[0])
    obstacle = launch_obstacle(exe)
    if obstacle:
        out(f"warning: {esc(obstacle)}", err=True)
    try:
        client = ensure_server()
    except Unreachable as e:
        from stax.cli import offline

        return offline.record(args, command, exe, str(e))
    pid, go_w, err_r = spawn_paused(exe, command)
    try:
        run = client.call("start_launch", patient=True, pid=pid, argv=command,
                          frequency=args.frequency,
                          daemon_socket=args.daemon_socket,
                          time_limit_ms=(args.time_limit * 1000 if args.time_limit else None),
                          dwarf_unwind=_dwarf(args),
                          python=not getattr(args, "no_python", False))
    except (RemoteError, ServerUnavailable) as e:
        os.close(go_w)
        os.waitpid(pid, 0)
        die(e.message if isinstance(e, RemoteError) else f"stax-server failed: {e}")
    failure = release(go_w, err_r)
    if failure is not None:
        os.waitpid(pid, 0)
        client.call("wait", timeout=10, patient=True, run=run["id"])
        die(f"cannot execute {command[0]}: {failure}")
    progress = _Progress(isatty(sys.stderr) and not args.json)
    poll_status = progress.enabled or args.time_limit is not None
    status = None
    summarised = False
    last = 0.0
    while status is None:
        wpid, wstatus = os.waitpid(pid, 0 if summarised else os.WNOHANG)
        if wpid:
            status = exit_status(wstatus)
            break
        now = time.monotonic()
        if poll_status and now - last >= 0.25:
            last = now
            try:
                cur = client.call("status", timeout=5, patient=True)["current"]
            except (RemoteError, ServerUnavailable):
                cur = None
            if cur and cur["id"] == run["id"]:
                if cur["state"] == "recording":
                    progress.show(cur)
                else:  # the time limit ended the recording; the target is the user's
                    _finish(client, run["id"], args, progress, 0, obstacle)
                    out(f"stax: recording stopped; pid {pid} is still running, waiting for "
                        "it to exit", err=True)
                    summarised = True
                    continue
        time.sleep(0.02)
    try:
        client.call("target_exited", run=run["id"], status=status)
    except (RemoteError, ServerUnavailable):
        pass
    if summarised:
        return status
    return _finish(client, run["id"], args, progress, status, obstacle)


def attach(args: argparse.Namespace) -> int:
    pid = args.pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        die(f"no process with pid {pid}")
    except PermissionError:
        pass  # it exists; the server decides whether it may sample it
    try:
        client = ensure_server()
    except Unreachable as e:
        from stax.cli import offline

        return offline.record(args, [], None, str(e))
    try:
        run = client.call("start_attach", patient=True, pid=pid, frequency=args.frequency,
                          daemon_socket=args.daemon_socket,
                          time_limit_ms=(args.time_limit * 1000 if args.time_limit else None),
                          dwarf_unwind=_dwarf(args),
                          python=not getattr(args, "no_python", False))
    except RemoteError as e:
        from stax.cli.setid import attach_obstacle

        obstacle = attach_obstacle(pid) if e.message.startswith("not allowed") else None
        die(obstacle or e.message)
    except ServerUnavailable as e:
        die(f"stax-server failed: {e}")
    interrupted = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_sigint)
    progress = _Progress(isatty(sys.stderr) and not args.json)
    while True:
        if interrupted:
            try:
                client.call("stop", timeout=5, patient=True, run=run["id"])
            except RemoteError:
                pass  # it ended by itself meanwhile
            except ServerUnavailable as e:
                raise CLIError(f"lost the connection to stax-server: {e}") from None
            break
        try:
            res = client.call("wait", timeout=5, patient=True, run=run["id"], timeout_ms=250)
        except RemoteError as e:
            raise CLIError(e.message) from None
        except ServerUnavailable as e:
            if interrupted:
                continue
            raise CLIError(f"lost the connection to stax-server: {e}") from None
        if res["status"] == "stopped":
            break
        progress.show(res["run"])
    return _finish(client, run["id"], args, progress, 0)


