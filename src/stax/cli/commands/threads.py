"""``stax threads``: one row per thread, on-CPU and off-CPU time."""

from __future__ import annotations

import argparse

from stax.cli.command import Command, count_arg, json_flag, run_arg, window_flag
from stax.cli.common import esc, no_samples_hint, out, print_json, query


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--limit", dest="n", type=count_arg, default=20, metavar="N",
                   help="rows (0 = all; default 20)")
    p.add_argument("--run", type=run_arg, metavar="ID")
    window_flag(p)
    json_flag(p)


def cmd_threads(args: argparse.Namespace) -> int:
    res = query("threads", args.json, run=args.run, limit=args.n, window=args.window)
    if res is None:
        return 0
    if args.json:
        print_json(res)
        return 0
    if not res["rows"]:
        out(no_samples_hint(res["run"], window=args.window))
        return 0
    out(f"{'on-CPU ms':>10} {'off-CPU ms':>10} {'samples':>8} {'blocked':>8} {'pid':>7} "
        f"{'tid':>7}  name")
    for r in res["rows"]:
        out(f"{r['oncpu_ns'] / 1e6:10.1f} {r['offcpu_ns'] / 1e6:10.1f} {r['samples']:8d} "
            f"{r['blocked'] or '-':>8} {r['pid']:7d} {r['tid']:7d}  {esc(r['name'])}")
    if res["threads"] > len(res["rows"]):
        out(f"({res['threads'] - len(res['rows'])} more threads; -n 0 shows all)")
    return 0


THREADS = Command("threads", "one row per thread", cmd_threads, arguments)
