"""The RPC surface shared by the CLI, scripts and (later) the browser: framing and method names.

Messages are JSON objects, one per line (UTF-8, ``\\n``-terminated); docs/protocol.md describes
every method, its parameters and its result.
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 1

# lifecycle
METHODS_LIFECYCLE = ("hello", "status", "list_runs", "start_launch", "start_attach",
                     "target_exited", "wait", "stop", "select_run", "diagnostics", "dump",
                     "shutdown")
# queries (all take optional "run", "tid", "start_ns", "end_ns", "exclude")
METHODS_QUERY = ("top", "flamegraph", "threads", "timeline", "annotate", "intervals", "wakers")
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


def encode(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> Any:
    return json.loads(line)
