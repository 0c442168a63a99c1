"""Exports of a run to other tools' formats: one small module per format over the tables.

Every converter takes the Profile, an optional thread filter and an optional off-CPU intervals
table (NumPy columns tid/start_ns/duration_ns/reason/stack/state/wakeup) and returns the file's
bytes. What the formats share is in common.py; this package only names the formats and
dispatches to them.
"""

from __future__ import annotations

from collections.abc import Callable

FORMATS = ("folded", "speedscope", "pprof", "gecko")


def converter(fmt: str) -> Callable[..., bytes]:
    if fmt == "folded":
        from stax.archive.export.folded import convert
    elif fmt == "speedscope":
        from stax.archive.export.speedscope import convert
    elif fmt == "pprof":
        from stax.archive.export.pprof import convert
    elif fmt == "gecko":
        from stax.archive.export.gecko import convert
    else:
        raise ValueError(f"unknown export format {fmt!r} (one of: {', '.join(FORMATS)})")
    return convert
