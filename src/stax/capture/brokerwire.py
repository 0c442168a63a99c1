"""staxd's request and answer format: one JSON object per line, descriptors via SCM_RIGHTS.

Both sides speak it: the client (stax.capture.broker) and the daemon (stax.staxd.daemon), which
depends on stax.capture, never the other way round.

Parsing is pure and total: any bytes give a Request or a BadRequest, never another exception.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from stax.capture.events import EventSpec

VERSION = 1
MAX_LINE = 64 * 1024  # longest request line staxd reads
MAX_EVENTS = 64  # descriptors per request (SCM_RIGHTS carries at most 253)
MAX_ID = 1 << 22  # pid_max's upper bound on Linux


class BadRequest(ValueError):
    """The request is malformed; the message says how."""


@dataclass(frozen=True)
class EventRequest:
    spec: EventSpec
    tid: int
    cpu: int


@dataclass(frozen=True)
class Request:
    """Open ``events`` for process ``pid`` (each on one of its threads and one CPU or -1)."""

    pid: int
    events: tuple[EventRequest, ...]


TRACEPOINT_FORMATS = ("sched_switch", "sched_waking")


@dataclass(frozen=True)
class FormatsRequest:
    """The format descriptions of scheduler tracepoints (fixed names), for decoding payloads."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class PythonRequest:
    """Read the Python stacks of process ``pid`` (the server may not read its memory): staxd
    runs the stack-reading process (stax.pystacks.worker) on it and hands back the read end
    of its output. ``interpreter`` is the one the client located (path, load bias, addresses
    of _PyRuntime and PyCode_Type, version)."""

    pid: int
    hz: int
    interpreter: dict[str, Any]


def _id(v: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"{name} must be an integer in {lo}..{hi}")
    return v


def _python_request(doc: Any) -> PythonRequest:
    if not isinstance(doc, dict) or set(doc) != {"pid", "hz", "interpreter"}:
        raise BadRequest("python must be an object with pid, hz and interpreter")
    pid = _id(doc["pid"], "pid", 1, MAX_ID)
    hz = _id(doc["hz"], "hz", 1, 1000)
    i = doc["interpreter"]
    keys = {"path", "bias", "runtime_addr", "version", "code_type_addr"}
    if not isinstance(i, dict) or not keys <= set(i) <= keys | {"eval_offsets"}:
        raise BadRequest(f"interpreter must be an object with {', '.join(sorted(keys))}")
    if not isinstance(i["path"], str) or len(i["path"]) > 4096:
        raise BadRequest("interpreter path must be a string")
    addr = 1 << 64
    _id(i["bias"], "bias", 0, addr - 1)
    _id(i["runtime_addr"], "runtime_addr", 1, addr - 1)
    if i["code_type_addr"] is not None:
        _id(i["code_type_addr"], "code_type_addr", 1, addr - 1)
    v = i["version"]
    if not isinstance(v, list) or len(v) != 3:
        raise BadRequest("interpreter version must be [major, minor, micro]")
    for part in v:
        _id(part, "version", 0, 255)
    return PythonRequest(pid, hz, {k: i[k] for k in keys})


def parse_request(line: bytes, ncpus: int | None = None
                  ) -> Request | FormatsRequest | PythonRequest:
    """Decode and validate one request line."""
    if len(line) > MAX_LINE:
        raise BadRequest(f"request longer than {MAX_LINE} bytes")
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        raise BadRequest("request is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("request must be a JSON object")
    extra = sorted(str(k) for k in doc if k not in ("v", "pid", "events", "formats", "python"))
    if extra:
        raise BadRequest(f"unknown request field(s): {', '.join(extra)[:200]}")
    if doc.get("v", VERSION) != VERSION:
        raise BadRequest(f"unsupported request version {str(doc.get('v'))[:20]} "
                         f"(this staxd speaks {VERSION})")
    if "formats" in doc:
        names = doc["formats"]
        if ("pid" in doc or "events" in doc or not isinstance(names, list) or not names
                or not all(isinstance(n, str) and n in TRACEPOINT_FORMATS for n in names)):
            raise BadRequest(f"formats must be a list of {', '.join(TRACEPOINT_FORMATS)} "
                             "and come alone")
        return FormatsRequest(tuple(names))
    if "python" in doc:
        if "pid" in doc or "events" in doc or "formats" in doc:
            raise BadRequest("python must come alone")
        return _python_request(doc["python"])
    pid = _id(doc.get("pid"), "pid", 1, MAX_ID)
    events = doc.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise BadRequest(f"events must be a list of 1..{MAX_EVENTS} events")
    maxcpu = (ncpus if ncpus is not None else (os.cpu_count() or 1)) - 1
    out: list[EventRequest] = []
    for ev in events:
        if not isinstance(ev, dict):
            raise BadRequest("an event must be an object")
        ev = dict(ev)
        tid = _id(ev.pop("tid", pid), "tid", 1, MAX_ID)
        cpu = _id(ev.pop("cpu", -1), "cpu", -1, maxcpu)
        try:
            spec = EventSpec.from_dict(ev)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        out.append(EventRequest(spec, tid, cpu))
    return Request(pid, tuple(out))


def encode_request(pid: int, events: list[tuple[EventSpec, int, int]]) -> bytes:
    doc = {"v": VERSION, "pid": pid,
           "events": [{**spec.to_dict(), "tid": tid, "cpu": cpu} for spec, tid, cpu in events]}
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def encode_python_request(pid: int, hz: int, interpreter: dict[str, Any]) -> bytes:
    doc = {"v": VERSION, "python": {"pid": pid, "hz": hz, "interpreter": interpreter}}
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def encode_formats_request(names: tuple[str, ...] = TRACEPOINT_FORMATS) -> bytes:
    return (json.dumps({"v": VERSION, "formats": list(names)}) + "\n").encode()


def answer_formats(formats: dict[str, str | None]) -> bytes:
    """Each name's format text, or null when this host does not have it."""
    return (json.dumps({"ok": True, "fds": 0, "formats": formats}) + "\n").encode()


def answer_ok(n: int) -> bytes:
    return (json.dumps({"ok": True, "fds": n}) + "\n").encode()


def answer_refused(reason: str) -> bytes:
    """The peer may not have these descriptors; ``reason`` is printed to the user."""
    return (json.dumps({"ok": False, "refused": True, "error": reason}) + "\n").encode()


def answer_failed(errno_: int, message: str) -> bytes:
    """perf_event_open itself failed (as it would have for the peer): errno and message."""
    return (json.dumps({"ok": False, "errno": errno_, "error": message}) + "\n").encode()


def answer_busy(message: str) -> bytes:
    """The connection itself is over staxd's limits (per user, or in all); sent on accept."""
    return (json.dumps({"ok": False, "busy": True, "error": message}) + "\n").encode()


def answer_bad(message: str) -> bytes:
    return (json.dumps({"ok": False, "bad_request": True, "error": message}) + "\n").encode()
