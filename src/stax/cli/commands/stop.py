"""``stax stop``: stop the active run."""

from __future__ import annotations

import argparse

from stax.cli.command import Command, json_flag
from stax.cli.common import call, out, print_json, run_line


def cmd_stop(args: argparse.Namespace) -> int:
    res = call("stop", timeout=60)
    if args.json:
        print_json(res)
    else:
        out(f"stopped: {run_line(res)}")
    return 0


STOP = Command("stop", "stop the active run", cmd_stop, json_flag)
