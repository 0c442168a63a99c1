"""The sandwich view's deeper levels (``neighbors`` with ``expand``) counted over the actual
stacks, and the stack transforms in ``neighbors``, ``samples`` and ``annotate``, on hand-built
profiles; the ``expand`` parameter's validation at the RPC edge."""

from __future__ import annotations

from typing import Any

import pytest
from archive_helpers import build_profile

from stax.profile import annotate
from stax.profile import neighbors as nb
from stax.profile import samples as sm
from stax.profile.selection import Filter
from stax.protocol import RPCError
from stax.server import params as P

MS = 1_000_000
# hub is reached through mid_x and mid_y from top_1 and top_2 in different mixes; mid_x also
# runs work of its own (not through hub), and step_p is also called from main directly
SANDWICH = {
    ("main", "top_1", "mid_x", "hub", "step_p", "grind"): 30,
    ("main", "top_1", "mid_y", "hub", "step_p", "grind"): 10,
    ("main", "top_2", "mid_x", "hub", "step_q", "grind"): 10,
    ("main", "top_2", "mid_y", "hub", "step_q"): 20,
    ("main", "top_2", "mid_x", "other"): 50,
    ("main", "step_p", "polish"): 40,
    ("main", "top_1", "hub", "hub", "step_p"): 5,  # recursion: one caller, one callee
}


def _sandwich(flt: Filter | None = None, **kw: Any) -> dict[str, Any]:
    return nb.neighbors(build_profile(SANDWICH), flt or Filter(), "hub", exact=True, **kw)


def _rows(level: dict[str, Any]) -> dict[str, int]:
    return {r["func"]: r["samples"] for r in level["rows"]}


def test_deeper_caller_levels_count_only_the_stacks_of_that_chain() -> None:
    res = _sandwich(expand=[("callers", [("mid_x", None)]),
                            ("callers", [("mid_x", None), ("top_2", None)]),
                            ("callers", [("mid_x", "prog"), ("top_2", None), ("main", None)]),
                            ("callers", [("mid_x", "libother.so")])])
    assert res["function"]["samples"] == 75
    assert {r["func"]: r["samples"] for r in res["callers"]} == {"mid_x": 40, "mid_y": 30,
                                                                  "top_1": 5}
    via_x, via_x_2, to_root, other_binary = res["expanded"]
    # the callers of mid_x over the whole scope would be top_2 60 and top_1 30: here only
    # the stacks where mid_x called hub
    assert (via_x["samples"], _rows(via_x)) == (40, {"top_1": 30, "top_2": 10})
    assert via_x["pct"] == pytest.approx(100.0 * 40 / 75)
    assert via_x["rows"][0]["pct"] == pytest.approx(100.0 * 30 / 75)  # of hub's time
    assert (via_x_2["samples"], _rows(via_x_2)) == (10, {"main": 10})
    assert (to_root["samples"], _rows(to_root)) == (10, {"[root]": 10})
    assert to_root["path"][0] == {"func": "mid_x", "binary": "prog"}
    assert (other_binary["samples"], other_binary["rows"]) == (0, [])


def test_deeper_callee_levels_and_their_self_time() -> None:
    res = _sandwich(expand=[("callees", [("step_p", None)]),
                            ("callees", [("step_q", None)]),
                            ("callees", [("step_q", None), ("grind", None)])])
    assert {r["func"]: r["samples"] for r in res["callees"]} == {"step_p": 45, "step_q": 30}
    p_level, q_level, grind = res["expanded"]
    # step_p also calls polish, but never below hub
    assert (p_level["samples"], _rows(p_level), p_level["self_samples"]) == (45, {"grind": 40}, 5)
    assert (q_level["samples"], _rows(q_level), q_level["self_samples"]) == (30, {"grind": 10},
                                                                             20)
    assert (grind["samples"], grind["rows"], grind["self_samples"]) == (10, [], 10)
    assert grind["self_ns"] == 10 * MS


