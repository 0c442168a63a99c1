"""End-to-end, on every CPython 3.11-3.13 of this machine (Debian's statically linked
/usr/bin/python3.11, builds with a shared libpython): the mixed Python and native stacks of
real programs, launched and attached.

- C extensions: Python functions calling zlib and json's C accelerator show the C code (the
  module's functions, libz's deflate, _json's encoder and scanner) under them in one stack.
- threads: each thread's Python functions under that thread, in shares of the samples close
  to the CPU time the program measured per thread; launched and attached.
- recursion to a known depth, a generator's body under its consumer, coroutines awaited on an
  asyncio event loop under the function that runs the loop.

Every workload times its own functions (CPU time) and prints the split: the shares stax gives
them are compared with it."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from harness import Stax
from python_helpers import (
    PYTHONS,
    Interpreter,
    is_python,
    measured,
    nodes_named,
    python_chain,
    samples_through,
    total_shares,
    walk,
    workload,
)

pytestmark = pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11-3.13 here")
PARAMS = [pytest.param(p, id=p.id) for p in PYTHONS]
SHARE_POINTS = 6  # a function's share of the samples vs the share the program measured
MIN_PYTHON_FRAMES = 0.5  # of the samples running Python code, the ones given Python frames
# (a floor: fewer get them on a loaded machine; bench/python.py measures the rate)


def _flame(stax: Stax, *args: str) -> list[dict[str, Any]]:
    flame = stax("flame", "--json", "-d", "400", "--threshold-pct", "0", *args,
                 check=True).json()
    roots: list[dict[str, Any]] = flame["roots"]  # type: ignore[index]
    return roots


def _python_info(stax: Stax, py: Interpreter) -> dict[str, Any]:
    info: dict[str, Any] = stax("diagnose", "--json", check=True).json()["run"]["python"]
    print("python frames on", info["python_samples"], "of", info["python_running"],
          "samples running Python code;", info["python_mismatches"], "mismatched")
    assert info["version"] == py.version, info
    assert info["python_running"] > 300, info
    assert info["python_samples"] >= MIN_PYTHON_FRAMES * info["python_running"], info
    return info


def _close(shares: dict[str, float], want: dict[str, float], points: float) -> None:
    print("measured", want, "stax", {k: round(v, 1) for k, v in shares.items()})
    for f, s in shares.items():
        assert abs(s - want[f]) <= points, (f, shares, want)


@pytest.mark.parametrize("py", PARAMS)
def test_c_extensions_under_their_python_callers(stax: Stax, py: Interpreter) -> None:
    r = stax("record", "--", py.path, str(workload("pyext.py")), "3", check=True, timeout=90)
    want = measured(r.err)
    rows = stax("top", "--json", "-n", "0", "--sort", "total", check=True).json()["rows"]
    _close(total_shares(rows, "pyext.py", ("squeeze", "encode", "decode")), want, SHARE_POINTS)
    _python_info(stax, py)
    roots = _flame(stax)

    def through(name: str, pred: Any) -> tuple[int, int]:
        hits = nodes_named(roots, name, "pyext.py")
        assert hits, name
        return (sum(samples_through(n, pred) for n, _ in hits),
                sum(n["samples"] for n, _ in hits))

    def libz(n: dict[str, Any]) -> bool:
        return str(n["binary"]).startswith("libz.so")

    def accelerated_json(n: dict[str, Any]) -> bool:
        return str(n["binary"]).startswith("_json.")

    # squeeze -> the zlib module's C function -> libz's deflate, all in one stack
    got, total = through("squeeze", libz)
    assert got >= 0.85 * total, (got, total)
    for node, _above in nodes_named(roots, "squeeze", "pyext.py"):
        for n, path in walk(node["children"]):
            if libz(n) and n["func"] == "deflate":
                between = [node, *path]
                assert not any(is_python(x) for x in between[1:]), [x["func"] for x in between]
                assert any(x["func"].startswith("zlib_compress") for x in between), [
                    x["func"] for x in between]
    # encode -> json.dumps -> the encoder's Python methods -> _json's C encoder
    got, total = through("encode", accelerated_json)
    assert got >= 0.75 * total, (got, total)
    # decode -> json.loads -> the decoder's Python methods -> _json's C scanner
    got, total = through("decode", accelerated_json)
    assert got >= 0.75 * total, (got, total)
    chains: dict[str, dict[tuple[str, ...], int]] = {"encode": {}, "decode": {}}
    for n, above in walk(roots):
        if accelerated_json(n) and n["func"] in ("encoder_call", "scanner_call") and not any(
                accelerated_json(a) for a in above):
            chain = tuple(python_chain(n, above))
            for name, acc in chains.items():
                if name in chain:
                    acc[chain[:chain.index(name) + 1]] = acc.get(
                        chain[:chain.index(name) + 1], 0) + n["samples"]
    for name, want_chain in (
            ("encode", ("JSONEncoder.iterencode", "JSONEncoder.encode", "dumps", "encode")),
            ("decode", ("JSONDecoder.raw_decode", "JSONDecoder.decode", "loads", "decode"))):
        seen = chains[name]
        best = max(seen, key=lambda c: seen[c])
        assert best == want_chain, seen
        assert seen[best] >= 0.85 * sum(seen.values()), seen


@pytest.mark.parametrize("py", PARAMS)
def test_recursion_generators_and_coroutines(stax: Stax, py: Interpreter) -> None:
    r = stax("record", "--", py.path, str(workload("pyshapes.py")), "3", check=True,
             timeout=90)
    want = measured(r.err)
    rows = stax("top", "--json", "-n", "0", "--sort", "total", check=True).json()["rows"]
    _close(total_shares(rows, "pyshapes.py", ("recursion", "generators", "coroutines")), want,
           SHARE_POINTS)
    _python_info(stax, py)
    roots = _flame(stax)
    depth = 21  # descend(20) .. descend(0) above bottom (pyshapes.DEPTH + 1)

    # recursion: bottom under exactly `depth` frames of descend, under recursion
    right = wrong = 0
    for node, above in nodes_named(roots, "bottom", "pyshapes.py"):
        chain = python_chain(node, above)
        if chain[:depth + 3] == ["bottom", *["descend"] * depth, "recursion", "<module>"]:
            right += node["samples"]
        else:
            wrong += node["samples"]
            print("bottom at", chain[:depth + 3])
    assert right > 100 and wrong <= 0.02 * right, (right, wrong)
    rec = sum(n["samples"] for n, _ in nodes_named(roots, "recursion", "pyshapes.py"))
    assert right >= 0.85 * rec, (right, rec)

    # generators: produce's body (the work) under the loop consuming it
    gen_total = sum(n["samples"] for n, _ in nodes_named(roots, "generators", "pyshapes.py"))
    produced = 0
    for node, above in nodes_named(roots, "produce", "pyshapes.py"):
        assert python_chain(node, above)[:3] == ["produce", "generators", "<module>"], (
            python_chain(node, above))
        produced += node["samples"]
    assert produced >= 0.85 * gen_total, (produced, gen_total)

    # coroutines: inner awaited by outer, run by the event loop, under coroutines
    co_total = sum(n["samples"] for n, _ in nodes_named(roots, "coroutines", "pyshapes.py"))
    awaited = 0
    for node, above in nodes_named(roots, "inner", "pyshapes.py"):
        chain = python_chain(node, above)
        assert chain[:2] == ["inner", "outer"], " > ".join(a["func"] for a in above)
        assert chain[-2:] == ["coroutines", "<module>"], " > ".join(reversed(chain))
        assert "BaseEventLoop.run_until_complete" in chain, chain
        awaited += node["samples"]
    assert awaited >= 0.8 * co_total, (awaited, co_total)


WORKERS = ("alpha", "beta", "gamma")


def _check_threads(stax: Stax, tids: dict[str, int], cpu_ms: dict[str, float]) -> None:
    rows = stax("threads", "--json", "-n", "0", check=True).json()["rows"]
    per = {r["tid"]: r for r in rows}
    assert set(tids.values()) <= set(per), (tids, sorted(per))
    n = {w: per[tids[w]]["samples"] for w in WORKERS}
    total_n, total_cpu = sum(n.values()), sum(cpu_ms.values())
    _close({w: 100.0 * n[w] / total_n for w in WORKERS},
           {w: 100.0 * cpu_ms[w] / total_cpu for w in WORKERS}, 8)
    for w in WORKERS:
        tid = str(tids[w])
        top = stax("top", "--json", "-n", "0", "--sort", "total", "--tid", tid,
                   check=True).json()
        mine = {r["func"]: r["total_samples"] for r in top["rows"]
                if r["binary"] == "pythreads.py"}
        # the thread's own function on most of its samples, the others' on none
        assert mine.get(w, 0) >= MIN_PYTHON_FRAMES * top["total_samples"], (w, mine, top[
            "total_samples"])
        assert not [o for o in WORKERS if o != w and mine.get(o)], (w, mine)
        # spin under the thread's function, under the threading machinery
        spun = 0
        for node, above in nodes_named(_flame(stax, "--tid", tid), "spin", "pythreads.py"):
            chain = python_chain(node, above)
            assert chain[:3] == ["spin", w, "run"], chain
            assert chain[-1] == "Thread._bootstrap" and "Thread.run" in chain, chain
            spun += node["samples"]
        print(w, "spin on", spun, "of", mine[w], "samples")
        if w == "alpha":  # never sleeps: its samples are all in spin (the others' first
            # samples after a sleep may be paired with the stack they slept in)
            assert spun >= 0.85 * mine[w], (w, spun, mine)


@pytest.mark.parametrize("py", PARAMS)
def test_threads_launched(stax: Stax, py: Interpreter) -> None:
    r = stax("record", "--", py.path, str(workload("pythreads.py")), "3", check=True,
             timeout=90)
    tids = json.loads(next(x for x in r.out.splitlines() if x.startswith("{")))
    _check_threads(stax, tids, measured(r.err))
    _python_info(stax, py)


@pytest.mark.parametrize("py", PARAMS)
def test_threads_attached(stax: Stax, py: Interpreter) -> None:
    target = subprocess.Popen([py.path, str(workload("pythreads.py")), "5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None
        tids = json.loads(target.stdout.readline())
        stax("record", "-p", str(target.pid), "-l", "2.5", check=True, timeout=60)
        _out, err = target.communicate(timeout=30)
    finally:
        if target.poll() is None:
            target.kill()
        target.wait()
    assert target.returncode == 0, err
    _check_threads(stax, tids, measured(err))
    info = _python_info(stax, py)
    assert info["interpreter"], info
