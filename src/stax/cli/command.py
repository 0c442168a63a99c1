"""The one interface through which a subcommand joins ``stax``, and the argument types the
subcommands share.

Each module of ``stax.cli.commands`` declares its subcommands as ``Command`` values: the name and
one-line help, a function adding its arguments to its parser, and the handler that runs it and
prints its text or ``--json``. ``stax.cli.main`` only registers them in order and dispatches.

Stdlib only: the whole parser is built for every invocation, ``stax --help`` included, so nothing
here (or at the top of a command module) may load more than the CLI's own small modules.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from stax.limits import MAX_COUNT, MAX_ID, MAX_PID


def _no_arguments(p: argparse.ArgumentParser) -> None:
    pass


class Command:
    """A subcommand: ``stax NAME`` (``help`` in ``stax --help`` and as its description),
    ``arguments`` adding its options to its parser, ``run`` handling it (the exit status)."""

    __slots__ = ("name", "help", "run", "arguments")

    def __init__(self, name: str, help: str, run: Callable[[argparse.Namespace], int],
                 arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments) -> None:
        self.name = name
        self.help = help
        self.run = run
        self.arguments = arguments

    def register(self, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """Add this command's parser (its help doubling as description) to ``sub``."""
        p = sub.add_parser(self.name, help=self.help, description=self.help)
        self.arguments(p)
        return p


def json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document")


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {text[:40]!r}") from None
        if not lo <= v <= hi:
            got = text if len(text) <= 24 else text[:20] + "…"
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi} (got {got})")
        return v
    return parse


def float_in(lo: float, hi: float, lo_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number: {text[:40]!r}") from None
        if not math.isfinite(v) or not lo <= v <= hi or (lo_open and v <= lo):
            rng = f"above {lo:g} and at most {hi:g}" if lo_open else f"from {lo:g} to {hi:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {rng} (got {text[:40]})")
        return v
    return parse


# The same ranges the server enforces (stax.server.params; docs/protocol.md).
count_arg = int_in(0, MAX_COUNT)
pid_arg = int_in(1, MAX_PID)
tid_arg = int_in(0, MAX_PID)
run_arg = int_in(1, MAX_ID)


WINDOW_HELP = ("only what happened in this time window: A..B, A.. or ..B, where A and B are "
               "seconds from the run's start (0.5) or labels of marks (stax mark LABEL)")


def window_arg(text: str) -> str:
    """A ``--window`` value, its spelling checked here (its marks are resolved by whoever
    reads the run: the server, or ``stax compare``)."""
    from stax.profile.window import WindowError, parse

    try:
        parse(text)
    except WindowError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def window_flag(p: argparse.ArgumentParser, *names: str, help: str = WINDOW_HELP) -> None:
    """``--window A..B`` on a command that reads samples or intervals (``args.window``: the
    text, or None); pass it on as the query's ``window`` parameter."""
    p.add_argument(*(names or ("--window",)), type=window_arg, metavar="A..B", help=help)


def inline_flag(p: argparse.ArgumentParser) -> None:
    """``--no-inline`` on a view of call stacks (``args.no_inline``): inlined functions folded
    into the function they were inlined in; pass it on as the query's ``no_inline``."""
    p.add_argument("--no-inline", action="store_true",
                   help="fold inlined functions into their callers (no inline frames)")
