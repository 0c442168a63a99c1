"""The browser endpoint of stax-server: HTTP for the static page, a WebSocket for the JSON protocol.

Binds STAX_SERVER_WS_BIND (default 127.0.0.1:8080); WebSocket upgrades from a foreign Origin are
refused with 403. A bind failure never stops the server: the Unix socket keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from stax.protocol import dumps
from stax.server.subscriptions import PUSH, Push

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("stax.server")

DEFAULT_BIND = "127.0.0.1:8080"
MAX_MESSAGE = 16 << 20
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                ".svg": "image/svg+xml", ".ico": "image/x-icon"}


def parse_bind(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) into a host and a port; ValueError if malformed."""
    host, sep, port_s = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"port must be a number in {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_part(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class WebUI:
    """The aiohttp application bound to one TCP socket, or the reason it could not bind."""

    def __init__(self, handle_line: Callable[[str], Awaitable[dict[str, Any]]],
                 drop_connection: Callable[[Push], None]) -> None:
        self.handle_line = handle_line  # one request line in, its reply out
        self.drop_connection = drop_connection  # a connection's subscriptions end with it
        self.bind = os.environ.get("STAX_SERVER_WS_BIND") or DEFAULT_BIND
        self.host = ""
        self.port = 0
        self.error: str | None = None
        self.connections = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str | None:
        if self.error is not None or not self.port:
            return None
        return f"http://{_host_part(self.host)}:{self.port}/"

    def info(self) -> dict[str, Any]:
        return {"url": self.url, "bind": self.bind, "error": self.error,
                "connections": self.connections}

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            host, port = parse_bind(self.bind)
        except ValueError as e:
            self.error = f"bad STAX_SERVER_WS_BIND: {e}"
            log.error("web UI unavailable: %s", self.error)
            return
        try:
            from aiohttp import web
        except ImportError:
            self.error = "aiohttp is not installed"
            log.error("web UI unavailable: %s", self.error)
            return
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                sock.listen(128)
            except OSError:
                sock.close()
                raise
        except OSError as e:
            self.error = f"cannot listen on {self.bind}: {e.strerror or e}"
            log.error("web UI unavailable: %s (the Unix socket keeps working; set "
                      "STAX_SERVER_WS_BIND=host:port to use another address)", self.error)
            return
        self.host, self.port = sock.getsockname()[:2]
        app = web.Application(client_max_size=MAX_MESSAGE)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/static/{name}", self._static)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()
        log.info("web UI at %s", self.url)

    async def close(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    # --- origin policy ------------------------------------------------------------------------

    def own_origins(self, request: web.Request) -> set[str]:
        """Origins a page served by this server has: the bound address, and for a loopback or
        wildcard bind, the loopback names (a literal IP or localhost only, never an arbitrary
        DNS name, which could be rebound to this address by a foreign site)."""
        port = self.port
        names = {self.host}
        if _is_loopback(self.host):
            names |= {"127.0.0.1", "localhost", "::1"}
        elif self.host in ("0.0.0.0", "::"):
            names |= {"127.0.0.1", "localhost", "::1"}
            hostname = (request.host or "").rpartition(":")[0] or (request.host or "")
            hostname = hostname.strip("[]")
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(hostname)
                names.add(hostname)
        return {f"http://{_host_part(n)}:{port}" for n in names}

    # --- handlers -----------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.StreamResponse:
        from aiohttp import web

        ext = os.path.splitext(name)[1]
        if "/" in name or name.startswith(".") or ext not in STATIC_TYPES:
            raise web.HTTPNotFound()
        res = resources.files("stax.web").joinpath(name)
        if not res.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=res.read_bytes(), content_type=STATIC_TYPES[ext],
                            charset="utf-8" if ext != ".ico" else None,
                            headers={"Cache-Control": "no-cache",
                                     "X-Content-Type-Options": "nosniff"})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import WSMsgType, web

        origin = request.headers.get("Origin")
        # Browsers always send Origin on a WebSocket upgrade; scripts may omit it.
        if origin is not None and origin not in self.own_origins(request):
            log.warning("refused a WebSocket upgrade from foreign origin %r", origin)
            raise web.HTTPForbidden(text=f"origin {origin} may not use this stax-server\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30)
        await ws.prepare(request)
        self.connections += 1
        send_lock = asyncio.Lock()

        async def send(obj: dict[str, Any]) -> None:
            async with send_lock:
                await ws.send_str(dumps(obj, separators=(",", ":")))

        async def one(text: str) -> None:
            resp = await self.handle_line(text)  # strict JSON, bounded nesting
            with contextlib.suppress(ConnectionError, RuntimeError):
                await send(resp)

        PUSH.set(send)
        pending: set[asyncio.Task[None]] = set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    task = asyncio.create_task(one(msg.data))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                elif msg.type == WSMsgType.BINARY:
                    task = asyncio.create_task(one(msg.data.decode("utf-8", "replace")))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.connections -= 1
            self.drop_connection(send)
            for task in pending:
                task.cancel()
        return ws
