"""The stax archive: a directory holding one run's tables, symbols resolved, columns compressed.

``save`` writes it atomically (a temporary sibling directory renamed into place); ``load`` checks
magic, version, sizes and checksums and raises ArchiveError with a one-line reason on bad input.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any

from stax.profile.access import archive_owner
from stax.profile.offcpu import REASON_CODE, REASONS
from stax.profile.tables import Binary, Func, Profile, Thread

FORMAT = "stax-archive"
VERSION = 2  # 2: intervals carry state and wakeup, reason is <i1 and named by "reasons"
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
_PROFILE_ATTRS = {
    "samples": ("s_time", "s_tid", "s_stack", "s_weight", "s_cpu"),
    "frames": ("frame_binary", "frame_offset", "frame_func"),
    "stacks": ("stack_parent", "stack_frame"),
}
_ARRAY_CODES = {"<i8": "q", "<i4": "i", "<i2": "h", "<i1": "b", "<u8": "Q", "<u1": "B"}
# what version-1 archives hold differently: other dtypes, and columns they lack (read as this)
_V1_DTYPES = {("intervals", "reason"): "<i2"}
_V1_MISSING = {("intervals", "state"): 1, ("intervals", "wakeup"): -1}  # state 1: S
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


# --- columns ---------------------------------------------------------------------------------

def _encode(values: Any, dtype: str, delta: bool, level: int) -> bytes:
    """Delta (optional), byte-shuffle (all first bytes, then all second bytes…), zlib."""
    import numpy as np

    a = np.asarray(values, dtype=dtype)
    if delta and len(a):
        a = np.concatenate((a[:1], np.diff(a)))
    raw = a.view(np.uint8).reshape(len(a), a.dtype.itemsize).T.tobytes()
    return zlib.compress(raw, level)


def _decode(blob: bytes, dtype: str, delta: bool, rows: int) -> Any:
    import numpy as np

    raw = zlib.decompress(blob)
    width = np.dtype(dtype).itemsize
    if len(raw) != rows * width:
        raise ArchiveError("column size does not match its row count")
    a = np.frombuffer(raw, dtype=np.uint8).reshape(width, rows).T.copy().view(dtype).reshape(rows)
    if delta and rows:
        a = np.cumsum(a, dtype=dtype)
    return a


def _profile_columns(p: Profile, table: str, n: int | None = None) -> list[Any] | None:
    """The columns of one table, or None when this profile has no such table."""
    import numpy as np

    attrs = _PROFILE_ATTRS.get(table)
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


def _rows(p: Profile, table: str) -> int | None:
    """Rows of an optional table now (its first column's length), so all columns agree."""
    obj = getattr(p, table, None)
    if obj is None:
        return None
    first = TABLES[table][0][0]
    col = obj.get(first) if isinstance(obj, dict) else getattr(obj, first, None)
    return None if col is None else len(col)


# --- save ------------------------------------------------------------------------------------

def resolve_all(p: Profile, n: int | None = None) -> None:
    """Symbolise every frame (the first ``n``), so the archive needs no binaries to be read."""
    import numpy as np

    n = len(p.frame_func) if n is None else n
    if not n:
        return
    # a copy: a buffer exported from the live array would stop the capture from growing it
    todo = np.flatnonzero(np.frombuffer(p.frame_func[:n], dtype=np.int32) < 0)
    for fid in todo.tolist():
        p.func_of_frame(fid)


def save(p: Profile, path: str, run: dict[str, Any], diagnostics: dict[str, Any] | None = None,
         level: int = 3, overwrite: bool = True) -> dict[str, Any]:
    """Write ``p`` to the archive directory ``path``; returns ``{path, bytes, samples}``.

    The archive appears whole or not at all: it is built in a temporary sibling directory,
    fsynced, and renamed into place.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if os.path.exists(path):
        if not os.path.isdir(path) or not os.path.exists(os.path.join(path, MAIN_FILE)):
            if not (os.path.isdir(path) and not os.listdir(path)):
                raise ArchiveError(f"{path} exists and is not a stax archive; not overwriting")
        elif not overwrite:
            raise ArchiveError(f"{path} already exists")
    classify = getattr(p, "classify_pending", None)
    if classify is not None:
        classify()  # off-CPU reasons are given lazily; an archive stores them all named
    resolve_all(p)
    with p.lock:
        n = len(p.s_stack)
        nstacks = len(p.stack_parent)
        nframes = len(p.frame_binary)
        resolve_all(p, nframes)  # frames the capture added since the pass above
        funcs = [[f.name, f.binary, f.path, f.addr, f.size, f.resolved] for f in p.funcs]
        binaries = [[b.path, b.build_id, b.pid] for b in p.binaries]
        threads = [{"pid": t.pid, "tid": t.tid, "names": [list(x) for x in t.names],
                    "start_ns": t.start_ns, "end_ns": t.end_ns} for t in p.threads.values()]
        counts = dict(p.counts)
        first, last = p.first_time, p.last_time
        tables = {
            "samples": _profile_columns(p, "samples", n),
            "frames": _profile_columns(p, "frames", nframes),
            "stacks": _profile_columns(p, "stacks", nstacks),
            "intervals": _profile_columns(p, "intervals", _rows(p, "intervals")),
            "wakeups": _profile_columns(p, "wakeups", _rows(p, "wakeups")),
        }
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "created_unix_ms": int(time.time() * 1000),
        "run": run, "diagnostics": diagnostics or {}, "counts": counts,
        "first_time_ns": first, "last_time_ns": last,
        "binaries": binaries, "funcs": funcs, "threads": threads,
        "reasons": list(REASONS),
        "owner": p.owner.to_json() if p.owner is not None else None,
        "data_file": DATA_FILE, "tables": {},
    }
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise ArchiveError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        offset = 0
        with open(os.path.join(tmp, DATA_FILE), "wb") as f:
            for table, spec in TABLES.items():
                cols = tables.get(table)
                rows = len(cols[0]) if cols else 0
                meta: dict[str, Any] = {"rows": rows, "columns": {}}
                for i, (name, dtype, delta) in enumerate(spec):
                    blob = _encode(cols[i] if cols else [], dtype, delta, level)
                    f.write(blob)
                    meta["columns"][name] = {"dtype": dtype, "delta": delta, "offset": offset,
                                             "size": len(blob), "crc32": zlib.crc32(blob)}
                    offset += len(blob)
                manifest["tables"][table] = meta
            f.flush()
            os.fsync(f.fileno())
        manifest["data_bytes"] = offset
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        with open(os.path.join(tmp, MAIN_FILE), "w") as f:
            json.dump(manifest, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old",
                                   dir=parent)
            os.rename(path, os.path.join(old, "x"))
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        dfd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError(f"cannot write {path}: {e.strerror or e}") from None
    size = offset + os.path.getsize(os.path.join(path, MAIN_FILE))
    return {"path": path, "bytes": size, "samples": n}


def update_run(path: str, fields: dict[str, Any]) -> None:
    """Change fields of the run summary an archive holds (atomically: a new main file is
    written beside the old one and renamed over it)."""
    d, m = read_manifest(path)
    m["run"] = {**(m.get("run") if isinstance(m.get("run"), dict) else {}), **fields}
    main = os.path.join(d, MAIN_FILE)
    tmp = main + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(m, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, main)
    except OSError as e:
        raise ArchiveError(f"cannot update {main}: {e.strerror or e}") from None


# --- load ------------------------------------------------------------------------------------

def locate(path: str) -> str:
    """The archive directory for ``path`` (the directory itself or its main file)."""
    if not os.path.exists(path):
        raise ArchiveError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, MAIN_FILE)):
            raise ArchiveError(f"{path} is not a stax archive (no {MAIN_FILE} inside)")
        return os.path.abspath(path)
    if os.path.basename(path) == MAIN_FILE:
        return os.path.dirname(os.path.abspath(path))
    raise ArchiveError(f"{path} is not a stax archive (expected a directory holding "
                       f"{MAIN_FILE}, or that file)")


def read_manifest(path: str) -> tuple[str, dict[str, Any]]:
    d = locate(path)
    main = os.path.join(d, MAIN_FILE)
    try:
        with open(main, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise ArchiveError(f"cannot read {main}: {e.strerror or e}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise ArchiveError(f"{main} is too large to be a stax archive manifest")
    try:
        m = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveError(f"{main} is not a stax archive (not valid JSON; truncated or "
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


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ArchiveError(f"corrupted archive: {what}")


def load(path: str) -> Archive:
    """Read an archive back into a Profile (no symbolizer needed: every frame is resolved)."""
    try:
        return _load(path)
    except ArchiveError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            zlib.error, MemoryError) as e:
        raise ArchiveError(f"corrupted archive {path}: {type(e).__name__}: {e}"[:300]) from None


def _load(path: str) -> Archive:
    import numpy as np

    d, m = read_manifest(path)
    data_path = os.path.join(d, DATA_FILE)
    try:
        with open(data_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ArchiveError(f"cannot read {data_path}: {e.strerror or e}") from None
    _check(isinstance(m.get("data_bytes"), int) and len(data) == m["data_bytes"],
           f"{DATA_FILE} is {len(data)} bytes, the manifest says {m.get('data_bytes')} "
           "(truncated?)")
    tables: dict[str, list[Any]] = {}
    mt = m.get("tables")
    _check(isinstance(mt, dict), "no table index")
    for table, spec in TABLES.items():
        meta = mt.get(table)
        _check(isinstance(meta, dict), f"table {table} missing")
        rows = meta.get("rows")
        _check(isinstance(rows, int) and 0 <= rows < 1 << 40, f"bad row count in {table}")
        cols = []
        _check(isinstance(meta.get("columns"), dict), f"column index of {table}")
        for name, dtype, _delta in spec:
            c = meta["columns"].get(name)
            if c is None and m["version"] == 1 and (table, name) in _V1_MISSING:
                cols.append(np.full(rows, _V1_MISSING[(table, name)], dtype=dtype))
                continue
            stored = dtype
            if m["version"] == 1 and (table, name) in _V1_DTYPES:
                stored = _V1_DTYPES[(table, name)]
            _check(isinstance(c, dict) and c.get("dtype") == stored, f"column {table}.{name}")
            off, size = c.get("offset"), c.get("size")
            _check(isinstance(off, int) and isinstance(size, int) and 0 <= off
                   and 0 <= size and off + size <= len(data), f"column {table}.{name} range")
            blob = data[off:off + size]
            _check(zlib.crc32(blob) == c.get("crc32"), f"checksum of {table}.{name}")
            try:
                col = _decode(blob, stored, bool(c.get("delta")), rows)
            except zlib.error:
                raise ArchiveError(f"corrupted archive: column {table}.{name}") from None
            if stored != dtype:
                info = np.iinfo(dtype)
                col = np.clip(col, info.min, info.max).astype(dtype)
            cols.append(col)
        tables[table] = cols
    p = Profile(None)
    p.binaries = [Binary(str(b[0]), b[1], int(b[2])) for b in m["binaries"]]
    p.funcs = [Func(str(f[0]), str(f[1]), str(f[2]), int(f[3]), int(f[4]), bool(f[5]))
               for f in m["funcs"]]
    nfuncs, nbins = len(p.funcs), len(p.binaries)
    fr_bin, fr_off, fr_func = tables["frames"]
    st_parent, st_frame = tables["stacks"]
    nframes, nstacks = len(fr_bin), len(st_parent)
    _check(not nframes or (int(fr_func.min()) >= 0 and int(fr_func.max()) < nfuncs),
           "frame -> function index out of range")
    _check(not nframes or (int(fr_bin.min()) >= 0 and int(fr_bin.max()) < nbins),
           "frame -> binary index out of range")
    _check(not nstacks or (int(st_frame.min()) >= 0 and int(st_frame.max()) < nframes),
           "stack -> frame index out of range")
    # a prefix tree: every parent comes before its child, so walks always end
    _check(bool(np.all(st_parent < np.arange(nstacks))) and
           (not nstacks or int(st_parent.min()) >= -1), "stack parents out of order")
    samples = tables["samples"]
    _check(not len(samples[2]) or (int(samples[2].min()) >= -1 and
                                   int(samples[2].max()) < nstacks),
           "sample -> stack index out of range")
    for attr_list, table in ((_PROFILE_ATTRS["samples"], "samples"),
                             (_PROFILE_ATTRS["frames"], "frames"),
                             (_PROFILE_ATTRS["stacks"], "stacks")):
        for attr, col, (_, dtype, _) in zip(attr_list, tables[table], TABLES[table],
                                            strict=True):
            arr = array(_ARRAY_CODES[dtype])
            arr.frombytes(np.ascontiguousarray(col).tobytes())
            setattr(p, attr, arr)
    for t in m["threads"]:
        th = Thread(int(t["pid"]), int(t["tid"]), [(int(a), str(b)) for a, b in t["names"]],
                    int(t["start_ns"]), int(t["end_ns"]))
        p.threads[th.tid] = th
    counts = m.get("counts") or {}
    p.counts.update({k: int(v) for k, v in counts.items() if isinstance(v, int)})
    p.first_time = int(m.get("first_time_ns") or 0)
    p.owner = archive_owner(os.path.join(d, MAIN_FILE), m.get("owner"))
    p.last_time = int(m.get("last_time_ns") or 0)
    extra: dict[str, dict[str, Any]] = {}
    iv = dict(zip([c for c, _, _ in INTERVALS], tables["intervals"], strict=True))
    wk = dict(zip([c for c, _, _ in WAKEUPS], tables["wakeups"], strict=True))
    nwk = len(wk["time_ns"])
    for what, col, hi in (("interval -> stack", iv["stack"], nstacks),
                          ("interval -> wakeup", iv["wakeup"], nwk),
                          ("wakeup -> stack", wk["waker_stack"], nstacks)):
        _check(not len(col) or (int(col.min()) >= -1 and int(col.max()) < hi),
               f"{what} index out of range")
    iv["reason"] = _reason_codes(m.get("reasons"), iv["reason"])
    _attach_table(p, "intervals", iv, extra)
    _attach_table(p, "wakeups", wk, extra)
    # intervals saved before their reason was known get one now (every frame is resolved)
    p.offcpu.unclassified = np.flatnonzero(iv["reason"] < 0).tolist()
    run = m.get("run") if isinstance(m.get("run"), dict) else {}
    diag = m.get("diagnostics") if isinstance(m.get("diagnostics"), dict) else {}
    return Archive(d, p, run, diag, m, extra)


def _reason_codes(names: Any, codes: Any) -> Any:
    """Stored reason codes mapped, by the names the archive lists, onto this stax's codes;
    unknown names and codes become ``other``, -1 (not classified yet) stays -1."""
    import numpy as np

    if not isinstance(names, list) or not names:
        names = list(REASONS)  # version-1 archives listed none: they used this order
    other = REASON_CODE["other"]
    table = np.array([REASON_CODE.get(n, other) if isinstance(n, str) else other
                      for n in names], dtype=np.int8)
    c = codes.astype(np.int64)
    known = (c >= 0) & (c < len(table))
    out = np.where(known, table[np.clip(c, 0, len(table) - 1)], other).astype(np.int8)
    out[c == -1] = -1
    return out


def _attach_table(p: Profile, table: str, cols: dict[str, Any], extra: dict[str, Any]) -> None:
    """Put an optional table back where this Profile keeps it (if it has such a table)."""
    obj = getattr(p, table, None)
    if obj is None:
        extra[table] = cols
        return
    for name, col in cols.items():
        cur = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if isinstance(cur, array):
            import numpy as np

            new = array(cur.typecode)
            new.frombytes(np.ascontiguousarray(col, dtype=np.dtype(cur.typecode)).tobytes())
            val: Any = new
        else:
            val = col
        if isinstance(obj, dict):
            obj[name] = val
        else:
            setattr(obj, name, val)


def intervals_of(a: Archive | Profile) -> dict[str, Any] | None:
    """The off-CPU intervals table as NumPy columns, or None when there is none."""
    if isinstance(a, Archive):
        cols = a.extra.get("intervals")
        if cols is not None:
            return cols if len(cols["tid"]) else None
        a = a.profile
    got = _profile_columns(a, "intervals")
    if got is None or not len(got[0]):
        return None
    return dict(zip([c for c, _, _ in INTERVALS], got, strict=True))
