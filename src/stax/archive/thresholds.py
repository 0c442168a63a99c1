"""``stax compare --fail-…``: the limits a candidate may not exceed against its base, and the
failures a comparison's totals and per-function rows give against them.

A limit is exceeded when the measured rise is strictly above it; a fall never fails. Each
failure is ``{threshold, limit, value}`` (plus ``function`` and ``binary`` for a function's
share), ``threshold`` being the option's name, so that a CI log points at the flag to relax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ONCPU_PCT = "--fail-oncpu-delta-pct"
ONCPU_MS = "--fail-oncpu-delta-ms"
OFFCPU_MS = "--fail-offcpu-delta-ms"
FUNCTION_PCT = "--fail-function-delta-pct"


@dataclass(frozen=True)
class Thresholds:
    """Each limit, or None when not asked for. Percentages of the base's total (on-CPU), or
    percentage points of a function's self share of on-CPU samples; times in milliseconds."""

    oncpu_delta_pct: float | None = None
    oncpu_delta_ms: float | None = None
    offcpu_delta_ms: float | None = None
    function_delta_pct: float | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.oncpu_delta_pct, self.oncpu_delta_ms,
                                            self.offcpu_delta_ms, self.function_delta_pct))


def _failure(threshold: str, limit: float, value: float | None,
             **extra: Any) -> dict[str, Any]:
    return {"threshold": threshold, "limit": limit, "value": value, **extra}


def evaluate(th: Thresholds, base: dict[str, Any], cand: dict[str, Any],
             rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failures of ``cand`` against ``base`` (the totals ``compare`` builds: ``oncpu_ns``,
    ``offcpu_ns``) and the per-function ``rows`` (every function, with ``delta_self_pct``):
    totals first, then functions by how far their share rose, most first."""
    fails: list[dict[str, Any]] = []
    d_on = cand["oncpu_ns"] - base["oncpu_ns"]
    if th.oncpu_delta_pct is not None and d_on > 0:
        if base["oncpu_ns"]:
            pct = 100.0 * d_on / base["oncpu_ns"]
            if pct > th.oncpu_delta_pct:
                fails.append(_failure(ONCPU_PCT, th.oncpu_delta_pct, pct))
        else:  # a rise from nothing is above every percentage; it has no finite value
            fails.append(_failure(ONCPU_PCT, th.oncpu_delta_pct, None))
    if th.oncpu_delta_ms is not None and d_on / 1e6 > th.oncpu_delta_ms:
        fails.append(_failure(ONCPU_MS, th.oncpu_delta_ms, d_on / 1e6))
    d_off = cand["offcpu_ns"] - base["offcpu_ns"]
    if th.offcpu_delta_ms is not None and d_off / 1e6 > th.offcpu_delta_ms:
        fails.append(_failure(OFFCPU_MS, th.offcpu_delta_ms, d_off / 1e6))
    if th.function_delta_pct is not None:
        over = [r for r in rows if r["delta_self_pct"] > th.function_delta_pct]
        over.sort(key=lambda r: (-r["delta_self_pct"], r["func"], r["binary"]))
        fails += [_failure(FUNCTION_PCT, th.function_delta_pct, r["delta_self_pct"],
                           function=r["func"], binary=r["binary"],
                           base_self_pct=r["base_self_pct"], cand_self_pct=r["cand_self_pct"])
                  for r in over]
    return fails


def describe(f: dict[str, Any]) -> str:
    """One line for a failure (the caller escapes it for the terminal)."""
    t, lim, v = f["threshold"], f["limit"], f["value"]
    if t == ONCPU_PCT:
        what = ("on-CPU time rose from 0 (no base to take a percentage of)" if v is None
                else f"on-CPU time rose by {v:.1f}%")
        return f"threshold failed: {t}: {what} (limit {lim:g}%)"
    if t in (ONCPU_MS, OFFCPU_MS):
        kind = "on-CPU" if t == ONCPU_MS else "off-CPU"
        return f"threshold failed: {t}: {kind} time rose by {v:.1f} ms (limit {lim:g} ms)"
    return (f"threshold failed: {t}: {f['function']} ({f['binary']}) self share rose by "
            f"{v:.1f} points, {f['base_self_pct']:.1f}% → {f['cand_self_pct']:.1f}% "
            f"(limit {lim:g} points)")
