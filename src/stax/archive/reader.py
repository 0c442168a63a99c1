"""Reading a stax archive back into a Profile: magic, version, sizes, checksums and every index
checked, so bad input raises ArchiveError with a one-line reason; version-1 archives are read
too.
"""

from __future__ import annotations

import os
import zlib
from array import array
from typing import Any

from stax.archive.embed import store_from
from stax.archive.layout import (
    ARRAY_CODES,
    DATA_FILE,
    INTERVALS,
    MAIN_FILE,
    OPTIONAL,
    PROFILE_ATTRS,
    TABLES,
    V1_DTYPES,
    V1_MISSING,
    WAKEUPS,
    Archive,
    ArchiveError,
    decode_column,
    func_of_row,
    profile_columns,
    read_manifest,
)
from stax.profile.access import archive_owner
from stax.profile.offcpu import REASON_CODE, REASONS
from stax.profile.tables import Binary, Profile, Thread


def inline_chains(rows: Any, nfuncs: int) -> dict[int, tuple[int, ...]]:
    """The optional ``frame_inline`` list of a manifest: ``[[frame, func, ...], ...]``, the
    funcs inlined at a frame outermost first (absent in archives written before inline frames).
    """
    out: dict[int, tuple[int, ...]] = {}
    if rows is None:
        return out
    _check(isinstance(rows, list), "frame_inline is not a list")
    for row in rows:
        _check(isinstance(row, list) and len(row) >= 2 and
               all(isinstance(x, int) and not isinstance(x, bool) for x in row),
               "frame_inline row malformed")
        _check(all(0 <= f < nfuncs for f in row[1:]), "frame_inline -> function out of range")
        out[row[0]] = tuple(row[1:])
    return out


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
    single = not os.path.isdir(d)
    data_path = os.path.join(d, DATA_FILE)
    try:
        if single:
            from stax.archive.layout import read_member

            data = read_member(d, DATA_FILE)
        else:
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
            if c is None and m["version"] == 1 and (table, name) in V1_MISSING:
                cols.append(np.full(rows, V1_MISSING[(table, name)], dtype=dtype))
                continue
            if c is None and (table, name) in OPTIONAL:  # added later without a version bump
                cols.append(np.full(rows, OPTIONAL[(table, name)], dtype=dtype))
                continue
            stored = dtype
            if m["version"] == 1 and (table, name) in V1_DTYPES:
                stored = V1_DTYPES[(table, name)]
            _check(isinstance(c, dict) and c.get("dtype") == stored, f"column {table}.{name}")
            off, size = c.get("offset"), c.get("size")
            _check(isinstance(off, int) and isinstance(size, int) and 0 <= off
                   and 0 <= size and off + size <= len(data), f"column {table}.{name} range")
            blob = data[off:off + size]
            _check(zlib.crc32(blob) == c.get("crc32"), f"checksum of {table}.{name}")
            try:
                col = decode_column(blob, stored, bool(c.get("delta")), rows)
            except zlib.error:
                raise ArchiveError(f"corrupted archive: column {table}.{name}") from None
            if stored != dtype:
                info = np.iinfo(dtype)
                col = np.clip(col, info.min, info.max).astype(dtype)
            cols.append(col)
        tables[table] = cols
    p = Profile(None)
    p.binaries = [Binary(str(b[0]), b[1], int(b[2])) for b in m["binaries"]]
    p.code_store = store_from(m, data, len(p.binaries))  # type: ignore[attr-defined]
    p.funcs = [func_of_row(f) for f in m["funcs"]]
    nfuncs, nbins = len(p.funcs), len(p.binaries)
    p.frame_inline = inline_chains(m.get("frame_inline"), nfuncs)
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
    for attr_list, table in ((PROFILE_ATTRS["samples"], "samples"),
                             (PROFILE_ATTRS["frames"], "frames"),
                             (PROFILE_ATTRS["stacks"], "stacks")):
        for attr, col, (_, dtype, _) in zip(attr_list, tables[table], TABLES[table],
                                            strict=True):
            arr = array(ARRAY_CODES[dtype])
            arr.frombytes(np.ascontiguousarray(col).tobytes())
            setattr(p, attr, arr)
    for t in m["threads"]:
        th = Thread(int(t["pid"]), int(t["tid"]), [(int(a), str(b)) for a, b in t["names"]],
                    int(t["start_ns"]), int(t["end_ns"]))
        p.threads[th.tid] = th
    counts = m.get("counts") or {}
    p.counts.update({k: int(v) for k, v in counts.items() if isinstance(v, int)})
    p.first_time = int(m.get("first_time_ns") or 0)
    p.owner = archive_owner(d if single else os.path.join(d, MAIN_FILE), m.get("owner"))
    p.last_time = int(m.get("last_time_ns") or 0)
    p.marks = marks_of(m.get("marks"))
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


def marks_of(raw: Any) -> list[tuple[int, str]]:
    """The marks a manifest (or journal) lists, ``[[time_ns, label], ...]``; entries that are
    not an int64 time and a label are dropped (older archives hold none)."""
    from stax.limits import MAX_MARKS

    if not isinstance(raw, list):
        return []
    out: list[tuple[int, str]] = []
    for x in raw[:MAX_MARKS]:
        if (isinstance(x, list) and len(x) == 2 and isinstance(x[0], int)
                and not isinstance(x[0], bool) and -(1 << 63) <= x[0] < 1 << 63
                and isinstance(x[1], str) and x[1]):
            out.append((x[0], x[1]))
    return out


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
    got = profile_columns(a, "intervals")
    if got is None or not len(got[0]):
        return None
    return dict(zip([c for c, _, _ in INTERVALS], got, strict=True))
