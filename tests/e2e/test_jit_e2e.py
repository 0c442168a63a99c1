"""JIT symbols end to end: node with --perf-basic-prof (a perf map) and --perf-prof (a jitdump)
recorded by stax, whose `stax top` names the hot JS function."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from harness import Stax

from stax.symbols.symbolizer import JIT_BINARY

NODE = shutil.which("node")


HOT_JS = r"""
function staxHotLoop(n) {
  let s = 0;
  for (let i = 0; i < n; i++) { s = (s + i * 7) % 1000003; }
  return s;
}
console.log("pid " + process.pid);
let t = 0;
const end = Date.now() + 2500;
while (Date.now() < end) t += staxHotLoop(200000);
console.log(t > 0 ? "done" : "none");
"""


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_e2e_node_perf_basic_prof(stax: Stax, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "hot.js"
    script.write_text(HOT_JS)
    monkeypatch.chdir(tmp_path)  # node leaves an isolate-*.log in its working directory
    r = stax("record", "--", str(NODE), "--perf-basic-prof", str(script), check=True,
             timeout=120)
    pid = next((int(line.split()[1]) for line in r.out.splitlines() if line.startswith("pid ")),
               None)
    try:
        top = stax("top", "-n", "0", "--json", check=True).json()
        rows = top["rows"]  # type: ignore[index]
        jit = [row for row in rows if "staxHotLoop" in row["func"]]
        assert jit, rows[:10]
        assert all(row["binary"] == JIT_BINARY for row in jit)
        # the hot JS function is the leaf of most samples (self time, not unwinding-dependent)
        share = sum(row["self_samples"] for row in jit) / top["total_samples"]  # type: ignore[index]
        assert share > 0.3, rows[:10]
    finally:
        if pid is not None:
            try:
                os.unlink(f"/tmp/perf-{pid}.map")
            except OSError:
                pass


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_e2e_node_perf_prof_jitdump(stax: Stax, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "hot.js"
    script.write_text(HOT_JS)
    monkeypatch.chdir(tmp_path)  # node writes jit-PID.dump into its working directory
    r = stax("record", "--", str(NODE), "--perf-prof", str(script), check=True, timeout=120)
    assert "done" in r.out
    assert list(tmp_path.glob("jit-*.dump"))
    top = stax("top", "-n", "0", "--json", check=True).json()
    rows = top["rows"]  # type: ignore[index]
    jit = [row for row in rows if "staxHotLoop" in row["func"]]
    assert jit and all(row["binary"] == JIT_BINARY for row in jit), rows[:10]
    share = sum(row["self_samples"] for row in jit) / top["total_samples"]  # type: ignore[index]
    assert share > 0.3, rows[:10]
