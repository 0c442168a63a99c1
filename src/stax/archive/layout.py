"""The stax archive on disk: a directory holding a JSON manifest and one file of compressed
columns. The names, the table schema, the column codec (delta, byte shuffle, zlib), the table
columns a Profile holds, and finding and reading an archive's manifest.

writer.py and reader.py build on this; format.py is the archive's public face.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any

from stax.profile.tables import Func, Profile
from stax.protocol import JSONError, decode

FORMAT = "stax-archive"
VERSION = 3  # 2: intervals carry state and wakeup, reason is <i1 and named by "reasons"
# 3: binaries carry their loadable segments, "code" (stax save --with-code), single-file form
MAIN_FILE = "stax-archive.json"
DATA_FILE = "columns.bin"
SUFFIX = ".stax"

# table -> [(column, dtype, delta-encoded)]; dtypes are NumPy little-endian type strings
SAMPLES = [("time_ns", "<i8", True), ("tid", "<i4", False), ("stack", "<i4", False),
           ("weight_ns", "<i8", False), ("cpu", "<i2", False)]
FRAMES = [("binary", "<i4", False), ("offset", "<u8", False), ("func", "<i4", False)]
STACKS = [("parent", "<i4", False), ("frame", "<i4", False)]
INTERVALS = [("tid", "<i4", False), ("start_ns", "<i8", True), ("duration_ns", "<i8", False),
             ("reason", "<i1", False), ("stack", "<i4", False), ("state", "<i4", False),
             ("wakeup", "<i4", False)]
WAKEUPS = [("time_ns", "<i8", True), ("waker_tid", "<i4", False), ("wakee_tid", "<i4", False),
           ("waker_stack", "<i4", False)]
TABLES: dict[str, list[tuple[str, str, bool]]] = {
    "samples": SAMPLES, "frames": FRAMES, "stacks": STACKS, "intervals": INTERVALS,
    "wakeups": WAKEUPS,
}
# the Profile attributes the column tables live in
PROFILE_ATTRS = {
    "samples": ("s_time", "s_tid", "s_stack", "s_weight", "s_cpu"),
    "frames": ("frame_binary", "frame_offset", "frame_func"),
    "stacks": ("stack_parent", "stack_frame"),
}
ARRAY_CODES = {"<i8": "q", "<i4": "i", "<i2": "h", "<i1": "b", "<u8": "Q", "<u1": "B"}
# what version-1 archives hold differently: other dtypes, and columns they lack (read as this)
V1_DTYPES = {("intervals", "reason"): "<i2"}
V1_MISSING = {("intervals", "state"): 1, ("intervals", "wakeup"): -1}  # state 1: S
# columns of version 3 on that an archive may lack (read as this value): a new optional column
# is added here and to its table without a version bump; columns a reader does not know are
# skipped (the manifest lists every table's columns with dtype, offset, size and checksum)
OPTIONAL: dict[tuple[str, str], int] = {}
MAX_JSON_BYTES = 256 << 20


class ArchiveError(Exception):
    """An archive cannot be written or read; the message is one line meant for the user."""


@dataclass
class Archive:
    """A loaded archive: the rebuilt profile plus what the manifest says about the run."""

    path: str
    profile: Profile
    run: dict[str, Any]
    diagnostics: dict[str, Any]
    manifest: dict[str, Any]
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # tables with no attributes


# --- columns ------------------------------------------------------------------------------

def func_row(f: Func) -> list[Any]:
    """A function as the manifest (and the journal) lists it: name, binary name, binary path,
    start address (a Python function's first line), size, resolved, then ``inlined`` and
    ``python`` flags, each written only when it or a later one is set."""
    row: list[Any] = [f.name, f.binary, f.path, f.addr, f.size, f.resolved]
    if f.python:
        row += [f.inlined, True]
    elif f.inlined:
        row.append(True)
    return row


def func_of_row(f: list[Any]) -> Func:
    """The function of a manifest or journal row (``func_row``; rows written before a flag
    existed lack it: false)."""
    return Func(str(f[0]), str(f[1]), str(f[2]), int(f[3]), int(f[4]), bool(f[5]),
                len(f) > 6 and bool(f[6]), len(f) > 7 and bool(f[7]))


def encode_column(values: Any, dtype: str, delta: bool, level: int) -> bytes:
    """Delta (optional), byte-shuffle (all first bytes, then all second bytes…), zlib."""
    import numpy as np

    a = np.asarray(values, dtype=dtype)
    if delta and len(a):
        a = np.concatenate((a[:1], np.diff(a)))
    raw = a.view(np.uint8).reshape(len(a), a.dtype.itemsize).T.tobytes()
    return zlib.compress(raw, level)


def decode_column(blob: bytes, dtype: str, delta: bool, rows: int) -> Any:
    import numpy as np

    raw = zlib.decompress(blob)
    width = np.dtype(dtype).itemsize
    if len(raw) != rows * width:
        raise ArchiveError("column size does not match its row count")
    a = np.frombuffer(raw, dtype=np.uint8).reshape(width, rows).T.copy().view(dtype).reshape(rows)
    if delta and rows:
        a = np.cumsum(a, dtype=dtype)
    return a


def profile_columns(p: Profile, table: str, n: int | None = None) -> list[Any] | None:
    """The columns of one table, or None when this profile has no such table."""
    import numpy as np

    attrs = PROFILE_ATTRS.get(table)
    if attrs is not None:
        cols = [getattr(p, a) for a in attrs]
    else:
        obj = getattr(p, table, None)
        if obj is None:
            return None
        names = [c for c, _, _ in TABLES[table]]
        try:
            cols = [obj[c] if isinstance(obj, dict) else getattr(obj, c) for c in names]
        except (KeyError, AttributeError):
            return None
    out = []
    for c, (_, dtype, _) in zip(cols, TABLES[table], strict=True):
        # array slices are copies: no buffer of a live array stays exported (it could not grow)
        part = c[:n] if n is not None else c[:]
        if isinstance(part, array):  # read by the array's own item type, then widen/narrow
            col = (np.frombuffer(part, dtype=np.dtype(part.typecode)) if len(part)
                   else np.zeros(0, np.dtype(part.typecode)))
        else:
            col = np.asarray(part)
        out.append(col.astype(dtype))
    return out


def table_rows(p: Profile, table: str) -> int | None:
    """Rows of an optional table now (its first column's length), so all columns agree."""
    obj = getattr(p, table, None)
    if obj is None:
        return None
    first = TABLES[table][0][0]
    col = obj.get(first) if isinstance(obj, dict) else getattr(obj, first, None)
    return None if col is None else len(col)


# --- manifest -----------------------------------------------------------------------------

def locate(path: str) -> str:
    """The archive for ``path``: the directory (given itself or by its main file), or the
    single file (stax.archive.container)."""
    if not os.path.exists(path):
        raise ArchiveError(f"{path}: no such file or directory")
    if is_file_archive(path):
        return os.path.abspath(path)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, MAIN_FILE)):
            raise ArchiveError(f"{path} is not a stax archive (no {MAIN_FILE} inside)")
        return os.path.abspath(path)
    if os.path.basename(path) == MAIN_FILE:
        return os.path.dirname(os.path.abspath(path))
    raise ArchiveError(f"{path} is not a stax archive (expected a directory holding "
                       f"{MAIN_FILE}, that file, or a single-file archive)")


