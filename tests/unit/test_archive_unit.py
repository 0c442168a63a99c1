"""Archive format, bad archives (fuzzed), compare and history bounds on hand-built profiles.
The exports (folded, speedscope, pprof, gecko) are in test_export_unit.py."""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import pytest
from archive_helpers import RUN, SPLIT, build_profile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stax.archive import compare as cmp
from stax.archive import format as fm
from stax.archive import layout, writer
from stax.profile import views
from stax.server.history import History


def _saved(tmp_path: Path, spec: dict | None = None, name: str = "a.stax") -> str:
    p = build_profile(SPLIT if spec is None else spec)
    return fm.save(p, str(tmp_path / name), RUN)["path"]


def test_round_trip_keeps_every_view_identical(tmp_path: Path) -> None:
    p = build_profile(SPLIT, tid_of={"work_c": 101})
    res = fm.save(p, str(tmp_path / "r.stax"), RUN, {"records": {"lost": 3}})
    assert res["samples"] == 100 and res["bytes"] > 0
    a = fm.load(res["path"])
    for fn, args in ((views.top, ("self", 0)), (views.top, ("total", 0)),
                     (views.flame, (0, 0.0)), (views.threads, (0,)),
                     (views.timeline, (10,))):
        assert fn(a.profile, views.Filter(), *args) == fn(p, views.Filter(), *args)
    assert views.top(a.profile, views.Filter(tid=101), "self", 0)["total_samples"] == 10
    assert a.run == RUN and a.diagnostics == {"records": {"lost": 3}}
    assert sorted(os.listdir(res["path"])) == [fm.DATA_FILE, fm.MAIN_FILE]
    # the main file opens the same archive
    assert fm.load(os.path.join(res["path"], fm.MAIN_FILE)).profile.funcs == a.profile.funcs


def test_empty_profile_round_trips(tmp_path: Path) -> None:
    a = fm.load(_saved(tmp_path, {}))
    assert views.top(a.profile, views.Filter())["total_samples"] == 0
    assert fm.intervals_of(a) is None


def _with_offcpu(p: object) -> object:
    """Two intervals of tid 100 (one linked to the wakeup that ended it) and two wakeups."""
    from stax.profile import offcpu

    b = p.offcpu  # type: ignore[attr-defined]
    b.switch_out(100, 5, offcpu.STATE_UNINTERRUPTIBLE, 0)
    b.switch_in(100, 705)
    b.switch_out(100, 900, offcpu.STATE_INTERRUPTIBLE, 1)
    b.waking(920, 101, 100, 2)
    b.switch_in(100, 930)
    b.waking(950, 0, 101, -1)
    return p


def test_off_cpu_tables_are_written_and_read_back(tmp_path: Path) -> None:
    from stax.profile import offcpu, offviews

    p = _with_offcpu(build_profile(SPLIT))
    a = fm.load(fm.save(p, str(tmp_path / "o.stax"), RUN)["path"])
    # every column, with the type the live table has, and the same values
    for table in ("intervals", "wakeups"):
        live, back = getattr(p, table), getattr(a.profile, table)
        for name, _dtype, _delta in fm.TABLES[table]:
            assert getattr(back, name).typecode == getattr(live, name).typecode
            assert getattr(back, name).tolist() == getattr(live, name).tolist(), name
    assert a.profile.intervals.wakeup.tolist() == [-1, 0]
    assert a.profile.intervals.state.tolist() == [offcpu.STATE_UNINTERRUPTIBLE,
                                                  offcpu.STATE_INTERRUPTIBLE]
    assert a.manifest["reasons"] == list(offcpu.REASONS)
    assert a.manifest["tables"]["wakeups"]["rows"] == 2
    iv = fm.intervals_of(a)
    assert iv is not None and iv["start_ns"].tolist() == [5, 900]
    for fn, args in ((offviews.intervals, (0,)), (offviews.wakers, (0,)),
                     (views.threads, (0,)), (views.flame, (0, 0.0, "offcpu")),
                     (views.flame, (0, 0.0, "wall"))):
        assert fn(a.profile, views.Filter(), *args) == fn(p, views.Filter(), *args)


