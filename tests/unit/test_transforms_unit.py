"""Stack transforms of the views (focus, focus_path, drop, collapse_binary, merge_recursion),
on hand-built profiles, and their validation at the RPC edge."""

from __future__ import annotations

import dataclasses

import pytest
from archive_helpers import SPLIT, build_profile

from stax.profile import views
from stax.protocol import RPCError
from stax.server import params as P

NESTED = {("main", "run", "work_a"): 40, ("main", "run", "run", "work_b"): 30,
          ("main", "work_a"): 20, ("main", "memcpy", "memset"): 10}


def _top(p, **kw) -> dict[str, dict]:
    res = views.top(p, views.Filter(**kw), "self", 0)
    return {r["func"]: r for r in res["rows"]} | {"": res}


def _flame(p, **kw) -> dict:
    return views.flame(p, views.Filter(**kw))


def _tree(nodes: list[dict]) -> dict:
    return {n["func"]: (n["samples"], _tree(n["children"])) for n in nodes}


def test_exclude_moves_self_time_to_the_caller() -> None:
    p = build_profile(SPLIT)
    rows = _top(p, exclude=("work_a",))
    assert rows["main"]["self_samples"] == 60
    assert rows[""]["total_samples"] == 100


def test_focus_keeps_only_stacks_through_the_function_rooted_at_it() -> None:
    p = build_profile(SPLIT)
    res = _flame(p, focus="work_b")
    assert res["total_samples"] == 30
    assert _tree(res["roots"]) == {"work_b": (30, {})}
    assert res["roots"][0]["pct"] == pytest.approx(100.0)
    rows = _top(p, focus="work_b")
    assert set(rows) == {"work_b", ""}
    assert rows["work_b"]["self_pct"] == pytest.approx(100.0)


def test_focus_on_a_recursive_function_roots_at_its_outermost_call() -> None:
    p = build_profile(NESTED)
    res = _flame(p, focus="run")
    assert _tree(res["roots"]) == {"run": (70, {"work_a": (40, {}),
                                                "run": (30, {"work_b": (30, {})})})}


def test_focus_path_keeps_one_subtree() -> None:
    p = build_profile(NESTED)
    res = _flame(p, focus_path=("main", "run", "run"))
    assert res["total_samples"] == 30
    assert _tree(res["roots"]) == {"run": (30, {"work_b": (30, {})})}
    assert _flame(p, focus_path=("run",))["total_samples"] == 0  # not a root


def test_focus_path_is_relative_to_the_focused_and_merged_tree() -> None:
    p = build_profile(NESTED)
    res = _flame(p, focus="run", merge_recursion=True, focus_path=("run", "work_b"))
    assert _tree(res["roots"]) == {"work_b": (30, {})}


def test_drop_leaves_out_the_samples_of_stacks_holding_the_function() -> None:
    p = build_profile(SPLIT)
    res = _flame(p, drop=("work_a",))
    assert res["total_samples"] == 40
    assert _tree(res["roots"]) == {"main": (40, {"work_b": (30, {}), "work_c": (10, {})})}
    rows = _top(p, drop=("work_a",))
    assert rows["work_b"]["self_pct"] == pytest.approx(75.0)


def test_merge_recursion_makes_direct_recursion_one_level() -> None:
    p = build_profile(NESTED)
    res = _flame(p, merge_recursion=True)
    assert _tree(res["roots"])["main"][1]["run"] == (70, {"work_a": (40, {}),
                                                         "work_b": (30, {})})


def test_collapse_binary_makes_a_library_one_node() -> None:
    p = build_profile(NESTED)
    for i, f in enumerate(p.funcs):
        if f.name in ("memcpy", "memset"):
            p.funcs[i] = dataclasses.replace(f, binary="/usr/lib/libc.so.6")
    res = _flame(p, collapse_binary=("libc.so.6",))
    main = _tree(res["roots"])["main"][1]
    assert main["libc.so.6"] == (10, {})
    assert "memcpy" not in main
    rows = _top(p, collapse_binary=("/usr/lib/libc.so.6",))
    assert rows["libc.so.6"]["self_samples"] == 10
    assert rows["libc.so.6"]["binary"] == "/usr/lib/libc.so.6"


def test_transforms_compose() -> None:
    p = build_profile(NESTED)
    res = _flame(p, focus="main", drop=("work_b",), merge_recursion=True, exclude=("run",))
    assert _tree(res["roots"]) == {"main": (70, {"work_a": (60, {}), "memcpy": (10, {
        "memset": (10, {})})})}


def test_params_validate_the_transforms() -> None:
    flt = P.query_filter({"focus": "f", "focus_path": ["a", "b"], "drop": ["x"],
                          "collapse_binary": ["libc.so.6"], "merge_recursion": True})
    assert (flt.focus, flt.focus_path, flt.drop) == ("f", ("a", "b"), ("x",))
    assert flt.collapse_binary == ("libc.so.6",) and flt.merge_recursion and flt.transforms
    assert not P.query_filter({}).transforms
    for bad in ({"focus": ""}, {"focus": 3}, {"drop": "x"}, {"focus_path": [1]},
                {"merge_recursion": "yes"}, {"collapse_binary": ["a\0"]}):
        with pytest.raises(RPCError):
            P.query_filter(bad)
