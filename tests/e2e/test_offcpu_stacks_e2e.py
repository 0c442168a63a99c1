"""End-to-end: waker stacks DWARF-unwound through code without frame pointers, and blocking
stacks cut short by their stack copy marked ``[truncated]`` and counted in diagnose."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import Stax

pytestmark = pytest.mark.skipif(
    not os.path.exists("/sys/kernel/tracing/events/sched/sched_switch")
    and os.geteuid() != 0,
    reason="no tracefs and not root: scheduler tracepoints unavailable on this host")

# a thread that sleeps 30 calls deep, each through C (map): a native blocking stack far beyond
# the 2 KiB copy (CPython 3.11 runs plain Python-to-Python calls without growing the C stack)
DEEP = """
import time
def down(n):
    return list(map(down, [n - 1]))[0] if n else time.sleep(0.3)
for _ in range(3):
    down(30)
"""


def _walk(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    here = path + (node["func"],)
    kids = node.get("children") or []
    return [here] if not kids else [p for k in kids for p in _walk(k, here)]


def test_waker_stacks_reach_the_waker_without_frame_pointers(
        stax: Stax, workloads: dict[str, Path]) -> None:
    run = stax("record", "--json", "--", str(workloads["threads_nofp"]), check=True,
               timeout=60).json()
    assert run["offcpu"]["wakeups_recorded"], run["notes"]  # type: ignore[index]
    rows = stax("wakers", "--json", "-n", "0", check=True).json()["rows"]  # type: ignore
    edge = [r for r in rows if r["waker"] == "holder" and r["wakee"] == "waiter"]
    assert edge, rows
    funcs = [f["func"] for f in edge[0]["stack"]]
    # kernel frames, the unlock in libc, then the waker's own function and its thread entry
    assert "holder" in funcs and "[truncated]" not in funcs, funcs
    diag = stax("diagnose", "--json", check=True).json()["run"]["unwind"]  # type: ignore
    assert diag["waker_stacks"]["walks"] >= 1, diag


def test_blocking_stacks_cut_short_are_marked_truncated(stax: Stax, tmp_path: Path) -> None:
    script = tmp_path / "deep.py"
    script.write_text(DEEP)
    run = stax("record", "--json", "--no-python", "--", sys.executable, str(script), check=True,
               timeout=60).json()
    assert run["offcpu"]["intervals_recorded"], run["notes"]  # type: ignore[index]
    flame = stax("flame", "--mode", "offcpu", "--json", check=True).json()
    paths = [p for r in flame["roots"] for p in _walk(r)]  # type: ignore[index]
    cut = [p for p in paths if "[truncated]" in p]
    assert cut, paths[:5]
    assert all(p.index("[truncated]") == 0 for p in cut), cut[:3]  # the root frame
    text = stax("diagnose", check=True).out
    line = [ln for ln in text.splitlines() if ln.strip().startswith("blocking stacks:")]
    assert line and "marked [truncated] (stack copy exhausted" in line[0], text
    uw = stax("diagnose", "--json", check=True).json()["run"]["unwind"]  # type: ignore
    bs = uw["blocking_stacks"]
    assert bs["cut_short"] >= 1 and bs["truncated_by_reason"], bs
