"""The differential call tree of two runs: the candidate's flame tree (views.flame), each node
carrying the base run's numbers for the same path of functions and the difference.

Pure functions of two flame results; the server's ``compare`` builds them (with the per-function
self-time deltas of stax.archive.compare).
"""

from __future__ import annotations

from typing import Any


def _key(n: dict[str, Any]) -> tuple[str, str]:
    return n["func"], n["binary"]


def diff_nodes(cand: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``cand`` nodes (flame nodes, modified in place) with ``base_samples``, ``base_ns``,
    ``base_pct`` (0 where the base run has no such path), ``delta_ns`` and ``delta_pct``
    (points of each run's total), recursively."""
    by_key = {_key(b): b for b in base}
    for n in cand:
        b = by_key.get(_key(n))
        n["base_samples"] = b["samples"] if b else 0
        n["base_ns"] = b["time_ns"] if b else 0
        n["base_pct"] = b["pct"] if b else 0.0
        n["delta_ns"] = n["time_ns"] - n["base_ns"]
        n["delta_pct"] = n["pct"] - n["base_pct"]
        if not b:
            n["new"] = True
        diff_nodes(n.get("children") or [], (b.get("children") or []) if b else [])
    return cand


def gone_roots(cand: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Base roots the candidate lacks: (func, binary, base samples, ns, pct)."""
    have = {_key(n) for n in cand}
    return [{"func": b["func"], "binary": b["binary"], "base_samples": b["samples"],
             "base_ns": b["time_ns"], "base_pct": b["pct"]} for b in base if _key(b) not in have]
