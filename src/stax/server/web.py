"""The browser endpoint of stax-server: HTTP for the static page, a WebSocket for the JSON protocol.

Binds STAX_SERVER_WS_BIND (default 127.0.0.1:8080). Only the server's owner gets in
(stax.server.webauth): on a loopback bind the peer's uid must be the server's or root's, on any
other bind every request carries the server's token; a Host that is not this server's and a
WebSocket upgrade without the page's own Origin are refused with 403. A bind failure never stops
the server: the Unix socket keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from stax.protocol import dumps
from stax.server import webauth
from stax.server.subscriptions import PUSH, Push

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("stax.server")

DEFAULT_BIND = "127.0.0.1:8080"
MAX_MESSAGE = 16 << 20
# at shutdown: how long open WebSockets get to answer the going-away close, and how long
# in-flight HTTP handlers get before they are cancelled (SIGTERM exits within 2 s)
CLOSE_TIMEOUT_S = 0.5
SHUTDOWN_TIMEOUT_S = 0.5
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


_STATIC_REF = re.compile(r'((?:src|href)="/static/[^"?]+)"')
# the page's script is an ES module importing its siblings by relative URL ("./api.js"), which
# drops the importer's query: on a token-protected server each import is given the token too
_IMPORT_REF = re.compile(r'^((?:import|export)\b[^"]*?\bfrom "\./[\w.-]+\.js)"', re.M)
# served instead of the page when a token-protected server is asked without its token: a page
# opened with the token keeps it in session storage, so a reload finds it again
_NEED_TOKEN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stax</title>
</head><body><p>This stax-server needs its token: open the URL that <code>stax status</code>
prints.</p><script nonce="{nonce}">(() => {{
  const q = new URLSearchParams(location.search), t = sessionStorage.getItem("stax-token");
  if (q.has("token")) sessionStorage.removeItem("stax-token");
  else if (t) location.replace("/?token=" + encodeURIComponent(t));
}})();</script></body></html>
"""


_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}


