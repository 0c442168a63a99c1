"""``stax list`` and ``stax select-run``: the runs the server has hosted, and the one queried."""

from __future__ import annotations

import argparse

from stax.cli.command import Command, json_flag, run_arg
from stax.cli.common import NO_RUNS, call, out, print_json, run_line


def _select_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=run_arg, metavar="ID")
    json_flag(p)


def cmd_list(args: argparse.Namespace) -> int:
    res = call("list_runs")
    if args.json:
        print_json(res)
        return 0
    if not res["runs"]:
        out(NO_RUNS)
    for r in res["runs"]:
        mark = "*" if r["id"] == res["current"] else " "
        out(f"{mark} {run_line(r)}")
    return 0


def cmd_select_run(args: argparse.Namespace) -> int:
    res = call("select_run", run=args.id)
    if args.json:
        print_json(res)
    else:
        out(f"selected: {run_line(res)}")
    return 0


LIST = Command("list", "every run the server has hosted", cmd_list, json_flag)
SELECT_RUN = Command("select-run", "make a stopped run the current query state", cmd_select_run,
                     _select_run_arguments)
