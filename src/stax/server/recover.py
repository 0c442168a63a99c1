"""Turn the journal a crashed server left behind into a kept run (see stax.server.journal).

The journal's chunks are replayed into a Profile (every frame in it is already symbolised),
which is saved as an ordinary archive in the history, its summary marked
``end_reason: "interrupted"``; the journal is then removed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zlib
from array import array
from typing import Any

from stax.archive.format import (
    ARRAY_CODES,
    PROFILE_ATTRS,
    TABLES,
    ArchiveError,
    func_of_row,
    marks_of,
    save,
)
from stax.profile.window import marks
from stax.server.journal import CHUNK_HEAD, CHUNKS, MAGIC, RUN_FILE, pending

log = logging.getLogger("stax.server")

INTERRUPTED = "interrupted"
NOTE = ("recovered from the journal of a stax-server that ended while recording (killed or "
        "crashed): holds what was journaled up to its last flush, about a second before")
MAX_HEADER = 64 << 20


def recover_all(history_dir: str, path_of: Any) -> list[int]:
    """Recover every abandoned journal in ``history_dir`` into ``path_of(run_id)``."""
    got = []
    for run_id, jpath in pending(history_dir):
        if os.path.exists(path_of(run_id)):  # kept whole; only the journal's removal was cut
            shutil.rmtree(jpath, ignore_errors=True)
            continue
        try:
            recover(jpath, path_of(run_id), run_id)
        except (ArchiveError, OSError, ValueError) as e:
            log.warning("cannot recover the journal %s: %s", jpath, e)
            continue
        shutil.rmtree(jpath, ignore_errors=True)
        got.append(run_id)
        log.info("run %d recovered from its journal (the server ended while it recorded)",
                 run_id)
    return got


def _chunks(path: str) -> Any:
    """Each intact chunk's (header, data); stops at the first torn or corrupted one."""
    with open(path, "rb") as f:
        while True:
            head = f.read(CHUNK_HEAD.size)
            if len(head) < CHUNK_HEAD.size:
                return
            magic, hlen, blen, crc = CHUNK_HEAD.unpack(head)
            if magic != MAGIC or hlen > MAX_HEADER:
                log.warning("journal %s: bad chunk; the rest is ignored", path)
                return
            hj = f.read(hlen)
            blob = f.read(blen)
            if len(hj) < hlen or len(blob) < blen or zlib.crc32(blob, zlib.crc32(hj)) != crc:
                log.warning("journal %s: torn last chunk ignored", path)
                return
            yield json.loads(hj), zlib.decompress(blob)


