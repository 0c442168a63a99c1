"""End-to-end: inline frames in Debian's own CPython interpreter (/usr/bin/python3.11, -O2 with
LTO; its DWARF ships in the separate debug file of the python3.11-dbg package under
/usr/lib/debug/.build-id/) running a json/dict-heavy workload; compared with
``perf report --call-graph dwarf`` where perf is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from harness import ROOT, Stax

from stax.symbols import find_debug_file, read_build_id

PYTHON = "/usr/bin/python3.11"
WORKLOAD = str(ROOT / "tests/workloads/jsondicts.py")
# suffixes GCC gives to local clones; perf marks such a function "(inlined)" under its DWARF
# name (pyrun_file for pyrun_file.lto_priv.0) although it is a real frame
_CLONE = re.compile(r"(\.(lto_priv|isra|constprop|part|cold|localalias)(\.\d+)?)+$")


@pytest.fixture(scope="module")
def python_dbg() -> str:
    if not Path(PYTHON).exists():
        pytest.skip(f"{PYTHON} is not installed (Debian package python3.11)")
    bid = read_build_id(PYTHON)
    dbg = find_debug_file(PYTHON, bid, want="separate", fetch=False)
    if dbg is None:
        pytest.skip(f"no debug info for {PYTHON} (build-id {bid}): install the Debian package "
                    "python3.11-dbg of the same version as python3.11")
    return dbg


def _walk(node: dict, prefix: tuple = ()) -> list[tuple[tuple, int]]:
    """(path of (func, binary, inlined) from the root, self samples) for every node."""
    here = (*prefix, (node["func"], node.get("binary"), bool(node.get("inlined"))))
    kids = node.get("children") or []
    own = node["samples"] - sum(k["samples"] for k in kids)
    return [(here, own)] + [p for k in kids for p in _walk(k, here)]


def _inlined_names(nodes: list[tuple[tuple, int]]) -> set[str]:
    return {f[0] for path, _ in nodes for f in path if f[2]}


def test_cpython_inline_frames(stax: Stax, python_dbg: str) -> None:
    stax("record", "--no-python", "--", PYTHON, WORKLOAD, "1.5", check=True)
    top = stax("top", "--json", "-n", "0", check=True).json()
    rows = top["rows"]  # type: ignore[index]
    inlined_rows = [r for r in rows if r.get("inlined")]
    assert inlined_rows, rows[:10]
    # in this interpreter the allocator, refcounting and dict lookups are mostly inlined code
    assert sum(r["self_pct"] for r in inlined_rows) > 20, inlined_rows[:10]
    assert "(inlined)  (python3.11)" in stax("top", check=True).out

    flame = stax("flame", "--json", "-d", "1000", "--threshold-pct", "0", check=True).json()
    nodes = [n for r in flame["roots"] for n in _walk(r)]  # type: ignore[index]
    paths = [p for p, _ in nodes]
    # every Python-level call: PyEval_EvalCode -> _PyEval_Vector (inlined) ->
    # _PyEval_EvalFrame (inlined) -> _PyEval_EvalFrameDefault, as perf shows it
    eval_path = [("_PyEval_Vector", "python3.11", True), ("_PyEval_EvalFrame", "python3.11", True),
                 ("_PyEval_EvalFrameDefault", "python3.11", False)]
    assert any(tuple(p[i:i + 3]) == tuple(eval_path) for p in paths for i in range(len(p))), \
        [p for p in paths if "_PyEval_EvalFrameDefault" in str(p)][:3]
    # inlined frames under the interpreter loop (its callees' inlined helpers)
    under_eval = {f[0] for p in paths for i, g in enumerate(p)
                  if g[0] == "_PyEval_EvalFrameDefault" for f in p[i + 1:] if f[2]}
    assert len(under_eval) >= 5, under_eval
    # the gc pass of gc.collect(): its phases (gc_reset_refs, update_refs, ...) are inlined
    in_gc = [(p, n) for p, n in nodes if p[-1][0].startswith("gc_collect_main")]
    gc_samples = sum(n for p, n in nodes if any(f[0].startswith("gc_collect_main") for f in p))
    if gc_samples >= 5:
        gc_inl = {f[0] for p, _ in nodes for i, g in enumerate(p)
                  if g[0].startswith("gc_collect_main") for f in p[i + 1:] if f[2]}
        assert gc_inl, in_gc

    # --no-inline folds them back: no inlined rows or frames
    folded = stax("top", "--json", "-n", "0", "--no-inline", check=True).json()
    frows = folded["rows"]  # type: ignore[index]
    assert not any(r.get("inlined") for r in frows), frows[:5]
    assert "(inlined)" not in stax("flame", "--no-inline", "-d", "1000", "--threshold-pct", "0",
                                   check=True).out
    assert folded["total_samples"] == top["total_samples"]  # type: ignore[index]

    # self time of each real function = what the inline expansion puts in it and its inlined
    # callees: the top non-inlined functions keep their self shares exactly
    regrouped: Counter[tuple[str, str | None]] = Counter()
    for path, own in nodes:
        if own:
            real = next(f for f in reversed(path) if not f[2])
            regrouped[(real[0], real[1])] += own
    for r in frows[:15]:
        assert regrouped[(r["func"], r["binary"])] == r["self_samples"], (r, regrouped)


def _perf_inlined(tmp: Path) -> set[str] | None:
    perf = shutil.which("perf")
    if perf is None:
        return None
    data = tmp / "perf.data"
    rec = subprocess.run([perf, "record", "-q", "-o", str(data), "--call-graph", "dwarf",
                          "-F", "900", "--", PYTHON, WORKLOAD, "1.5"],
                         capture_output=True, text=True, timeout=120)
    if rec.returncode != 0 or not data.exists():
        return None
    rep = subprocess.run([perf, "report", "-i", str(data), "--stdio", "--no-children"],
                         capture_output=True, text=True, timeout=300)
    if rep.returncode != 0:
        return None
    return set(re.findall(r"([A-Za-z_][A-Za-z_0-9.]*) \(inlined\)", rep.stdout))


def test_cpython_inline_names_match_perf(stax: Stax, python_dbg: str, tmp_path: Path) -> None:
    perf_names = _perf_inlined(tmp_path)
    if perf_names is None:
        pytest.skip("perf (Debian package linux-perf) is not installed or cannot record here")
    stax("record", "--no-python", "--", PYTHON, WORKLOAD, "1.5", check=True)
    flame = stax("flame", "--json", "-d", "1000", "--threshold-pct", "0", check=True).json()
    nodes = [n for r in flame["roots"] for n in _walk(r)]  # type: ignore[index]
    ours = _inlined_names(nodes)
    real = {_CLONE.sub("", f[0]) for p, _ in nodes for f in p if not f[2]}
    # names perf marks inlined only because the real symbol has a clone suffix are real frames
    # in stax too: leave them out of the comparison
    theirs = {n for n in perf_names if n not in real or n in ours}
    common = ours & theirs
    overlap = len(common) / max(1, len(theirs))
    print(f"inlined functions: perf {len(theirs)}, stax {len(ours)}, common {len(common)} "
          f"({overlap:.0%} of perf's); perf only: {sorted(theirs - ours)}")
    # the frames on every sample's path agree; the rest depend on where the samples fell
    assert {"_PyEval_Vector", "_PyEval_EvalFrame", "pymain_run_python"} <= common, \
        (sorted(theirs), sorted(ours))
    assert overlap >= 0.5, (sorted(theirs - ours), sorted(common))
