"""``stax wait``: block until the active run reaches a condition or stops.

It never races a `stax record … &` started just before it: while no server answers and no run
records, it waits for them (up to ``--timeout-ms``, else ``WAIT_START_GRACE_S``), and a run that
stopped after this command started counts as the one it was meant for.
"""

from __future__ import annotations

import argparse
import os
import time

from stax.cli.command import Command, count_arg, float_in, int_in, json_flag
from stax.cli.common import connect, die, out, print_json, run_line
from stax.limits import MAX_SECONDS, WAIT_START_GRACE_S


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--for-samples", type=count_arg, metavar="N")
    p.add_argument("--for-seconds", type=float_in(0, MAX_SECONDS), metavar="N")
    p.add_argument("--until-symbol", metavar="S",
                   help="until a sampled frame's name contains S (case-sensitive)")
    p.add_argument("--timeout-ms", type=int_in(0, MAX_SECONDS * 1000), metavar="MS",
                   help="give up after MS (exit 1); without it, wait at most "
                        f"{WAIT_START_GRACE_S:g} s for a run to start")
    json_flag(p)


def started_mono_ns() -> int | None:
    """When this process started, on CLOCK_MONOTONIC (the server's clock for runs), rounded up
    to the next clock tick; None when /proc cannot tell."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rfind(b")") + 2:].split()[19])
        hz = os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - (ticks + 1) / hz
    except (OSError, ValueError, IndexError):
        return None
    return max(0, int((time.monotonic() - max(age, 0.0)) * 1e9))


def cmd_wait(args: argparse.Namespace) -> int:
    from stax.client import RemoteError, ServerUnavailable

    since = started_mono_ns()
    t0 = time.monotonic()
    conds = [c for c in (args.for_samples, args.for_seconds, args.until_symbol) if c is not None]
    if len(conds) > 1:
        die("--for-samples, --for-seconds and --until-symbol are mutually exclusive")
    grace = WAIT_START_GRACE_S if args.timeout_ms is None else args.timeout_ms / 1000
    with connect(timeout=None, patience=grace) as c:
        spent_ms = round((time.monotonic() - t0) * 1000)
        timeout_ms = None if args.timeout_ms is None else max(0, args.timeout_ms - spent_ms)
        params = {"for_samples": args.for_samples, "for_seconds": args.for_seconds,
                  "until_symbol": args.until_symbol, "timeout_ms": timeout_ms,
                  "wait_for_run_ms": max(0, round(grace * 1000) - spent_ms),
                  "stopped_since_ns": since}
        try:
            res = c.call("wait", timeout=None if timeout_ms is None else timeout_ms / 1000 + 30,
                         **{k: v for k, v in params.items() if v is not None})
        except RemoteError as e:
            die(e.message)
        except ServerUnavailable as e:
            die(f"lost the connection to stax-server: {e}")
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
