"""The ``mark`` RPC: a named point in time ("now") in the active run, usable as a window end
(``--window LABEL..``) and drawn on the web UI's timeline."""

from __future__ import annotations

import time
from typing import Any

from stax.limits import MAX_MARKS
from stax.protocol import E_BAD_REQUEST, E_NO_RUN, RPCError
from stax.server import params as P
from stax.server.handlers.base import Base


class Marks(Base):
    async def h_mark(self, params: dict[str, Any]) -> Any:
        from stax.profile.window import WindowError, add, marks

        label = P.mark_label(params)
        now = time.monotonic_ns()  # the samples' clock (perf events use CLOCK_MONOTONIC)
        run = self.registry.active
        if run is None:
            raise RPCError(E_NO_RUN, "no active run to mark; start one with: stax record -- "
                                     "COMMAND")
        try:
            rel = add(run.profile, label, now, MAX_MARKS)
        except WindowError as e:
            raise RPCError(E_BAD_REQUEST, str(e)) from None
        return {"label": label, "time_ns": rel, "marks": marks(run.profile),
                "run": run.summary()}
