"""End-to-end: source file and line of real frames (split.c, built with -g) in `top --json`,
`flame --json`, the pprof export read by the real `go tool pprof`, and the gecko export; folded
--mode cpu|offcpu|wall and --per-thread on a real multi-threaded run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from consumer_helpers import go_pprof
from harness import Stax

SPLIT_C = Path(__file__).resolve().parents[2] / "workloads" / "split.c"
WORK_A_LINE = next(i for i, line in enumerate(SPLIT_C.read_text().splitlines(), 1)
                   if "unsigned long work_a(" in line)


def _folded(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        stack, n = line.rsplit(" ", 1)
        out[stack] = out.get(stack, 0) + int(n)
    return out


def _leaves(folded: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for stack, n in folded.items():
        leaf = stack.split(";")[-1]
        out[leaf] = out.get(leaf, 0) + n
    return out


def test_source_lines_in_views_pprof_and_gecko(stax: Stax, workloads: dict[str, Path],
                                               tmp_path: Path) -> None:
    stax("record", "--", str(workloads["split"]), "500", check=True)
    top = stax("top", "--json", "-n", "0", check=True).json()
    rows = {r["func"]: r for r in top["rows"]}  # type: ignore[index]
    a = rows["work_a"]
    assert a["file"] == str(SPLIT_C) and a["line"] == WORK_A_LINE, a
    assert all(r["file"] is None and r["line"] is None for r in top["rows"]  # type: ignore[index]
               if r["binary"] == "[kernel]")
    flame = stax("flame", "--json", check=True).json()
    nodes = [flame["roots"][0]]  # type: ignore[index]
    seen = {}
    while nodes:
        n = nodes.pop()
        seen[n["func"]] = (n["file"], n["line"])
        nodes.extend(n["children"])
    assert seen["work_a"] == (str(SPLIT_C), WORK_A_LINE)
    assert seen["main"][0] == str(SPLIT_C)

    # gecko: work_a's function has split.c and a first line; its frames have lines in split.c
    stax("export", "--format", "gecko", "-o", str(tmp_path / "g.json"), check=True)
    g = json.loads((tmp_path / "g.json").read_text())
    th = next(t for t in g["threads"] if t["name"].endswith("(on-CPU)")
              and t["samples"]["length"] > 100)
    strings = th["stringArray"]
    ft = th["funcTable"]
    work_a = [i for i in range(ft["length"]) if strings[ft["name"][i]] == "work_a"]
    assert work_a and all(strings[ft["fileName"][i]] == str(SPLIT_C) for i in work_a)
    assert WORK_A_LINE in [ft["lineNumber"][i] for i in work_a]
    fr = th["frameTable"]
    lines = [fr["line"][i] for i in range(fr["length"]) if fr["func"][i] in work_a]
    n_src = len(SPLIT_C.read_text().splitlines())
    assert lines and all(isinstance(x, int) and 1 <= x <= n_src for x in lines), lines

    # pprof, read by the real go tool pprof
    stax("export", "--format", "pprof", "-o", str(tmp_path / "p.pb.gz"), check=True)
    go = shutil.which("go")
    if go is None:
        pytest.skip("go (Debian golang-go) is not installed: no `go tool pprof` to check with")

    def pprof(*args: str) -> str:
        return go_pprof(tmp_path / "p.pb.gz", tmp_path, "-symbolize=none", *args, timeout=120)

    listing = pprof("-list", "^work_a$")
    assert f"ROUTINE ======================== work_a in {SPLIT_C}" in listing, listing
    assert "i < n * 6; i++) acc += i ^ (acc >> 3)" in listing, listing
    # the lines are in the profile itself: by line, work_a's hot loop
    by_line = pprof("-top", "-lines", "-nodecount=5")
    assert f"work_a {SPLIT_C}:" in by_line, by_line
    raw = pprof("-raw")
    assert f"work_a {SPLIT_C}:" in raw or f"work_a {SPLIT_C}" in raw, raw


def test_folded_modes_and_per_thread_on_a_threaded_run(stax: Stax, workloads: dict[str, Path],
                                                       tmp_path: Path) -> None:
    stax("record", "--", str(workloads["threads"]), check=True)
    top = stax("top", "--json", "-n", "0", check=True).json()
    # the folded format names an inline frame "NAME (inlined)" (ld.so inlines a few helpers)
    self_n = {r["func"] + (" (inlined)" if r.get("inlined") else ""): r["self_samples"]
              for r in top["rows"] if r["self_samples"]}  # type: ignore[index]
    cpu = _folded(stax("export", "--format", "folded", "--mode", "cpu", check=True).out)
    assert not any("[off-cpu:" in k for k in cpu)
    assert _leaves(cpu) == self_n
    assert _folded(stax("export", "--format", "folded", check=True).out) == cpu  # the default
    total = sum(cpu.values())
    burn = sum(n for k, n in cpu.items() if ";burn_cpu" in k)
    assert burn / total > 0.8, (burn, total)  # the CPU-bound thread, not diluted by waits

    off = _folded(stax("export", "--format", "folded", "--mode", "offcpu", check=True).out)
    assert off and all(k.split(";")[-1].startswith("[off-cpu:") for k in off)
    sleep_ns = sum(n for k, n in off.items() if ";sleeper;" in f";{k}"
                   and k.endswith("[off-cpu:sleep]"))
    assert 1.2e9 <= sleep_ns <= 2.5e9, sleep_ns  # 15 x 100 ms, in nanoseconds
    wall = _folded(stax("export", "--format", "folded", "--mode", "wall", check=True).out)
    assert set(wall) == set(cpu) | set(off)

    threads = stax("threads", "--json", "-n", "0", check=True).json()
    tid = {r["name"]: r["tid"] for r in threads["rows"]}  # type: ignore[index]
    per = _folded(stax("export", "--format", "folded", "--per-thread", check=True).out)
    crunch = f"cruncher ({tid['cruncher']});"
    assert any(k.startswith(crunch) and ";burn_cpu" in k for k in per), list(per)[:5]
    assert sum(per.values()) == total
    assert {k.split(";", 1)[1] for k in per} == set(cpu)

    for fmt in ("pprof", "speedscope", "gecko"):
        for flag in (("--mode", "offcpu"), ("--per-thread",)):
            r = stax("export", "--format", fmt, *flag, "-o", str(tmp_path / "x"))
            assert r.code == 1 and r.err.startswith(f"error: {flag[0]} applies to --format "
                                                    "folded only"), r.err
            assert "Traceback" not in r.err
    r = stax("export", "--format", "folded", "--mode", "both")
    assert r.code != 0 and "invalid choice" in r.err


def test_folded_cpu_shares_match_top_on_split(stax: Stax, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["split"]), "500", check=True)
    top = stax("top", "--json", "-n", "0", check=True).json()
    rows = {r["func"]: r for r in top["rows"]}  # type: ignore[index]
    cpu = _leaves(_folded(stax("export", "--format", "folded", "--mode", "cpu",
                               check=True).out))
    total = sum(cpu.values())
    assert total == top["total_samples"]  # type: ignore[index]
    share = 100.0 * cpu["work_a"] / total
    assert share == pytest.approx(rows["work_a"]["self_pct"], abs=0.01)
    assert abs(share - 60) <= 4, share  # the workload's split, give or take a loaded CPU