def test_reasons_map_back_by_name_and_unclassified_ones_are_classified(
        tmp_path: Path) -> None:
    from stax.profile import offcpu

    p = _with_offcpu(build_profile(SPLIT))
    p.classify_pending()
    path = fm.save(p, str(tmp_path / "o.stax"), RUN)["path"]
    want = [offcpu.REASONS[r] for r in p.intervals.reason]
    main = Path(path) / fm.MAIN_FILE
    m = json.loads(main.read_text())
    # an archive written by a stax that listed the reasons in another order
    names = list(reversed(offcpu.REASONS))
    m["reasons"] = names + ["from-the-future"]
    data = bytearray((Path(path) / fm.DATA_FILE).read_bytes())
    col = m["tables"]["intervals"]["columns"]["reason"]
    codes = [names.index(w) for w in want]
    blob = zlib.compress(bytes(c & 0xFF for c in codes))
    data[col["offset"]:col["offset"] + col["size"]] = blob
    shift = len(blob) - col["size"]
    for t in m["tables"].values():
        for c in t["columns"].values():
            if c["offset"] > col["offset"]:
                c["offset"] += shift
    col["size"], col["crc32"] = len(blob), zlib.crc32(blob)
    m["data_bytes"] = len(data)
    (Path(path) / fm.DATA_FILE).write_bytes(bytes(data))
    main.write_text(json.dumps(m))
    a = fm.load(path)
    assert [offcpu.REASONS[r] for r in a.profile.intervals.reason] == want
    # -1 (saved before classification) is classified on load from the stored names
    m["reasons"] = list(offcpu.REASONS)
    blob = zlib.compress(bytes([0xFF, 0xFF]))
    data[col["offset"]:col["offset"] + col["size"]] = blob
    col["crc32"] = zlib.crc32(blob)
    (Path(path) / fm.DATA_FILE).write_bytes(bytes(data))
    main.write_text(json.dumps(m))
    a = fm.load(path)
    assert a.profile.intervals.reason.tolist() == [-1, -1]
    a.profile.classify_pending()
    assert [offcpu.REASONS[r] for r in a.profile.intervals.reason] == want


def test_bad_off_cpu_links_are_refused(tmp_path: Path) -> None:
    p = _with_offcpu(build_profile(SPLIT))
    p.intervals.wakeup[1] = 7  # no such wakeup
    path = fm.save(p, str(tmp_path / "o.stax"), RUN)["path"]
    with pytest.raises(fm.ArchiveError, match="interval -> wakeup"):
        fm.load(path)


def test_version_1_archives_still_open(tmp_path: Path) -> None:
    import numpy as np

    p = _with_offcpu(build_profile(SPLIT))
    p.classify_pending()
    path = fm.save(p, str(tmp_path / "o.stax"), RUN)["path"]
    main = Path(path) / fm.MAIN_FILE
    m = json.loads(main.read_text())
    # rewrite as version 1: reason as <i2, no state/wakeup columns, no reason names
    m["version"], m["reasons"] = 1, []
    cols = m["tables"]["intervals"]["columns"]
    data = bytearray((Path(path) / fm.DATA_FILE).read_bytes())
    blob = layout.encode_column(np.array(p.intervals.reason.tolist(), np.int16), "<i2", False, 3)
    cols["reason"] = {"dtype": "<i2", "delta": False, "offset": len(data), "size": len(blob),
                      "crc32": zlib.crc32(blob)}
    data += blob
    del cols["state"], cols["wakeup"]
    m["data_bytes"] = len(data)
    (Path(path) / fm.DATA_FILE).write_bytes(bytes(data))
    main.write_text(json.dumps(m))
    a = fm.load(path)
    assert a.profile.intervals.reason.tolist() == p.intervals.reason.tolist()
    assert a.profile.intervals.wakeup.tolist() == [-1, -1]
    assert a.profile.intervals.duration_ns.tolist() == [700, 30]