def replay(jpath: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The Profile a journal holds, the run summary it last wrote, and the rest of that file
    (``unwind``: the unwinder's counters then)."""
    from stax.profile.tables import Binary, Profile, Thread

    p = Profile(None)
    p.binaries = []
    cols: dict[str, list[array]] = {t: [array(ARRAY_CODES[d]) for _, d, _ in spec]
                                    for t, spec in TABLES.items()}
    threads: list[dict[str, Any]] = []
    for head, data in _chunks(os.path.join(jpath, CHUNKS)):
        if (head["funcs_from"] != len(p.funcs) or head["binaries_from"] != len(p.binaries)
                or any(head["from"][t] != len(cols[t][0]) for t in TABLES)):
            log.warning("journal %s: chunk out of sequence; the rest is ignored", jpath)
            break
        pos = 0
        for table in TABLES:
            n = int(head["rows"][table])
            for arr in cols[table]:
                size = n * arr.itemsize
                if pos + size > len(data):
                    raise ValueError("chunk shorter than its header says")
                arr.frombytes(data[pos:pos + size])
                pos += size
        p.binaries.extend(Binary(str(b[0]), b[1], int(b[2])) for b in head["binaries"])
        p.funcs.extend(func_of_row(f) for f in head["funcs"])
        if head["threads"] is not None:
            threads = head["threads"]
        p.counts.update({k: int(v) for k, v in head["counts"].items() if isinstance(v, int)})
        p.first_time = int(head["first_time_ns"] or 0)
        if "marks" in head:
            p.marks = marks_of(head["marks"])
        p.last_time = int(head["last_time_ns"] or 0)
    if len(p.binaries) < 2:  # nothing was journaled: the profile's own first two binaries
        p.binaries = Profile(None).binaries
    for table, arrs in cols.items():
        if table in PROFILE_ATTRS:
            for attr, arr in zip(PROFILE_ATTRS[table], arrs, strict=True):
                setattr(p, attr, arr)
        else:
            obj = getattr(p, table)
            for (name, _d, _x), arr in zip(TABLES[table], arrs, strict=True):
                setattr(obj, name, arr)
    for t in threads:
        p.threads[int(t["tid"])] = Thread(int(t["pid"]), int(t["tid"]),
                                          [(int(a), str(b)) for a, b in t["names"]],
                                          int(t["start_ns"]), int(t["end_ns"]))
    _sanitize(p)
    p.offcpu.unclassified = [i for i, r in enumerate(p.intervals.reason) if r < 0]
    try:
        with open(os.path.join(jpath, RUN_FILE)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    run = doc.get("run")
    return p, run if isinstance(run, dict) else {}, doc


def p_written(jpath: str) -> int:
    """When the journal's last chunk was written (unix ms), or 0."""
    try:
        return int(os.stat(os.path.join(jpath, CHUNKS)).st_mtime * 1000)
    except OSError:
        return 0


def _sanitize(p: Any) -> None:
    """References beyond the recovered rows (written in the same instant as a crash) become
    -1 ("none"), so the archive's index checks hold. A frame may have no function yet (-1: JIT
    code, left unnamed by the journal): saving names it by its address."""
    nfuncs, nframes, nstacks, nwk = (len(p.funcs), len(p.frame_binary), len(p.stack_parent),
                                     len(p.wakeups.time_ns))
    for col, hi in ((p.s_stack, nstacks), (p.intervals.stack, nstacks),
                    (p.intervals.wakeup, nwk), (p.wakeups.waker_stack, nstacks),
                    (p.stack_parent, None)):
        for i, v in enumerate(col):
            if v >= (i if hi is None else hi):
                col[i] = -1
    if any(f < -1 or f >= nfuncs for f in p.frame_func) or any(
            b < 0 or b >= len(p.binaries) for b in p.frame_binary) or any(
            f >= nframes for f in p.stack_frame):
        raise ValueError("journal references functions or frames it does not hold")


def recover(jpath: str, dest: str, run_id: int) -> str:
    """Save the journal at ``jpath`` as the archive ``dest``; returns ``dest``."""
    from stax.archive.diag import run_diagnostics

    p, run, doc = replay(jpath)
    n = len(p.s_stack)
    m = len(p.intervals.tid)
    notes = [str(x) for x in run.get("notes") or [] if isinstance(x, str)]
    summary = {
        **run, "id": run_id, "state": "stopped", "end_reason": INTERRUPTED,
        "samples": n, "oncpu_ns": int(sum(p.s_weight)), "threads": len(p.threads),
        "intervals": m, "offcpu_ns": int(sum(p.intervals.duration_ns)),
        "wakeups": len(p.wakeups.time_ns), "lost_records": int(p.counts.get("lost", 0)),
        "notes": [*notes, NOTE], "archive": dest, "marks": marks(p),
    }
    elapsed = float(run.get("elapsed_ms") or 0) / 1000
    started, last = run.get("started_at_unix_ms"), p_written(jpath)
    if isinstance(started, int) and last > started:  # to the last flush
        elapsed = max(elapsed, (last - started) / 1000)
    summary["elapsed_ms"] = round(elapsed * 1000, 3)
    diag = run_diagnostics(p, summary, None, elapsed)
    # what a live run's diagnostics hold that the tables do not: as the journal last saw it
    diag["capture"] = {**diag["capture"], "mode": run.get("capture_mode") or "?",
                       "unwinding": run.get("unwinding") or "-"}
    if isinstance(doc.get("unwind"), dict):
        diag["unwind"] = doc["unwind"]
    save(p, dest, summary, diag)
    return dest
