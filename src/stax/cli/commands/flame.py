"""``stax flame``: the call tree (on-CPU, off-CPU or wall time) as an indented tree."""

from __future__ import annotations

import argparse
from typing import Any

from stax.cli.command import (
    Command,
    float_in,
    inline_flag,
    int_in,
    json_flag,
    run_arg,
    tid_arg,
    window_flag,
)
from stax.cli.common import (
    die,
    esc,
    fmt_ms,
    func_name,
    header,
    no_samples_hint,
    none_line,
    out,
    query_text,
)
from stax.limits import MAX_COUNT


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--max-depth", "--depth", dest="depth", type=int_in(1, MAX_COUNT),
                   default=12, metavar="DEPTH", help="print depth (default 12)")
    p.add_argument("--threshold-pct", type=float_in(0, 100), default=1.0,
                   help="hide nodes under this share of samples (default 1.0; 0 = all)")
    p.add_argument("--tid", type=tid_arg)
    p.add_argument("--run", type=run_arg, metavar="ID")
    p.add_argument("--mode", choices=("cpu", "offcpu", "wall"), default="cpu")
    p.add_argument("--inverted", action="store_true",
                   help="bottom-up: the running functions as roots (by self time), their "
                        "callers below")
    window_flag(p)
    inline_flag(p)
    json_flag(p)


def _print_tree(node: dict[str, Any], indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    lines.append(f"{fmt_ms(node['time_ns'])} {node['samples']:6d} {node['pct']:5.1f}%  {pad}"
                 f"{func_name(node)}  ({esc(node['binary'])})")
    if node.get("collapsed_frames"):
        lines.append(f"{'':30}{pad}  … {node['collapsed_frames']} more frames")
    for child in node.get("children", []):
        _print_tree(child, indent + 1, lines)
    hidden = node.get("hidden")
    if hidden:
        lines.append(f"{'':30}{pad}  … {hidden['nodes']} more below the threshold "
                     f"({hidden['time_ns'] / 1e6:.1f} ms)")


def cmd_flame(args: argparse.Namespace) -> int:
    if args.depth < 1:
        die("-d/--depth must be >= 1")
    if args.threshold_pct < 0 or args.threshold_pct > 100:
        die("--threshold-pct must be between 0 and 100")
    res = query_text("flamegraph", args.json, run=args.run, tid=args.tid,
                     max_depth=args.depth, threshold_pct=args.threshold_pct, mode=args.mode,
                     window=args.window, no_inline=args.no_inline or None,
                     inverted=args.inverted or None)
    if res is None:
        return 0
    if not res["total_samples"]:
        if args.mode == "offcpu":
            if not res.get("note"):
                out(none_line("off-CPU intervals", args.tid))
        else:
            out(no_samples_hint(res["run"], args.tid, args.window))
        return 0
    kind = f"{args.mode}, inverted" if args.inverted else args.mode
    out(header(res, f"{kind}: on-CPU {res['oncpu_ns'] / 1e6:.1f} ms "
                     f"({res.get('samples', res['total_samples'])} samples), off-CPU "
                     f"{res['offcpu_ns'] / 1e6:.1f} ms ({res.get('intervals', 0)} intervals)"))
    lines: list[str] = []
    for root in res["roots"]:
        _print_tree(root, 0, lines)
    if res["hidden"]["nodes"]:
        lines.append(f"… {res['hidden']['nodes']} smaller roots below the threshold")
    out("\n".join(lines))
    return 0


FLAME = Command("flame", "the call tree as an indented tree", cmd_flame, arguments)
