"""What every family of RPC handlers shares: the server's registry, symbolizer, history and
journals, and the few things only the server knows (its web endpoint, its request count, how
to stop it), given as callables so no handler needs the Server object itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stax.server import params as P
from stax.server.history import History
from stax.server.journal import Journals
from stax.server.runs import Registry, Run

log = logging.getLogger("stax.server")


class Base:
    def __init__(self, socket_path: str, started: float, symbolizer: Any, history: History,
                 registry: Registry, journals: Journals, web_info: Callable[[], dict[str, Any]],
                 requests: Callable[[], int], stop: Callable[[], None]) -> None:
        self.socket_path = socket_path
        self.started = started  # time.time() when the server started
        self.symbolizer = symbolizer
        self.history = history
        self.registry = registry
        self.journals = journals
        self.web_info = web_info  # where the browser UI is served, or why it is not
        self.requests = requests  # requests handled so far
        self.stop = stop  # ask the server to shut down

    def _maybe_run(self, params: dict[str, Any]) -> Run | None:
        run_id = P.run_id(params)
        if run_id is None:
            cur = self.registry.current()
            return self.registry.materialize(cur) if cur is not None else None
        return self.registry.get(run_id)

    def run_diagnostics(self, run: Run) -> dict[str, Any]:
        from stax.archive.diag import run_diagnostics

        elapsed = (float(run.stored.get("elapsed_ms") or 0) / 1000 if run.stored is not None
                   else run.elapsed_s())
        return run_diagnostics(run.profile, run.summary(), run.recorder, elapsed,
                               run.stored_diag)

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

