"""Subscriptions: pushed `update` events that tell a connected client the runs have changed.

Transport-agnostic: a transport sets PUSH to a coroutine that sends one message to its peer before
dispatching requests; `subscribe` then starts a coalescing loop that pushes at a steady rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from stax.protocol import E_BAD_REQUEST, RPCError
from stax.server import params as P

if TYPE_CHECKING:
    from stax.server.runs import Registry

log = logging.getLogger("stax.server")

Push = Callable[[dict[str, Any]], Awaitable[None]]

# The current connection's way to send an unsolicited message (None: it cannot receive any).
PUSH: contextvars.ContextVar[Push | None] = contextvars.ContextVar("stax_push", default=None)

DEFAULT_INTERVAL_MS = 500
MIN_INTERVAL_MS = 100
MAX_INTERVAL_MS = 10_000


class Subscriptions:
    """Every live subscription of the server, by id, with the connection it pushes to."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.next_id = 1
        self.tasks: dict[int, tuple[Push, asyncio.Task[None]]] = {}
        self.pushed = 0

    def state(self) -> dict[str, Any]:
        reg = self.registry
        act = reg.active
        cur = reg.current()
        act_s = act.summary() if act else None
        cur_s = act_s if cur is act else (cur.summary() if cur else None)
        return {"active": act_s, "current": cur_s, "runs": len(reg.runs)}

    def _fingerprint(self) -> tuple[Any, ...]:
        """Cheap: changes when a run starts, stops or is selected. While a run records, the
        loop pushes every interval anyway (its counts and elapsed time move)."""
        reg = self.registry
        cur = reg.current()
        return (len(reg.runs), reg.selected, cur.id if cur else None,
                cur.state if cur else None, cur.end_reason if cur else None)

    async def subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        push = PUSH.get()
        if push is None:
            raise RPCError(E_BAD_REQUEST, "this connection cannot receive pushed events")
        # any finite number, clamped (NaN would survive min/max and make the loop spin)
        interval = P.number(params, "interval_ms", DEFAULT_INTERVAL_MS)
        assert interval is not None
        interval = min(max(interval, MIN_INTERVAL_MS), MAX_INTERVAL_MS)
        sid = self.next_id
        self.next_id += 1
        task = asyncio.create_task(self._loop(sid, push, interval / 1000.0))
        self.tasks[sid] = (push, task)
        return {"subscription": sid, "interval_ms": interval, **self.state()}

    async def unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        sid = P.integer(params, "subscription", lo=1, hi=P.MAX_ID, required=True)
        entry = self.tasks.pop(sid, None)
        if entry is None:
            raise RPCError(E_BAD_REQUEST, f"no subscription {sid}")
        entry[1].cancel()
        return {"subscription": sid}

    def drop_connection(self, push: Push) -> None:
        """Cancel every subscription that pushes to a connection that went away."""
        for sid, (p, task) in list(self.tasks.items()):
            if p is push:
                task.cancel()
                self.tasks.pop(sid, None)

    async def close(self) -> None:
        for _push, task in self.tasks.values():
            task.cancel()
        for _push, task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()

    async def _loop(self, sid: int, push: Push, interval: float) -> None:
        last: tuple[Any, ...] | None = None
        try:
            while True:
                await asyncio.sleep(interval)
                fp = self._fingerprint()
                recording = self.registry.active is not None
                if fp == last and not recording:
                    continue
                last = fp
                await push({"event": "update", "subscription": sid, **self.state()})
                self.pushed += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the peer went away: end quietly
            log.debug("subscription %d ended: %s", sid, e)
            self.tasks.pop(sid, None)
