"""Where stax keeps its sockets, logs and state (SPEC §2); stdlib only, for fast start-up.

Every path is resolved from the environment at call time so tests can redirect it.
"""

from __future__ import annotations

import os


def server_socket() -> str:
    env = os.environ.get("STAX_SERVER_SOCKET")
    if env:
        return env
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "stax-server.sock")
    return f"/tmp/stax-server-{os.getuid()}.sock"


def state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(base, "stax")


def server_log() -> str:
    return os.path.join(state_dir(), "stax-server.log")
