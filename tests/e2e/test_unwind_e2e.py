"""End-to-end: DWARF unwinding recovers whole stacks of real programs built without frame
pointers (C, C++, Rust, CPython), and its early stops are counted and reported."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, Stax


def _paths(stax: Stax, *extra: str) -> list[tuple[list[str], int]]:
    """Every root-to-leaf path of the recorded call tree with the samples that end there."""
    res: Any = stax("flame", "--json", "-d", "1000", "--threshold-pct", "0", *extra,
                    check=True).json()
    out: list[tuple[list[str], int]] = []

    def visit(node: dict[str, Any], prefix: list[str]) -> None:
        path = [*prefix, node["func"]]
        below = sum(c["samples"] for c in node.get("children", []))
        if node["samples"] > below:
            out.append((path, node["samples"] - below))
        for c in node.get("children", []):
            visit(c, path)

    for root in res["roots"]:
        visit(root, [])
    return out


def _share(paths: list[tuple[list[str], int]], hot: str, *needed: str) -> tuple[float, int]:
    """Among samples with ``hot`` on the stack, the fraction that also have every name in
    ``needed`` above it; and how many samples had ``hot``."""
    with_hot = [(p, n) for p, n in paths if hot in p]
    total = sum(n for _p, n in with_hot)
    ok = sum(n for p, n in with_hot if all(x in p[:p.index(hot)] for x in needed))
    return (ok / total if total else 0.0), total


def _reach_main_pct(stax: Stax) -> float:
    res: Any = stax("top", "--json", "--sort", "total", "-n", "0", check=True).json()
    main = [r for r in res["rows"] if r["func"] == "main"]
    return 100.0 * main[0]["total_samples"] / res["total_samples"] if main else 0.0


def _diag(stax: Stax) -> dict[str, Any]:
    return stax("diagnose", "--json", check=True).json()["run"]  # type: ignore[index,return-value]


def test_qsortcb_without_frame_pointers_reaches_main(stax: Stax,
                                                     workloads: dict[str, Path]) -> None:
    r = stax("record", "--", str(workloads["qsortcb_nofp"]), "12", check=True)
    assert "cut short" not in r.err
    dwarf_pct = _reach_main_pct(stax)
    run = _diag(stax)
    assert run["unwinding"] == "dwarf"
    assert run["unwind"]["walks"] == run["samples"] > 100
    assert dwarf_pct >= 99.0, run["unwind"]
    share, n = _share(_paths(stax), "slow_cmp", "main", "qsort_r")
    assert n > 50 and share >= 0.99

    stax("record", "--no-dwarf-unwind", "--", str(workloads["qsortcb_nofp"]), "12", check=True)
    fp_pct = _reach_main_pct(stax)
    run = _diag(stax)
    assert run["unwinding"] == "frame pointers"
    assert run["capture"]["unwinding"].startswith("frame pointers")
    assert run["unwind"] == {"method": "frame pointers"}
    assert fp_pct < 50.0 and fp_pct < dwarf_pct - 40, (fp_pct, dwarf_pct)


def test_env_switches_dwarf_off(stax: Stax, workloads: dict[str, Path]) -> None:
    env = dict(stax.env, STAX_DWARF_UNWIND="0")
    p = subprocess.run([stax.exe, "record", "--", str(workloads["spin_nofp"]), "0.3"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    st: Any = stax("status", "--json", check=True).json()
    assert st["current"]["unwinding"] == "frame pointers"
    assert "unwinding: frame pointers" in stax("status", check=True).out
    text = stax("diagnose", check=True).out
    assert "unwind: frame pointers only" in text


def test_hot_loop_in_signal_handler(stax: Stax, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["unwindcases_nofp"]), "signal", "1000", check=True)
    share, n = _share(_paths(stax), "spin_in_handler", "main", "raise")
    assert n > 50 and share >= 0.99


def test_noreturn_call_keeps_its_caller(stax: Stax, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["unwindcases_nofp"]), "noreturn", "1000", check=True)
    paths = _paths(stax)
    share, n = _share(paths, "spin_forever_then_exit", "main", "dispatch")
    assert n > 50 and share >= 0.99
    # the caller is found although its return address is past its last instruction
    for p, _n in paths:
        if "spin_forever_then_exit" in p:
            i = p.index("spin_forever_then_exit")
            assert p[i - 1] == "dispatch", p


def test_forty_deep_recursion(stax: Stax, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["unwindcases_nofp"]), "recurse", "1000", check=True)
    paths = _paths(stax)
    share, n = _share(paths, "burn", "main", "recurse")
    assert n > 50 and share >= 0.99
    depths = {p.count("recurse") for p, _n in paths if "burn" in p}
    assert depths == {41}


def test_walks_cut_short_are_counted_and_warned(stax: Stax,
                                                workloads: dict[str, Path]) -> None:
    # 600 frames of ~140 bytes: far more than the stack copy holds
    r = stax("record", "--", str(workloads["unwindcases_nofp"]), "recurse", "600", "600",
             check=True)
    assert "cut short by the DWARF unwinder" in r.err, r.err
    run = _diag(stax)
    uw = run["unwind"]
    assert uw["cut_short"] > 0.5 * uw["walks"]
    assert any(s["binary"] == "unwindcases_nofp" and s["reason"] == "stack copy exhausted"
               for s in uw["stops"]), uw["stops"]
    text = stax("diagnose", check=True).out
    assert "stopped early in unwindcases_nofp: stack copy exhausted" in text
    assert "unwinding by DWARF" in text


def test_attach_unwinds_a_running_process(stax: Stax, workloads: dict[str, Path]) -> None:
    target = subprocess.Popen([str(workloads["qsortcb_nofp"]), "1000"],
                              stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        stax("record", "--pid", str(target.pid), "-l", "1.5", check=True)
    finally:
        target.kill()
        target.wait()
    share, n = _share(_paths(stax), "slow_cmp", "main", "qsort_r")
    assert n > 50 and share >= 0.99


def test_cxx_template_method_without_frame_pointers(stax: Stax, tmp_path: Path) -> None:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path / "template"
    subprocess.run([gxx, "-O2", "-g", "-fomit-frame-pointer", "-o", str(exe),
                    str(ROOT / "tests/workloads/template.cpp")], check=True)
    stax("record", "--", str(exe), "12000", check=True)
    share, n = _share(_paths(stax), "ns::Type<int>::method(int)", "main")
    assert n > 50 and share >= 0.99


def test_rust_release_binary(stax: Stax, tmp_path: Path) -> None:
    rustc = shutil.which("rustc") or str(Path.home() / ".cargo/bin/rustc")
    if not Path(rustc).exists():
        pytest.skip("rustc is not installed")
    exe = tmp_path / "hot"
    subprocess.run([rustc, "-O", "-C", "force-frame-pointers=no", "-o", str(exe),
                    str(ROOT / "tests/workloads/hot.rs")], check=True)
    stax("record", "--", str(exe), "1200", check=True)
    share, n = _share(_paths(stax), "hot::hot::burn", "main", "hot::main")
    assert n > 50 and share >= 0.99


def _python311() -> str | None:
    """The real CPython 3.11 executable (not a launcher script that execs it)."""
    exe = shutil.which("python3.11")
    if exe is None:
        return None
    p = subprocess.run([exe, "-c", "import sys; print(sys.executable)"], capture_output=True,
                       text=True)
    return p.stdout.strip() or None if p.returncode == 0 else None


_PY_LOOP = """
import sys, time
def work(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s
def level(d):
    if d:  # through map(), so each level is a C-level recursion of the interpreter
        return list(map(level, [d - 1]))[0]
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        work(5000)
    return 0
level(int(sys.argv[1]))
"""


@pytest.mark.parametrize("depth", [0, 30])
def test_cpython_pure_python_loop_reaches_main(stax: Stax, tmp_path: Path, depth: int) -> None:
    py = _python311()
    if py is None:
        pytest.skip("python3.11 is not installed")
    script = tmp_path / "loop.py"
    script.write_text(_PY_LOOP)
    stax("record", "--no-python", "--", py, str(script), str(depth), check=True)  # native
    # CPython's main() tail-calls Py_BytesMain, so that is the frame below _start's callees
    paths = _paths(stax)
    total = sum(n for _p, n in paths)
    reached = sum(n for p, n in paths if "Py_BytesMain" in p or "main" in p)
    assert total > 50 and reached >= 0.95 * total
    share, n = _share(paths, "_PyEval_EvalFrameDefault", "Py_BytesMain")
    assert n > 0.5 * total and share >= 0.95
    if depth:
        used = _diag(stax)["unwind"]["max_stack_used_bytes"]
        assert used > 8192  # deeper than perf's default copy reaches


def test_bad_dwarf_unwind_parameter_is_rejected(stax: Stax) -> None:
    from stax.client import Client, RemoteError

    c = Client(stax.env["STAX_SERVER_SOCKET"])
    with pytest.raises(RemoteError) as e:
        c.call("start_attach", pid=1, dwarf_unwind="yes")
    assert "dwarf_unwind must be true or false" in e.value.message
