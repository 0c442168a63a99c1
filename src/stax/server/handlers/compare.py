"""The ``compare`` RPC: two runs the server hosts (live, stopped or kept on disk), their
per-function self-time deltas (the rows of ``stax compare``, stax.archive.compare) and the
differential call tree (stax.profile.diff): the candidate's tree with the base's numbers."""

from __future__ import annotations

import asyncio
from typing import Any

from stax.protocol import E_BAD_REQUEST, RPCError
from stax.server import params as P
from stax.server.handlers.base import Base

MAX_TREE_DEPTH = 400  # as the flamegraph's


class Compare(Base):
    async def h_compare(self, params: dict[str, Any]) -> Any:
        base_id = P.integer(params, "base", lo=1, hi=P.MAX_ID, required=True)
        cand_id = P.integer(params, "cand", lo=1, hi=P.MAX_ID, required=True)
        limit = P.integer(params, "limit", 20)
        depth = P.integer(params, "max_depth", 0)
        threshold = P.number(params, "threshold_pct", 0.0, hi=100.0)
        flt = P.query_filter(params)
        if flt.tid is not None or flt.start_ns is not None or flt.end_ns is not None:
            raise RPCError(E_BAD_REQUEST, "compare reads whole runs: no tid, start_ns or end_ns")
        base = self.registry.get(base_id)
        cand = self.registry.get(cand_id)
        depth = min(depth or MAX_TREE_DEPTH, MAX_TREE_DEPTH)

        def run() -> dict[str, Any]:
            from stax.archive.compare import function_deltas, self_by_function
            from stax.profile import diff, views

            bt = views.top(base.profile, flt, "self", 0)
            ct = views.top(cand.profile, flt, "self", 0)
            rows, regressions, improvements = function_deltas(
                self_by_function(bt), self_by_function(ct), bt["total_samples"],
                ct["total_samples"])
            bflame = views.flame(base.profile, flt, depth, 0.0)
            cflame = views.flame(cand.profile, flt, depth, threshold)
            assert threshold is not None and limit is not None
            return {
                "base": base.summary(), "cand": cand.summary(),
                "base_samples": bt["total_samples"], "cand_samples": ct["total_samples"],
                "base_ns": bt["total_ns"], "cand_ns": ct["total_ns"],
                "delta_ns": ct["total_ns"] - bt["total_ns"], "functions": len(rows),
                "regressions": regressions[:limit] if limit else regressions,
                "improvements": improvements[:limit] if limit else improvements,
                "unchanged": sum(1 for r in rows if r["delta_self_ns"] == 0),
                "roots": diff.diff_nodes(cflame["roots"], bflame["roots"]),
                "gone": diff.gone_roots(cflame["roots"], bflame["roots"]),
                "hidden": cflame["hidden"],
            }

        return await asyncio.to_thread(run)
