"""``stax top``: the flat leaderboard of functions by self or total time."""

from __future__ import annotations

import argparse

from stax.cli.command import (
    Command,
    count_arg,
    inline_flag,
    json_flag,
    run_arg,
    tid_arg,
    window_flag,
)
from stax.cli.common import esc, fmt_ms, func_name, header, no_samples_hint, out, print_json, query


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--limit", dest="n", type=count_arg, default=20, metavar="N",
                   help="rows (0 = all; default 20)")
    p.add_argument("--sort", choices=("self", "total"), default="self")
    p.add_argument("--tid", type=tid_arg)
    p.add_argument("--run", type=run_arg, metavar="ID")
    window_flag(p)
    inline_flag(p)
    json_flag(p)


def cmd_top(args: argparse.Namespace) -> int:
    res = query("top", args.json, run=args.run, tid=args.tid, sort=args.sort, limit=args.n,
                window=args.window,
                no_inline=args.no_inline or None)
    if res is None:
        return 0
    if args.json:
        print_json(res)
        return 0
    if not res["total_samples"]:
        out(no_samples_hint(res["run"], args.tid, args.window))
        return 0
    key = args.sort
    out(header(res, f"{res['total_samples']} samples, {res['total_ns'] / 1e6:.1f} ms "
                     f"on-CPU, by {key} time"))
    out(f"{'on-CPU':>12} {'samples':>7} {'%':>6}  function  (binary)")
    for r in res["rows"]:
        out(f"{fmt_ms(r[key + '_ns'])}  {r[key + '_samples']:6d} {r[key + '_pct']:5.1f}%  "
            f"{func_name(r)}  ({esc(r['binary'])})")
    shown = len(res["rows"])
    if res["functions"] > shown:
        out(f"({res['functions'] - shown} more functions; -n 0 shows all)")
    return 0


TOP = Command("top", "flat leaderboard of functions", cmd_top, arguments)
