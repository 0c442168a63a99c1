"""RPC handlers of the server and its runs' lifecycle: hello, status, list_runs, start_launch,
start_attach, target_exited, wait, stop, select_run, diagnostics, dump, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from stax import __version__
from stax.profile import views
from stax.protocol import E_BAD_REQUEST, E_NO_RUN, PROTOCOL_VERSION, RPCError
from stax.server import params as P
from stax.server.handlers.base import Base
from stax.server.runs import Run

log = logging.getLogger("stax.server")

WAIT_POLL_S = 0.02  # how often wait looks at the run: well within its 0.3 s promise


class Lifecycle(Base):
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

    async def h_list_runs(self, params: dict[str, Any]) -> Any:
        return {"runs": [r.summary() for r in self.registry.runs.values()],
                "current": (c.id if (c := self.registry.current()) else None)}

    async def h_start_launch(self, params: dict[str, Any]) -> Any:
        argv = P.text_list(params, "argv")
        python = P.boolean(params, "python", True)
        pid, freq, limit, dwarf, daemon_socket = P.start_options(params)
        run = await asyncio.to_thread(self.registry.start, "launch", pid, argv, freq, limit,
                                      dwarf, daemon_socket, python)
        await asyncio.to_thread(self.journals.start, run)
        return run.summary()

    async def h_start_attach(self, params: dict[str, Any]) -> Any:
        python = P.boolean(params, "python", True)
        pid, freq, limit, dwarf, daemon_socket = P.start_options(params)
        run = await asyncio.to_thread(self.registry.start, "attach", pid, [], freq, limit,
                                      dwarf, daemon_socket, python)
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
        start_ms = P.integer(params, "wait_for_run_ms", default=0, hi=P.MAX_MS) or 0
        since_ns = P.integer(params, "stopped_since_ns", hi=P.MAX_NS)
        run_id = P.run_id(params)
        t0 = time.monotonic()
        deadline = None if timeout_ms is None else t0 + timeout_ms / 1000.0
        if run_id is not None:
            run = self.registry.runs.get(run_id)
            if run is None or run.state != "recording":
                if run is not None:
                    return {"status": "stopped", "run": run.summary()}
                raise RPCError(E_NO_RUN, "no active run to wait for")
        else:
            run = await self._run_to_wait_for(t0 + start_ms / 1000.0, since_ns)
        next_frame = 0
        while True:
            # read the state first: a run seen stopped has every sample it will ever have
            stopped = run.state != "recording"
            if for_samples is not None and len(run.profile.s_stack) >= for_samples:
                return {"status": "met", "run": run.summary()}
            if for_seconds is not None and run.elapsed_s() >= for_seconds:
                return {"status": "met", "run": run.summary()}
            if until_symbol is not None:
                found, next_frame = await asyncio.to_thread(
                    views.find_symbol, run.profile, until_symbol, next_frame)
                if found:
                    return {"status": "met", "run": run.summary(), "symbol": found}
            if stopped:
                return {"status": "stopped", "run": run.summary()}
            if deadline is not None and time.monotonic() >= deadline:
                return {"status": "timeout", "run": run.summary()}
            await asyncio.sleep(WAIT_POLL_S)

    async def _run_to_wait_for(self, until: float, since_ns: int | None) -> Run:
        """The active run; else the latest run that stopped at or after ``since_ns``
        (CLOCK_MONOTONIC; a `stax record … &` that ended before its `stax wait` was heard);
        else, until the monotonic time ``until``, the first run that starts (or starts and
        stops) meanwhile. Error ``no_run`` when none turns up."""
        while True:
            act = self.registry.active
            if act is not None:
                return act
            if since_ns is not None:
                since = since_ns / 1e9
                ended = [r for r in self.registry.runs.values()
                         if r.stopped_mono is not None and r.stopped_mono >= since]
                if ended:
                    return ended[-1]
            if time.monotonic() >= until:
                raise RPCError(E_NO_RUN, "no active run to wait for")
            await asyncio.sleep(WAIT_POLL_S)

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
                       round(time.time() - self.started, 3), "requests": self.requests(),
                       "rss_bytes": _rss_bytes(), "runs": len(self.registry.runs)},
            "symbols": self.symbolizer.stats(),
            "run": None,
        }
        if run is not None:  # live (from its Recorder) or read from an archive
            out["run"] = await asyncio.to_thread(self.run_diagnostics, run)
        out["symbols"] = self.symbolizer.stats()  # after the stack walk above symbolised
        return out

    async def h_dump(self, params: dict[str, Any]) -> Any:
        self.dump_state()
        return {"pid": os.getpid()}

    async def h_shutdown(self, params: dict[str, Any]) -> Any:
        asyncio.get_running_loop().call_later(0.05, self.stop)
        return {"pid": os.getpid()}

    def dump_state(self) -> None:
        log.warning("debug snapshot: pid %d, %d runs, current %s, symbols %s, rss %d",
                    os.getpid(), len(self.registry.runs),
                    (c.id if (c := self.registry.current()) else None),
                    self.symbolizer.stats(), _rss_bytes())
        for run in self.registry.runs.values():
            log.warning("  run %s", run.summary())


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
