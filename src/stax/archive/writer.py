"""Writing a stax archive: every frame symbolised first, then the columns compressed into a
temporary sibling directory, fsynced, and renamed into place (the archive appears whole or not
at all); ``update_run`` rewrites the run summary of an archive in place, atomically too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zlib
from typing import Any

from stax.archive.embed import code_manifest, hot_code, python_sources, segments_of, sources_of
from stax.archive.layout import (
    DATA_FILE,
    FORMAT,
    MAIN_FILE,
    TABLES,
    VERSION,
    ArchiveError,
    encode_column,
    func_row,
    profile_columns,
    read_manifest,
    table_rows,
)
from stax.profile.offcpu import REASONS
from stax.profile.tables import Profile
from stax.protocol import dumps


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
         level: int = 3, overwrite: bool = True, with_code: bool = False,
         single_file: bool = False) -> dict[str, Any]:
    """Write ``p`` to the archive directory ``path`` (``single_file``: the one-file form,
    stax.archive.container); returns ``{path, bytes, samples, code_functions}``.

    The archive appears whole or not at all: it is built in a temporary sibling directory,
    fsynced, and renamed into place. ``with_code`` embeds the hot functions' code, line rows
    and source lines (stax.archive.embed).
    """
    from stax.archive.container import is_file_archive, pack

    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if os.path.exists(path):
        is_dir = os.path.isdir(path) and os.path.exists(os.path.join(path, MAIN_FILE))
        if is_dir or is_file_archive(path):
            if not overwrite:
                raise ArchiveError(f"{path} already exists")
            if is_dir == single_file:
                raise ArchiveError(f"{path} is an archive of the other form (a "
                                   f"{'directory' if is_dir else 'single file'}); not "
                                   "replacing it")
        elif not (os.path.isdir(path) and not os.listdir(path) and not single_file):
            raise ArchiveError(f"{path} exists and is not a stax archive; not overwriting")
    classify = getattr(p, "classify_pending", None)
    if classify is not None:
        classify()  # off-CPU reasons are given lazily; an archive stores them all named
    resolve_all(p)
    with p.lock:
        n = len(p.s_stack)
        nstacks = len(p.stack_parent)
        nframes = len(p.frame_binary)
        resolve_all(p, nframes)  # frames the capture added since the pass above
        funcs = [func_row(f) for f in p.funcs]
        inline = [[fid, *chain] for fid, chain in sorted(p.frame_inline.items()) if fid < nframes]
        bins = list(p.binaries)
        threads = [{"pid": t.pid, "tid": t.tid, "names": [list(x) for x in t.names],
                    "start_ns": t.start_ns, "end_ns": t.end_ns} for t in p.threads.values()]
        counts = dict(p.counts)
        first, last = p.first_time, p.last_time
        marks = [[t, label] for t, label in getattr(p, "marks", ())]
        tables = {
            "samples": profile_columns(p, "samples", n),
            "frames": profile_columns(p, "frames", nframes),
            "stacks": profile_columns(p, "stacks", nstacks),
            "intervals": profile_columns(p, "intervals", table_rows(p, "intervals")),
            "wakeups": profile_columns(p, "wakeups", table_rows(p, "wakeups")),
        }
    binaries = [[b.path, b.build_id, b.pid, segs]
                for b, segs in zip(bins, segments_of(p, bins), strict=True)]
    code = hot_code(p, n) if with_code else []
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "created_unix_ms": int(time.time() * 1000),
        "run": run, "diagnostics": diagnostics or {}, "counts": counts,
        "first_time_ns": first, "last_time_ns": last, "marks": marks,
        "binaries": binaries, "funcs": funcs, "threads": threads, "frame_inline": inline,
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
                    blob = encode_column(cols[i] if cols else [], dtype, delta, level)
                    f.write(blob)
                    meta["columns"][name] = {"dtype": dtype, "delta": delta, "offset": offset,
                                             "size": len(blob), "crc32": zlib.crc32(blob)}
                    offset += len(blob)
                manifest["tables"][table] = meta
            if with_code:
                sources = sources_of(p, code)
                for src, lines in python_sources(p).items():
                    sources.setdefault(src, {}).update(lines)
                manifest["code"], blobs = code_manifest(code, sources, offset,
                                                        level)
                for blob in blobs:
                    f.write(blob)
                    offset += len(blob)
            f.flush()
            os.fsync(f.fileno())
        manifest["data_bytes"] = offset
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        with open(os.path.join(tmp, MAIN_FILE), "w") as f:
            f.write(dumps(manifest, separators=(",", ":")))
            f.flush()
            os.fsync(f.fileno())
        if single_file:
            try:
                size = pack(tmp, path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return {"path": path, "bytes": size, "samples": n, "code_functions": len(code)}
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
    return {"path": path, "bytes": size, "samples": n, "code_functions": len(code)}


def update_run(path: str, fields: dict[str, Any]) -> None:
    """Change fields of the run summary an archive holds (atomically: a new main file is
    written beside the old one and renamed over it)."""
    d, m = read_manifest(path)
    m["run"] = {**(m.get("run") if isinstance(m.get("run"), dict) else {}), **fields}
    if not os.path.isdir(d):  # the single file: written anew around the same data
        _update_file(d, m)
        return
    main = os.path.join(d, MAIN_FILE)
    tmp = main + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(dumps(m, separators=(",", ":")))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, main)
    except OSError as e:
        raise ArchiveError(f"cannot update {main}: {e.strerror or e}") from None




def _update_file(path: str, m: dict[str, Any]) -> None:
    from stax.archive.container import pack, read_member

    data = read_member(path, DATA_FILE)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=os.path.dirname(path))
        try:
            with open(os.path.join(tmp, DATA_FILE), "wb") as f:
                f.write(data)
            with open(os.path.join(tmp, MAIN_FILE), "w") as f:
                f.write(dumps(m, separators=(",", ":")))
            pack(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        raise ArchiveError(f"cannot update {path}: {e.strerror or e}") from None
