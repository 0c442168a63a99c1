"""The RPC client the CLI uses: one Unix-socket connection, JSON lines; stdlib only.

Raises ServerUnavailable when no server answers, RemoteError when the server refuses.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

from stax import paths
from stax.protocol import MAX_REPLY_DEPTH, JSONError, decode


class ServerUnavailable(Exception):
    pass


class RemoteError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Client:
    def __init__(self, path: str | None = None, timeout: float | None = 30.0) -> None:
        self.path = path or paths.server_socket()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as e:
            self.sock.close()
            raise ServerUnavailable(str(e)) from None
        self._buf = b""
        self._next = 0
        try:  # the server's pid, from the kernel: how a patient call knows it is still there
            cred = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
            self.server_pid: int | None = struct.unpack("3i", cred)[0] or None
        except OSError:
            self.server_pid = None

    def server_alive(self) -> bool:
        """Whether the process serving this connection still exists (and is no zombie)."""
        if self.server_pid is None:
            return False
        try:
            with open(f"/proc/{self.server_pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return False
        return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")

    def call(self, method: str, timeout: float | None = 30.0, patient: bool = False,
             **params: Any) -> Any:
        """Send one request and read its answer. After ``timeout`` seconds without one it gives
        up, unless ``patient``: then it waits for as long as the server process lives (a
        server that dies closes the connection, which ends the wait)."""
        self._next += 1
        req = {"id": self._next, "method": method, "params": params}
        try:
            data = (json.dumps(req, allow_nan=False) + "\n").encode()
        except (ValueError, TypeError) as e:  # never reached with validated arguments
            raise RemoteError("bad_request", f"cannot send {method}: {e}") from None
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
            while b"\n" not in self._buf:
                try:
                    chunk = self.sock.recv(1 << 20)
                except TimeoutError:
                    if patient and self.server_alive():
                        continue
                    raise
                if not chunk:
                    raise ServerUnavailable("stax-server closed the connection")
                self._buf += chunk
        except TimeoutError:
            raise ServerUnavailable("stax-server did not answer in time") from None
        except OSError as e:
            raise ServerUnavailable(str(e)) from None
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            resp = decode(line, max_depth=MAX_REPLY_DEPTH)
        except JSONError as e:
            raise ServerUnavailable(f"stax-server sent an unreadable reply ({e})") from None
        if not isinstance(resp, dict):
            raise ServerUnavailable("stax-server sent an unreadable reply (not an object)")
        if "error" in resp:
            err = resp["error"]
            raise RemoteError(err.get("code", "error"), err.get("message", "unknown error"))
        return resp.get("result")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
