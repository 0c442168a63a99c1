"""Every ``stax`` subcommand, one module per command or small family, in the order ``stax
--help`` lists them. Each module declares its ``Command`` values (``stax.cli.command``): the
arguments, the handler, and its text and ``--json`` output together.

Importing this package loads every command module, so each keeps its top level to the stdlib and
the CLI's own small modules; the handlers import the rest (archives, capture, staxd) when run.
"""

from __future__ import annotations

from stax.cli.command import Command
from stax.cli.commands import (
    annotate,
    archive,
    completions,
    diagnose,
    flame,
    mark,
    neighbors,
    record,
    runs,
    setup,
    stalls,
    status,
    stop,
    threads,
    top,
    wait,
    wakers,
)

COMMANDS: tuple[Command, ...] = (
    record.RECORD, status.STATUS, runs.LIST, wait.WAIT, mark.MARK, stop.STOP,
    runs.SELECT_RUN, top.TOP,
    flame.FLAME, threads.THREADS, wakers.WAKERS, diagnose.DIAGNOSE, diagnose.DUMP,
    archive.SAVE, archive.OPEN, archive.COMPARE, archive.EXPORT, annotate.ANNOTATE,
    stalls.STALLS, neighbors.CALLERS, neighbors.CALLEES, neighbors.NEIGHBORS, setup.SETUP,
    completions.COMPLETIONS,
)
