"""The RPC surface shared by the CLI, scripts and (later) the browser: framing and method names.

Messages are JSON objects, one per line (UTF-8, ``\\n``-terminated); docs/protocol.md describes
every method, its parameters and its result.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

PROTOCOL_VERSION = 1

# lifecycle
METHODS_LIFECYCLE = ("hello", "status", "list_runs", "start_launch", "start_attach",
                     "target_exited", "wait", "stop", "select_run", "diagnostics", "dump",
                     "shutdown", "mark")
# queries (all take optional "run", "tid", "start_ns", "end_ns", "window", "exclude")
METHODS_QUERY = ("top", "flamegraph", "threads", "timeline", "annotate", "intervals", "wakers",
                 "stalls", "neighbors", "samples", "compare")
# pushed updates (the connection must be able to receive events: Unix socket or WebSocket)
METHODS_SUBSCRIPTION = ("subscribe", "unsubscribe")
# archives: write the current run to disk, load one as the current query state
METHODS_ARCHIVE = ("save", "open")
METHODS = METHODS_LIFECYCLE + METHODS_QUERY + METHODS_SUBSCRIPTION + METHODS_ARCHIVE

# error codes carried in {"error": {"code": ..., "message": ...}}
E_BAD_REQUEST = "bad_request"
E_UNKNOWN_METHOD = "unknown_method"
E_NO_RUN = "no_run"
E_BUSY = "run_active"
E_CAPTURE = "capture_failed"
E_INTERNAL = "internal"


class RPCError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Requests and archive manifests are shallow (a request is 3 levels deep); anything deeper than
# this is refused before json.loads, whose recursion would otherwise fail with RecursionError.
MAX_DEPTH = 64
# Replies carry call trees (two levels per frame): the CLI accepts deeper documents from its server.
MAX_REPLY_DEPTH = 900

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class JSONError(ValueError):
    """A document this protocol refuses: malformed, too deep, or holding NaN/Infinity."""


def _depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit``: cheap when they are few."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    depth = 0
    for c in brackets:
        depth += 1 if c in b"[{" else -1
        if depth > limit:
            return True
    return False


def _no_constant(name: str) -> Any:
    raise JSONError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise JSONError(f"number out of range: {text[:40]}")
    return v


def decode(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON: no NaN/Infinity (nor numbers that overflow to them), nesting bounded.
    Raises JSONError with a one-line reason."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _depth_exceeds(raw, max_depth):
        raise JSONError(f"JSON nested too deeply (max {max_depth})")
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite)
    except JSONError:
        raise
    except RecursionError:
        raise JSONError(f"JSON nested too deeply (max {max_depth})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise JSONError(f"invalid JSON: {e}"[:200]) from None


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by null (the encoder's last resort)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON text: NaN/Infinity are never emitted (a value that holds one is logged as a
    bug and sent with null in its place)."""
    try:
        return json.dumps(obj, allow_nan=False, **kw)
    except ValueError:
        logging.getLogger("stax").warning("non-finite number in a JSON document; sent as null")
        return json.dumps(finite(obj), allow_nan=False, **kw)


def encode(obj: Any) -> bytes:
    return (dumps(obj, separators=(",", ":")) + "\n").encode()
