"""Shared CLI plumbing: errors, connecting to the server, run lines, JSON output.

Stdlib only, so that every subcommand starts fast.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, NoReturn

from stax import paths
from stax.client import Client, RemoteError, ServerUnavailable
from stax.protocol import dumps


class CLIError(Exception):
    """Printed as ``error: <message>``; exit status 1."""


def die(msg: str) -> NoReturn:
    raise CLIError(msg)


def connect(timeout: float | None = 30.0) -> Client:
    try:
        return Client(timeout=timeout)
    except ServerUnavailable:
        die(f"stax-server isn't running (no server on {paths.server_socket()}); start it with "
            "`stax-server &`, or run `stax record` which starts it")


def call(method: str, timeout: float | None = 30.0, **params: Any) -> Any:
    params = {k: v for k, v in params.items() if v is not None}
    with connect(timeout) as c:
        try:
            return c.call(method, timeout=timeout, **params)
        except RemoteError as e:
            die(e.message)
        except ServerUnavailable as e:
            die(f"lost the connection to stax-server: {e}")


NO_RUNS = "(no runs yet — start one with: stax record -- COMMAND)"


def query(method: str, as_json: bool, **params: Any) -> Any:
    """Call a query method; when the server has no run at all (and none was named), say so
    plainly and return None: an empty state is an answer, not an error."""
    params = {k: v for k, v in params.items() if v is not None}
    with connect() as c:
        try:
            return c.call(method, **params)
        except RemoteError as e:
            if e.code == "no_run" and params.get("run") is None:
                if as_json:
                    print_json({"run": None, "message": NO_RUNS})
                else:
                    print(NO_RUNS)
                return None
            die(e.message)
        except ServerUnavailable as e:
            die(f"lost the connection to stax-server: {e}")


def print_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj, indent=2) + "\n")  # strict JSON: never NaN/Infinity


def run_line(r: dict[str, Any]) -> str:
    line = (f"run {r['id']}  [{r['state']}]  pid {r['pid']}  {r['samples']} samples / "
            f"{r.get('intervals', 0)} intervals  ({r['command']})")
    if r.get("unwinding"):
        line += f"  unwinding: {r['unwinding']}"
    return line


def fmt_ms(ns: int) -> str:
    return f"{ns / 1e6:9.1f} ms"


def fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def no_samples_hint(run: dict[str, Any], tid: int | None = None) -> str:
    """Why a view of ``run`` (of thread ``tid`` when given) has no samples, in one line."""
    if tid is not None:
        return none_line("samples", tid)
    if run.get("state") == "recording":
        return ("(no samples yet — is a recording in progress? try: "
                "stax wait --for-samples 100)")
    return f"(run {run['id']} has no samples{_why_empty(run)})"


def none_line(what: str, tid: int | None) -> str:
    """``(no WHAT)``, or ``(no WHAT for tid N)`` when the query named a thread."""
    return f"(no {what}" + (f" for tid {tid})" if tid is not None else ")")


def _why_empty(run: dict[str, Any]) -> str:
    if run.get("end_reason") == "exited" and run.get("samples", 0) == 0:
        return ": the target exited before it used measurable CPU"
    return ""


def isatty(stream: Any) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
