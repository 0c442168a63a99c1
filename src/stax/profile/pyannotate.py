"""The annotate view of a Python function (stax.profile.pymerge's frames): the lines of its
``.py`` file, each with the samples spent on it.

Per line, ``samples``: the samples whose innermost Python frame is this function at this line
(its own time, the interpreter's C code and the C functions the line calls included; as
py-spy counts a line); ``total_samples``: the samples with this function at this line anywhere
on the stack (the Python functions it calls included). The lines are the function's own, from
its first line to its last (found with ``ast``; the last sampled line where the file does not
parse), read for the eyes of the run's owner (stax.profile.access), else from an archive saved
with its code.

Pure: tables + filter + function in, a JSON-ready dict out, the shape of ``annotate``'s with no
instructions and a ``lines`` list (docs/protocol.md).
"""

from __future__ import annotations

import ast
from typing import Any

from stax.profile import access
from stax.profile.codestore import store_of
from stax.profile.model import python_line
from stax.profile.selection import Filter, oncpu_weights
from stax.profile.tables import Profile

__all__ = ["annotate_python", "function_lines"]

MAX_LINES = 20000  # lines listed at most (a module's <module> can be long)


def _per_line(p: Profile, flt: Filter, func: int) -> tuple[
        dict[int, list[int]], dict[int, list[int]], list[int]]:
    """(innermost: line -> [samples, ns], anywhere: line -> [samples, ns], [samples, ns] of
    samples where the function is the innermost Python frame)."""
    flt = Filter(tid=flt.tid, start_ns=flt.start_ns, end_ns=flt.end_ns)  # whole stacks
    groups, _n, _w = oncpu_weights(p, flt)
    funcs, frame_func, frame_offset = p.funcs, p.frame_func, p.frame_offset
    parent, stack_frame = p.stack_parent, p.stack_frame
    # per stack node: (the innermost Python frame's (function, line), the lines of ``func``
    # on the path); a node's comes from its parent's (parents have smaller ids)
    memo: dict[int, tuple[tuple[int, int] | None, frozenset[int]]] = {-1: (None, frozenset())}
    inner: dict[int, list[int]] = {}
    anywhere: dict[int, list[int]] = {}
    own = [0, 0]
    for sid, (n, w) in groups.items():
        if sid < 0:
            continue
        chain = []
        s = sid
        while s not in memo:
            chain.append(s)
            s = parent[s]
        top, lines = memo[s]
        for s in reversed(chain):
            fid = stack_frame[s]
            fn = frame_func[fid]
            if fn >= 0 and funcs[fn].python:
                line = python_line(frame_offset[fid])
                top = (fn, line)
                if fn == func:
                    lines = lines | {line}
            memo[s] = (top, lines)
        if top is not None and top[0] == func:
            acc = inner.setdefault(top[1], [0, 0])
            acc[0] += n
            acc[1] += w
            own[0] += n
            own[1] += w
        for line in lines:
            acc = anywhere.setdefault(line, [0, 0])
            acc[0] += n
            acc[1] += w
    return inner, anywhere, own


def function_lines(text: list[str], qualname: str, first: int) -> tuple[int, int] | None:
    """The first and last line of the function ``qualname`` starting at line ``first`` of the
    source ``text`` (a decorated one starts at its first decorator, as ``co_firstlineno``
    does); the whole file for ``<module>``; None when the file does not parse or has no such
    definition there."""
    if qualname == "<module>":
        return (1, len(text)) if text else None
    try:
        tree = ast.parse("\n".join(text))
    except (SyntaxError, ValueError, RecursionError):
        return None
    leaf = qualname.rsplit(".", 1)[-1]
    best: tuple[int, int] | None = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if start == first and node.name == leaf and node.end_lineno is not None:
                return start, node.end_lineno
        elif (isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                                ast.GeneratorExp)) and node.lineno == first
              and node.end_lineno is not None):
            if best is None or node.end_lineno > best[1]:
                best = (first, node.end_lineno)
    return best


