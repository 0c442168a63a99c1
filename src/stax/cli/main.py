"""The ``stax`` command: the parser built from the list of commands (``stax.cli.commands``), and
dispatch to the one that was named.

Bad arguments and failures print one ``error: …`` line and exit 1; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from stax import __version__
from stax.cli.commands import COMMANDS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        from stax.cli.common import esc, out

        out(f"error: {esc(message)} (see: {self.prog} --help)", err=True)
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="stax", description="A sampling profiler for native Linux programs.")
    ap.add_argument("-V", "--version", action="version", version=f"stax {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    ap.set_defaults(root_parser=ap)  # for `stax completions`, which walks the whole parser
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.cmd is None:
        ap.print_help()
        return 0
    from stax.cli.common import CLIError, esc, out

    run = next(c.run for c in COMMANDS if c.name == args.cmd)
    try:
        return run(args)
    except CLIError as e:
        out(f"error: {esc(e)}", err=True)
        return 1
    except KeyboardInterrupt:
        out("error: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
