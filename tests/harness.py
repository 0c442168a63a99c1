"""The isolated stax environment shared by the tests and the benchmarks.

Every test and every benchmark runs against its own ``stax-server``: ``STAX_SERVER_SOCKET``,
``XDG_STATE_HOME`` and ``XDG_CACHE_HOME`` point into a temporary directory and the web endpoint
binds an ephemeral loopback port, so a run never touches a user's server or port 8080.

The tests import this module as ``harness`` (``tests/conftest.py`` puts ``tests/`` on the path);
the benchmarks' ``bench/_common.py`` puts ``tests/`` on ``sys.path`` and imports it the same way.
It uses only the standard library, so importing it costs nothing and needs no pytest.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


def tool(name: str) -> str:
    """A console script of stax (``stax``, ``stax-server``, ``staxd``): the one next to the
    running interpreter, else the repository's venv, else the one on ``PATH``."""
    for d in (Path(sys.executable).parent, VENV_BIN):
        p = d / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"error: {name} not found (is stax installed in {VENV_BIN}?)")
    return found


def compile_c(src: Path, out: Path, *flags: str) -> Path:
    """``gcc -O2 -g FLAGS -o OUT SRC -pthread`` (``cc`` if there is no gcc)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("error: no C compiler (gcc) found")
    subprocess.run([cc, "-O2", "-g", *flags, "-o", str(out), str(src), "-pthread"], check=True)
    return out


def isolated_env(tmp: Path) -> dict[str, str]:
    """This process's environment, with the server's socket, state and cache under ``tmp``."""
    env = dict(os.environ)
    env["STAX_SERVER_SOCKET"] = str(tmp / "stax.sock")
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("STAX_NO_AUTOSTART", None)
    env["STAX_SERVER_WS_BIND"] = "127.0.0.1:0"  # an ephemeral port per server, never 8080
    return env


def wait_for_socket(path: str | Path, proc: subprocess.Popen[bytes], log: Path,
                    timeout: float = 15, name: str = "stax-server") -> None:
    """Return once the daemon ``proc`` has created its socket ``path``; raise RuntimeError with
    the tail of its ``log`` if it exits or takes longer than ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{name} did not start; its log:\n{text[-3000:]}")
        time.sleep(0.02)


def start_server(env: dict[str, str], tmp: Path, *,
                 detach: bool = False) -> subprocess.Popen[bytes]:
    """Start ``stax-server`` on ``env``'s socket, its output in ``tmp/server.log``; return once
    the socket exists. ``detach`` puts it in a session of its own (as ``stax record`` does)."""
    log = tmp / "server.log"
    with open(os.devnull, "rb") as devnull, open(log, "ab") as lf:
        proc = subprocess.Popen([tool("stax-server"), "--socket", env["STAX_SERVER_SOCKET"]],
                                env=env, stdin=devnull, stdout=lf, stderr=lf,
                                start_new_session=detach)
    try:
        wait_for_socket(env["STAX_SERVER_SOCKET"], proc, log)
    except RuntimeError:
        stop_server(proc)
        raise
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a daemon this process started and reap it (SIGKILL after 15 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_pid(env: dict[str, str]) -> int | None:
    """The pid of the server answering on ``env``'s socket (None if none answers)."""
    try:
        p = subprocess.run([tool("stax"), "status", "--json"], env=env, capture_output=True,
                           text=True, timeout=15)
        return int(json.loads(p.stdout)["server_pid"]) if p.returncode == 0 else None
    except (OSError, ValueError, KeyError, TypeError, subprocess.SubprocessError):
        return None


def stop_server_at(env: dict[str, str], pid: int | None = None, wait: float = 15) -> None:
    """SIGTERM the server answering on ``env``'s socket (whoever started it; ``pid`` if none
    answers) and wait up to ``wait`` seconds for it to exit."""
    pid = server_pid(env) or pid
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:  # reap it if it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.05)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


class Stax:
    """Runs the installed ``stax`` console script against one isolated server."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.exe = tool("stax")

    def __call__(self, *args: str, timeout: float = 60, check: bool = False,
                 input: str | None = None) -> Result:
        p = subprocess.run([self.exe, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, input=input)
        r = Result(p.returncode, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr, p.stderr
        if check:
            assert p.returncode == 0, f"stax {' '.join(args)} failed: {p.stderr}"
        return r

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen([self.exe, *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def record_bg(self, *args: str, samples: int = 10) -> subprocess.Popen[str]:
        """Start ``stax record ARGS`` in the background; return once it has ``samples``."""
        proc = self.popen("record", *args)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = self("status", "--json")
            if st.code == 0 and st.json()["active"]:  # type: ignore[index]
                break
            assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.05)
        self("wait", "--for-samples", str(samples), "--timeout-ms", "15000", check=True)
        return proc


@contextlib.contextmanager
def throwaway_user(prefix: str) -> Iterator[pwd.struct_passwd]:
    """A real unprivileged user named PREFIX + random hex, with no home or shell (needs root and
    useradd); on the way out every process still running as it is killed (the tests started
    them) and the user is deleted."""
    name = prefix + secrets.token_hex(4)
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True,
                   capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        left = subprocess.run(["pgrep", "-u", name], capture_output=True, text=True).stdout
        for pid in left.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.1)
        subprocess.run(["userdel", name], capture_output=True)
