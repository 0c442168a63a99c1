"""The journal of a recording run, so that a run survives a crash of stax-server.

While a run records, a thread appends the rows its tables gained since the last flush (samples,
stacks, frames, intervals, wakeups, plus new functions and binaries, and the threads when they
changed) to ``<history>/run-ID.journal/chunks`` about every second, and rewrites ``run.json``
(the run's summary). Memory stays bounded (only the row counts already written are kept) and
each flush costs in proportion to what the run gained, not to its size.

A run that stops normally is kept as an archive and its journal is removed. A journal still on
disk when a server starts belongs to a server that died while recording (``kill -9``, a crash):
``stax.server.recover`` turns it into a kept run (an ordinary archive in the history) marked
``end_reason: "interrupted"``, holding everything up to the last flush. Chunks are written, not
fsynced (a flush every second must stay cheap): a crash of the server loses nothing written, a
crash of the machine loses what the kernel had not yet written back.

Each chunk is ``"STXJ" <u32 header bytes> <u32 data bytes> <u32 crc32>``, a JSON header, then
the zlib-compressed column data (little-endian, the archive's dtypes, tables and columns in
archive order). A torn last chunk (the crash came mid-write) fails its length or CRC and is
ignored with everything after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import struct
import threading
import time
import zlib
from array import array
from collections.abc import Callable
from typing import Any

from stax.archive.format import ARRAY_CODES, PROFILE_ATTRS, TABLES, func_row
from stax.profile.model import is_anon

log = logging.getLogger("stax.server")

SUFFIX = ".journal"
CHUNKS = "chunks"
RUN_FILE = "run.json"
LOCK_FILE = "lock"
MAGIC = b"STXJ"
CHUNK_HEAD = struct.Struct("<4sIII")  # magic, header bytes, data bytes, crc32
FLUSH_INTERVAL_S = 1.0
RUN_EVERY = 10  # run.json (a summary costs O(samples)): every flush at first, then every 10th


def _columns(p: Any, table: str) -> list[Any]:
    if table in PROFILE_ATTRS:
        return [getattr(p, a) for a in PROFILE_ATTRS[table]]
    obj = getattr(p, table)
    return [getattr(obj, c) for c, _, _ in TABLES[table]]


def _raw(part: array, dtype: str) -> bytes:
    """A column slice as little-endian bytes of the archive's dtype."""
    if part.typecode == ARRAY_CODES[dtype]:
        return part.tobytes()
    return array(ARRAY_CODES[dtype], part).tobytes()


