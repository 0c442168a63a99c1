"""Every RPC method fuzzed in-process: any params give a result or a non-internal error, and the
reply is strict JSON. Plus the strict decoder (NaN, Infinity, deep nesting) and the params
helpers on hand-picked edge values."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from archive_helpers import build_profile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stax.archive import format as fm
from stax.protocol import MAX_DEPTH, METHODS, JSONError, decode, encode
from stax.server import params as P
from stax.server.subscriptions import PUSH

# every parameter name any method reads (docs/protocol.md)
PARAMS = ("pid", "argv", "frequency", "time_limit_ms", "dwarf_unwind", "daemon_socket", "run",
          "status", "for_samples", "for_seconds", "until_symbol", "timeout_ms", "path", "sort",
          "limit", "max_depth", "threshold_pct", "mode", "reason", "min_duration_ns", "stacks",
          "bucket_ns", "inverted", "per_thread", "max_samples",
          "buckets", "target", "exact", "tid", "start_ns", "end_ns", "exclude", "interval_ms",
          "subscription", "window", "label", "wait_for_run_ms", "stopped_since_ns",
          "focus", "focus_path", "drop", "collapse_binary", "merge_recursion", "base", "cand",
          "expand", "code_id")

EDGE = [0, -1, 1, 2, 100, 10_000, P.MAX_PID, P.MAX_PID + 1, 2**31, 2**62 + 1, 2**63, 2**64,
        -(2**63), 10**20, 10**300, 0.5, -0.0, 1e-300, 1e23, 1e308, -1e308, math.inf, -math.inf,
        math.nan, True, False, None, "", "1", "nan", "self", "cpu", "offcpu", "lock", "main",
        "0x401136", "0.5..1", "x..", "..9e999", "2..1", "\0", "\ud800", "é" * 5000, [], {},
        [None], ["a", 1]]

scalars = (st.none() | st.booleans() | st.integers() | st.sampled_from(EDGE)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3)
                      | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)
# ids are echoed verbatim: only what a strict JSON decoder can produce
ids = st.none() | st.integers(-(2**53), 2**53) | st.text(max_size=8)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STAX_SERVER_WS_BIND", "127.0.0.1:0")
    from stax.server.daemon import Server

    srv = Server(str(tmp_path / "stax.sock"))
    loop = asyncio.new_event_loop()
    pushed: list[dict[str, Any]] = []

    async def push(msg: dict[str, Any]) -> None:
        pushed.append(msg)

    PUSH.set(push)  # subscribe needs a connection that can receive events
    archive = fm.save(build_profile({("main", "work"): 30, ("main", "idle"): 10}),
                      str(tmp_path / "a.stax"),
                      {"id": 1, "state": "stopped", "command": "./prog", "samples": 40,
                       "mode": "launch", "pid": 1, "argv": ["./prog"], "frequency_hz": 1000})
    srv.registry.open_archive(archive["path"])  # a run, so the queries really run
    srv.loop = loop
    srv.tmp = tmp_path
    try:
        yield srv
    finally:
        loop.run_until_complete(srv.subs.close())
        loop.close()
        PUSH.set(None)


def _safe(method: str, params: dict[str, Any], tmp: Path, data: st.DataObject) -> None:
    """Never record a real process, never write outside the test's directory."""
    if method in ("start_launch", "start_attach"):
        params["pid"] = data.draw(st.sampled_from(
            [None, 0, -1, P.MAX_PID + 1, 2**64, 10**20, 1.0, "1", True, [1], math.nan]))
    if method == "wait" and "wait_for_run_ms" in params:  # no run ever starts here: keep it short
        params["wait_for_run_ms"] = data.draw(st.sampled_from(
            [None, 0, 10, -1, P.MAX_MS + 1, 2**64, 1.5, "10", True, math.nan]))
    if method in ("save", "open") and isinstance(params.get("path"), str):
        name = params["path"].replace("/", "_").replace("\0", "")[:40] or "x"
        params["path"] = data.draw(st.sampled_from(
            [str(tmp / "out" / name), "relative", "", "/\0", str(tmp / "a.stax")]))