def read_manifest(path: str) -> tuple[str, dict[str, Any]]:
    d = locate(path)
    main = os.path.join(d, MAIN_FILE)
    if not os.path.isdir(d):  # the single-file form
        main = d
        raw = read_member(d, MAIN_FILE)
    else:
        try:
            with open(main, "rb") as f:
                raw = f.read(MAX_JSON_BYTES + 1)
        except OSError as e:
            raise ArchiveError(f"cannot read {main}: {e.strerror or e}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise ArchiveError(f"{main} is too large to be a stax archive manifest")
    try:
        m = decode(raw)  # strict: no NaN/Infinity, nesting bounded
    except JSONError as e:
        why = "not valid JSON" if str(e).startswith("invalid JSON") else str(e)
        raise ArchiveError(f"{main} is not a stax archive ({why}; truncated or "
                           "corrupted?)") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArchiveError(f"{main} is not a stax archive (no \"format\": \"{FORMAT}\")")
    v = m.get("version")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ArchiveError(f"{main}: archive version missing or not an integer")
    if v > VERSION:
        raise ArchiveError(f"{main} is archive format version {v}; this stax reads up to "
                           f"version {VERSION} (upgrade stax)")
    if v < 1:
        raise ArchiveError(f"{main}: unknown archive format version {v}")
    return d, m


# --- the single-file form (written by stax.archive.container) ----------------------------

MAX_DATA_BYTES = 64 << 30
MAX_MEMBERS = 16  # tar entries looked at (extra ones, e.g. pax headers, are skipped)


def is_file_archive(path: str) -> bool:
    """A regular file that is a tar holding the manifest."""
    if not os.path.isfile(path) or os.path.basename(path) == MAIN_FILE:
        return False
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def read_member(path: str, name: str) -> bytes:
    """The bytes of member ``name`` (MAIN_FILE or DATA_FILE) of the single-file archive."""
    limit = MAX_JSON_BYTES if name == MAIN_FILE else MAX_DATA_BYTES
    try:
        with tarfile.open(path, "r:") as tar:
            for i, info in enumerate(tar):
                if i >= MAX_MEMBERS:
                    break
                if info.name != name:
                    continue
                if not info.isreg():
                    raise ArchiveError(f"{path}: {name} is not a regular member")
                if info.size > limit:
                    raise ArchiveError(f"{path}: {name} is too large for a stax archive")
                f = tar.extractfile(info)
                assert f is not None
                data = f.read(info.size)
                if len(data) != info.size:
                    raise ArchiveError(f"{path}: {name} is truncated")
                return data
    except (tarfile.TarError, EOFError) as e:
        raise ArchiveError(f"{path} is not a readable stax archive file ({e})") from None
    except OSError as e:
        raise ArchiveError(f"cannot read {path}: {e.strerror or e}") from None
    raise ArchiveError(f"{path} is not a stax archive (no {name} inside)")