class Journal:
    """Writes one recording run's journal until ``close``; never raises into the server."""

    def __init__(self, directory: str, profile: Any, summary: Callable[[], dict[str, Any]],
                 interval: float = FLUSH_INTERVAL_S) -> None:
        self.dir = directory
        self.p = profile
        self.summary = summary
        self.interval = interval
        self.done = {t: 0 for t in TABLES}
        self.funcs_done = 0
        self.binaries_done = 0
        self.threads_seen: int | None = None
        self.marks_done = 0
        self.error: str | None = None
        self.flushes = 0
        self.bytes = 0
        self.flush_s = 0.0  # time spent flushing, for diagnostics and bench
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Create the journal and start flushing; False (``error`` says why) if it cannot."""
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=False)
            self._lock_fd = os.open(os.path.join(self.dir, LOCK_FILE),
                                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fd = os.open(os.path.join(self.dir, CHUNKS),
                               os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._write_run()
        except OSError as e:
            self.error = f"cannot write {self.dir}: {e.strerror or e}"
            self._close_fds()
            shutil.rmtree(self.dir, ignore_errors=True)
            return False
        self._thread = threading.Thread(target=self._loop, name="journal", daemon=True)
        self._thread.start()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except OSError as e:  # a full or failing disk: stop journaling, keep recording
                self.error = f"journal stopped: cannot write {self.dir}: {e.strerror or e}"
                log.warning("%s", self.error)
                return
            except Exception:
                log.exception("journal of %s failed", self.dir)
                self.error = "journal stopped: internal error (see the server log)"
                return

    def flush(self) -> int:
        """Append what the run gained since the last flush; returns the bytes written."""
        t0 = time.perf_counter()
        p = self.p
        with p.lock:
            rows = {t: len(_columns(p, t)[0]) for t in TABLES}
            nbins = len(p.binaries)
            binaries = [[b.path, b.build_id, b.pid] for b in p.binaries[self.binaries_done:nbins]]
            seen = hash(tuple((t.tid, len(t.names), t.end_ns) for t in p.threads.values()))
            threads = None
            if seen != self.threads_seen:
                threads = [{"pid": t.pid, "tid": t.tid, "names": [list(x) for x in t.names],
                            "start_ns": t.start_ns, "end_ns": t.end_ns}
                           for t in p.threads.values()]
            counts = dict(p.counts)
            first, last = p.first_time, p.last_time
            marks = ([[t, label] for t, label in p.marks]
                     if len(p.marks) != self.marks_done else None)
        for fid in range(self.done["frames"], rows["frames"]):
            # a journaled frame names its function (funcs only grow); not JIT code: its names
            # come from perf maps and jitdump files the runtime writes later, and naming it now
            # would keep the miss for the live run too (a recovered run shows it as an address)
            if not is_anon(p.binaries[p.frame_binary[fid]].path):
                p.func_of_frame(fid)
        nfuncs = len(p.funcs)
        funcs = [func_row(f) for f in p.funcs[self.funcs_done:nfuncs]]
        if not binaries and not funcs and threads is None and marks is None and all(
                rows[t] == self.done[t] for t in TABLES):
            return 0
        head: dict[str, Any] = {"from": dict(self.done), "rows": {}, "binaries": binaries,
                                "funcs": funcs, "threads": threads, "counts": counts,
                                "first_time_ns": first, "last_time_ns": last,
                                "funcs_from": self.funcs_done,
                                "binaries_from": self.binaries_done}
        if marks is not None:  # all of them, when they changed (``stax mark``)
            head["marks"] = marks
        data = []
        for table, spec in TABLES.items():
            a, b = self.done[table], rows[table]
            head["rows"][table] = b - a
            for col, (_name, dtype, _delta) in zip(_columns(p, table), spec, strict=True):
                data.append(_raw(col[a:b], dtype))  # an array slice copies only the new rows
        blob = zlib.compress(b"".join(data), 1)
        hj = json.dumps(head, separators=(",", ":")).encode()
        crc = zlib.crc32(blob, zlib.crc32(hj))
        rec = CHUNK_HEAD.pack(MAGIC, len(hj), len(blob), crc) + hj + blob
        assert self._fd is not None
        os.write(self._fd, rec)
        self.done = rows
        self.funcs_done = nfuncs
        self.binaries_done = nbins
        self.threads_seen = seen
        if marks is not None:
            self.marks_done = len(marks)
        if self.flushes < RUN_EVERY or self.flushes % RUN_EVERY == 0 or marks is not None:
            self._write_run()  # the summary's counts are rebuilt from the tables on recovery
        self.flushes += 1
        self.bytes += len(rec)
        self.flush_s += time.perf_counter() - t0
        return len(rec)

    def _write_run(self) -> None:
        path = os.path.join(self.dir, RUN_FILE)
        with open(path + ".tmp", "w") as f:
            unwinder = getattr(self.p, "unwinder", None)
            json.dump({"run": self.summary(), "written_unix_ms": int(time.time() * 1000),
                       "unwind": unwinder.stats() if unwinder is not None else None}, f)
        os.replace(path + ".tmp", path)

    def stats(self) -> dict[str, Any]:
        return {"path": self.dir, "flushes": self.flushes, "bytes": self.bytes,
                "flush_cpu_s": round(self.flush_s, 3), "error": self.error}

    def close(self, discard: bool = True) -> None:
        """Stop flushing (the run ended); remove the journal unless ``discard`` is False."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._close_fds()
        if discard:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _close_fds(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None


class Journals:
    """The server's journals, one per recording run (``start`` when a run starts, ``finish``
    when its capture ended)."""

    def __init__(self, history: Any) -> None:
        self.history = history  # stax.server.history.History
        self.by_run: dict[int, Journal] = {}
        self.lock = threading.Lock()

    def start(self, run: Any) -> None:
        if not self.history.enabled:
            return
        with self.lock:
            if run.state != "recording":  # it ended already: finish() has been and gone
                return
            j = Journal(self.history.journal_of(run.id), run.profile, run.summary)
            if j.start():
                self.by_run[run.id] = j
                return
        log.warning("run %d is not journaled: %s", run.id, j.error)
        note(run, f"not journaled (lost if the server crashes): {j.error}")

    def finish(self, run: Any) -> Journal | None:
        """Stop journaling ``run`` and return its journal (still on disk: ``close()`` removes
        it once the run is kept)."""
        with self.lock:
            j = self.by_run.pop(run.id, None)
        if j is not None:
            j.close(discard=False)
            if j.error:
                note(run, f"journal: {j.error}")
        return j


def note(run: Any, text: str) -> None:
    """A line for a live run's summary ``notes`` (and so ``diagnose``)."""
    if run.recorder is not None and text not in run.recorder.info.notes:
        run.recorder.info.notes.append(text)


def pending(history_dir: str) -> list[tuple[int, str]]:
    """The journals in ``history_dir`` that no live server is writing: (run id, path)."""
    try:
        names = os.listdir(history_dir)
    except OSError:
        return []
    out = []
    for n in names:
        if not (n.startswith("run-") and n.endswith(SUFFIX)):
            continue
        try:
            run_id = int(n[4:-len(SUFFIX)])
        except ValueError:
            continue
        path = os.path.join(history_dir, n)
        if not _in_use(path):
            out.append((run_id, path))
    return sorted(out)


def _in_use(path: str) -> bool:
    try:
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
