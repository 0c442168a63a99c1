"""``stax completions SHELL``: print a completion script for bash, zsh or fish, generated from
this very parser (stax.cli.completions), so it always matches the installed commands."""

from __future__ import annotations

import argparse
import sys

from stax.cli.command import Command

SHELLS = ("bash", "zsh", "fish")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")


def cmd_completions(args: argparse.Namespace) -> int:
    from stax.cli.completions import script

    sys.stdout.write(script(args.root_parser, args.shell))
    return 0


COMPLETIONS = Command("completions", "print a shell completion script (bash, zsh or fish)",
                      cmd_completions, arguments)
