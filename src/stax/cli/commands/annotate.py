"""``stax annotate TARGET``: one function disassembled, samples per instruction, source lines
(a Python function: the lines of its .py file with their samples). Thin: calls the
``annotate`` RPC method and prints text (hot instructions or lines coloured on a terminal) or
``--json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from stax.cli.command import Command, json_flag, run_arg, tid_arg, window_flag
from stax.cli.common import esc, isatty, no_samples_hint, out, print_json, query

RED = "\033[1;31m"
GREEN = "\033[32m"
DIM = "\033[2m"
BLUE = "\033[34m"
RESET = "\033[0m"
HOT_PCT = 5.0  # at least this share of the function's samples: red
WARM_PCT = 0.5  # at least this: green


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET",
                   help="a hex address (0x401136) or part of a function name (the hottest "
                        "match wins)")
    p.add_argument("--tid", type=tid_arg)
    p.add_argument("--run", type=run_arg, metavar="ID")
    window_flag(p)
    json_flag(p)


def _heat(row: str, n: int, pct: float, dim: bool, color: bool) -> str:
    """A row coloured by its share: hot, warm, or dimmed when nothing ran there."""
    if n and pct >= HOT_PCT:
        return _paint(row, RED, color)
    if n and pct >= WARM_PCT:
        return _paint(row, GREEN, color)
    return _paint(row, DIM, color) if dim else row


def _paint(text: str, color: str, on: bool) -> str:
    return f"{color}{text}{RESET}" if on else text


def cmd_annotate(args: argparse.Namespace) -> int:
    res = query("annotate", args.json, run=args.run, tid=args.tid, target=args.target,
                window=args.window)
    if res is None:
        return 0
    if res.get("function") is None:
        return _no_match(res, args)
    if args.json:
        print_json(res)
        return 0
    out = sys.stdout
    color = isatty(out)
    fn = res["function"]
    if res.get("language") == "python":
        sys.stdout.write("\n".join(_python_lines(res, args, color)) + "\n")
        return 0
    lines: list[str] = []
    lines.append(f"matched {_quote(res['target'], res['matched_by'])} -> {esc(fn['func'])} @ "
                 f"0x{fn['addr']:x} ({res['self_samples']} self samples)")
    run = res["run"]
    size = f", {fn['size']} bytes" if fn["size"] else ""
    lines.append(f"run {run['id']} [{run['state']}] {esc(run['command'])}: {esc(fn['func'])}  "
                 f"({esc(fn['binary'])}){size}, {res['self_samples']} of {res['total_samples']} "
                 f"samples ({res['self_pct']:.1f}%), {res['self_ns'] / 1e6:.1f} ms on-CPU")
    if fn.get("disk_path"):
        src = (f"line info from {esc(res['debug_file'])}" if res["has_line_info"]
               else "no DWARF line info")
        lines.append(f"code from {esc(fn['disk_path'])} ({esc(res['arch'])}), {src}")
    if res.get("note"):
        lines.append(f"note: {esc(res['note'])}")
    if not res["total_samples"] and args.tid is None:
        lines.append(no_samples_hint(run))
    sources = {(s["file"], s["line"]): s for s in res["sources"]}
    insns = res["instructions"]
    if insns:
        width = max(len(f"{i['addr']:x}") for i in insns)
        lines.append(f"{'samples':>8} {'%':>6}  {'address':>{width}}  instruction")
        prev: tuple[str, int] | None = None
        for ins in insns:
            loc = (ins["file"], ins["line"]) if ins["file"] is not None else None
            if loc is not None and loc != prev:
                s = sources.get(loc)
                text = esc((s["text"] or "").strip().expandtabs(4)) if s else ""
                head = f"{esc(os.path.basename(loc[0]))}:{loc[1]}"
                share = ""
                if s and s["samples"]:
                    share = f"  [{s['samples']} samples]"
                lines.append(_paint(f"{'':16}{head}{share}  {text}".rstrip(), BLUE, color))
            prev = loc if loc is not None else prev
            n = ins["samples"]
            pct = ins["pct"]
            code = esc(ins["text"])
            row = (f"{n:8d} {pct:5.1f}%  {ins['addr']:>{width}x}:  {code}" if n
                   else f"{'.':>8} {'':6}  {ins['addr']:>{width}x}:  {code}")
            lines.append(_heat(row, n, pct, not n, color))
    if not insns and res.get("addresses"):
        if res.get("binary_missing"):
            lines.append("the binary is missing (or another build): samples per address, "
                         "without disassembly")
        lines.append(f"{'samples':>8} {'%':>6}  address")
        for a in res["addresses"]:
            lines.append(f"{a['samples']:8d} {a['pct']:5.1f}%  {a['addr']:x}")
    unplaced = res["unplaced_samples"]
    lines.append(f"placed {res['placed_samples']} of {res['self_samples']} self samples on "
                 f"instructions; {unplaced} unplaced")
    if unplaced:
        why = res["unplaced"]
        lines.append(f"  unplaced: {why['mid_instruction']} inside an instruction, "
                     f"{why['outside_disassembly']} outside the disassembled bytes, "
                     f"{why['not_disassembled']} in code that was not disassembled, "
                     f"{why['no_address']} with no address in the binary")
        for u in res["unplaced_addrs"]:
            lines.append(f"    0x{u['addr']:x}: {u['samples']} samples "
                         f"({u['reason'].replace('_', ' ')})")
    # every value above went through esc; the colours are the only escapes written
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _python_lines(res: dict[str, Any], args: argparse.Namespace, color: bool) -> list[str]:
    """A Python function: its source lines, each with the samples where it was the innermost
    Python function on that line, and with the functions it calls (total)."""
    fn, run = res["function"], res["run"]
    where = f"{esc(os.path.basename(fn['path']))}:{fn['first_line']}"
    lines = [f"matched {_quote(res['target'], res['matched_by'])} -> {esc(fn['func'])} at "
             f"{where} (Python; {res['python_self_samples']} samples as the innermost Python "
             "function)",
             f"run {run['id']} [{run['state']}] {esc(run['command'])}: {esc(fn['func'])}  "
             f"({esc(fn['binary'])}), {res['python_self_samples']} of {res['total_samples']} "
             f"samples ({res['python_self_pct']:.1f}%) in it or the native code it runs, "
             f"{res['python_self_ns'] / 1e6:.1f} ms on-CPU; "
             f"{res['total_samples_in_function']} with it on the stack"]
    if fn.get("disk_path"):
        lines.append(f"source from {esc(fn['disk_path'])}, lines {fn['first_line']}-"
                     f"{fn['last_line']}")
    if res.get("note"):
        lines.append(f"note: {esc(res['note'])}")
    if not res["total_samples"] and args.tid is None:
        lines.append(no_samples_hint(run))
    rows = res["lines"]
    width = max([4, *(len(str(r["line"])) for r in rows)])
    lines.append(f"{'samples':>8} {'%':>6} {'total':>8}  {'line':>{width}}  source")
    for r in rows:
        n, pct, tot = r["samples"], r["pct"], r["total_samples"]
        text = esc((r["text"] or "").rstrip().expandtabs(4))
        row = (f"{n:8d} {pct:5.1f}%" if n else f"{'.':>8} {'':6}") + (
            f" {tot:8d}" if tot else f" {'.':>8}") + f"  {r['line']:>{width}}  {text}"
        lines.append(_heat(row.rstrip(), n, pct, not tot, color))
    lines.append(f"samples: with {esc(fn['func'])} the innermost Python function, on that line; "
                 "total: with it on that line anywhere on the stack (the functions it calls "
                 "included)")
    if res["unplaced_samples"]:
        lines.append(f"{res['unplaced_samples']} samples on lines not listed")
    return lines


def _quote(target: str, how: str) -> str:
    return esc(target) if how == "address" else f'"{esc(target)}"'


def _no_match(res: dict[str, Any], args: argparse.Namespace) -> int:
    what = _quote(res["target"], res["matched_by"])
    if not res["total_samples"]:  # nothing recorded (for this thread): an answer, not an error
        if args.json:
            print_json(res)
        else:
            out(no_samples_hint(res["run"], args.tid, args.window))
        return 0
    if args.json:
        print_json(res)
    elif res["hottest"]:
        out(f"no sampled function matches {what}; the hottest that did:")
        for h in res["hottest"]:
            out(f"  {h['self_samples']:7d}  {esc(h['func'])}  ({esc(h['binary'])})  "
                f"0x{h['addr']:x}")
    out(f"error: no sampled function matches {what}", err=True)
    return 1


ANNOTATE = Command("annotate", "one function disassembled, with samples per instruction and "
                               "source lines (a Python function: the lines of its .py file "
                               "with their samples)", cmd_annotate, arguments)
