"""What the tests of Python stacks share: the CPython interpreters of this machine stax reads
(3.11, 3.12, 3.13: Debian's, pyenv builds, whatever ``python3.1X`` is on PATH, each once by its
real path), the Python workloads, and walks over ``flame --json`` trees."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import ROOT

WORKLOADS = ROOT / "tests" / "workloads" / "python"
MINORS = (11, 12, 13)  # the versions stax has struct layouts for


@dataclass(frozen=True)
class Interpreter:
    path: str  # the real executable (a pyenv shim resolved)
    version: str  # "3.12.1"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def id(self) -> str:
        kind = "system" if self.path.startswith("/usr/") else "build"
        return f"{self.version}-{kind}"


def _candidates() -> Iterator[str]:
    for m in MINORS:
        yield f"/usr/bin/python3.{m}"
        found = shutil.which(f"python3.{m}")
        if found:
            yield found
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for m in MINORS:
        yield from sorted(glob.glob(f"{pyenv}/versions/3.{m}.*/bin/python3.{m}"))


def find_interpreters() -> list[Interpreter]:
    """Every distinct CPython 3.11-3.13 here (release builds; debug builds are left out)."""
    out: dict[str, Interpreter] = {}
    probe = ("import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3]); "
             "print(hasattr(sys, 'gettotalrefcount'))")
    for c in _candidates():
        if not os.access(c, os.X_OK):
            continue
        try:
            p = subprocess.run([c, "-S", "-c", probe], capture_output=True, text=True,
                               timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        lines = p.stdout.split()
        if p.returncode != 0 or len(lines) != 3 or lines[2] != "False":
            continue
        real = os.path.realpath(lines[0])
        minor = int(lines[1].split(".")[1])
        if minor in MINORS and real not in out:
            out[real] = Interpreter(real, lines[1])
    return sorted(out.values(), key=lambda i: (i.version, i.path))


PYTHONS = find_interpreters()


def measured(stderr: str) -> dict[str, float]:
    """The JSON line a workload printed last on stderr (what it measured itself)."""
    lines = [x for x in stderr.splitlines() if x.startswith("{")]
    assert lines, stderr
    res: dict[str, float] = json.loads(lines[-1])
    return res


def is_python(node: dict[str, Any]) -> bool:
    """A flame node of a Python function (its binary is the ``.py`` file)."""
    return str(node["binary"]).endswith(".py")


def walk(roots: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every node of a flame tree with its ancestors (root first)."""
    todo: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [(r, []) for r in roots]
    while todo:
        node, above = todo.pop()
        yield node, above
        todo.extend((c, [*above, node]) for c in node["children"])


def python_chain(node: dict[str, Any], above: list[dict[str, Any]]) -> list[str]:
    """The Python functions of a node's stack, innermost first (native frames skipped)."""
    return [n["func"] for n in reversed([*above, node]) if is_python(n)]


def nodes_named(roots: list[dict[str, Any]], name: str, binary: str) -> list[
        tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The nodes of function ``name`` of ``binary``, outermost occurrences only (a node under
    another of the same function, as in recursion, is left out: its samples are counted)."""
    out = []
    for node, above in walk(roots):
        if node["func"] == name and node["binary"] == binary and not any(
                a["func"] == name and a["binary"] == binary for a in above):
            out.append((node, above))
    return out


def samples_through(node: dict[str, Any], pred: Any) -> int:
    """How many of ``node``'s samples pass through a descendant ``pred`` accepts (each sample
    once: the walk stops at the first such node of a path)."""
    n = 0
    for c in node["children"]:
        n += c["samples"] if pred(c) else samples_through(c, pred)
    return n


def total_shares(rows: list[dict[str, Any]], binary: str, funcs: tuple[str, ...]) -> dict[
        str, float]:
    """Each of ``funcs``' share (%) of their summed total samples, from ``top --json`` rows."""
    got = {r["func"]: r["total_samples"] for r in rows if r["binary"] == binary}
    missing = [f for f in funcs if f not in got]
    assert not missing, (missing, sorted(got))
    total = sum(got[f] for f in funcs)
    return {f: 100.0 * got[f] / total for f in funcs}


def workload(name: str) -> Path:
    return WORKLOADS / name
