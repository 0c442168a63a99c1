"""The ``stax`` command: argument parsing and dispatch to one module per family of subcommands.

Bad arguments and failures print one ``error: …`` line and exit 1; never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from stax import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        from stax.cli.common import esc, out

        out(f"error: {esc(message)} (see: {self.prog} --help)", err=True)
        raise SystemExit(1)


# The same ranges the server enforces (stax.server.params; docs/protocol.md).
MAX_PID = 1 << 22
MAX_ID = (1 << 31) - 1
MAX_COUNT = 1_000_000_000
MAX_SECONDS = 7 * 24 * 3600


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
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


def _float_in(lo: float, hi: float, lo_open: bool = False) -> Callable[[str], float]:
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


_nonneg_int = _int_in(0, MAX_COUNT)
_pid = _int_in(1, MAX_PID)
_tid = _int_in(0, MAX_PID)
_run_id = _int_in(1, MAX_ID)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="stax", description="A sampling profiler for native Linux programs.")
    ap.add_argument("--version", action="version", version=f"stax {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_)

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print one JSON document")

    p = add("record", "record a command (after --) or a running process (--pid)")
    p.add_argument("-F", "--frequency", type=int, default=900, metavar="HZ",
                   help="samples per second per thread on CPU (default 900)")
    p.add_argument("-l", "--time-limit", type=_float_in(0, MAX_SECONDS, lo_open=True),
                   metavar="SECS", help="stop recording after SECS seconds (at most a week)")
    p.add_argument("-p", "--pid", type=_pid, help="attach to a running process")
    p.add_argument("--no-dwarf-unwind", action="store_true",
                   help="use only the kernel's frame-pointer call chain")
    p.add_argument("--daemon-socket", metavar="PATH", default="/var/run/staxd.sock",
                   help="staxd broker socket (default /var/run/staxd.sock)")
    json_flag(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")

    add("status", "the active run and the server")
    json_flag(sub.choices["status"])
    add("list", "every run the server has hosted")
    json_flag(sub.choices["list"])

    p = add("wait", "block until a condition holds (default: the active run stops)")
    p.add_argument("--for-samples", type=_nonneg_int, metavar="N")
    p.add_argument("--for-seconds", type=_float_in(0, MAX_SECONDS), metavar="N")
    p.add_argument("--until-symbol", metavar="S",
                   help="until a sampled frame's name contains S (case-sensitive)")
    p.add_argument("--timeout-ms", type=_int_in(0, MAX_SECONDS * 1000), metavar="MS")
    json_flag(p)

    add("stop", "stop the active run")
    json_flag(sub.choices["stop"])

    p = add("select-run", "make a stopped run the current query state")
    p.add_argument("id", type=_run_id, metavar="ID")
    json_flag(p)

    p = add("top", "flat leaderboard of functions")
    p.add_argument("-n", type=_nonneg_int, default=20, help="rows (0 = all; default 20)")
    p.add_argument("--sort", choices=("self", "total"), default="self")
    p.add_argument("--tid", type=_tid)
    p.add_argument("--run", type=_run_id, metavar="ID")
    json_flag(p)

    p = add("flame", "the call tree as an indented tree")
    p.add_argument("-d", "--depth", type=_int_in(1, MAX_COUNT), default=12,
                   help="print depth (default 12)")
    p.add_argument("--threshold-pct", type=_float_in(0, 100), default=1.0,
                   help="hide nodes under this share of samples (default 1.0; 0 = all)")
    p.add_argument("--tid", type=_tid)
    p.add_argument("--run", type=_run_id, metavar="ID")
    p.add_argument("--mode", choices=("cpu", "offcpu", "wall"), default="cpu")
    json_flag(p)

    p = add("threads", "one row per thread")
    p.add_argument("-n", type=_nonneg_int, default=20, help="rows (0 = all; default 20)")
    p.add_argument("--run", type=_run_id, metavar="ID")
    json_flag(p)

    p = add("wakers", "wakeup edges: which thread woke which, and the blocked time it ended")
    p.add_argument("-n", type=_nonneg_int, default=20, help="rows (0 = all; default 20)")
    p.add_argument("--tid", type=_tid, help="only edges where this thread is either side")
    p.add_argument("--run", type=_run_id, metavar="ID")
    json_flag(p)

    p = add("diagnose", "the server's own accounting for the current run")
    p.add_argument("--run", type=_run_id, metavar="ID")
    json_flag(p)

    add("dump", "ask stax-server to write a debug snapshot to its log")

    p = add("save", "write the current run (or --run ID) to a directory archive")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--run", type=_run_id, metavar="ID")
    json_flag(p)
    p = add("open", "load an archive as the current query state")
    p.add_argument("path", metavar="PATH", help="the archive directory or its main file")
    json_flag(p)
    p = add("compare", "compare two archives (no server needed)")
    p.add_argument("base", metavar="BASE")
    p.add_argument("cand", metavar="CAND")
    p.add_argument("-n", type=_nonneg_int, default=20,
                   help="rows per table (0 = all; default 20)")
    json_flag(p)
    p = add("export", "write a run in another tool's format")
    p.add_argument("--format", required=True, choices=("folded", "speedscope", "pprof", "gecko"))
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    p.add_argument("--run", type=_run_id, metavar="ID")
    p.add_argument("--tid", type=_tid)
    p = add("annotate", "one function disassembled, with samples per instruction and source "
                        "lines")
    p.add_argument("target", metavar="TARGET",
                   help="a hex address (0x401136) or part of a function name (the hottest "
                        "match wins)")
    p.add_argument("--tid", type=_tid)
    p.add_argument("--run", type=_run_id, metavar="ID")
    json_flag(p)
    p = add("setup", "as root: install staxd (the privileged perf broker) as a service")
    p.add_argument("--socket", default="/run/staxd.sock", metavar="PATH",
                   help="where staxd listens (default /run/staxd.sock)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.cmd is None:
        ap.print_help()
        return 0
    from stax.cli.common import CLIError, esc, out

    try:
        if args.cmd == "record":
            from stax.cli.record import cmd_record

            return cmd_record(args)
        if args.cmd in ("save", "open", "compare", "export"):
            from stax.cli import archive

            return {"save": archive.cmd_save, "open": archive.cmd_open,
                    "compare": archive.cmd_compare, "export": archive.cmd_export}[args.cmd](args)
        if args.cmd == "annotate":
            from stax.cli.annotate import cmd_annotate

            return cmd_annotate(args)
        if args.cmd == "setup":
            from stax.staxd.setup import cmd_setup

            return cmd_setup(args.socket)
        from stax.cli import query

        handler = {
            "status": query.cmd_status, "list": query.cmd_list, "wait": query.cmd_wait,
            "stop": query.cmd_stop, "select-run": query.cmd_select_run, "top": query.cmd_top,
            "flame": query.cmd_flame, "threads": query.cmd_threads,
            "diagnose": query.cmd_diagnose, "dump": query.cmd_dump,
            "wakers": query.cmd_wakers,
        }[args.cmd]
        return handler(args)
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
