"""Python functions on hand-built tables (frames interned as stax.profile.pymerge interns them,
in a real .py file): annotate's lines with their samples, file and line in the views and in
the exports (pprof, speedscope, gecko), the Python flag through archives and the journal's
rows, the source lines kept by ``save --with-code``; function extents from ``ast``."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from archive_helpers import RUN, pb_decode

from stax.archive.export import converter
from stax.archive.format import func_of_row, func_row, load, save
from stax.profile import annotate as ann
from stax.profile import views
from stax.profile.access import Owner
from stax.profile.framelines import FrameLines
from stax.profile.model import Func
from stax.profile.pyannotate import function_lines
from stax.profile.pymerge import PyMerge
from stax.profile.selection import Filter
from stax.profile.tables import Profile, Thread
from stax.pystacks.reader import PyFrame

SOURCE = '''import time


def inner(n):
    x = 0
    for i in range(n):
        x += i
    return x


@staticmethod
def outer():
    total = 0
    total += inner(10)
    return total


outer()
'''
INNER, OUTER, DECORATED = 4, 13, 11  # inner's def, outer's def, outer's first line
LOOP, BODY, CALL = 6, 7, 14  # lines of inner's loop and its body, outer's call of inner


class _Watch:
    pid = 10
    interpreter = None
    sampler = None


def _profile(src: Path) -> tuple[Profile, dict[str, int]]:
    """Samples: 6 in inner's body, 2 on its loop line (a native leaf under it: the interpreter
    at work), 1 in outer on its call line with a native leaf, 1 in <module> only."""
    p = Profile(None)
    p.owner = Owner.of_pid(os.getpid())  # the program's ids: ours (sources are read for them)
    m = PyMerge(_Watch())  # type: ignore[arg-type]
    path = str(src)

    def py(name: str, line: int, first: int) -> int:
        return m._frame(p, PyFrame(name, path, line, first, False, 0))

    libc = p.binary_id("/lib/libc.so.6", "aa", 10)
    native = p.frame_id(libc, 0x40)
    p.frame_func[native] = len(p.funcs)
    p.funcs.append(Func("memcpy", "libc.so.6", "/lib/libc.so.6", 0x40, 8, True))
    module = py("<module>", 18, 1)
    call = py("outer", CALL, DECORATED)
    spec = [([py("inner", BODY, INNER), call, module], 6),
            ([native, py("inner", LOOP, INNER), call, module], 2),
            ([native, call, module], 1),
            ([module], 1)]
    t = 1_000_000_000
    for frames, n in spec:
        sid = -1
        for fid in reversed(frames):
            sid = p.stack_id(sid, fid)
        for _ in range(n):
            p.s_time.append(t)
            p.s_tid.append(7)
            p.s_stack.append(sid)
            p.s_weight.append(1_000_000)
            p.s_cpu.append(0)
            t += 1_000_000
    p.threads[7] = Thread(10, 7, [(0, "python3")], 1_000_000_000, t)
    p.first_time, p.last_time = 1_000_000_000, t - 1_000_000
    p.counts["samples"] = 10
    return p, {"module": module, "call": call}


def test_function_lines_from_the_source() -> None:
    text = SOURCE.splitlines()
    assert function_lines(text, "inner", INNER) == (INNER, 8)
    assert function_lines(text, "outer", DECORATED) == (DECORATED, 15)  # from the decorator
    assert function_lines(text, "<module>", 1) == (1, len(text))
    assert function_lines(text, "inner", 5) is None  # no definition starts there
    assert function_lines(["def ("], "f", 1) is None


def test_annotate_a_python_function_by_its_lines(tmp_path: Path) -> None:
    src = tmp_path / "app.py"
    src.write_text(SOURCE)
    p, _ = _profile(src)
    res = ann.annotate(p, Filter(), "inner")
    fn = res["function"]
    assert res["language"] == "python" and fn["language"] == "python"
    assert (fn["path"], fn["first_line"], fn["last_line"]) == (str(src), INNER, 8)
    assert res["python_self_samples"] == 8 and res["total_samples_in_function"] == 8
    assert res["self_samples"] == 6  # as the leaf frame (top's self)
    lines = {r["line"]: r for r in res["lines"]}
    assert list(lines) == list(range(INNER, 9))
    assert lines[INNER]["text"] == "def inner(n):"
    assert (lines[BODY]["samples"], lines[LOOP]["samples"]) == (6, 2)
    assert lines[BODY]["pct"] == 75.0 and not lines[INNER]["samples"]
    assert res["placed_samples"] == 8 and res["unplaced_samples"] == 0 and res["note"] is None
    assert [s["line"] for s in res["sources"]] == [LOOP, BODY]
    # outer: 1 sample its own (the native code under its call line), 9 with inner's included
    out = ann.annotate(p, Filter(), "outer", exact=True)
    rows = {r["line"]: r for r in out["lines"]}
    assert out["function"]["first_line"] == DECORATED and rows[DECORATED]["text"] == \
        "@staticmethod"
    assert (rows[CALL]["samples"], rows[CALL]["total_samples"]) == (1, 9)
    assert out["python_self_samples"] == 1
    # filters apply
    assert ann.annotate(p, Filter(tid=99), "inner")["function"] is None
    # no address matches a Python function (its addr is a line number)
    assert ann.annotate(p, Filter(), hex(INNER))["function"] is None
    # a source file gone: the lines, without their text, and why
    src.unlink()
    gone = ann.annotate(p, Filter(), "inner")
    assert gone["note"] == f"{src}: cannot read the source file"
    assert [r["line"] for r in gone["lines"]] == list(range(INNER, BODY + 1))  # as sampled
    assert all(r["text"] is None for r in gone["lines"])


def test_file_and_line_in_views_and_exports(tmp_path: Path) -> None:
    src = tmp_path / "app.py"
    src.write_text(SOURCE)
    p, fids = _profile(src)
    lines = FrameLines(p)
    assert lines.frame(fids["call"]) == (str(src), CALL)
    assert lines.frame(fids["call"], ret=True) == (str(src), CALL)  # the line it runs already
    inner = next(i for i, f in enumerate(p.funcs) if f.name == "inner")
    assert lines.func(inner) == (str(src), INNER)
    rows = {r["func"]: r for r in views.top(p, Filter(), sort="total", limit=0)["rows"]}
    assert (rows["inner"]["file"], rows["inner"]["line"]) == (str(src), INNER)
    assert (rows["outer"]["binary"], rows["outer"]["line"]) == ("app.py", DECORATED)
    assert rows["memcpy"]["file"] is None

    # pprof: each Python function's Function has the .py file and its first line, each
    # Location the line it ran
    prof = pb_decode(gzip.decompress(converter("pprof")(p)))
    strings = [s.decode() for s in prof[6]]
    functions = {}
    for raw in prof[5]:
        f = pb_decode(raw)
        functions[f[1][0]] = (strings[f[2][0]], strings[f.get(4, [0])[0]], f.get(5, [0])[0])
    assert functions and ("inner", str(src), INNER) in functions.values()
    located = set()
    for raw in prof[4]:
        loc = pb_decode(raw)
        line = pb_decode(loc[4][-1])
        name, file, _first = functions[line[1][0]]
        if file == str(src):
            located.add((name, line[2][0]))
    assert {("inner", BODY), ("inner", LOOP), ("outer", CALL), ("<module>", 18)} <= located

    # speedscope: the frame of a Python function names its file and first line
    doc = json.loads(converter("speedscope")(p, run=RUN))
    frames = {f["name"]: f for f in doc["shared"]["frames"]}
    assert frames["inner (app.py)"] == {"name": "inner (app.py)", "file": str(src),
                                        "line": INNER}
    assert "line" not in frames["memcpy (libc.so.6)"]

    # gecko: the .py file and first line in the funcTable, the lines in the frameTable, the
    # frames in the Python category
    g = json.loads(converter("gecko")(p, run=RUN))
    cat = [c["name"] for c in g["meta"]["categories"]].index("Python")
    th = g["threads"][0]
    s, ft, fr = th["stringArray"], th["funcTable"], th["frameTable"]
    fi = next(i for i in range(ft["length"]) if s[ft["name"][i]] == "inner")
    assert (s[ft["fileName"][fi]], ft["lineNumber"][fi]) == (str(src), INNER)
    got = {(fr["line"][i], fr["category"][i]) for i in range(fr["length"])
           if fr["func"][i] == fi}
    assert got == {(BODY, cat), (LOOP, cat)}


def test_python_functions_through_archives_and_journal_rows(tmp_path: Path) -> None:
    src = tmp_path / "app.py"
    src.write_text(SOURCE)
    p, _ = _profile(src)
    f = next(f for f in p.funcs if f.name == "inner")
    assert func_of_row(func_row(f)) == f and f.python and f.addr == INNER
    native = Func("memcpy", "libc.so.6", "/lib/libc.so.6", 0x40, 8, True)
    assert func_row(native) == ["memcpy", "libc.so.6", "/lib/libc.so.6", 0x40, 8, True]
    inl = Func("helper", "prog", "/bin/prog", 0, 0, True, True)
    assert func_row(inl)[6:] == [True] and func_of_row(func_row(inl)) == inl
    # rows written before the flags existed read as native, not inlined
    assert func_of_row(["f", "b", "/b", 1, 2, True]) == Func("f", "b", "/b", 1, 2, True)

    save(p, str(tmp_path / "plain.stax"), RUN)
    save(p, str(tmp_path / "code.stax"), RUN, with_code=True)
    src.rename(tmp_path / "moved.py")
    plain = load(str(tmp_path / "plain.stax")).profile
    res = ann.annotate(plain, Filter(), "inner")
    assert res["language"] == "python" and res["python_self_samples"] == 8
    assert all(r["text"] is None for r in res["lines"])  # the file is gone
    rows = {r["func"]: r for r in views.top(plain, Filter(), sort="total", limit=0)["rows"]}
    assert (rows["inner"]["file"], rows["inner"]["line"]) == (str(src), INNER)
    # saved with its code: the function's lines come from the archive
    kept = load(str(tmp_path / "code.stax")).profile
    res = ann.annotate(kept, Filter(), "inner")
    texts = {r["line"]: r["text"] for r in res["lines"]}
    assert texts[INNER] == "def inner(n):" and texts[BODY] == "        x += i"
    assert (res["function"]["first_line"], res["function"]["last_line"]) == (INNER, 8)
    assert res["note"] == f"{src}: source lines from the archive (saved with the code)"
