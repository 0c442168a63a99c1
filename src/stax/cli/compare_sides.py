"""``stax compare``'s two sides (archive paths, or runs of the server's history) and its
``--fail-…`` thresholds: the arguments, and turning each side into an archive to read.

A side is an archive path (positional) or ``--run ID``; they fill BASE then CAND in the order
written. ``--base-run ID`` / ``--cand-run ID`` name a side outright, the others fill the rest.
A run's archive is the one the server keeps it in (its summary's ``archive``); a stopped run
that is not kept on disk (history off or full, or still being written) is saved through the
``save`` RPC to a temporary directory, removed afterwards. A run still recording is refused:
a comparison made to pass or fail a build reads finished runs only.

Stdlib only at the top: the parser is built for every ``stax`` invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from stax.cli.command import float_in, run_arg
from stax.cli.common import call, die

MAX_THRESHOLD = 1e12  # far above any meaningful limit, and finite

SIDES_USAGE = ("compare needs two sides, BASE then CAND: archive paths and/or --run ID "
               "(or --base-run ID / --cand-run ID)")


class _Side(argparse.Action):
    """Appends ("path", PATH) or ("run", ID) to ``sides`` in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        sides = list(getattr(ns, self.dest, None) or [])
        if option_string is None:
            sides += [("path", v) for v in values]
        else:
            sides.append(("run", values))
        setattr(ns, self.dest, sides)


def side_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sides", nargs="*", action=_Side, default=None, metavar="ARCHIVE",
                   help="an archive directory (or its stax-archive.json): BASE, then CAND")
    p.add_argument("--run", dest="sides", action=_Side, type=run_arg, metavar="ID",
                   help="a run the server hosts (stax list) as the next side; repeatable")
    p.add_argument("--base-run", type=run_arg, metavar="ID", help="the server's run ID as BASE")
    p.add_argument("--cand-run", type=run_arg, metavar="ID", help="the server's run ID as CAND")


def threshold_arguments(p: argparse.ArgumentParser) -> None:
    limit = float_in(0, MAX_THRESHOLD)
    g = p.add_argument_group("thresholds (exit status 2 when one is exceeded)")
    g.add_argument("--fail-oncpu-delta-pct", type=limit, metavar="P",
                   help="CAND's total on-CPU time rose by more than P%% of BASE's")
    g.add_argument("--fail-oncpu-delta-ms", type=limit, metavar="MS",
                   help="CAND's total on-CPU time rose by more than MS milliseconds")
    g.add_argument("--fail-offcpu-delta-ms", type=limit, metavar="MS",
                   help="CAND's total off-CPU time rose by more than MS milliseconds")
    g.add_argument("--fail-function-delta-pct", type=limit, metavar="P",
                   help="a function's self share of on-CPU samples rose by more than P points")


def thresholds(args: argparse.Namespace) -> Any:
    from stax.archive.thresholds import Thresholds

    return Thresholds(args.fail_oncpu_delta_pct, args.fail_oncpu_delta_ms,
                      args.fail_offcpu_delta_ms, args.fail_function_delta_pct)


def side_order(args: argparse.Namespace) -> tuple[tuple[str, Any], tuple[str, Any]]:
    listed = list(args.sides or [])
    base = ("run", args.base_run) if args.base_run is not None else (
        listed.pop(0) if listed else None)
    cand = ("run", args.cand_run) if args.cand_run is not None else (
        listed.pop(0) if listed else None)
    if base is None or cand is None or listed:
        die(SIDES_USAGE)
    return base, cand


@contextlib.contextmanager
def resolved(args: argparse.Namespace) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """BASE and CAND as ``{path, run}`` (``run``: the id, or None for an archive path); the
    temporary archives of runs saved for the comparison live until the block ends."""
    import shutil
    import tempfile

    sides = side_order(args)
    summaries: dict[int, dict[str, Any]] = {}
    if any(kind == "run" for kind, _ in sides):
        summaries = {r["id"]: r for r in call("list_runs")["runs"]}
    tmp: str | None = None
    try:
        out = []
        for kind, value in sides:
            if kind == "path":
                out.append({"path": os.path.abspath(os.path.expanduser(value)), "run": None})
                continue
            run = summaries.get(value)
            if run is None:
                die(f"no run {value} on the server (stax list shows its runs)")
            if run.get("state") == "recording":
                die(f"run {value} is still recording; compare reads finished runs "
                    "(end it with: stax stop)")
            path = run.get("archive")
            if not (isinstance(path, str) and os.path.isdir(path)):
                tmp = tmp or tempfile.mkdtemp(prefix="stax-compare-")
                path = call("save", timeout=600, path=os.path.join(tmp, f"run-{value}.stax"),
                            run=value)["path"]
            out.append({"path": path, "run": value})
        yield out[0], out[1]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
