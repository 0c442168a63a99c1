"""``stax mark LABEL``: a named mark at "now" in the active run, usable as a window end
(``stax top --window LABEL..``) and drawn on the web UI's timeline."""

from __future__ import annotations

import argparse

from stax.cli.command import Command, json_flag
from stax.cli.common import call, esc, out, print_json


def _label(text: str) -> str:
    from stax.profile.window import WindowError, check_label

    try:
        return check_label(text)
    except WindowError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("label", metavar="LABEL", type=_label,
                   help="the mark's name: printable, unique in the run, not a number")
    json_flag(p)


def cmd_mark(args: argparse.Namespace) -> int:
    res = call("mark", label=args.label)
    if args.json:
        print_json(res)
        return 0
    out(f"marked {esc(res['label'])} at {res['time_ns'] / 1e9:.3f} s in run {res['run']['id']}")
    return 0


MARK = Command("mark", "put a named mark at \"now\" in the active run (a --window end)", cmd_mark,
               arguments)
