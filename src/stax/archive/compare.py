"""``stax compare``: two archives read directly (no server), their totals and per-function
self-time deltas, biggest regressions and improvements first.
"""

from __future__ import annotations

from typing import Any

from stax.archive.format import Archive, intervals_of, load
from stax.archive.thresholds import Thresholds, evaluate
from stax.profile import views
from stax.profile.offcpu import REASONS
from stax.profile.selection import keep_mask


def _window(a: Archive, window: str | None) -> views.Filter:
    """The Filter of ``window`` resolved against the archive's own start and marks."""
    if window is None:
        return views.Filter()
    from stax.profile.window import WindowError, relative, resolve

    try:
        start, end = resolve(window, relative(a.profile))
    except WindowError as e:
        raise WindowError(f"{a.path}: {e}") from None
    return views.Filter(start_ns=start, end_ns=end)


def _totals(a: Archive, window: str | None = None,
            ) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, int]]]:
    flt = _window(a, window)
    top = views.top(a.profile, flt, "self", 0)
    iv = intervals_of(a)
    if iv is not None and window is not None:  # the intervals that start in the window
        keep = keep_mask(flt, a.profile.first_time, iv["tid"], iv["start_ns"])
        iv = {k: col[keep] for k, col in iv.items()}
    offcpu = int(iv["duration_ns"].sum()) if iv is not None else 0
    by_reason = {name: 0 for name in REASONS}
    if iv is not None:
        for code, ns in zip(iv["reason"].tolist(), iv["duration_ns"].tolist(), strict=True):
            name = REASONS[code] if 0 <= code < len(REASONS) else "other"
            by_reason[name] += ns
    funcs = self_by_function(top)
    run = a.run or {}
    return {"path": a.path, "command": run.get("command"), "samples": top["total_samples"],
            "oncpu_ns": top["total_ns"], "offcpu_ns": offcpu,
            "intervals": int(len(iv["tid"])) if iv is not None else 0,
            "offcpu_by_reason": by_reason, "window": window,
            "window_ns": [flt.start_ns, flt.end_ns] if window is not None else None}, funcs


def self_by_function(top: dict[str, Any]) -> dict[tuple[str, str], dict[str, int]]:
    """(func, binary) -> its self samples and ns, from the rows of views.top."""
    return {(r["func"], r["binary"]): {"samples": r["self_samples"], "ns": r["self_ns"]}
            for r in top["rows"]}


def function_deltas(bf: dict[tuple[str, str], dict[str, int]],
                    cf: dict[tuple[str, str], dict[str, int]], base_samples: int,
                    cand_samples: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                list[dict[str, Any]]]:
    """Per-function self-time deltas of two sides (self_by_function): every row (biggest
    regression first), the regressions and the improvements (biggest first)."""
    rows = []
    for key in set(bf) | set(cf):
        b = bf.get(key, {"samples": 0, "ns": 0})
        c = cf.get(key, {"samples": 0, "ns": 0})
        b_pct = 100.0 * b["samples"] / base_samples if base_samples else 0.0
        c_pct = 100.0 * c["samples"] / cand_samples if cand_samples else 0.0
        rows.append({"func": key[0], "binary": key[1],
                     "base_self_samples": b["samples"], "cand_self_samples": c["samples"],
                     "base_self_ns": b["ns"], "cand_self_ns": c["ns"],
                     "delta_self_ns": c["ns"] - b["ns"],
                     "base_self_pct": b_pct, "cand_self_pct": c_pct,
                     "delta_self_pct": c_pct - b_pct,
                     "status": ("new" if not b["samples"] else
                                "gone" if not c["samples"] else "changed")})
    rows.sort(key=lambda r: (-r["delta_self_ns"], r["func"]))
    regressions = [r for r in rows if r["delta_self_ns"] > 0]
    improvements = sorted((r for r in rows if r["delta_self_ns"] < 0),
                          key=lambda r: (r["delta_self_ns"], r["func"]))
    return rows, regressions, improvements


def compare(base_path: str, cand_path: str, limit: int = 20, base_window: str | None = None,
            cand_window: str | None = None, fail: Thresholds | None = None) -> dict[str, Any]:
    """Raises ArchiveError on a bad archive, WindowError (stax.profile.window) on a window
    that does not fit its archive (an unknown mark). Each side is read in its own window
    (``A..B``: seconds from its run's start or its marks' labels), when given.
    ``threshold_failures``: what exceeds ``fail`` (every function is checked, not only the
    ``limit`` rows shown)."""
    base, bf = _totals(load(base_path), base_window)
    cand, cf = _totals(load(cand_path), cand_window)
    rows, regressions, improvements = function_deltas(bf, cf, base["samples"], cand["samples"])
    delta = {k: cand[k] - base[k] for k in ("samples", "oncpu_ns", "offcpu_ns", "intervals")}
    delta["oncpu_pct"] = (100.0 * delta["oncpu_ns"] / base["oncpu_ns"]
                          if base["oncpu_ns"] else None)
    delta["offcpu_pct"] = (100.0 * delta["offcpu_ns"] / base["offcpu_ns"]
                           if base["offcpu_ns"] else None)
    delta["offcpu_by_reason"] = {r: cand["offcpu_by_reason"][r] - base["offcpu_by_reason"][r]
                                 for r in REASONS}
    return {
        "base": base, "cand": cand, "delta": delta, "functions": len(rows),
        "regressions": regressions[:limit] if limit else regressions,
        "improvements": improvements[:limit] if limit else improvements,
        "unchanged": sum(1 for r in rows if r["delta_self_ns"] == 0),
        "threshold_failures": evaluate(fail or Thresholds(), base, cand, rows),
    }
