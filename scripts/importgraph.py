#!/usr/bin/env python3
"""Report the import graph of src/stax and fail on any cycle or cross-module private import.

Every import counts: at module level, inside a function (a lazy import still ties two modules
together) and under ``if TYPE_CHECKING:`` (a type-only import is still a dependency of the
design; ``--runtime-only`` leaves those out). An import of ``stax.a.b`` is an edge to ``stax.a.b``
alone: the implicit import of the parent package ``stax.a`` is not counted, as in every import
linter. Cycles are looked for twice: between modules, and between the layers of the code (the
subpackages and top-level modules of ``stax``: capture, unwind, profile, server, ...).

A private name is one that starts with a single underscore. Importing another module's private
name (``from stax.x import _helper``) or reaching it through a module alias (``x._helper``) is
an error; a private *module* (``stax.capture._impl``) may be imported from inside its own package.

It also holds every source file of the package (Python, and the web UI's JavaScript) to
MAX_LINES lines, unless the file's last non-blank line is a comment that says why it is longer
(``# longer than 450 lines: ...`` or ``// longer than 450 lines: ...``).

Usage: scripts/importgraph.py [--graph] [SRC_DIR]    (default: src). Exit 1 on any problem.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

MAX_LINES = 450


def too_long(path: Path) -> str | None:
    """Why ``path`` breaks the length rule, or None."""
    lines = path.read_text().splitlines()
    if len(lines) <= MAX_LINES:
        return None
    last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    if last.startswith(("#", "//")) and "longer than" in last:
        return None
    return (f"{path}: {len(lines)} lines (over {MAX_LINES}; split it, or end it with a comment "
            "saying why it is longer)")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class Collector(ast.NodeVisitor):
    """The imports of one module: (target module, imported names, line) and module aliases."""

    def __init__(self, name: str, is_package: bool, modules: set[str],
                 runtime_only: bool = False) -> None:
        self.name = name
        self.runtime_only = runtime_only
        self.package = name if is_package else name.rpartition(".")[0]
        self.modules = modules
        self.edges: list[tuple[str, int]] = []
        self.private: list[tuple[str, int]] = []
        self.aliases: dict[str, str] = {}  # local name -> stax module it stands for

    def visit_If(self, node: ast.If) -> None:
        if self.runtime_only and _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _resolve(self, module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        base = self.package.split(".")
        if level > 1:
            base = base[: len(base) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in self.modules:
                self.edges.append((alias.name, node.lineno))
                if alias.asname:
                    self.aliases[alias.asname] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        target = self._resolve(node.module, node.level)
        if not (target == "stax" or target.startswith("stax.")):
            return
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in self.modules:  # ``from stax.pkg import module``
                self.edges.append((sub, node.lineno))
                self.aliases[alias.asname or alias.name] = sub
                if _private(alias.name) and not self._inside(target):
                    self.private.append((f"{sub}", node.lineno))
                continue
            if target in self.modules:
                self.edges.append((target, node.lineno))
            if _private(alias.name) and target != self.name:
                self.private.append((f"{target}.{alias.name}", node.lineno))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if (isinstance(node.value, ast.Name) and node.value.id in self.aliases
                and _private(node.attr)):
            mod = self.aliases[node.value.id]
            if f"{mod}.{node.attr}" not in self.modules and mod != self.name:
                self.private.append((f"{mod}.{node.attr}", node.lineno))
        self.generic_visit(node)

    def _inside(self, package: str) -> bool:
        return self.name == package or self.name.startswith(package + ".")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def layer(module: str) -> str:
    """``stax.capture.recorder`` -> ``stax.capture``; ``stax.paths`` stays itself."""
    return ".".join(module.split(".")[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import), by Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        work = [(v, iter(sorted(graph.get(v, ()))))]
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or node in graph.get(node, ()):
                    out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", default="src")
    ap.add_argument("--graph", action="store_true", help="print every module's imports")
    ap.add_argument("--runtime-only", action="store_true",
                    help="leave out imports under `if TYPE_CHECKING:`")
    args = ap.parse_args(argv)
    root = Path(args.src)
    files = {module_name(root, p): p for p in sorted((root / "stax").rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    problems: list[str] = []
    for name, path in files.items():
        col = Collector(name, path.name == "__init__.py", modules, args.runtime_only)
        col.visit(ast.parse(path.read_text(), str(path)))
        graph[name] = {t for t, _ in col.edges if t != name}
        problems += [f"{path}:{line}: private import of {what}" for what, line in col.private]
    if args.graph:
        for name in sorted(graph):
            print(f"{name} -> {', '.join(sorted(graph[name])) or '-'}")
    found = cycles(graph)
    for comp in found:
        problems.append("import cycle: " + " <-> ".join(comp))
    layers: dict[str, set[str]] = {}
    for name, targets in graph.items():
        for t in targets:
            if layer(t) != layer(name):
                layers.setdefault(layer(name), set()).add(layer(t))
    if args.graph:
        for name in sorted(layers):
            print(f"[layer] {name} -> {', '.join(sorted(layers[name]))}")
    layer_cycles = cycles(layers)
    for comp in layer_cycles:
        problems.append("layer cycle: " + " <-> ".join(comp))
    long_files = [w for p in sorted((root / "stax").rglob("*")) if p.suffix in (".py", ".js")
                  and (w := too_long(p)) is not None]
    problems += long_files
    edges = sum(len(v) for v in graph.values())
    print(f"importgraph: {len(graph)} modules, {edges} imports, {len(found)} module cycles, "
          f"{len(layer_cycles)} layer cycles, "
          f"{len(problems) - len(found) - len(layer_cycles) - len(long_files)} private imports, "
          f"{len(long_files)} files over {MAX_LINES} lines")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