def _check(resp: dict[str, Any], req: dict[str, Any]) -> None:
    assert "result" in resp or "error" in resp, resp
    if "error" in resp:
        assert resp["error"]["code"] != "internal", (req, resp)
        assert isinstance(resp["error"]["message"], str)
    json.dumps(resp, allow_nan=False)  # strict JSON: no NaN/Infinity anywhere
    decode(encode(resp), max_depth=10_000)


def test_every_method_survives_random_params(server: Any) -> None:
    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(method=st.sampled_from(METHODS), rid=ids, data=st.data(),
           params=st.dictionaries(st.sampled_from(PARAMS) | st.text(max_size=6), values,
                                  max_size=5))
    def one(method: str, rid: Any, data: st.DataObject, params: dict[str, Any]) -> None:
        _safe(method, params, server.tmp, data)
        req = {"id": rid, "method": method, "params": params}
        resp = server.loop.run_until_complete(asyncio.wait_for(server.handle(req), 20))
        assert resp["id"] == rid
        _check(resp, req)

    one()


@pytest.mark.parametrize("method", METHODS)
def test_every_parameter_with_every_edge_value(server: Any, method: str) -> None:
    """Deterministic sweep: each parameter alone with each edge value, for every method."""
    for name in PARAMS:
        for v in EDGE:
            params = {name: v}
            if method in ("start_launch", "start_attach"):
                params.setdefault("pid", 0)
                if name == "pid":
                    continue
            if method in ("save", "open") and name == "path" and isinstance(v, str) and v:
                continue  # random absolute paths: only in the test's directory (fuzz above)
            if (method == "wait" and name == "wait_for_run_ms" and type(v) is int
                    and 100 < v <= P.MAX_MS):
                continue  # a valid long wait for a run that never starts here
            req = {"id": 1, "method": method, "params": params}
            _check(server.loop.run_until_complete(server.handle(req)), req)


@given(st.recursive(scalars, lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=12))
@settings(max_examples=200, deadline=None)
def test_decode_is_strict(doc: Any) -> None:
    text = json.dumps(doc)  # Python's default: NaN/Infinity written bare
    try:
        back = decode(text)
    except JSONError:
        assert "NaN" in text or "Infinity" in text
        return
    assert json.dumps(back) == text


def test_decode_refuses_what_breaks_json_loads() -> None:
    for bad, why in [(b"[" * 100_000, "nested too deeply"), (b'{"a":' * 70 + b"1" + b"}" * 70,
                     "nested too deeply"), (b"NaN", "not a JSON number"),
                     (b'{"x": -Infinity}', "not a JSON number"), (b"[1e400]", "out of range"),
                     (b"\xff", "invalid JSON"), (b"{", "invalid JSON")]:
        with pytest.raises(JSONError, match=why):
            decode(bad)
    # brackets inside strings do not count; exactly MAX_DEPTH levels are fine
    assert decode(b'["' + b"[" * 1000 + b'\\"["]') == ["[" * 1000 + '"[']
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert decode(deep) is not None
    assert encode({"v": math.nan, "w": [math.inf]}) == b'{"v":null,"w":[null]}\n'


def test_handle_line_answers_every_malformed_line(server: Any) -> None:
    for line in [b"[" * 50_000, b'{"id":1,"method":"status","params":' * 200, b"NaN",
                 b'{"id":1,"method":"start_attach","params":{"pid":1,"time_limit_ms":1e400}}',
                 b'{"id":1,"method":"subscribe","params":{"interval_ms":NaN}}', b"\xfe\xff",
                 b"[]", b'"x"']:
        resp = server.loop.run_until_complete(server.handle_line(line))
        assert resp["error"]["code"] == "bad_request", (line[:60], resp)


