"""``stax wait``: block until the active run reaches a condition or stops."""

from __future__ import annotations

import argparse

from stax.cli.command import Command, count_arg, float_in, int_in, json_flag
from stax.cli.common import call, die, out, print_json, run_line
from stax.limits import MAX_SECONDS


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--for-samples", type=count_arg, metavar="N")
    p.add_argument("--for-seconds", type=float_in(0, MAX_SECONDS), metavar="N")
    p.add_argument("--until-symbol", metavar="S",
                   help="until a sampled frame's name contains S (case-sensitive)")
    p.add_argument("--timeout-ms", type=int_in(0, MAX_SECONDS * 1000), metavar="MS")
    json_flag(p)


def cmd_wait(args: argparse.Namespace) -> int:
    conds = [c for c in (args.for_samples, args.for_seconds, args.until_symbol) if c is not None]
    if len(conds) > 1:
        die("--for-samples, --for-seconds and --until-symbol are mutually exclusive")
    if args.timeout_ms is not None and args.timeout_ms < 0:
        die("--timeout-ms must be >= 0")
    if args.for_samples is not None and args.for_samples < 0:
        die("--for-samples must be >= 0")
    timeout = None if args.timeout_ms is None else args.timeout_ms / 1000 + 30
    res = call("wait", timeout=timeout, for_samples=args.for_samples,
               for_seconds=args.for_seconds, until_symbol=args.until_symbol,
               timeout_ms=args.timeout_ms)
    if args.json:
        print_json(res)
    elif res["status"] == "met":
        out(f"condition met: {run_line(res['run'])}")
    elif res["status"] == "stopped":
        prefix = "run stopped" if conds else "condition met"
        out(f"{prefix}: {run_line(res['run'])}")
    else:
        out(f"timed out: {run_line(res['run'])}")
    return 1 if res["status"] == "timeout" else 0


WAIT = Command("wait", "block until a condition holds (default: the active run stops)", cmd_wait,
               arguments)
