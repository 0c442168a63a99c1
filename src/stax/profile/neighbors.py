"""The neighbors view (pprof's ``-peek``, a butterfly): one function, who calls it and how much
of its time comes through each caller, what it calls and how much each callee costs.

Weights are those of the flame view's modes: ``cpu`` (on-CPU samples), ``offcpu`` (blocking
stacks of off-CPU intervals weighted by blocked time) or ``wall`` (both).

Recursion is collapsed, so nothing is counted twice: in a stack where the function appears
more than once, its caller is the caller of its outermost frame and its callee the frame below
its innermost one. Each stack's weight then goes to exactly one caller (``[root]`` when the
function is the outermost frame) and to exactly one callee or to ``self`` (the function is the
leaf): both lists add up to the function's total. ``recursive_ns`` is the part of the total
from stacks where the function appears more than once.

All functions of the matched name are the function (the same name in several binaries, or
several symbols of one name, are one row of ``top`` too).

The Filter's transforms apply as in the flame view: a stack a transform leaves out (``drop``,
``focus``, ``focus_path``) counts nowhere, the others are counted on their transformed paths.

``expand`` opens the sandwich's deeper levels exactly: for a path of callers going out from the
function (its caller, that caller's caller, ...) or of callees (its callee, that callee's
callee, ...), the stacks that hold that very chain next to the function, their weight and the
functions one step further out (``[root]``: the chain reached the outermost frame; on the
callee side, what ended at the chain's last function is its ``self``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from stax.profile import offviews
from stax.profile.selection import Filter, oncpu_weights, query_paths, transformed_groups
from stax.profile.tables import Profile

ROOT = "[root]"  # the function was the outermost frame: no caller
CANDIDATES_LISTED = 20
SIDES = ("callers", "callees")

# a stack holding the function: (path, index of its outermost frame, of its innermost, n, w)
Hit = tuple[tuple[int, ...], int, int, int, int]
# a path of neighbours to expand: (side, [(name, binary or None: any binary)])
Expand = tuple[str, list[tuple[str, str | None]]]


class NeighborsError(ValueError):
    """The request cannot be answered (empty name); the message says why."""


def weights(p: Profile, flt: Filter, mode: str) -> tuple[dict[int, list[int]], int, int]:
    """{stack: [rows, weight_ns]} and totals for ``mode`` (as views.flame weighs them)."""
    if mode == "cpu":
        return oncpu_weights(p, flt)
    off, off_n, off_w = offviews.offcpu_weights(p, flt)
    if mode == "offcpu":
        return off, off_n, off_w
    groups, n, w = oncpu_weights(p, flt)
    merged = {k: list(v) for k, v in groups.items()}
    for k, (a, b) in off.items():
        g = merged.setdefault(k, [0, 0])
        g[0] += a
        g[1] += b
    return merged, n + off_n, w + off_w


def match(names: dict[str, list[int]], totals: dict[str, int], target: str,
          exact: bool) -> tuple[str | None, list[str]]:
    """The function name ``target`` picks among the sampled ``names`` and, when it picks none,
    the candidates (hottest first): with ``exact`` only that name; otherwise a name equal to
    the target wins, then the one name containing it (case-insensitive). Several: ambiguous."""
    if exact:
        return (target, []) if target in names else (None, [])
    needle = target.strip().lower()
    if not needle:
        raise NeighborsError("empty function name")
    if target.strip() in names:
        return target.strip(), []
    hits = sorted((n for n in names if needle in n.lower()), key=lambda n: (-totals[n], n))
    if len(hits) == 1:
        return hits[0], []
    return None, hits


def neighbors(p: Profile, flt: Filter, target: str, exact: bool = False, mode: str = "cpu",
              limit: int = 20, expand: list[Expand] | None = None) -> dict[str, Any]:
    """Callers and callees of the function ``target`` names (see the module's docstring).
    ``function`` is null when no function or several match (``candidates``). With ``expand``,
    ``expanded`` holds the next level of each path asked for (see ``expand_level``)."""
    groups, total_n, total_w = weights(p, flt, mode)
    paths = query_paths(p, flt)
    if flt.transforms:  # focus and drop leave stacks out: the totals are of what is left
        groups, total_n, total_w = transformed_groups(groups, paths)
    funcs = p.funcs
    stack_paths: list[tuple[tuple[int, ...], int, int]] = []
    names: dict[str, list[int]] = defaultdict(list)
    totals: dict[str, int] = defaultdict(int)
    for sid, (n, w) in groups.items():
        path = paths.path(sid)
        if not path:
            continue
        stack_paths.append((path, n, w))
        seen = set()
        for f in path:
            name = funcs[f].name
            if name not in seen:
                seen.add(name)
                totals[name] += w
            if f not in names[name]:
                names[name].append(f)
    base: dict[str, Any] = {"target": target, "mode": mode, "total_samples": total_n,
                            "total_ns": total_w}
    name, hits = match(names, totals, target, exact)
    if name is None:
        base.update({"function": None, "matches": len(hits), "candidates": [
            {"func": h, "binaries": sorted({funcs[f].binary for f in names[h]}),
             "total_ns": totals[h]} for h in hits[:CANDIDATES_LISTED]]})
        return base
    ids = set(names[name])
    tot_n = tot_w = self_n = self_w = rec_w = 0
    callers: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    callees: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    hits: list[Hit] = []
    for path, n, w in stack_paths:
        at = [i for i, f in enumerate(path) if f in ids]
        if not at:
            continue
        tot_n += n
        tot_w += w
        if len(at) > 1:
            rec_w += w
        first, last = at[0], at[-1]
        hits.append((path, first, last, n, w))
        c = callers[path[first - 1] if first > 0 else -1]
        c[0] += n
        c[1] += w
        if last == len(path) - 1:
            self_n += n
            self_w += w
        else:
            c = callees[path[last + 1]]
            c[0] += n
            c[1] += w

    def rows(acc: dict[int, list[int]]) -> tuple[list[dict[str, Any]], int]:
        return neighbor_rows(p, acc, tot_w, limit)

    caller_rows, n_callers = rows(callers)
    callee_rows, n_callees = rows(callees)
    binaries = sorted({funcs[f].binary for f in ids})
    base.update({
        "function": {"func": name, "binaries": binaries, "samples": tot_n, "time_ns": tot_w,
                     "pct": 100.0 * tot_w / total_w if total_w else 0.0,
                     "self_samples": self_n, "self_ns": self_w,
                     "self_pct": 100.0 * self_w / tot_w if tot_w else 0.0,
                     "recursive_ns": rec_w},
        "callers": caller_rows, "callee_count": n_callees, "caller_count": n_callers,
        "callees": callee_rows,
    })
    if expand is not None:
        base["expanded"] = [expand_level(p, hits, side, want, tot_w, limit)
                            for side, want in expand]
    return base


def neighbor_rows(p: Profile, acc: dict[int, list[int]], of_w: int,
                  limit: int) -> tuple[list[dict[str, Any]], int]:
    """Rows of {func id (-1: [root]): [samples, ns]}, heaviest first, ``pct`` of ``of_w``;
    and how many there were before ``limit``."""
    funcs = p.funcs
    order = sorted(acc.items(), key=lambda kv: (-kv[1][1], -kv[1][0],
                                                funcs[kv[0]].name if kv[0] >= 0 else ""))
    shown = order[:limit] if limit > 0 else order
    out = []
    for f, (n, w) in shown:
        row = ({"func": ROOT, "binary": ""} if f < 0
               else {"func": funcs[f].name, "binary": funcs[f].binary})
        row.update({"samples": n, "time_ns": w, "pct": 100.0 * w / of_w if of_w else 0.0})
        out.append(row)
    return out, len(order)


def expand_level(p: Profile, hits: list[Hit], side: str, want: list[tuple[str, str | None]],
                 of_w: int, limit: int) -> dict[str, Any]:
    """The sandwich node at the end of ``want`` and its children, over the stacks that hold
    the function with exactly that chain next to it: on the ``callers`` side ``want[0]`` is
    the caller of the function's outermost frame, ``want[1]`` that one's caller, ...; on the
    ``callees`` side ``want[0]`` is the frame below its innermost one, and so on down.
    ``samples``/``time_ns`` of those stacks; ``rows`` the next frames out (``[root]`` when the
    chain was the outermost), ``pct`` of the function's time ``of_w``; on the callee side
    ``self_samples``/``self_ns`` of the stacks that ended at the chain's last function."""
    funcs = p.funcs
    k = len(want)
    ok: dict[int, bool] = {}  # (func id) matches want[j]: memoised per level j below

    def matches(f: int, j: int) -> bool:
        key = f * (k + 1) + j
        hit = ok.get(key)
        if hit is None:
            name, binary = want[j]
            fn = funcs[f]
            hit = ok[key] = fn.name == name and (binary is None or fn.binary == binary)
        return hit

    acc: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    node_n = node_w = self_n = self_w = 0
    up = side == "callers"
    for path, first, last, n, w in hits:
        if up:
            if first - k < 0 or not all(matches(path[first - 1 - j], j) for j in range(k)):
                continue
            nxt = path[first - k - 1] if first - k - 1 >= 0 else -1
        else:
            if last + k >= len(path) or \
                    not all(matches(path[last + 1 + j], j) for j in range(k)):
                continue
            at = last + k + 1
            if at == len(path):
                self_n += n
                self_w += w
                nxt = None
            else:
                nxt = path[at]
        node_n += n
        node_w += w
        if nxt is not None:
            c = acc[nxt]
            c[0] += n
            c[1] += w
    rows, count = neighbor_rows(p, acc, of_w, limit)
    out: dict[str, Any] = {"side": side,
                           "path": [{"func": f, "binary": b} for f, b in want],
                           "samples": node_n, "time_ns": node_w,
                           "pct": 100.0 * node_w / of_w if of_w else 0.0,
                           "rows": rows, "count": count}
    if not up:
        out.update({"self_samples": self_n, "self_ns": self_w})
    return out