def test_levels_follow_the_limit_and_the_mode() -> None:
    res = _sandwich(limit=1, expand=[("callers", [("mid_x", None)])])
    level = res["expanded"][0]
    assert len(level["rows"]) == 1 and level["count"] == 2
    assert "expanded" not in _sandwich()
    # no function of that name: nothing to expand, no error
    none = nb.neighbors(build_profile(SANDWICH), Filter(), "nothing", exact=True,
                        expand=[("callers", [("main", None)])])
    assert none["function"] is None and "expanded" not in none


def test_transforms_apply_to_callers_and_callees() -> None:
    # drop top_1: the stacks through it count nowhere, the totals are of what is left
    res = _sandwich(Filter(drop=("top_1",)), expand=[("callers", [("mid_x", None)])])
    assert res["total_samples"] == 120 and res["function"]["samples"] == 30
    assert {r["func"]: r["samples"] for r in res["callers"]} == {"mid_x": 10, "mid_y": 20}
    assert _rows(res["expanded"][0]) == {"top_2": 10}
    # merge (exclude) mid_x: hub's caller there is top_*
    merged = _sandwich(Filter(exclude=("mid_x",)))
    assert {r["func"]: r["samples"] for r in merged["callers"]} == {
        "top_1": 35, "mid_y": 30, "top_2": 10}
    # focus on top_2: hub's callers end at top_2 ([root] above it)
    focused = _sandwich(Filter(focus="top_2"),
                        expand=[("callers", [("mid_y", None), ("top_2", None)])])
    assert focused["function"]["samples"] == 30
    assert _rows(focused["expanded"][0]) == {"[root]": 20}
    # a dropped function has no neighbours at all
    gone = nb.neighbors(build_profile(SANDWICH), Filter(drop=("hub",)), "hub", exact=True)
    assert gone["function"] is None


def test_samples_leave_out_what_the_transforms_drop() -> None:
    p = build_profile(SANDWICH)
    res = sm.samples(p, Filter(drop=("hub",)), max_samples=1000)
    names = [[res["funcs"][f]["func"] for f in s] for s in res["stacks"]]
    assert res["total"] == 90 and all("hub" not in n for n in names)
    focused = sm.samples(p, Filter(focus="step_p"), max_samples=1000)
    assert focused["total"] == 85
    assert {res_names[0] for res_names in
            ([focused["funcs"][f]["func"] for f in s] for s in focused["stacks"])} == {"step_p"}
    assert sm.samples(p, Filter(), max_samples=1000)["total"] == 165


def test_annotate_counts_only_the_samples_the_transforms_keep() -> None:
    p = build_profile(SANDWICH)
    whole = annotate.annotate(p, Filter(), "grind", exact=True)
    assert (whole["self_samples"], whole["total_samples"]) == (50, 165)
    kept = annotate.annotate(p, Filter(drop=("top_1",)), "grind", exact=True)
    assert (kept["self_samples"], kept["total_samples"]) == (10, 120)
    focused = annotate.annotate(p, Filter(focus_path=("main", "top_1")), "grind", exact=True)
    assert (focused["self_samples"], focused["total_samples"]) == (40, 45)
    # merging a function reshapes stacks only: an instruction's samples stay its own
    merged = annotate.annotate(p, Filter(exclude=("grind",)), "grind", exact=True)
    assert merged["self_samples"] == 50


def test_expand_is_validated() -> None:
    ok = P.neighbor_paths({"expand": [{"side": "callers", "path": [{"func": "a"}]},
                                      {"side": "callees",
                                       "path": [{"func": "b", "binary": "/bin/x"}]}]})
    assert ok == [("callers", [("a", None)]), ("callees", [("b", "/bin/x")])]
    assert P.neighbor_paths({}) is None
    for bad in ("x", [1], [{"side": "up", "path": [{"func": "a"}]}],
                [{"side": "callers"}], [{"side": "callers", "path": []}],
                [{"side": "callers", "path": ["a"]}], [{"side": "callers", "path": [{}]}],
                [{"side": "callers", "path": [{"func": ""}]}],
                [{"side": "callers", "path": [{"func": "a", "binary": 3}]}],
                [{"side": "callers", "path": [{"func": "a"}]}] * (P.MAX_EXPAND + 1)):
        with pytest.raises(RPCError):
            P.neighbor_paths({"expand": bad})
