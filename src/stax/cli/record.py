"""``stax record``: launch or attach, hand the target to stax-server, follow it, summarise.

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

from stax import paths, sysctl
from stax.cli.common import CLIError, die, esc, isatty, out, print_json
from stax.client import Client, RemoteError, ServerUnavailable

MAX_FREQUENCY = 100_000


def _max_sample_rate() -> int:
    return min(MAX_FREQUENCY, sysctl.read_int("kernel.perf_event_max_sample_rate",
                                              MAX_FREQUENCY))


def validate(args: argparse.Namespace, command: list[str]) -> None:
    if args.pid is not None and command:
        die("specify either --pid or a command to launch, not both")
    if args.pid is None and not command:
        die("nothing to record: give a command after -- (stax record -- ./prog args) "
            "or attach with --pid PID")
    limit = _max_sample_rate()
    if not 1 <= args.frequency <= limit:
        die(f"-F/--frequency must be between 1 and {limit} Hz (got {args.frequency}; "
            f"the kernel allows at most perf_event_max_sample_rate={limit})")
    if args.time_limit is not None and args.time_limit <= 0:
        die(f"-l/--time-limit must be a positive number of seconds (got {args.time_limit})")
    if args.pid is not None and args.pid <= 0:
        die(f"--pid must be a positive process id (got {args.pid})")


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


def summary_text(run: dict[str, Any]) -> list[str]:
    reason = {"exited": "target exited", "time-limit": "time limit reached",
              "stopped": "stopped", "error": "capture error"}.get(run.get("end_reason") or "",
                                                                   run.get("state", ""))
    secs = run["elapsed_ms"] / 1000
    rate = run["samples"] / secs if secs > 0 else 0.0
    # run 0: recorded in-process (no server hosts it; the caller says where it was saved)
    who = f"run {run['id']}" if run["id"] else "in-process recording"
    lines = [f"stax: {who} {run['state']} ({reason}): {run['samples']} samples in "
             f"{secs:.2f} s ({rate:.0f}/s at -F {run['frequency_hz']}), "
             f"{run['threads']} thread{'s' if run['threads'] != 1 else ''}, "
             f"{run['lost_records']} lost records"]
    if run.get("offcpu", {}).get("intervals_recorded"):
        lines[0] += (f", {run.get('intervals', 0)} off-CPU intervals "
                     f"({run.get('offcpu_ns', 0) / 1e6:.1f} ms), {run.get('wakeups', 0)} wakeups")
    if run.get("exit_status") is not None:
        lines[0] += f", exit status {run['exit_status']}"
    for note in run.get("notes") or []:
        lines.append(f"stax: note: {esc(note)}")
    if run.get("error"):
        lines.append(f"stax: {esc(run['error'])}")
    if run["lost_records"]:
        lines.append(f"warning: the kernel dropped {run['lost_records']} records (ring buffer "
                     "full); see stax diagnose")
    uw = run.get("unwind")
    if uw and uw.get("walks") and uw["cut_short"] * 100 > uw["walks"]:
        lines.append(f"warning: {uw['cut_short']} of {uw['walks']} stacks "
                     f"({uw['cut_short_pct']:.1f}%) were cut short by the DWARF unwinder; "
                     "see stax diagnose")
    if run["samples"] and run["id"]:
        lines.append("stax: explore it with: stax top | stax flame | stax threads")
    return lines


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


def spawn_paused(exe: str, command: list[str]) -> tuple[int, int, int]:
    """Fork the target, which waits for the go-ahead (``release``) before it execs ``exe``.
    Returns (pid, go-ahead pipe, exec-failure pipe)."""
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the target: wait for the go-ahead, then exec
        try:
            os.close(go_w)
            os.close(err_r)
            if os.read(go_r, 1) != b"g":
                os._exit(127)
            os.close(go_r)
            # Python ignores SIGPIPE and SIGXFSZ; an ignored signal survives exec, so give the
            # target the default dispositions it would get from a shell
            for sig in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.execv(exe, command)
        except OSError as e:
            os.write(err_w, f"{e.errno}:{e.strerror}".encode())
        finally:
            os._exit(127)
    os.close(go_r)
    os.close(err_w)
    return pid, go_w, err_r


def release(go_w: int, err_r: int) -> str | None:
    """Let a ``spawn_paused`` target exec; the reason its exec failed, or None."""
    # Ctrl-C belongs to the target (it is in our process group); we outlive it to report.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.write(go_w, b"g")
    os.close(go_w)
    failure = os.read(err_r, 4096)
    os.close(err_r)
    return failure.decode(errors="replace").split(":", 1)[-1] if failure else None


def exit_status(wstatus: int) -> int:
    """A target's exit status as a shell reports it (128 + N when killed by signal N)."""
    status = os.waitstatus_to_exitcode(wstatus)
    return 128 - status if status < 0 else status


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
                          dwarf_unwind=_dwarf(args))
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
                          dwarf_unwind=_dwarf(args))
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


def _dwarf(args: argparse.Namespace) -> bool:
    """DWARF unwinding unless --no-dwarf-unwind / STAX_DWARF_UNWIND=0 (x86-64 only)."""
    return not args.no_dwarf_unwind and os.uname().machine == "x86_64"


def cmd_record(args: argparse.Namespace) -> int:
    command = args.command or []
    if command and command[0] == "--":
        command = command[1:]
    if os.environ.get("STAX_DWARF_UNWIND") == "0":
        args.no_dwarf_unwind = True
    validate(args, command)
    if args.pid is not None:
        return attach(args)
    return launch(args, command)
