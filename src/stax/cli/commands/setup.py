"""``stax setup``: as root, install staxd (the privileged perf broker) as a service."""

from __future__ import annotations

import argparse

from stax.cli.command import Command
from stax.limits import STAXD_SOCKET


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", default=STAXD_SOCKET, metavar="PATH",
                   help=f"where staxd listens (default {STAXD_SOCKET})")


def cmd_setup(args: argparse.Namespace) -> int:
    from stax.staxd import setup

    return setup.cmd_setup(args.socket)


SETUP = Command("setup", "as root: install staxd (the privileged perf broker) as a service",
                cmd_setup, arguments)
