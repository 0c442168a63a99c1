"""Time windows and marks on hand-built profiles: parsing ``A..B``, resolving ends against marks,
the views, compare and export over a window, marks in archives and journals, and the ``window``
and ``mark`` RPC parameters' errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from archive_helpers import RUN, SPLIT, build_profile

from stax.archive import compare as cmp
from stax.archive import format as fm
from stax.archive.export.common import clip
from stax.profile import views
from stax.profile.window import WindowError, add, check_label, marks, parse, relative, resolve
from stax.server import journal as jn
from stax.server.history import History

MS = 1_000_000
START = 10_000_000_000  # build_profile's first sample


@pytest.mark.parametrize("text, start, end", [
    ("1..2", 1.0, 2.0), ("1.5..", 1.5, None), ("..2.5", None, 2.5), ("a..b", "a", "b"),
    (" a .. 2 ", "a", 2.0), ("0..start-of-request", 0.0, "start-of-request"),
    ("1e-3..0.5", 0.001, 0.5),
])
def test_parse_accepts(text: str, start: object, end: object) -> None:
    w = parse(text)
    assert (w.start, w.end) == (start, end)


@pytest.mark.parametrize("text, message", [
    ("", "has no '..'"), ("1", "has no '..'"), ("..", "needs a start, an end or both"),
    ("2..1", "window end before start"), ("1..1", "window is empty"),
    ("-1..2", "must be seconds from 0"), ("nan..", "must be seconds from 0"),
    ("inf..", "must be seconds from 0"), ("a\x1b..", "neither seconds nor a mark label"),
    ("x" * 400 + "..", "too long"),
])
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        parse(text)


@pytest.mark.parametrize("label, message", [
    ("", "must not be empty"), ("  ", "must not be empty"), ("x" * 65, "too long"),
    ("a\nb", "printable"), ("a\x1b[31m", "printable"), ("a..b", "must not contain '..'"),
    ("1.5", "must not be a number"), ("nan", "must not be a number"), (" a", "space"),
])
def test_labels_refused(label: str, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        check_label(label)
    assert check_label("start-of-request") == "start-of-request"
    assert check_label("phase b (warm)") == "phase b (warm)"


MARKS = [(1_000_000_000, "a"), (2_000_000_000, "b")]


def test_resolve_against_marks() -> None:
    assert resolve("a..b", MARKS) == (1_000_000_000, 2_000_000_000)
    assert resolve("0.5..a", MARKS) == (500_000_000, 1_000_000_000)
    assert resolve("b..", MARKS) == (2_000_000_000, None)
    assert resolve("..0.25", MARKS) == (None, 250_000_000)
    with pytest.raises(WindowError, match=r"^unknown mark 'x'; marks: a, b$"):
        resolve("x..", MARKS)
    with pytest.raises(WindowError, match=r"marks: \(none\)"):
        resolve("a..", [])
    with pytest.raises(WindowError, match="window end before start"):
        resolve("b..a", MARKS)
    with pytest.raises(WindowError, match="window end before start"):
        resolve("3..a", MARKS)


def test_marks_on_a_profile_are_relative_and_unique() -> None:
    p = build_profile(SPLIT)
    assert add(p, "b", START + 60 * MS, 10) == 60 * MS
    assert add(p, "a", START + 10 * MS, 10) == 10 * MS
    assert marks(p) == [{"label": "a", "time_ns": 10 * MS}, {"label": "b", "time_ns": 60 * MS}]
    with pytest.raises(WindowError, match="already"):
        add(p, "a", START, 10)
    with pytest.raises(WindowError, match="holds 2 marks"):
        add(p, "c", START, 2)


def _self(p: object, window: str) -> dict[str, int]:
    start, end = resolve(window, relative(p))
    res = views.top(p, views.Filter(start_ns=start, end_ns=end), "self", 0)  # type: ignore
    return {r["func"]: r["self_samples"] for r in res["rows"]}


def test_views_over_a_window() -> None:
    # SPLIT: 60 samples of work_a, then 30 of work_b, then 10 of work_c, 1 ms apart
    p = build_profile(SPLIT)
    add(p, "b-start", START + 60 * MS, 10)
    add(p, "c-start", START + 90 * MS, 10)
    assert _self(p, "..b-start") == {"work_a": 60}
    assert _self(p, "b-start..c-start") == {"work_b": 30}
    assert _self(p, "c-start..") == {"work_c": 10}
    assert _self(p, "0.06..0.09") == {"work_b": 30}
    flt = views.Filter(start_ns=60 * MS, end_ns=90 * MS)
    th = views.threads(p, flt, 0)
    assert [r["samples"] for r in th["rows"]] == [30]
    assert views.threads(p, views.Filter(start_ns=200 * MS), 0)["rows"] == []


def test_marks_round_trip_through_archives_and_old_ones_open(tmp_path: Path) -> None:
    p = build_profile(SPLIT)
    add(p, "b-start", START + 60 * MS, 10)
    path = fm.save(p, str(tmp_path / "a.stax"), RUN)["path"]
    a = fm.load(path)
    assert a.profile.marks == [(START + 60 * MS, "b-start")]
    assert a.manifest["marks"] == [[START + 60 * MS, "b-start"]]
    # an archive written before marks existed (no "marks" key), or holding junk there
    for junk in (None, "x", [[1, 2], ["a"], [True, "t"], [5, ""], [2**70, "big"]]):
        old = fm.save(build_profile(SPLIT), str(tmp_path / "old.stax"), RUN)["path"]
        _, m = fm.read_manifest(old)
        if junk is None:
            del m["marks"]
        else:
            m["marks"] = junk
        Path(old, fm.MAIN_FILE).write_text(__import__("json").dumps(m))
        assert fm.load(old).profile.marks == []


def test_compare_over_windows(tmp_path: Path) -> None:
    p = build_profile(SPLIT)
    add(p, "b-start", START + 60 * MS, 10)
    base = fm.save(p, str(tmp_path / "base.stax"), RUN)["path"]
    cand = fm.save(build_profile(SPLIT), str(tmp_path / "cand.stax"), RUN)["path"]
    res = cmp.compare(base, cand, 0, "b-start..", "0.06..")
    assert res["base"]["samples"] == res["cand"]["samples"] == 40
    assert res["base"]["window_ns"] == [60 * MS, None] and res["delta"]["samples"] == 0
    with pytest.raises(WindowError, match="cand.stax: unknown mark 'b-start'; marks: "):
        cmp.compare(base, cand, 0, "b-start..", "b-start..")


def test_export_clip_keeps_the_window() -> None:
    p = build_profile(SPLIT)
    clip(p, None, 60 * MS, 90 * MS)
    assert len(p.s_time) == 30 and set(p.s_time) == {START + i * MS for i in range(60, 90)}
    assert _self(p, "0..") == {"work_b": 30}


def test_journal_keeps_marks_for_a_recovered_run(tmp_path: Path) -> None:
    h = History(str(tmp_path / "runs"))
    p = build_profile(SPLIT)
    j = jn.Journal(h.journal_of(7), p, lambda: {**RUN, "id": 7, "state": "recording"},
                   interval=3600)
    assert j.start()
    j.flush()
    add(p, "late", START + 70 * MS, 10)
    assert j.flush() > 0  # a new mark alone is worth a chunk
    j.close(discard=False)
    stored = h.scan()
    assert stored[0].summary["marks"] == [{"label": "late", "time_ns": 70 * MS}]
    assert fm.load(stored[0].path).profile.marks == [(START + 70 * MS, "late")]


def test_window_and_mark_rpc_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("STAX_SERVER_WS_BIND", "127.0.0.1:0")
    from stax.server.daemon import Server

    p = build_profile(SPLIT)
    add(p, "b-start", START + 60 * MS, 10)
    path = fm.save(p, str(tmp_path / "a.stax"), RUN)["path"]
    srv = Server(str(tmp_path / "stax.sock"))
    srv.registry.open_archive(path)
    loop = asyncio.new_event_loop()

    def call(method: str, **params: object) -> dict:
        return loop.run_until_complete(srv.handle({"id": 1, "method": method,
                                                   "params": params}))

    try:
        res = call("top", window="b-start..")["result"]
        assert {r["func"] for r in res["rows"]} == {"work_b", "work_c"}
        assert res["run"]["marks"] == [{"label": "b-start", "time_ns": 60 * MS}]
        assert call("timeline", buckets=4)["result"]["marks"][0]["label"] == "b-start"
        for method in ("top", "flamegraph", "threads", "wakers", "intervals", "annotate"):
            err = call(method, window="nope..", target="work")["error"]
            assert err == {"code": "bad_request",
                           "message": "unknown mark 'nope'; marks: b-start"}, method
        assert "window end before start" in call("top", window="b-start..0.01")["error"][
            "message"]
        assert "mutually exclusive" in call("top", window="1..", start_ns=0)["error"]["message"]
        err = call("mark", label="x")["error"]
        assert err["code"] == "no_run" and "no active run" in err["message"]
        assert call("mark", label="a..b")["error"]["code"] == "bad_request"
        assert call("mark")["error"]["message"] == "label is required"
    finally:
        loop.run_until_complete(srv.subs.close())
        loop.close()
