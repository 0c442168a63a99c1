"""``stax callers FUNC``, ``stax callees FUNC`` and ``stax neighbors FUNC`` (both): the butterfly
view of one function, from the ``neighbors`` RPC method."""

from __future__ import annotations

import argparse
from typing import Any

from stax.cli.command import (
    Command,
    count_arg,
    inline_flag,
    json_flag,
    run_arg,
    tid_arg,
    window_flag,
)
from stax.cli.common import (
    esc,
    func_name,
    header,
    no_samples_hint,
    none_line,
    out,
    print_json,
    query,
)


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("func", metavar="FUNC",
                   help="part of a function name (case-insensitive; a name equal to FUNC wins, "
                        "several other matches are listed)")
    p.add_argument("--exact", action="store_true", help="FUNC is the whole name")
    p.add_argument("--mode", choices=("cpu", "offcpu", "wall"), default="cpu",
                   help="on-CPU samples (default), off-CPU blocked time, or both")
    p.add_argument("-n", "--limit", dest="n", type=count_arg, default=20,
                   help="rows per list (0 = all; default 20)")
    p.add_argument("--tid", type=tid_arg)
    window_flag(p)
    inline_flag(p)
    p.add_argument("--run", type=run_arg, metavar="ID")
    json_flag(p)


def _rows(rows: list[dict[str, Any]], count: int, what: str) -> list[str]:
    lines = [f"{r['time_ns'] / 1e6:10.1f} {r['samples']:8d} {r['pct']:6.1f}%    "
             f"{func_name(r)}" + (f"  ({esc(r['binary'])})" if r["binary"] else "")
             for r in rows]
    if count > len(rows):
        lines.append(f"{'':31}… {count - len(rows)} more {what}; -n 0 shows all")
    return lines


def show(args: argparse.Namespace, callers: bool, callees: bool) -> int:
    res = query("neighbors", args.json, run=args.run, tid=args.tid, window=args.window,
                target=args.func, exact=args.exact or None, mode=args.mode, limit=args.n,
                no_inline=args.no_inline or None)
    if res is None:
        return 0
    fn = res["function"]
    if fn is None:
        return _no_match(res, args)
    if args.json:
        print_json(res)
        return 0
    if res.get("note"):
        out(f"({esc(res['note'])})")
    unit = "samples" if args.mode == "cpu" else "count"  # offcpu/wall: intervals (+ samples)
    rec = (f", {fn['recursive_ns'] / 1e6:.1f} ms of it recursive (counted once)"
           if fn["recursive_ns"] else "")
    out(header(res, f"{esc(fn['func'])} ({esc(', '.join(fn['binaries']))}): "
                     f"{fn['time_ns'] / 1e6:.1f} ms, {fn['pct']:.1f}% of {args.mode} time; "
                     f"self {fn['self_ns'] / 1e6:.1f} ms ({fn['self_pct']:.1f}%){rec}"))
    out(f"{'ms':>10} {unit:>8} {'%':>7}    "
        f"(% of {esc(fn['func'])}'s time)")
    lines: list[str] = []
    if callers:
        lines.append("callers (who calls it, and how much of its time comes through each):")
        lines += _rows(res["callers"], res["caller_count"], "callers")
    if callees:
        lines.append("callees (what it calls, and what each costs inside it):")
        lines += _rows(res["callees"], res["callee_count"], "callees")
        if fn["self_ns"]:
            lines.append(f"{fn['self_ns'] / 1e6:10.1f} {fn['self_samples']:8d} "
                         f"{fn['self_pct']:6.1f}%    [self]")
        elif not res["callees"]:
            lines.append(f"{'':31}(none)")
    out("\n".join(lines))
    return 0


def _no_match(res: dict[str, Any], args: argparse.Namespace) -> int:
    what = f'"{esc(args.func)}"'
    if not res["total_samples"]:  # nothing recorded: an answer, not an error
        if args.json:
            print_json(res)
        elif args.mode == "cpu":
            out(no_samples_hint(res["run"], args.tid))
        else:
            out(none_line("off-CPU intervals", args.tid))
        return 0
    if args.json:
        print_json(res)
    elif res["candidates"]:
        out(f"{res['matches']} functions match {what}; name one (--exact for a whole name):")
        for c in res["candidates"]:
            out(f"  {c['total_ns'] / 1e6:10.1f} ms  {func_name(c)}  "
                f"({esc(', '.join(c['binaries']))})")
    if res["candidates"]:
        out(f"error: {res['matches']} functions match {what}", err=True)
    else:
        out(f"error: no function in the {args.mode} stacks matches {what}", err=True)
    return 1


def cmd_callers(args: argparse.Namespace) -> int:
    return show(args, True, False)


def cmd_callees(args: argparse.Namespace) -> int:
    return show(args, False, True)


def cmd_neighbors(args: argparse.Namespace) -> int:
    return show(args, True, True)


CALLERS = Command("callers", "who calls a function, and how much of its time comes through "
                             "each caller", cmd_callers, arguments)
CALLEES = Command("callees", "what a function calls, and how much each callee costs",
                  cmd_callees, arguments)
NEIGHBORS = Command("neighbors", "a function's callers and callees (the butterfly view)",
                    cmd_neighbors, arguments)
