"""The ``compare`` RPC on two hand-built runs opened from archives: the per-function deltas
are those of ``stax compare`` (stax.archive.compare), the differential tree carries the base's
numbers per path, and bad parameters are one bad_request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from archive_helpers import RUN, build_profile

from stax.archive import format as fm
from stax.archive.compare import compare
from stax.profile import diff, views

BASE = {("main", "work_a"): 60, ("main", "work_b"): 30, ("main", "gone"): 10}
CAND = {("main", "work_a"): 120, ("main", "work_b"): 30, ("main", "fresh"): 10}


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STAX_SERVER_WS_BIND", "127.0.0.1:0")
    from stax.server.daemon import Server

    srv = Server(str(tmp_path / "stax.sock"))
    loop = asyncio.new_event_loop()
    paths = []
    for i, spec in enumerate((BASE, CAND), 1):
        a = fm.save(build_profile(spec), str(tmp_path / f"{i}.stax"), {**RUN, "id": i})
        paths.append(a["path"])
        srv.registry.open_archive(a["path"])
    srv.loop = loop
    srv.paths = paths
    try:
        yield srv
    finally:
        loop.run_until_complete(srv.subs.close())
        loop.close()


def _call(srv: Any, params: dict[str, Any]) -> dict[str, Any]:
    return srv.loop.run_until_complete(srv.handle({"id": 1, "method": "compare",
                                                   "params": params}))


def test_function_deltas_match_the_archive_compare(server: Any) -> None:
    res = _call(server, {"base": 1, "cand": 2, "limit": 0})["result"]
    cli = compare(server.paths[0], server.paths[1], 0)
    assert res["regressions"] == cli["regressions"]
    assert res["improvements"] == cli["improvements"]
    assert res["functions"] == cli["functions"] and res["unchanged"] == cli["unchanged"]
    assert (res["base_samples"], res["cand_samples"]) == (100, 160)
    a = next(r for r in res["regressions"] if r["func"] == "work_a")
    assert a["delta_self_ns"] == 60 * 1_000_000
    assert a["delta_self_pct"] == pytest.approx(100 * 120 / 160 - 60)
    gone = next(r for r in res["improvements"] if r["func"] == "gone")
    assert gone["status"] == "gone"


def test_diff_tree_carries_the_base_per_path(server: Any) -> None:
    res = _call(server, {"base": 1, "cand": 2})["result"]
    (main,) = res["roots"]
    assert main["func"] == "main" and main["delta_ns"] == 60 * 1_000_000
    kids = {c["func"]: c for c in main["children"]}
    assert kids["work_a"]["base_samples"] == 60 and kids["work_a"]["samples"] == 120
    assert kids["work_a"]["delta_pct"] == pytest.approx(75.0 - 60.0)
    assert kids["work_b"]["delta_ns"] == 0
    assert kids["fresh"]["new"] and kids["fresh"]["base_samples"] == 0
    assert "gone" not in kids
    assert res["gone"] == []  # gone is below main: the delta rows name it


def test_transforms_apply_to_both_sides(server: Any) -> None:
    res = _call(server, {"base": 1, "cand": 2, "focus": "work_a"})["result"]
    (root,) = res["roots"]
    assert root["func"] == "work_a" and root["pct"] == 100.0 and root["base_pct"] == 100.0
    assert (res["base_samples"], res["cand_samples"]) == (60, 120)


def test_gone_roots() -> None:
    b = views.flame(build_profile({("a",): 5, ("b",): 5}), views.Filter())["roots"]
    c = views.flame(build_profile({("a",): 5}), views.Filter())["roots"]
    assert [g["func"] for g in diff.gone_roots(c, b)] == ["b"]


@pytest.mark.parametrize("params", [{}, {"base": 1}, {"base": 1, "cand": 0},
                                    {"base": "1", "cand": 2}, {"base": 1, "cand": 2, "tid": 5},
                                    {"base": 1, "cand": 2, "start_ns": 0},
                                    {"base": 1, "cand": 2, "limit": -1}])
def test_bad_params_are_one_bad_request(server: Any, params: dict[str, Any]) -> None:
    err = _call(server, params)["error"]
    assert err["code"] == "bad_request", err


def test_unknown_run_is_no_run(server: Any) -> None:
    err = _call(server, {"base": 1, "cand": 9})["error"]
    assert err["code"] == "no_run" and "no run 9" in err["message"], err
