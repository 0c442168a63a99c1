"""End-to-end: the .py file and line of Python frames of a real CPython run. ``stax annotate``
on a Python function lists the lines of its .py file with their samples (the hot loop line
holds most; the functions' own samples in the shares the program measures); ``top`` and
``flame`` give the file and first line; the pprof export read by the real ``go tool pprof``
lists the function's source with per-line samples; the gecko export loaded by the Firefox
Profiler's CLI annotates the function's lines; the speedscope export (checked against
speedscope's schema) carries file and line; an archive saved with its code annotates the lines
after the file is gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from consumer_helpers import ProfilerCli, go_pprof, profiler_cli_problem, speedscope_schema
from harness import Stax
from python_helpers import PYTHONS, measured, walk, workload

pytestmark = pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11-3.13 here")
FUNCS = ("heavy", "medium", "light")


def _line_of(path: Path, text: str) -> int:
    return next(i for i, s in enumerate(path.read_text().splitlines(), 1) if text in s)


def test_python_lines_in_annotate_views_and_exports(stax: Stax, tmp_path: Path) -> None:
    prog = tmp_path / "pysplit.py"
    shutil.copy(workload("pysplit.py"), prog)
    src = prog.read_text().splitlines()
    first = _line_of(prog, "def heavy(")
    loop, body = first + 2, first + 3  # for i in range(n): / x += i * i % 7
    assert "x += i * i % 7" in src[body - 1]
    r = stax("record", "--", PYTHONS[0].path, str(prog), "3", check=True, timeout=90)
    want = measured(r.err)

    # annotate, text: the function's lines with their samples, the loop's body the hottest
    text = stax("annotate", "heavy", check=True).out
    assert f"-> heavy at pysplit.py:{first} (Python;" in text, text
    assert f"source from {prog}, lines {first}-{first + 4}" in text, text
    hot = next(x for x in text.splitlines() if x.rstrip().endswith("x += i * i % 7"))
    assert hot.split()[0].isdigit() and int(hot.split()[0]) > 100, text
    # --json: every line of the function with its text; the samples add up
    own: dict[str, int] = {}
    for f in FUNCS:
        res = stax("annotate", f, "--json", check=True).json()
        fn = res["function"]
        assert res["language"] == "python" and fn["path"] == str(prog), fn
        lines = res["lines"]
        assert [x["line"] for x in lines] == list(range(fn["first_line"], fn["first_line"] + 5))
        assert [x["text"] for x in lines] == src[fn["first_line"] - 1:fn["first_line"] + 4]
        assert sum(x["samples"] for x in lines) == res["python_self_samples"]
        assert res["unplaced_samples"] == 0 and res["note"] is None
        own[f] = res["python_self_samples"]
        if f == "heavy":
            by = {x["line"]: x["samples"] for x in lines}
            assert by[loop] + by[body] >= 0.95 * res["python_self_samples"], by
            assert by[body] >= 0.5 * res["python_self_samples"], by
            assert all(x["total_samples"] == x["samples"] for x in lines)  # a leaf function
    total = sum(own.values())
    print("measured", want, "annotate", {f: round(100 * own[f] / total, 1) for f in FUNCS})
    for f in FUNCS:
        assert abs(100 * own[f] / total - want[f]) <= 6, (own, want)
    # views: file and first line
    rows = {x["func"]: x for x in stax("top", "--json", "-n", "0", "--sort", "total",
                                      check=True).json()["rows"]}
    assert (rows["heavy"]["file"], rows["heavy"]["line"]) == (str(prog), first)
    # <module>'s line calling heavy: the samples of heavy under it (give or take a few
    # snapshots taken as a call began or ended, whose caller's line was not updated yet)
    module = stax("annotate", "<module>", "--json", check=True).json()
    assert module["function"]["first_line"] == 1
    calls = {x["line"]: x for x in module["lines"]}[_line_of(prog, "heavy(6 * UNIT)")]
    under = calls["total_samples"] - calls["samples"]
    print("module lines", {x["line"]: x["total_samples"] for x in module["lines"]
                           if x["total_samples"]}, "heavy", rows["heavy"]["total_samples"])
    assert abs(under - rows["heavy"]["total_samples"]) <= 0.02 * rows["heavy"]["total_samples"]
    flame = stax("flame", "--json", "-d", "100", check=True).json()
    nodes = [n for n, _ in walk(flame["roots"]) if n["func"] == "heavy"]
    assert nodes and all((n["file"], n["line"]) == (str(prog), first) for n in nodes)

    # gecko: the funcTable's file and first line, the frames' lines, the Python category
    stax("export", "--format", "gecko", "-o", str(tmp_path / "g.json"), check=True)
    g = json.loads((tmp_path / "g.json").read_text())
    cat = [c["name"] for c in g["meta"]["categories"]].index("Python")
    th = max((t for t in g["threads"] if t["name"].endswith("(on-CPU)")),
             key=lambda t: t["samples"]["length"])
    s, ft, fr = th["stringArray"], th["funcTable"], th["frameTable"]
    heavy = [i for i in range(ft["length"]) if s[ft["name"][i]] == "heavy"]
    assert heavy and all((s[ft["fileName"][i]], ft["lineNumber"][i]) == (str(prog), first)
                         for i in heavy)
    got = {(fr["line"][i], fr["category"][i]) for i in range(fr["length"])
           if fr["func"][i] in heavy}
    assert {(loop, cat), (body, cat)} <= got, got

    _firefox_profiler(tmp_path, prog, first, body)

    # speedscope: the Python function's frame names its file and first line
    stax("export", "--format", "speedscope", "-o", str(tmp_path / "s.json"), check=True)
    doc = json.loads((tmp_path / "s.json").read_text())
    assert {"name": "heavy (pysplit.py)", "file": str(prog), "line": first} in doc["shared"][
        "frames"]
    schema = speedscope_schema()  # speedscope's own, where `make npmdeps` installed it
    if schema is not None:
        import jsonschema

        jsonschema.validate(doc, schema)

    # an archive saved with its code annotates the lines once the file is gone
    stax("save", "--with-code", str(tmp_path / "run.stax"), check=True)
    prog.rename(tmp_path / "gone.py")
    stax("open", str(tmp_path / "run.stax"), check=True)
    res = stax("annotate", "heavy", "--json", check=True).json()
    assert res["run"]["archive"], res["run"]
    assert [x["text"] for x in res["lines"]] == src[first - 1:first + 4], res["lines"]
    assert res["python_self_samples"] == own["heavy"]
    prog.with_name("gone.py").rename(prog)

    # pprof, read by the real go tool pprof: the function's source with its lines' samples
    stax("export", "--format", "pprof", "-o", str(tmp_path / "p.pb.gz"), check=True)
    _go_pprof(tmp_path, prog, first, body)


def _firefox_profiler(tmp: Path, prog: Path, first: int, body: int) -> None:
    """The gecko export loaded by the Firefox Profiler's own CLI: the Python category, and its
    source annotation of heavy (the .py file; the loop's body the hottest of heavy's lines)."""
    if profiler_cli_problem(tmp) is not None:
        return
    cli = ProfilerCli(tmp)
    try:
        cli.load(tmp / "g.json")
        thread = next(t["threadHandle"] for t in cli.json("thread", "list")["threads"]
                      if t["name"].endswith("(on-CPU)"))
        got = cli.json("thread", "samples", "--thread", thread)
        cats = {c["name"]: c["samples"] for c in got["categoryBreakdown"]["categories"]}
        assert cats.get("Python", 0) > 0, cats
        fn = next(f["functionHandle"] for f in got["topFunctionsByTotal"]
                  if f["name"].endswith("!heavy") or f["name"] == "heavy")
        ann = cli.json("function", "annotate", fn)["srcAnnotation"]
        assert ann["filename"] == str(prog), ann
        own = {x["lineNumber"]: x["selfSamples"] for x in ann["lines"]
               if first <= x["lineNumber"] <= first + 4}
        assert max(own, key=lambda k: own[k]) == body, own
    finally:
        cli.close()


def _go_pprof(tmp: Path, prog: Path, first: int, body: int) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go (Debian golang-go) is not installed: no `go tool pprof` to check with")

    def pprof(*args: str) -> str:
        return go_pprof(tmp / "p.pb.gz", tmp, "-symbolize=none", *args)

    listing = pprof("-list", "^heavy$")
    assert f"ROUTINE ======================== heavy in {prog}" in listing, listing
    rows: dict[int, Any] = {}
    for x in listing.splitlines():
        parts = x.split(None, 2)
        if len(parts) == 3 and parts[2].split(":", 1)[0].isdigit():
            rows[int(parts[2].split(":", 1)[0])] = (parts[0], x)
    assert f"{first}:def heavy(n):" in rows[first][1], listing
    assert rows[body][0] != "." and "x += i * i % 7" in rows[body][1], listing
    by_line = pprof("-top", "-lines", "-nodecount=10")
    assert f"heavy {prog}:{body}" in by_line, by_line
