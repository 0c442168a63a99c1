"""Shared fixtures: compiled workloads, an isolated stax-server per test, and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _compile(src: Path, out: Path, *flags: str) -> Path:
    cc = shutil.which("gcc") or "cc"
    subprocess.run([cc, "-O2", "-g", *flags, "-o", str(out), str(src), "-pthread"],
                   check=True)
    return out


@pytest.fixture(scope="session")
def workloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("workloads")
    out: dict[str, Path] = {}
    for src in [*sorted((ROOT / "workloads").glob("*.c")),
                *sorted((ROOT / "tests" / "workloads").glob("*.c"))]:
        out[src.stem] = _compile(src, d / src.stem, "-fno-omit-frame-pointer")
        out[src.stem + "_nofp"] = _compile(src, d / (src.stem + "_nofp"),
                                           "-fomit-frame-pointer")
    return out


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
        self.exe = str(BIN / "stax")

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


def isolated_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["STAX_SERVER_SOCKET"] = str(tmp / "stax.sock")
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("STAX_NO_AUTOSTART", None)
    env["STAX_SERVER_WS_BIND"] = "127.0.0.1:0"  # an ephemeral port per test server
    return env


def start_server(env: dict[str, str], tmp: Path) -> subprocess.Popen[bytes]:
    log = open(tmp / "server.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([str(BIN / "stax-server"), "--socket", env["STAX_SERVER_SOCKET"]],
                            env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while not os.path.exists(env["STAX_SERVER_SOCKET"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp / "server.log").read_text())
        time.sleep(0.02)
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def stax_env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture
def stax(tmp_path: Path, stax_env: dict[str, str]) -> Iterator[Stax]:
    """A CLI runner with its own running stax-server."""
    proc = start_server(stax_env, tmp_path)
    runner = Stax(stax_env, tmp_path)
    runner.server = proc  # type: ignore[attr-defined]
    try:
        yield runner
    finally:
        stop_server(proc)


@pytest.fixture
def stax_noserver(tmp_path: Path, stax_env: dict[str, str]) -> Iterator[Stax]:
    """A CLI runner with no server (record may start one; it is stopped afterwards)."""
    runner = Stax(stax_env, tmp_path)
    try:
        yield runner
    finally:
        try:
            subprocess.run([runner.exe, "dump"], env=stax_env, capture_output=True, timeout=10)
            out = subprocess.run([runner.exe, "status", "--json"], env=stax_env,
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                os.kill(json.loads(out.stdout)["server_pid"], signal.SIGTERM)
        except Exception:
            pass
