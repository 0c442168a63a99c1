"""Shared CLI plumbing: errors, connecting to the server, run lines, text and JSON output.

Stdlib only, so that every subcommand starts fast; the client and the JSON encoder are loaded
when a command first talks to the server or prints JSON (``stax --help`` needs neither).

Text output never carries a control character it was not meant to: names, commands, paths and
messages come from the recorded programs (a thread can name itself ``ESC]0;…BEL``), so every
value is passed through ``esc`` and every line is written by ``out``, which escapes what ``esc``
missed. ``--json`` keeps the values exactly (JSON escapes them itself).
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

from stax import paths

if TYPE_CHECKING:
    from stax.client import Client


class CLIError(Exception):
    """Printed as ``error: <message>``; exit status 1."""


def die(msg: str) -> NoReturn:
    raise CLIError(msg)


def connect(timeout: float | None = 30.0, patience: float = 0.0) -> Client:
    """A connection to the server; with ``patience``, retried for that many seconds while no
    server answers yet (one a backgrounded `stax record` is starting)."""
    from stax.client import Client, ServerUnavailable

    give_up = time.monotonic() + patience
    while True:
        try:
            return Client(timeout=timeout)
        except ServerUnavailable:
            if time.monotonic() < give_up:
                time.sleep(0.02)
                continue
        die(f"stax-server isn't running (no server on {paths.server_socket()}); start it with "
            "`stax-server &`, or run `stax record` which starts it")


def call(method: str, timeout: float | None = 30.0, **params: Any) -> Any:
    from stax.client import RemoteError, ServerUnavailable

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
    from stax.client import RemoteError, ServerUnavailable

    params = {k: v for k, v in params.items() if v is not None}
    with connect() as c:
        try:
            return c.call(method, **params)
        except RemoteError as e:
            if e.code == "no_run" and params.get("run") is None:
                if as_json:
                    print_json({"run": None, "message": NO_RUNS})
                else:
                    out(NO_RUNS)
                return None
            die(e.message)
        except ServerUnavailable as e:
            die(f"lost the connection to stax-server: {e}")


def query_text(method: str, as_json: bool, **params: Any) -> Any:
    """``query`` for a command that prints text: None when there is nothing more to print (no
    run at all, or ``--json``, which this prints); otherwise the result, its note printed."""
    res = query(method, as_json, **params)
    if res is None:
        return None
    if as_json:
        print_json(res)
        return None
    if res.get("note"):
        out(f"({esc(res['note'])})")
    return res


def print_json(obj: Any) -> None:
    from stax.protocol import dumps

    sys.stdout.write(dumps(obj, indent=2) + "\n")  # strict JSON: never NaN/Infinity


# C0 controls, DEL, C1 controls, lone surrogates (the undecodable bytes of a non-UTF-8 name),
# and the invisible characters that move or reorder text: line/paragraph separators and the
# bidirectional embeddings, overrides, isolates and marks
_OTHER_UNSAFE = r"\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_RE = re.compile(rf"[\x00-\x1f{_OTHER_UNSAFE}]")
_UNSAFE_IN_LINES_RE = re.compile(rf"[\x00-\x09\x0b-\x1f{_OTHER_UNSAFE}]")  # all but \n
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c in _SHORT:
        return _SHORT[c]
    o = ord(c)
    if o < 0x80:
        return f"\\x{o:02x}"
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape: as a byte
        return f"\\x{o - 0xDC00:02x}"
    return f"\\u{o:04x}"


def func_name(row: dict[str, Any]) -> str:
    """A view row's function name for a terminal, ``(inlined)`` after an inlined one."""
    return esc(row["func"]) + (" (inlined)" if row.get("inlined") else "")


def esc(value: object) -> str:
    """``value`` as text that is safe on a terminal: every control character (and lone
    surrogate, bidirectional control, line separator) shown as a visible escape such as
    ``\\x1b``, ``\\n`` or ``\\u202e``; a byte that was not UTF-8 as ``\\xNN``. Printable text,
    backslashes included, is unchanged, so escaping twice changes nothing."""
    s = value if isinstance(value, str) else str(value)
    return _UNSAFE_RE.sub(_escape_char, s)


def out(text: object = "", *, err: bool = False) -> None:
    """Write ``text`` and a newline to stdout (stderr with ``err``) with every control
    character except the newlines between lines escaped, as a net under ``esc``."""
    stream = sys.stderr if err else sys.stdout
    s = text if isinstance(text, str) else str(text)
    stream.write(_UNSAFE_IN_LINES_RE.sub(_escape_char, s) + "\n")


def run_line(r: dict[str, Any]) -> str:
    state = r["state"]
    if r.get("end_reason") == "interrupted":  # recovered after the server died recording
        state += ", interrupted"
    line = (f"run {r['id']}  [{state}]  pid {r['pid']}  {r['samples']} samples / "
            f"{r.get('intervals', 0)} intervals  ({esc(r['command'])})")
    if r.get("unwinding"):
        line += f"  unwinding: {esc(r['unwinding'])}"
    return line


def marks_line(run: dict[str, Any]) -> str | None:
    """``marks: LABEL at S s, …`` for a run that has marks (``stax mark``), else None."""
    marks = run.get("marks") or []
    if not marks:
        return None
    return "marks: " + ", ".join(f"{esc(m['label'])} at {m['time_ns'] / 1e9:.3f} s"
                                 for m in marks)


def header(res: dict[str, Any], what: str) -> str:
    """The first line of a view: the run, its state and command, then ``what``."""
    run = res["run"]
    return f"run {run['id']} [{run['state']}] {esc(run['command'])}: {what}"


def fmt_ms(ns: int) -> str:
    return f"{ns / 1e6:9.1f} ms"


def fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def no_samples_hint(run: dict[str, Any], tid: int | None = None,
                    window: str | None = None) -> str:
    """Why a view of ``run`` (of thread ``tid``, in ``window``, when given) has no samples, in
    one line."""
    if window is not None:
        return none_line(f"samples in the window {esc(window)}", tid)
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
        obstacle = _launch_obstacle(run)
        if obstacle:
            return f": {esc(obstacle)}"
        return ": the target exited before it used measurable CPU"
    return ""


def _launch_obstacle(run: dict[str, Any]) -> str | None:
    """Why perf could not sample a launched run's program (setuid, say), when its ``argv[0]``
    still names that program here."""
    argv = run.get("argv") or []
    if run.get("mode") != "launch" or not argv or not isinstance(argv[0], str):
        return None
    import shutil

    from stax.cli.setid import launch_obstacle

    path = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    return launch_obstacle(path) if path else None


def isatty(stream: Any) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
