"""``stax record``: its arguments, their checks, and the hand-over to ``stax.cli.record`` (through
stax-server) or, when no server can be reached, ``stax.cli.offline`` (in this process).
"""

from __future__ import annotations

import argparse
import os

from stax import sysctl
from stax.cli.command import Command, float_in, json_flag, pid_arg
from stax.cli.common import die
from stax.limits import DEFAULT_FREQUENCY, MAX_FREQUENCY, MAX_SECONDS, STAXD_CLIENT_SOCKET


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-F", "--frequency", type=int, default=DEFAULT_FREQUENCY, metavar="HZ",
                   help=f"samples per second per thread on CPU (default {DEFAULT_FREQUENCY})")
    p.add_argument("-l", "--time-limit", type=float_in(0, MAX_SECONDS, lo_open=True),
                   metavar="SECS", help="stop recording after SECS seconds (at most a week)")
    p.add_argument("-p", "--pid", type=pid_arg, help="attach to a running process")
    p.add_argument("--no-dwarf-unwind", action="store_true",
                   help="use only the kernel's frame-pointer call chain")
    p.add_argument("--no-python", action="store_true",
                   help="do not read a CPython target's Python stacks (native frames only)")
    p.add_argument("--daemon-socket", metavar="PATH", default=STAXD_CLIENT_SOCKET,
                   help=f"staxd broker socket (default {STAXD_CLIENT_SOCKET})")
    json_flag(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")


def validate(args: argparse.Namespace, command: list[str]) -> None:
    if args.pid is not None and command:
        die("specify either --pid or a command to launch, not both")
    if args.pid is None and not command:
        die("nothing to record: give a command after -- (stax record -- ./prog args) "
            "or attach with --pid PID")
    limit = _max_sample_rate()
    if not 1 <= args.frequency <= limit:
        die(f"-F/--frequency must be between 1 and {limit} Hz (got {args.frequency}; "
            f"the kernel allows at most perf_event_max_sample_rate={limit})")
    if args.time_limit is not None and args.time_limit <= 0:
        die(f"-l/--time-limit must be a positive number of seconds (got {args.time_limit})")
    if args.pid is not None and args.pid <= 0:
        die(f"--pid must be a positive process id (got {args.pid})")


def _max_sample_rate() -> int:
    return min(MAX_FREQUENCY, sysctl.read_int("kernel.perf_event_max_sample_rate",
                                              MAX_FREQUENCY))


def cmd_record(args: argparse.Namespace) -> int:
    command = args.command or []
    if command and command[0] == "--":
        command = command[1:]
    if os.environ.get("STAX_DWARF_UNWIND") == "0":
        args.no_dwarf_unwind = True
    validate(args, command)
    from stax.cli.record import attach, launch

    if args.pid is not None:
        return attach(args)
    return launch(args, command)


RECORD = Command("record", "record a command (after --) or a running process (--pid)",
                 cmd_record, arguments)
