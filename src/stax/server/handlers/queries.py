"""RPC handlers that read a run's tables: top, flamegraph, threads, intervals, wakers,
timeline, samples, annotate, stalls, neighbors. Each reads its parameters, then runs the view on
a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from stax.profile import views
from stax.protocol import E_BAD_REQUEST, E_NO_RUN, RPCError
from stax.server import params as P
from stax.server.handlers.base import Base

MAX_BUCKETS = 10_000
MAX_SAMPLES = 100_000  # samples one `samples` reply carries at most (more are thinned)
MAX_TREE_DEPTH = 400  # flamegraph levels sent (a reply stays well inside JSON nesting limits)


class Queries(Base):
    async def _query(self, params: dict[str, Any], fn: Callable[..., dict[str, Any]],
                     *args: Any) -> Any:
        flt = P.query_filter(params)
        win = P.window(params)
        run = self._maybe_run(params)
        if run is None:
            raise RPCError(E_NO_RUN, "no runs yet; start one with: stax record -- COMMAND")
        if win is not None:
            flt = windowed(flt, win, run.profile)
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
        inverted = P.boolean(params, "inverted", False)
        res = await self._query(params, views.flame, depth, threshold, mode, inverted)
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
        per_thread = P.boolean(params, "per_thread", False)
        res = await self._query(params, views.timeline, buckets, per_thread)
        res["marks"] = res["run"].get("marks") or []
        return res

    async def h_samples(self, params: dict[str, Any]) -> Any:
        from stax.profile import samples

        most = P.integer(params, "max_samples", samples.DEFAULT_MAX, lo=1, hi=MAX_SAMPLES)
        return await self._query(params, samples.samples, most)

    async def h_annotate(self, params: dict[str, Any]) -> Any:
        from stax.profile import annotate
        from stax.profile.annotatecounts import with_code_id

        target = params.get("target")
        if not isinstance(target, str) or not target.strip():
            raise RPCError(E_BAD_REQUEST, "target is required: a hex address (0x401136) or "
                                          "part of a function name")
        target = P.text(params, "target")
        assert target is not None
        exact = P.boolean(params, "exact", False)
        known = P.text(params, "code_id")

        def run(p: Any, flt: views.Filter) -> dict[str, Any]:
            try:
                return with_code_id(annotate.annotate(p, flt, target, exact), known)
            except annotate.AnnotateError as e:
                raise RPCError(E_BAD_REQUEST, str(e)) from None

        return await self._query(params, run)

    async def h_stalls(self, params: dict[str, Any]) -> Any:
        from stax.profile import stalls
        from stax.profile.offcpu import REASONS

        limit = P.integer(params, "limit", 20)
        min_ns = P.integer(params, "min_duration_ns", stalls.DEFAULT_MIN_NS, hi=P.MAX_NS)
        bucket_ns = P.integer(params, "bucket_ns", 0, hi=P.MAX_NS)
        reason = P.choice(params, "reason", (*REASONS, "gap"), None)
        with_stacks = P.boolean(params, "stacks", True)

        def run(p: Any, flt: views.Filter) -> dict[str, Any]:
            try:
                return stalls.stalls(p, flt, limit, min_ns, bucket_ns, reason, with_stacks)
            except stalls.StallsError as e:
                raise RPCError(E_BAD_REQUEST, str(e)) from None

        res = await self._query(params, run)
        if note := _offcpu_note(res["run"]):
            res["note"] = note + "; waits of busy threads show as gaps"
        return res

    async def h_neighbors(self, params: dict[str, Any]) -> Any:
        from stax.profile import neighbors

        target = P.text(params, "target", required=True, empty=False)
        assert target is not None
        exact = P.boolean(params, "exact", False)
        mode = P.choice(params, "mode", ("cpu", "offcpu", "wall"), "cpu")
        limit = P.integer(params, "limit", 20)
        expand = P.neighbor_paths(params)

        def run(p: Any, flt: views.Filter) -> dict[str, Any]:
            try:
                return neighbors.neighbors(p, flt, target, exact, mode, limit, expand)
            except neighbors.NeighborsError as e:
                raise RPCError(E_BAD_REQUEST, str(e)) from None

        res = await self._query(params, run)
        if mode != "cpu" and (note := _offcpu_note(res["run"])):
            res["note"] = note
        return res


def windowed(flt: views.Filter, win: Any, profile: Any) -> views.Filter:
    """``flt`` with its time range set to the window, resolved against the run's marks."""
    import dataclasses

    from stax.profile.window import WindowError, relative, resolve

    try:
        start, end = resolve(win, relative(profile))
    except WindowError as e:
        raise RPCError(E_BAD_REQUEST, str(e)) from None
    return dataclasses.replace(flt, start_ns=start, end_ns=end)


def _offcpu_note(run: dict[str, Any], wakeups: bool = False) -> str | None:
    """Why a run has no off-CPU data (or no wakeups), from its summary; None if it has them."""
    off = run.get("offcpu") or {}
    if not off.get("intervals_recorded"):
        return f"off-CPU intervals unavailable: {off.get('problem') or 'not recorded'}"
    if wakeups and not off.get("wakeups_recorded"):
        return f"wakeups unavailable: {off.get('wakeups_problem') or 'not recorded'}"
    return None
