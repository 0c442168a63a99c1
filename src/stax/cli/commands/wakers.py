"""``stax wakers``: wakeup edges, which thread woke which and the blocked time it ended."""

from __future__ import annotations

import argparse
from typing import Any

from stax.cli.command import Command, count_arg, json_flag, run_arg, tid_arg, window_flag
from stax.cli.common import esc, header, none_line, out, query_text


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--limit", dest="n", type=count_arg, default=20, metavar="N",
                   help="rows (0 = all; default 20)")
    p.add_argument("--tid", type=tid_arg, help="only edges where this thread is either side")
    p.add_argument("--run", type=run_arg, metavar="ID")
    window_flag(p)
    json_flag(p)


def _stack_line(frames: list[dict[str, Any]], depth: int = 6) -> str:
    """A stack, leaf first, on one line: ``f (bin) <- g (bin) <- …``."""
    parts = [esc(f["func"]) for f in frames[:depth]]
    more = len(frames) - depth
    return " <- ".join(parts) + (f" <- … {more} more" if more > 0 else "")


def cmd_wakers(args: argparse.Namespace) -> int:
    res = query_text("wakers", args.json, run=args.run, tid=args.tid, limit=args.n,
                     window=args.window)
    if res is None:
        return 0
    if not res["rows"]:
        if not res.get("note"):
            out(none_line("wakeups recorded", args.tid))
        return 0
    out(header(res, f"{res['wakeups']} wakeups, {res['edges']} waker → wakee edges, by "
                     "blocked time ended"))
    out(f"{'blocked ms':>10} {'wakeups':>8} {'ended':>6}  waker (tid) → woken (tid)")
    for r in res["rows"]:
        out(f"{r['blocked_ns'] / 1e6:10.1f} {r['wakeups']:8d} {r['ended_intervals']:6d}  "
            f"{esc(r['waker'])} ({r['waker_tid']}) → {esc(r['wakee'])} ({r['wakee_tid']})")
        if r["stack"]:
            out(f"{'':28}at {_stack_line(r['stack'])}")
    if res["edges"] > len(res["rows"]):
        out(f"({res['edges'] - len(res['rows'])} more edges; -n 0 shows all)")
    return 0


WAKERS = Command("wakers", "wakeup edges: which thread woke which, and the blocked time it ended",
                 cmd_wakers, arguments)