def test_save_is_atomic_and_replaces_an_old_archive(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path)
    p2 = build_profile({("main", "other"): 7})

    def boom(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "dumps", boom)
    with pytest.raises(fm.ArchiveError, match="No space left"):
        fm.save(p2, path, RUN)
    monkeypatch.undo()
    # the old archive is untouched and no half-written directory is left behind
    assert views.top(fm.load(path).profile, views.Filter())["total_samples"] == 100
    assert sorted(os.listdir(tmp_path)) == ["a.stax"]
    with pytest.raises(fm.ArchiveError, match="No space left"):
        monkeypatch.setattr(writer, "dumps", boom)
        fm.save(p2, str(tmp_path / "new.stax"), RUN)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["a.stax"]
    fm.save(p2, path, RUN)
    assert views.top(fm.load(path).profile, views.Filter())["total_samples"] == 7
    assert sorted(os.listdir(tmp_path)) == ["a.stax"]


def test_save_refuses_to_clobber_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(fm.ArchiveError, match="not a stax archive"):
        fm.save(build_profile(SPLIT), str(tmp_path / "notes.txt"), RUN)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _error(path: str) -> str:
    with pytest.raises(fm.ArchiveError) as e:
        fm.load(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_archives_get_one_clear_error(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    good = _saved(tmp_path)
    assert "no such file" in _error(str(tmp_path / "missing"))

    def variant(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(good, d)
        return d

    d = variant("truncated")
    data = (d / fm.DATA_FILE).read_bytes()
    (d / fm.DATA_FILE).write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(str(d))
    d = variant("flipped")
    data = bytearray((d / fm.DATA_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / fm.DATA_FILE).write_bytes(bytes(data))
    assert "checksum" in _error(str(d))
    d = variant("halfjson")
    text = (d / fm.MAIN_FILE).read_text()
    (d / fm.MAIN_FILE).write_text(text[: len(text) // 2])
    assert "not valid JSON" in _error(str(d))
    d = variant("random")
    (d / fm.MAIN_FILE).write_bytes(os.urandom(4096))
    assert "not a stax archive" in _error(str(d))
    d = variant("foreign")
    (d / fm.MAIN_FILE).write_text(json.dumps({"traceEvents": []}))
    assert "not a stax archive" in _error(str(d))
    d = variant("newer")
    m = json.loads((d / fm.MAIN_FILE).read_text())
    m["version"] = fm.VERSION + 1
    (d / fm.MAIN_FILE).write_text(json.dumps(m))
    assert f"version {fm.VERSION + 1}" in _error(str(d)) and "upgrade stax" in _error(str(d))
    (tmp_path / "plain.json").write_text("{}")
    assert "not a stax archive" in _error(str(tmp_path / "plain.json"))
    assert "not a stax archive" in _error(str(tmp_path))  # a directory without the main file
    d = variant("nodata")
    os.unlink(d / fm.DATA_FILE)
    assert "cannot read" in _error(str(d))
    real_open = open

    def denied(path: object, *a: object, **k: object) -> object:
        if str(path).startswith(good):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", denied)
    assert "Permission denied" in _error(good)


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    d = tmp_path_factory.mktemp("fuzz")
    path = _saved(d)
    return (Path(path, fm.MAIN_FILE).read_bytes(), Path(path, fm.DATA_FILE).read_bytes())


def _write(d: Path, main: bytes, data: bytes) -> str:
    d.mkdir(parents=True, exist_ok=True)
    (d / fm.MAIN_FILE).write_bytes(main)
    (d / fm.DATA_FILE).write_bytes(data)
    return str(d)


def _load_never_crashes(path: str) -> None:
    try:
        fm.load(path)
    except fm.ArchiveError as e:
        assert "\n" not in str(e)


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_main_file(tmp_path: Path, fuzz_base: tuple[bytes, bytes],
                               junk: bytes) -> None:
    _load_never_crashes(_write(tmp_path / "r", junk, fuzz_base[1]))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
       st.booleans(), st.integers(0, 1 << 20))
def test_fuzz_mutated_bytes(tmp_path: Path, fuzz_base: tuple[bytes, bytes],
                            flips: list[tuple[int, int]], in_data: bool, cut: int) -> None:
    main, data = (bytearray(x) for x in fuzz_base)
    target = data if in_data else main
    for pos, val in flips:
        if target:
            target[pos % len(target)] = val
    if cut and target:
        del target[cut % len(target):]
    _load_never_crashes(_write(tmp_path / "m", bytes(main), bytes(data)))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) |
                    st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) |
                    st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=10)


@FUZZ
@given(st.sampled_from(["binaries", "funcs", "threads", "tables", "data_bytes", "counts",
                        "first_time_ns", "run", "version", "reasons", "diagnostics",
                        "code"]), JSON)
def test_fuzz_manifest_fields(tmp_path: Path, fuzz_base: tuple[bytes, bytes], key: str,
                              value: object) -> None:
    m = json.loads(fuzz_base[0])
    m[key] = value
    _load_never_crashes(_write(tmp_path / "j", json.dumps(m).encode(), fuzz_base[1]))


@FUZZ
@given(st.sampled_from(["samples", "frames", "stacks"]), st.integers(-(1 << 31), 1 << 31),
       st.integers(0, 99))
def test_fuzz_out_of_range_indexes(tmp_path: Path, fuzz_base: tuple[bytes, bytes],
                                   table: str, value: int, row: int) -> None:
    """Columns with valid checksums but indexes that point nowhere are refused, not followed."""
    import numpy as np

    m = json.loads(fuzz_base[0])
    data = bytearray(fuzz_base[1])
    meta = m["tables"][table]
    name, dtype, delta = fm.TABLES[table][2 if table == "samples" else 0]
    col = meta["columns"][name]
    blob = bytes(data[col["offset"]:col["offset"] + col["size"]])
    arr = layout.decode_column(blob, dtype, delta, meta["rows"]).copy()
    if not len(arr):
        return
    arr[row % len(arr)] = np.array(value).astype(dtype)
    new = layout.encode_column(arr, dtype, delta, 6)
    data = data[:col["offset"]] + new + data[col["offset"] + col["size"]:]
    shift = len(new) - col["size"]
    for t in m["tables"].values():
        for c in t["columns"].values():
            if c["offset"] > col["offset"]:
                c["offset"] += shift
    col["size"] = len(new)
    col["crc32"] = zlib.crc32(new)
    m["data_bytes"] = len(data)
    path = _write(tmp_path / "i", json.dumps(m).encode(), bytes(data))
    try:
        a = fm.load(path)
    except fm.ArchiveError:
        return
    views.top(a.profile, views.Filter(), "self", 0)  # whatever loaded must be queryable


def test_compare_orders_regressions_and_improvements(tmp_path: Path) -> None:
    base = _saved(tmp_path, SPLIT, "base.stax")
    cand = _saved(tmp_path, {("main", "work_a"): 120, ("main", "work_b"): 20,
                             ("main", "work_d"): 5}, "cand.stax")
    res = cmp.compare(base, cand)
    assert res["delta"]["samples"] == 45
    assert res["delta"]["oncpu_ns"] == 45 * 1_000_000
    assert [r["func"] for r in res["regressions"]] == ["work_a", "work_d"]
    assert res["regressions"][0]["delta_self_ns"] == 60 * 1_000_000
    assert res["regressions"][1]["status"] == "new"
    assert [r["func"] for r in res["improvements"]] == ["work_b", "work_c"]
    assert res["improvements"][1]["status"] == "gone"


def test_history_keeps_the_newest_runs(tmp_path: Path) -> None:
    h = History(str(tmp_path / "runs"), max_runs=2, max_bytes=1 << 30)
    for i in (1, 2, 3):
        h.save(build_profile(SPLIT), i, {**RUN, "id": i}, {})
    assert [s.id for s in h.scan()] == [2, 3]
    one = History._size(h.path_of(3))
    h2 = History(str(tmp_path / "runs"), max_runs=10, max_bytes=one + one // 2)
    h2.save(build_profile(SPLIT), 4, {**RUN, "id": 4}, {})
    assert [s.id for s in h2.scan()] == [4]
    # a save killed half-way leaves a hidden directory: never listed, removed at start
    (tmp_path / "runs" / ".run-9.stax.abc.tmp").mkdir()
    (tmp_path / "runs" / ".run-9.stax.abc.tmp" / fm.DATA_FILE).write_bytes(b"x")
    assert [s.id for s in h2.scan()] == [4]
    assert sorted(os.listdir(tmp_path / "runs")) == ["run-4.stax"]
    off = History(str(tmp_path / "none"), max_runs=0)
    assert off.save(build_profile(SPLIT), 1, RUN, {}) is None
    assert not os.path.exists(tmp_path / "none")


@FUZZ
@given(st.dictionaries(st.sampled_from(["pid", "command", "argv", "elapsed_ms", "samples",
                                        "notes", "exit_status", "kernel_frames", "mode"]),
                       JSON, max_size=5),
       st.dictionaries(st.sampled_from(["capture", "records"]), JSON, max_size=2))
def test_opened_archives_with_odd_summaries_still_print(tmp_path: Path, run: dict,
                                                        diag: dict) -> None:
    """An archive written by another tool (or edited by hand) may lack summary fields or
    hold odd values there: the server fills them in with the right types."""
    from stax.archive.diag import run_diagnostics
    from stax.cli.common import run_line
    from stax.server.runs import Registry

    path = fm.save(build_profile(SPLIT), str(tmp_path / "odd.stax"), run, diag)["path"]
    reg = Registry(None)
    r = reg.open_archive(path)
    s = r.summary()
    assert s["samples"] == 100 and isinstance(s["pid"], int)
    assert isinstance(s["elapsed_ms"], int | float) and isinstance(s["notes"], list)
    run_line(s)
    d = run_diagnostics(r.profile, s, None, 1.0, r.stored_diag)
    assert isinstance(d["capture"]["ring_buffer_bytes"], int)
    assert all(isinstance(v, int) for v in d["records"].values())


def test_archived_run_summary_and_diagnostics_without_stored_offcpu_sections(
        tmp_path: Path) -> None:
    """An archive whose summary and diagnostics predate the off-CPU fields still reports its
    intervals, from the tables."""
    from stax.archive.diag import run_diagnostics
    from stax.server.runs import Registry

    p = _with_offcpu(build_profile(SPLIT))
    path = fm.save(p, str(tmp_path / "o.stax"), RUN, {"records": {"lost": 0}})["path"]
    run = Registry(None).open_archive(path)
    s = run.summary()
    assert s["intervals"] == 2 and s["offcpu_ns"] == 730 and s["wakeups"] == 2
    assert s["offcpu"]["intervals_recorded"] and s["offcpu"]["wakeups_recorded"]
    assert s["unwinding"] == "frame pointers" and s["unwind"] is None
    d = run_diagnostics(run.profile, s, None, 1.0, run.stored_diag)
    assert d["unwind"] == {"method": "not stored in this archive"}
    off = d["offcpu"]
    assert off["intervals_recorded"] and off["switch_out"] == 2
    assert off["wakeups"] == 2 and off["linked_wakeups"] == 1
