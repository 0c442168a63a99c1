"""stax-server's asyncio core: builds the parts (run registry, history, journals, handlers,
subscriptions, the Unix socket and the web endpoint), serves until a signal or ``shutdown``,
then stops every run and keeps it on disk.

The wire lives in server/transport.py, the RPC handlers in server/handlers/, parameter checks
in server/params.py; this module only wires them together.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from stax import __version__
from stax.server.handlers import Handler, Handlers
from stax.server.journal import Journals
from stax.server.runs import Registry
from stax.server.subscriptions import Subscriptions
from stax.server.transport import Dispatcher, UnixListener, socket_alive

log = logging.getLogger("stax.server")

class Server:
    def __init__(self, socket_path: str) -> None:
        from stax.server.history import History
        from stax.symbols import Symbolizer

        self.socket_path = socket_path
        self.started = time.time()
        self.symbolizer = Symbolizer()
        self.history = History()
        self.registry = Registry(self.symbolizer, self.history)
        self._stopping: asyncio.Event | None = None
        self.subs = Subscriptions(self.registry)
        self.web: Any = None  # stax.server.web.WebUI once serve() started it
        self.socket_lock: Any = None  # stax.server.lock.SocketLock, held while serving
        self.journals = Journals(self.history)  # each recording run's crash journal
        self.api = Handlers(socket_path, self.started, self.symbolizer, self.history,
                            self.registry, self.journals, web_info=self.web_info,
                            requests=lambda: self.dispatcher.requests, stop=self.stop)
        self.registry.on_stopped = self.api.persist
        self.dispatcher = Dispatcher({**self.api.table(), "subscribe": self.subs.subscribe,
                                      "unsubscribe": self.subs.unsubscribe})

    @property
    def handlers(self) -> dict[str, Handler]:
        return self.dispatcher.handlers

    async def handle_line(self, line: bytes | str) -> dict[str, Any]:
        return await self.dispatcher.handle_line(line)

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self.dispatcher.handle(req)

    def web_info(self) -> dict[str, Any]:
        """Where the browser UI is served (``url``), or why it is not (``error``)."""
        if self.web is None:
            return {"url": None, "bind": None, "error": "not started", "connections": 0}
        return self.web.info()

    def stop(self) -> None:
        """End serve() (no-op when the handlers are driven without it, as tests do)."""
        if self._stopping is not None:
            self._stopping.set()

    async def serve(self) -> None:
        self._stopping = asyncio.Event()
        path = self.socket_path
        # one server per socket: the lock comes before the history, the web port and the socket
        from stax.server.lock import LockHeld, SocketLock, identity, unlink_if_ours

        self.socket_lock = SocketLock(path)
        try:
            self.socket_lock.acquire()
        except LockHeld as e:
            raise SystemExit(f"error: {e}") from None
        except OSError as e:
            raise SystemExit(f"error: cannot lock {self.socket_lock.path}: "
                             f"{e.strerror or e}") from None
        restored = await asyncio.to_thread(self.registry.restore)
        if restored:
            log.info("%d runs restored from %s", restored, self.history.dir)
        if os.path.exists(path):
            if socket_alive(path):  # a server of a stax without the lock
                raise SystemExit(f"error: a stax-server is already listening on {path}")
            os.unlink(path)  # we hold the lock: whoever bound it is gone
        from stax.server.web import WebUI

        # bound before the Unix socket exists: status always knows
        self.web = WebUI(self.dispatcher.handle_line, self.subs.drop_connection, path)
        await self.web.start()
        listener = UnixListener(path, self.dispatcher.handle_line, self.subs.drop_connection)
        await listener.start()
        ours = identity(path)  # only this socket is ours to unlink
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, self.api.dump_state)
        log.info("stax-server %s listening on %s (pid %d)", __version__, path, os.getpid())
        try:
            await self._stopping.wait()
        finally:
            log.info("stax-server shutting down")
            listener.close()
            await self.subs.close()
            await self.web.close()
            await asyncio.to_thread(self.registry.stop_all)
            if not unlink_if_ours(path, ours):
                log.warning("%s is no longer the socket this server bound; left alone", path)
            self.socket_lock.release()


def _raise_fd_limit() -> None:
    """Attaching to a process with many threads takes (threads x CPUs) descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def run_server(socket_path: str) -> int:
    _raise_fd_limit()
    server = Server(socket_path)
    try:
        asyncio.run(server.serve())
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 1
    return 0
