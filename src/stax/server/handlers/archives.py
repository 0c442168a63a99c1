"""RPC handlers that write or read archives (save, open), and the keeping of each finished run
in the server's history."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from stax.protocol import E_BAD_REQUEST, E_NO_RUN, RPCError
from stax.server import params as P
from stax.server.handlers.base import Base
from stax.server.journal import note
from stax.server.runs import Run

log = logging.getLogger("stax.server")


class Archives(Base):
    def persist(self, run: Run) -> None:
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

    async def h_save(self, params: dict[str, Any]) -> Any:
        from stax.archive.format import ArchiveError, save

        path = P.path(params, "path", absolute=True)
        assert path is not None
        run = self._maybe_run(params)
        if run is None:
            raise RPCError(E_NO_RUN, "no runs yet; start one with: stax record -- COMMAND")
        with_code = P.boolean(params, "with_code", False)
        fmt = P.choice(params, "format", ("file", "dir"), None)
        summary = run.summary()
        diag = await asyncio.to_thread(self.run_diagnostics, run)
        try:
            from stax.archive.container import wants_file

            res = await asyncio.to_thread(save, run.profile, path, summary, diag,
                                          with_code=with_code,
                                          single_file=wants_file(path, fmt))
        except ArchiveError as e:
            raise RPCError(E_BAD_REQUEST, str(e)) from None
        res["run"] = summary
        return res

    async def h_open(self, params: dict[str, Any]) -> Any:
        path = P.path(params, "path")
        assert path is not None
        run = await asyncio.to_thread(self.registry.open_archive, path)
        return run.summary()