def _host_part(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class WebUI:
    """The aiohttp application bound to one TCP socket, or the reason it could not bind."""

    def __init__(self, handle_line: Callable[[str], Awaitable[dict[str, Any]]],
                 drop_connection: Callable[[Push], None], socket_path: str) -> None:
        self.socket_path = socket_path  # the token file lives beside it
        self.handle_line = handle_line  # one request line in, its reply out
        self.drop_connection = drop_connection  # a connection's subscriptions end with it
        self.bind = os.environ.get("STAX_SERVER_WS_BIND") or DEFAULT_BIND
        self.host = ""
        self.port = 0
        self.error: str | None = None
        self.connections = 0
        self.token: str | None = None  # required on every request when not bound to loopback
        self.token_file: str | None = None
        self.uid = os.geteuid()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()  # open WebSockets, closed at shutdown

    @property
    def url(self) -> str | None:
        if self.error is not None or not self.port:
            return None
        query = f"?{webauth.TOKEN_PARAM}={self.token}" if self.token else ""
        return f"http://{_host_part(self.host)}:{self.port}/{query}"

    def info(self) -> dict[str, Any]:
        return {"url": self.url, "bind": self.bind, "error": self.error,
                "connections": self.connections, "token_required": self.token is not None,
                "token_file": self.token_file}

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
        if not webauth.is_loopback(self.host):
            self.token = webauth.new_token()
            path = self.socket_path + ".token"
            try:
                webauth.write_token(path, self.token)
                self.token_file = path
            except OSError as e:
                log.warning("cannot write the web token to %s: %s (stax status still prints "
                            "the URL with the token)", path, e.strerror or e)
        app = web.Application(client_max_size=MAX_MESSAGE, middlewares=[self._guard()])
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/export", self._export)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()
        log.info("web UI at %s", self.url)

    async def close(self) -> None:
        """Close every open WebSocket with "going away" (the page shows it is disconnected and
        retries), then stop the HTTP server without waiting long for in-flight handlers."""
        from aiohttp import WSCloseCode

        async def bye(ws: web.WebSocketResponse) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY,
                                                message=b"stax-server shutting down"),
                                       CLOSE_TIMEOUT_S)

        if self._sockets:
            await asyncio.gather(*(bye(ws) for ws in list(self._sockets)))
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
        if self.token_file is not None and self.token is not None:
            webauth.remove_token(self.token_file, self.token)
            self.token_file = None

    # --- access -------------------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> str | None:
        """Why this request may not be served, or None: Host first, then the peer (its uid on a
        loopback bind, the token on any other)."""
        host_header = request.headers.get("Host")
        parsed = webauth.split_host(host_header) if host_header else None
        if parsed is None:
            return f"bad or missing Host header {host_header!r}"
        if not webauth.host_allowed(parsed[0], self.host):
            return f"Host {host_header!r} is not this server (DNS rebinding?)"
        if self.token is not None:
            given = request.query.get(webauth.TOKEN_PARAM)
            auth = request.headers.get("Authorization", "")
            if not given and auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
            if not webauth.token_matches(given, self.token):
                return "wrong token" if given else "no token"
            return None
        transport = request.transport
        if transport is None:
            return "connection closed"
        uid = webauth.peer_uid(transport.get_extra_info("peername"),
                               transport.get_extra_info("sockname"))
        if uid is None:
            return "the peer's uid is unknown"
        if uid not in (self.uid, 0):
            return f"peer uid {uid} is not the server's owner (uid {self.uid})"
        return None

    def _guard(self) -> Any:
        """The middleware every request passes first: refused requests never reach a
        handler (static files and unknown paths included)."""
        from aiohttp import web

        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            why = self._refusal(request)
            if why is not None:
                log.warning("refused %s %s from %s: %s", request.method, request.path,
                            request.remote, why)
                if (self.token is not None and request.path == "/"
                        and why in ("no token", "wrong token")):
                    nonce = secrets.token_urlsafe(16)
                    return web.Response(
                        status=403, text=_NEED_TOKEN.format(nonce=nonce),
                        content_type="text/html",
                        headers={**_HEADERS, "Content-Security-Policy":
                                 f"default-src 'none'; script-src 'nonce-{nonce}'; "
                                 "frame-ancestors 'none'"})
                return web.Response(status=403, text=f"forbidden: {why}\n", headers=_HEADERS)
            return await handler(request)

        return guard

    # --- handlers -----------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        res = self._file("index.html")
        assert isinstance(res, web.Response)
        host = request.headers["Host"]  # checked by the guard
        res.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            f"connect-src 'self' ws://{host} wss://{host}; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'")
        res.headers["Cache-Control"] = "no-store"
        self._add_token(res, _STATIC_REF)  # the page's own files need the token too
        return res

    async def _export(self, request: web.Request) -> web.StreamResponse:
        from stax.server.webexport import export_response

        return await export_response(request, self.handle_line)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        res = self._file(name)
        if name.endswith(".js"):
            self._add_token(res, _IMPORT_REF)
        return res

    def _add_token(self, res: web.StreamResponse, refs: re.Pattern[str]) -> None:
        """On a token-protected server, append the token to the file references ``refs``
        matches in the body (the body then holds the token: never cached)."""
        from aiohttp import web

        if self.token is None:
            return
        assert isinstance(res, web.Response) and isinstance(res.body, bytes)
        res.body = refs.sub(lambda m: f'{m.group(1)}?{webauth.TOKEN_PARAM}={self.token}"',
                            res.body.decode()).encode()
        res.headers["Cache-Control"] = "no-store"

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
                            headers={**_HEADERS, "Cache-Control": "no-cache"})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import WSMsgType, web

        origin = request.headers.get("Origin")
        # browsers always send Origin on a WebSocket upgrade: a script must send it too
        if not webauth.origin_allowed(origin, request.headers.get("Host", ""), self.port):
            log.warning("refused a WebSocket upgrade from %s with origin %r", request.remote,
                        origin)
            what = f"origin {origin}" if origin else "a WebSocket upgrade without Origin"
            raise web.HTTPForbidden(text=f"{what} may not use this stax-server\n",
                                    headers=_HEADERS)
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30)
        await ws.prepare(request)
        self._sockets.add(ws)
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
            self._sockets.discard(ws)
            self.connections -= 1
            self.drop_connection(send)
            for task in pending:
                task.cancel()
        return ws