def _kept_extent(kept: dict[int, str], qualname: str, first: int) -> tuple[int, int] | None:
    """The extent of a function in the lines an archive kept of its file (not the whole file:
    no ``ast``): from ``first`` past its decorators to the last line indented deeper than its
    ``def`` before one that is not (or a gap)."""
    if first not in kept:
        return None
    if qualname == "<module>":
        return 1, max(kept)

    def indent(text: str) -> int:
        return len(text) - len(text.lstrip())

    head = first
    while head in kept and kept[head].lstrip().startswith("@"):
        head += 1
    if head not in kept:
        return first, first
    depth = indent(kept[head])
    last = line = head
    while line + 1 in kept:
        line += 1
        text = kept[line]
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if indent(text) <= depth:
            break
        last = line
    return first, last


def annotate_python(p: Profile, flt: Filter, func: int, base: dict[str, Any],
                    self_n: int, self_w: int, total_n: int) -> dict[str, Any]:
    """``base`` (target, how it matched, the scope's totals) completed for the Python function
    ``func``: ``self_n``/``self_w`` its samples as the leaf frame, ``total_n`` on the stack."""
    f = p.funcs[func]
    path, first = f.path, f.addr
    inner, anywhere, own = _per_line(p, flt, func)
    text, hidden = access.source_lines(path, p.owner) if path.startswith("/") else (None, None)
    store = store_of(p)
    note = None
    if hidden is not None:
        note = hidden
    elif text is None:
        note = (f"{path}: not a file stax can read (a module run from a string, a frozen "
                "module, or a relative path)" if not path.startswith("/")
                else f"{path}: cannot read the source file")
    sampled = sorted(x for x in set(inner) | set(anywhere) if x > 0)
    kept = store.sources.get(path, {}) if store is not None and text is None else {}
    extent = (function_lines(text, f.name, first) if text is not None
              else _kept_extent(kept, f.name, first) if kept and hidden is None else None)
    if extent is None:
        lo = min([first, *sampled]) if first > 0 or sampled else 1
        extent = (max(1, lo), max([lo, *sampled]))
    lo, hi = extent[0], max(extent[1], *sampled) if sampled else extent[1]
    hi = min(hi, lo + MAX_LINES - 1)
    denom = own[0] or 1
    rows: list[dict[str, Any]] = []
    for line in range(lo, hi + 1):
        src: str | None = None
        if text is not None and line <= len(text):
            src = text[line - 1]
        elif text is None and hidden is None:
            src = kept.get(line)
        i = inner.get(line, [0, 0])
        a = anywhere.get(line, [0, 0])
        rows.append({"line": line, "text": src, "samples": i[0], "self_ns": i[1],
                     "pct": 100.0 * i[0] / denom, "total_samples": a[0], "total_ns": a[1]})
    if text is None and hidden is None and any(r["text"] is not None for r in rows):
        note = f"{path}: source lines from the archive (saved with the code)"
    sources = [{"file": path, "line": r["line"], "text": r["text"], "hidden": hidden,
                "samples": r["samples"], "self_ns": r["self_ns"]}
               for r in rows if r["samples"] or r["total_samples"]]
    total = base["total_samples"]
    base["function"] = {
        "func": f.name, "binary": f.binary, "path": path, "build_id": None, "addr": 0,
        "size": 0, "resolved": True, "kernel": False, "language": "python",
        "first_line": first, "last_line": hi, "disk_path": path if text is not None else None,
    }
    base.update({
        "language": "python",
        "self_samples": self_n, "self_ns": self_w,
        "self_pct": 100.0 * self_n / total if total else 0.0,
        "total_samples_in_function": total_n,
        "python_self_samples": own[0], "python_self_ns": own[1],
        "python_self_pct": 100.0 * own[0] / total if total else 0.0,
        "lines": rows,
        "arch": None, "instructions": [], "placed_samples": sum(inner[x][0] for x in inner
                                                                if lo <= x <= hi),
        "unplaced_samples": sum(inner[x][0] for x in inner if not lo <= x <= hi),
        "unplaced": {"mid_instruction": 0, "outside_disassembly": 0, "not_disassembled": 0,
                     "no_address": 0},
        "unplaced_addrs": [], "debug_file": None, "has_line_info": True,
        "sources": sources, "note": note, "binary_missing": text is None,
    })
    return base
