"""stax-server's asyncio core: the Unix socket, request dispatch, and every RPC handler.

Handlers are transport-agnostic (params dict in, JSON-ready result out) so other transports can
reuse them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stax import __version__
from stax.capture.recorder import MAX_FREQUENCY
from stax.profile import views
from stax.protocol import (
    E_BAD_REQUEST,
    E_INTERNAL,
    E_NO_RUN,
    E_UNKNOWN_METHOD,
    PROTOCOL_VERSION,
    JSONError,
    RPCError,
    decode,
    encode,
)
from stax.server import params as P
from stax.server.journal import Journals, note
from stax.server.runs import Registry, Run
from stax.server.subscriptions import PUSH, Subscriptions

log = logging.getLogger("stax.server")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

MAX_BUCKETS = 10_000
MAX_TREE_DEPTH = 400  # flamegraph levels sent (a reply stays well inside JSON nesting limits)


def _filter(params: dict[str, Any]) -> views.Filter:
    return views.Filter(tid=P.tid(params),
                        start_ns=P.integer(params, "start_ns", lo=-P.MAX_NS, hi=P.MAX_NS),
                        end_ns=P.integer(params, "end_ns", lo=-P.MAX_NS, hi=P.MAX_NS),
                        exclude=tuple(P.text_list(params, "exclude")))


class Server:
    def __init__(self, socket_path: str) -> None:
        from stax.symbols import Symbolizer

        self.socket_path = socket_path
        self.started = time.time()
        self.symbolizer = Symbolizer()
        from stax.server.history import History

        self.history = History()
        self.registry = Registry(self.symbolizer, self.history, on_stopped=self._persist)
        self.requests = 0
        self._server: asyncio.AbstractServer | None = None
        self._stopping: asyncio.Event | None = None
        self.subs = Subscriptions(self)
        self.web: Any = None  # stax.server.web.WebUI once serve() started it
        self.socket_lock: Any = None  # stax.server.lock.SocketLock, held while serving
        self.journals = Journals(self.history)  # each recording run's crash journal
        self.handlers: dict[str, Handler] = {
            "hello": self.h_hello,
            "status": self.h_status,
            "list_runs": self.h_list_runs,
            "start_launch": self.h_start_launch,
            "start_attach": self.h_start_attach,
            "target_exited": self.h_target_exited,
            "wait": self.h_wait,
            "stop": self.h_stop,
            "select_run": self.h_select_run,
            "diagnostics": self.h_diagnostics,
            "dump": self.h_dump,
            "shutdown": self.h_shutdown,
            "top": self.h_top,
            "flamegraph": self.h_flamegraph,
            "threads": self.h_threads,
            "timeline": self.h_timeline,
            "subscribe": self.subs.subscribe,
            "unsubscribe": self.subs.unsubscribe,
            "save": self.h_save,
            "open": self.h_open,
            "annotate": self.h_annotate,
            "intervals": self.h_intervals,
            "wakers": self.h_wakers,
        }

    # --- transport ----------------------------------------------------------------------------

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
            if _socket_alive(path):  # a server of a stax without the lock
                raise SystemExit(f"error: a stax-server is already listening on {path}")
            os.unlink(path)  # we hold the lock: whoever bound it is gone
        from stax.server.web import WebUI

        self.web = WebUI(self)  # bound before the Unix socket exists: status always knows
        await self.web.start()
        old = os.umask(0o177)
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._client, path=path,
                                                           limit=1 << 24)
        except OSError as e:
            raise SystemExit(f"error: cannot listen on {path}: {e.strerror or e}") from None
        finally:
            os.umask(old)
        ours = identity(path)  # only this socket is ours to unlink
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, self.dump_state)
        log.info("stax-server %s listening on %s (pid %d)", __version__, path, os.getpid())
        try:
            await self._stopping.wait()
        finally:
            log.info("stax-server shutting down")
            self._server.close()
            await self.subs.close()
            await self.web.close()
            await asyncio.to_thread(self.registry.stop_all)
            if not unlink_if_ours(path, ours):
                log.warning("%s is no longer the socket this server bound; left alone", path)
            self.socket_lock.release()

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
            self.subs.drop_connection(push)
            with contextlib.suppress(Exception):
                writer.close()

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

    # --- lifecycle ----------------------------------------------------------------------------

    async def h_hello(self, params: dict[str, Any]) -> Any:
        return {"server": "stax-server", "version": __version__, "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(), "web": self.web_info()}

    async def h_status(self, params: dict[str, Any]) -> Any:
        act = self.registry.active
        cur = self.registry.current()
        return {
            "server_pid": os.getpid(),
            "version": __version__,
            "server_started_unix_ms": int(self.started * 1000),
            "socket": self.socket_path,
            "active": act.summary() if act else None,
            "current": cur.summary() if cur else None,
            "web": self.web_info(),
        }

    def web_info(self) -> dict[str, Any]:
        """Where the browser UI is served (``url``), or why it is not (``error``)."""
        if self.web is None:
            return {"url": None, "bind": None, "error": "not started", "connections": 0}
        return self.web.info()

    async def h_list_runs(self, params: dict[str, Any]) -> Any:
        return {"runs": [r.summary() for r in self.registry.runs.values()],
                "current": (c.id if (c := self.registry.current()) else None)}

    @staticmethod
    def _dwarf_param(params: dict[str, Any]) -> bool:
        """``dwarf_unwind`` (default: on for x86-64): sample user registers and a stack copy
        and unwind them with .eh_frame; false = the kernel's frame-pointer chain only."""
        from stax.unwind import dwarf_unwind_default

        v = params.get("dwarf_unwind")
        return dwarf_unwind_default() if v is None else P.boolean(params, "dwarf_unwind", True)

    def _start_params(self, params: dict[str, Any]) -> tuple[int, int, float | None, bool,
                                                             str | None]:
        """pid, frequency, time limit (s), dwarf_unwind, daemon_socket; the pid is checked
        last, so a request with a bad pid has had every other parameter checked too."""
        freq = P.integer(params, "frequency", 900, lo=1, hi=MAX_FREQUENCY)
        assert freq is not None
        limit = P.number(params, "time_limit_ms", lo=0.0, hi=float(P.MAX_MS), lo_open=True)
        dwarf = self._dwarf_param(params)
        daemon_socket = P.path(params, "daemon_socket", required=False)
        return (P.pid(params), freq, (limit / 1000.0 if limit is not None else None), dwarf,
                daemon_socket)

    async def h_start_launch(self, params: dict[str, Any]) -> Any:
        argv = P.text_list(params, "argv")
        pid, freq, limit, dwarf, daemon_socket = self._start_params(params)
        run = await asyncio.to_thread(self.registry.start, "launch", pid, argv, freq, limit,
                                      dwarf, daemon_socket)
        await asyncio.to_thread(self.journals.start, run)
        return run.summary()

    async def h_start_attach(self, params: dict[str, Any]) -> Any:
        pid, freq, limit, dwarf, daemon_socket = self._start_params(params)
        run = await asyncio.to_thread(self.registry.start, "attach", pid, [], freq, limit,
                                      dwarf, daemon_socket)
        await asyncio.to_thread(self.journals.start, run)
        return run.summary()

    async def h_target_exited(self, params: dict[str, Any]) -> Any:
        status = P.integer(params, "status", lo=0, hi=P.MAX_STATUS)
        run = self.registry.get(P.run_id(params))
        run.exit_status = status
        if run.recorder is not None:
            await asyncio.to_thread(self._update_kept, run, {"exit_status": status})
        return run.summary()

    async def h_wait(self, params: dict[str, Any]) -> Any:
        for_samples = P.integer(params, "for_samples", hi=P.MAX_COUNT)
        for_seconds = P.number(params, "for_seconds", hi=float(P.MAX_SECONDS))
        until_symbol = P.text(params, "until_symbol")
        conds = [c for c in (for_samples, for_seconds, until_symbol) if c is not None]
        if len(conds) > 1:
            raise RPCError(E_BAD_REQUEST, "--for-samples, --for-seconds and --until-symbol "
                                          "are mutually exclusive")
        timeout_ms = P.integer(params, "timeout_ms", hi=P.MAX_MS)
        run_id = P.run_id(params)
        run = self.registry.runs.get(run_id) if run_id is not None else self.registry.active
        if run is None or run.state != "recording":
            if run_id is not None and run is not None:
                return {"status": "stopped", "run": run.summary()}
            raise RPCError(E_NO_RUN, "no active run to wait for")
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000.0
        next_frame = 0
        while True:
            if for_samples is not None and len(run.profile.s_stack) >= for_samples:
                return {"status": "met", "run": run.summary()}
            if for_seconds is not None and run.elapsed_s() >= for_seconds:
                return {"status": "met", "run": run.summary()}
            if until_symbol is not None:
                found, next_frame = await asyncio.to_thread(
                    views.find_symbol, run.profile, until_symbol, next_frame)
                if found:
                    return {"status": "met", "run": run.summary(), "symbol": found}
            if run.state != "recording":
                return {"status": "stopped", "run": run.summary()}
            if deadline is not None and time.monotonic() >= deadline:
                return {"status": "timeout", "run": run.summary()}
            await asyncio.sleep(0.05)

    async def h_stop(self, params: dict[str, Any]) -> Any:
        run_id = P.run_id(params)
        run = self.registry.runs.get(run_id) if run_id is not None else self.registry.active
        if run is None or run.state != "recording":
            raise RPCError(E_NO_RUN, "no active run to stop")
        await asyncio.to_thread(self.registry.stop, run)
        return run.summary()

    async def h_select_run(self, params: dict[str, Any]) -> Any:
        run = self.registry.get(P.run_id(params, required=True))
        act = self.registry.active
        if act is not None and act.id != run.id:
            raise RPCError(E_BAD_REQUEST, f"run {act.id} is recording; queries follow the "
                                          "active run until it stops (use --run ID meanwhile)")
        self.registry.selected = run.id
        return run.summary()

    async def h_diagnostics(self, params: dict[str, Any]) -> Any:
        run = self._maybe_run(params)
        out: dict[str, Any] = {
            "server": {"pid": os.getpid(), "version": __version__, "uptime_s":
                       round(time.time() - self.started, 3), "requests": self.requests,
                       "rss_bytes": _rss_bytes(), "runs": len(self.registry.runs)},
            "symbols": self.symbolizer.stats(),
            "run": None,
        }
        if run is not None:  # live (from its Recorder) or read from an archive
            out["run"] = await asyncio.to_thread(self.run_diagnostics, run)
        out["symbols"] = self.symbolizer.stats()  # after the stack walk above symbolised
        return out

    def run_diagnostics(self, run: Run) -> dict[str, Any]:
        from stax.archive.diag import run_diagnostics

        elapsed = (float(run.stored.get("elapsed_ms") or 0) / 1000 if run.stored is not None
                   else run.elapsed_s())
        return run_diagnostics(run.profile, run.summary(), run.recorder, elapsed,
                               run.stored_diag)

    def _persist(self, run: Run) -> None:
        """Keep a finished run on disk (called from its capture thread once it stopped)."""
        journal = self.journals.finish(run)  # removed below, once the run is kept
        path = self.history.save(run.profile, run.id, run.summary(), self.run_diagnostics(run))
        if path is not None:
            run.archive = path
            log.info("run %d kept in %s", run.id, path)
        elif self.history.error:  # a read-only or full disk: the run stays queryable here
            note(run, f"not kept on disk (lost when the server exits): {self.history.error}")
        if journal is not None:
            journal.close()

    def _update_kept(self, run: Run, fields: dict[str, Any]) -> None:
        """Fields learnt after a run was kept on disk (the launcher reports the exit status
        once the capture has ended)."""
        from stax.archive.format import ArchiveError, update_run

        run.done.wait(30)  # the capture thread keeps the run on disk before it is done
        if run.archive is None:
            return
        try:
            update_run(run.archive, fields)
        except ArchiveError as e:
            log.warning("could not update kept run %d: %s", run.id, e)

    async def h_save(self, params: dict[str, Any]) -> Any:
        from stax.archive.format import ArchiveError, save

        path = P.path(params, "path", absolute=True)
        assert path is not None
        run = self._maybe_run(params)
        if run is None:
            raise RPCError(E_NO_RUN, "no runs yet; start one with: stax record -- COMMAND")
        summary = run.summary()
        diag = await asyncio.to_thread(self.run_diagnostics, run)
        try:
            res = await asyncio.to_thread(save, run.profile, path, summary, diag)
        except ArchiveError as e:
            raise RPCError(E_BAD_REQUEST, str(e)) from None
        res["run"] = summary
        return res

    async def h_open(self, params: dict[str, Any]) -> Any:
        path = P.path(params, "path")
        assert path is not None
        run = await asyncio.to_thread(self.registry.open_archive, path)
        return run.summary()

    async def h_dump(self, params: dict[str, Any]) -> Any:
        self.dump_state()
        return {"pid": os.getpid()}

    async def h_shutdown(self, params: dict[str, Any]) -> Any:
        if self._stopping is not None:  # None: handlers driven without serve() (tests)
            asyncio.get_running_loop().call_later(0.05, self._stopping.set)
        return {"pid": os.getpid()}

    def dump_state(self) -> None:
        log.warning("debug snapshot: pid %d, %d runs, current %s, symbols %s, rss %d",
                    os.getpid(), len(self.registry.runs),
                    (c.id if (c := self.registry.current()) else None),
                    self.symbolizer.stats(), _rss_bytes())
        for run in self.registry.runs.values():
            log.warning("  run %s", run.summary())

    # --- queries ------------------------------------------------------------------------------

    def _maybe_run(self, params: dict[str, Any]) -> Run | None:
        run_id = P.run_id(params)
        if run_id is None:
            cur = self.registry.current()
            return self.registry.materialize(cur) if cur is not None else None
        return self.registry.get(run_id)

    async def _query(self, params: dict[str, Any], fn: Callable[..., dict[str, Any]],
                     *args: Any) -> Any:
        flt = _filter(params)
        run = self._maybe_run(params)
        if run is None:
            raise RPCError(E_NO_RUN, "no runs yet; start one with: stax record -- COMMAND")
        result = await asyncio.to_thread(fn, run.profile, flt, *args)
        result["run"] = run.summary()
        return result

    async def h_top(self, params: dict[str, Any]) -> Any:
        sort = P.choice(params, "sort", ("self", "total"), "self")
        limit = P.integer(params, "limit", 20)
        return await self._query(params, views.top, sort, limit)

    async def h_flamegraph(self, params: dict[str, Any]) -> Any:
        depth = P.integer(params, "max_depth", 0)
        # 0 = all, but a reply nests two levels per frame: deeper levels are collapsed
        depth = min(depth or MAX_TREE_DEPTH, MAX_TREE_DEPTH)
        threshold = P.number(params, "threshold_pct", 0.0, hi=100.0)
        mode = P.choice(params, "mode", ("cpu", "offcpu", "wall"), "cpu")
        res = await self._query(params, views.flame, depth, threshold, mode)
        if mode != "cpu":
            note = _offcpu_note(res["run"])
            if note:
                res["note"] = note
        return res

    async def h_threads(self, params: dict[str, Any]) -> Any:
        limit = P.integer(params, "limit", 20)
        return await self._query(params, views.threads, limit)

    async def h_intervals(self, params: dict[str, Any]) -> Any:
        from stax.profile import offviews
        from stax.profile.offcpu import REASONS

        limit = P.integer(params, "limit", 100)
        reason = P.choice(params, "reason", REASONS, None)
        min_dur = P.integer(params, "min_duration_ns", 0, hi=P.MAX_NS)
        stacks = P.boolean(params, "stacks", True)
        res = await self._query(params, offviews.intervals, limit, reason, min_dur, stacks)
        if note := _offcpu_note(res["run"]):
            res["note"] = note
        return res

    async def h_wakers(self, params: dict[str, Any]) -> Any:
        from stax.profile import offviews

        limit = P.integer(params, "limit", 20)
        res = await self._query(params, offviews.wakers, limit)
        if note := _offcpu_note(res["run"], wakeups=True):
            res["note"] = note
        return res

    async def h_timeline(self, params: dict[str, Any]) -> Any:
        buckets = P.integer(params, "buckets", 100, lo=1, hi=MAX_BUCKETS)
        return await self._query(params, views.timeline, buckets)

    async def h_annotate(self, params: dict[str, Any]) -> Any:
        from stax.profile import annotate

        target = params.get("target")
        if not isinstance(target, str) or not target.strip():
            raise RPCError(E_BAD_REQUEST, "target is required: a hex address (0x401136) or "
                                          "part of a function name")
        target = P.text(params, "target")
        assert target is not None
        exact = P.boolean(params, "exact", False)

        def run(p: Any, flt: views.Filter) -> dict[str, Any]:
            try:
                return annotate.annotate(p, flt, target, exact)
            except annotate.AnnotateError as e:
                raise RPCError(E_BAD_REQUEST, str(e)) from None

        return await self._query(params, run)


def _offcpu_note(run: dict[str, Any], wakeups: bool = False) -> str | None:
    """Why a run has no off-CPU data (or no wakeups), from its summary; None if it has them."""
    off = run.get("offcpu") or {}
    if not off.get("intervals_recorded"):
        return f"off-CPU intervals unavailable: {off.get('problem') or 'not recorded'}"
    if wakeups and not off.get("wakeups_recorded"):
        return f"wakeups unavailable: {off.get('wakeups_problem') or 'not recorded'}"
    return None


def _socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


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