def test_params_helpers_on_edges() -> None:
    assert P.integer({"limit": None}, "limit", 20) == 20  # null = absent
    with pytest.raises(P.RPCError, match="between 0 and"):
        P.integer({"limit": -1}, "limit", 20)
    with pytest.raises(P.RPCError, match="too large"):
        P.integer({"limit": 10**400}, "limit")
    for v in (math.inf, math.nan, 10**400, 1e308, True, "5"):
        with pytest.raises(P.RPCError):
            P.number({"t": v}, "t", lo=0.0, hi=1e9, lo_open=True)
    with pytest.raises(P.RPCError, match="above 0"):
        P.number({"t": 0}, "t", lo=0.0, hi=1e9, lo_open=True)
    assert P.number({"t": 5}, "t") == 5.0
    with pytest.raises(P.RPCError, match="Unicode"):
        P.text({"s": "\ud800"}, "s")
    assert P.pid({"pid": P.MAX_PID}) == P.MAX_PID
    with pytest.raises(P.RPCError):
        P.pid({"pid": 99999999999999999999})


def test_archive_with_absurd_numbers_is_served(server: Any) -> None:
    """A manifest whose run holds numbers beyond int64 (valid JSON) is opened and every method
    still answers without an internal error."""
    path = Path(server.tmp / "a.stax")
    main = path / fm.MAIN_FILE
    m = json.loads(main.read_text())
    for k in ("elapsed_ms", "started_at_unix_ms", "frequency_hz", "pid", "exit_status",
              "lost_records", "samples"):
        m["run"][k] = 10**400
    m["run"]["time_limit_ms"] = 1e300
    m["diagnostics"] = {"records": {"lost": 10**400}, "x": [1e300]}
    main.write_text(json.dumps(m))
    run = server.loop.run_until_complete(server.handle(
        {"id": 1, "method": "open", "params": {"path": str(path)}}))
    assert "result" in run, run
    for method in METHODS:
        params: dict[str, Any] = {"target": "work", "path": str(server.tmp / "b.stax")}
        if method in ("start_launch", "start_attach"):
            params["pid"] = 0
        req = {"id": 1, "method": method, "params": params}
        _check(server.loop.run_until_complete(server.handle(req)), req)


def test_archive_manifest_nested_too_deeply(tmp_path: Path) -> None:
    d = tmp_path / "deep.stax"
    d.mkdir()
    (d / fm.MAIN_FILE).write_text('{"format":"stax-archive","version":2,"x":' + "[" * 100_000)
    with pytest.raises(fm.ArchiveError, match="nested too deeply"):
        fm.load(str(d))
    (d / fm.MAIN_FILE).write_text('{"format":"stax-archive","version":2,"x":NaN}')
    with pytest.raises(fm.ArchiveError, match="NaN is not a JSON number"):
        fm.load(str(d))


def test_flamegraph_of_a_deep_recursion_stays_decodable(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """600 frames deep (DWARF walks go to 512 user frames, plus kernel ones): the tree is cut
    at 400 levels, so the reply encodes and the client decodes it."""
    from stax.protocol import MAX_REPLY_DEPTH
    from stax.server.daemon import Server
    from stax.server.handlers.queries import MAX_TREE_DEPTH

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    srv = Server(str(tmp_path / "s.sock"))
    deep = build_profile({tuple(f"f{i}" for i in range(600)): 5})
    srv.registry.open_archive(fm.save(deep, str(tmp_path / "d.stax"), {"id": 1})["path"])
    for depth in (0, 10_000):
        line = json.dumps({"id": 1, "method": "flamegraph", "params": {"max_depth": depth}})
        resp = decode(encode(asyncio.run(srv.handle_line(line.encode()))),
                      max_depth=MAX_REPLY_DEPTH)
        node, levels = resp["result"]["roots"][0], 1
        while node.get("children"):
            node, levels = node["children"][0], levels + 1
        assert levels == MAX_TREE_DEPTH and node["collapsed_frames"] == 600 - MAX_TREE_DEPTH


def test_handle_line_fuzzed(server: Any) -> None:
    """Raw lines: random bytes, and JSON texts spliced with brackets, NaN and huge numbers."""
    pieces = st.sampled_from(['{"id":1,"method":"top","params":', "[", "]", "{", "}", "NaN",
                              "1e400", "-0", '"\\ud800"', '"a":', ",", "null", "9" * 30])

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=64) | st.lists(pieces, max_size=40).map("".join))
    def one(line: Any) -> None:
        resp = server.loop.run_until_complete(server.handle_line(line))
        _check(resp, {"line": line})

    one()
