"""Helpers shared by the stax benchmarks: workloads, an isolated stax-server, timing, output.

Every benchmark runs against its own server (``STAX_SERVER_SOCKET`` and ``XDG_STATE_HOME`` point
into a temporary directory) and stops it when done, so it never touches a user's server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the isolated server environment is the one the tests use (tests/harness.py); the names a
# benchmark needs from it are re-exported here
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import (  # noqa: E402
    ROOT,
    compile_c,
    isolated_env,
    start_server,
    stop_server_at,
    tool,
    wait_for_socket,
)

__all__ = ["ROOT", "tool", "wait_for_socket"]  # re-exported for the benchmarks

WORKLOADS = {
    "split": ROOT / "workloads" / "split.c",
    "spin": ROOT / "tests" / "workloads" / "spin.c",
}
_ELAPSED = re.compile(r"elapsed_s=([0-9.]+)")


def script_interpreter(script: str) -> str:
    """The interpreter named on a console script's ``#!`` line (else this one)."""
    try:
        with open(script, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return sys.executable
    if first.startswith("#!"):
        parts = first[2:].split()
        if parts and os.path.exists(parts[0]) and not parts[0].endswith("/env"):
            return parts[0]
    return sys.executable


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="a fast smoke run (fewer repetitions)")
    ap.add_argument("--json", action="store_true", help="print one JSON document of the numbers")
    return ap.parse_args(argv)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def log(msg: str) -> None:
    """Progress on stderr, so ``--json`` keeps stdout to the one document."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def emit(args: argparse.Namespace, doc: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        print("\n".join(lines))


def elapsed_from(stderr: str) -> float:
    """The ``elapsed_s=`` a workload printed (the last one, if several)."""
    found = _ELAPSED.findall(stderr)
    if not found:
        raise RuntimeError(f"workload printed no elapsed_s= line; stderr was:\n{stderr[-2000:]}")
    return float(found[-1])


def compile_workloads(dest: Path, sources: dict[str, Path] | None = None) -> dict[str, Path]:
    """Compile ``sources`` (name: C file; the common WORKLOADS by default) into ``dest``."""
    return {name: compile_c(src, dest / name, "-fno-omit-frame-pointer")
            for name, src in (WORKLOADS if sources is None else sources).items()}


def calibrate_split(env: Env, target_s: float) -> int:
    """Rounds of the split workload for a bare run of about ``target_s`` seconds."""
    split = str(env.bin["split"])
    env.run([split, "50"])  # page in
    probe = 400
    t = min(elapsed_from(env.run([split, str(probe)]).err) for _ in range(3))
    return max(100, round(probe * target_s / t))


@dataclass
class Proc:
    code: int
    out: str
    err: str
    wall: float


class Env:
    """A temp dir with compiled workloads and an isolated stax-server environment."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = compile_workloads(tmp)
        self.stax_exe = tool("stax")
        self.env = isolated_env(tmp)
        self.server_pid: int | None = None

    def run(self, argv: Sequence[str], timeout: float = 300, check: bool = True) -> Proc:
        t0 = time.perf_counter()
        p = subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        wall = time.perf_counter() - t0
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stderr[-3000:]}")
        return Proc(p.returncode, p.stdout, p.stderr, wall)

    def stax(self, *args: str, timeout: float = 300, check: bool = True) -> Proc:
        return self.run([self.stax_exe, *args], timeout=timeout, check=check)

    def stax_json(self, cmd: str, *args: str, timeout: float = 300) -> Any:
        """``stax CMD --json ARGS...`` (``--json`` before ARGS, so it never lands after ``--``)."""
        return json.loads(self.stax(cmd, "--json", *args, timeout=timeout).out)

    def start_server(self) -> int:
        """Start stax-server on the isolated socket (detached, as ``stax record`` would start
        it; its log is ``tmp/server.log``); its pid."""
        self.server_pid = start_server(self.env, self.tmp, detach=True).pid
        return self.server_pid

    def stop_server(self) -> None:
        """SIGTERM the server this environment's socket answers on (found via status)."""
        stop_server_at(self.env, self.server_pid)
        self.server_pid = None


@contextmanager
def bench_env(prefix: str) -> Iterator[Env]:
    """Compiled workloads and an isolated server environment; the server is stopped at exit."""
    with tempfile.TemporaryDirectory(prefix=f"stax-bench-{prefix}-") as d:
        env = Env(Path(d))
        try:
            yield env
        finally:
            env.stop_server()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
