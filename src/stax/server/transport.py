"""stax-server's wire: one JSON request per line in, one reply per line out (framing and the
request envelope, ``Dispatcher``), and the Unix socket that carries them (``UnixListener``),
with pushed events written to the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from typing import Any

from stax.protocol import (
    E_BAD_REQUEST,
    E_INTERNAL,
    E_UNKNOWN_METHOD,
    JSONError,
    RPCError,
    decode,
    encode,
)
from stax.server.subscriptions import PUSH, Push

log = logging.getLogger("stax.server")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Dispatcher:
    """Requests to handlers: the method's handler gets the params, its result or RPCError
    becomes the reply; any other exception is an internal error, never the end of the server."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.requests = 0

    async def handle_line(self, line: bytes | str) -> dict[str, Any]:
        """One request as it came off the wire: strict JSON (no NaN/Infinity, bounded
        nesting), else one bad_request reply."""
        try:
            req = decode(line)
        except JSONError as e:
            return {"id": None, "error": {"code": E_BAD_REQUEST, "message": str(e)}}
        if not isinstance(req, dict):
            return {"id": None, "error": {"code": E_BAD_REQUEST,
                                          "message": "request must be a JSON object"}}
        return await self.handle(req)

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        rid = req.get("id")
        method = req.get("method")
        params = req.get("params")
        if params is None:
            params = {}
        self.requests += 1
        if not isinstance(params, dict):
            return {"id": rid, "error": {"code": E_BAD_REQUEST,
                                         "message": "params must be an object"}}
        handler = self.handlers.get(method) if isinstance(method, str) else None
        if handler is None:
            return {"id": rid, "error": {"code": E_UNKNOWN_METHOD,
                                         "message": f"unknown method {method!r}"}}
        try:
            return {"id": rid, "result": await handler(params)}
        except RPCError as e:
            return {"id": rid, "error": {"code": e.code, "message": e.message}}
        except Exception as e:  # never let a request kill the server
            log.exception("internal error in %s", method)
            return {"id": rid, "error": {"code": E_INTERNAL, "message": f"internal error: {e}"}}


class UnixListener:
    """The Unix socket: private to this user (0600 in a 0700 directory), one task per
    connection reading request lines and writing replies and pushed events."""

    def __init__(self, path: str, handle_line: Callable[[bytes], Awaitable[dict[str, Any]]],
                 drop_connection: Callable[[Push], None]) -> None:
        self.path = path
        self.handle_line = handle_line
        self.drop_connection = drop_connection  # a connection's subscriptions end with it
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on ``path``; SystemExit with an ``error:`` line when that is impossible."""
        path = self.path
        old = os.umask(0o177)
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._client, path=path,
                                                           limit=1 << 24)
        except OSError as e:
            raise SystemExit(f"error: cannot listen on {path}: {e.strerror or e}") from None
        finally:
            os.umask(old)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def push(msg: dict[str, Any]) -> None:
            writer.write(encode(msg))
            await writer.drain()

        PUSH.set(push)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(encode({"id": None, "error": {
                        "code": E_BAD_REQUEST, "message": "request line too long"}}))
                    break
                if not line:
                    break
                resp = await self.handle_line(line)
                try:
                    data = encode(resp)
                except (ValueError, TypeError, RecursionError) as e:  # a bug: still answer
                    log.exception("cannot encode the reply")
                    data = encode({"id": None, "error": {
                        "code": E_INTERNAL, "message": f"internal error: {e}"[:200]}})
                writer.write(data)
                await writer.drain()
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            self.drop_connection(push)
            with contextlib.suppress(Exception):
                writer.close()


def socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
