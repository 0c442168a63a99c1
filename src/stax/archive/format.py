"""The stax archive: a directory holding one run's tables, symbols resolved, columns compressed.

``save`` writes it atomically (a temporary sibling directory renamed into place); ``load`` checks
magic, version, sizes and checksums and raises ArchiveError with a one-line reason on bad input.

This module is the archive's public face, the one the rest of stax imports: the on-disk layout
and column codec are in layout.py, writing in writer.py, reading in reader.py.
"""

from __future__ import annotations

from stax.archive.layout import (
    ARRAY_CODES,
    DATA_FILE,
    FORMAT,
    INTERVALS,
    MAIN_FILE,
    PROFILE_ATTRS,
    SUFFIX,
    TABLES,
    VERSION,
    WAKEUPS,
    Archive,
    ArchiveError,
    func_of_row,
    func_row,
    locate,
    read_manifest,
)
from stax.archive.reader import intervals_of, load, marks_of
from stax.archive.writer import resolve_all, save, update_run

__all__ = [
    "ARRAY_CODES", "DATA_FILE", "FORMAT", "INTERVALS", "MAIN_FILE", "PROFILE_ATTRS", "SUFFIX",
    "TABLES", "VERSION", "WAKEUPS",
    "Archive", "ArchiveError", "func_of_row", "func_row", "intervals_of", "load", "locate",
    "marks_of", "read_manifest",
    "resolve_all", "save", "update_run",
]
