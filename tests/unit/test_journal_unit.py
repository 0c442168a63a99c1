"""The run journal on hand-built profiles: incremental flushes, recovery into an archive equal
to the profile, torn last chunks, and journals a live server still writes."""

from __future__ import annotations

import os
from pathlib import Path

from archive_helpers import SPLIT, build_profile

from stax.archive import format as fm
from stax.profile import views
from stax.profile.tables import Thread
from stax.server import journal as jn
from stax.server.history import History
from stax.server.recover import INTERRUPTED, recover_all

RUN = {"id": 7, "state": "recording", "command": "./prog", "mode": "launch", "pid": 1,
       "argv": ["./prog"], "frequency_hz": 1000, "started_at_unix_ms": 1}


def _grow(p: object, extra: int) -> None:
    """Append ``extra`` samples of the first stack (as the capture would)."""
    with p.lock:  # type: ignore[attr-defined]
        t = p.last_time  # type: ignore[attr-defined]
        for i in range(extra):
            p.s_time.append(t + i + 1)  # type: ignore[attr-defined]
            p.s_tid.append(100)  # type: ignore[attr-defined]
            p.s_stack.append(1)  # type: ignore[attr-defined]
            p.s_weight.append(1_000_000)  # type: ignore[attr-defined]
            p.s_cpu.append(0)  # type: ignore[attr-defined]
        p.last_time = t + extra  # type: ignore[attr-defined]


def _views(p: object) -> list[object]:
    return [views.top(p, views.Filter(), "self", 0), views.flame(p, views.Filter(), 0, 0.0),
            views.threads(p, views.Filter(), 0)]


def test_flushes_append_only_what_is_new_and_recover(tmp_path: Path) -> None:
    h = History(str(tmp_path / "runs"))
    p = build_profile(SPLIT)
    j = jn.Journal(h.journal_of(7), p, lambda: RUN, interval=3600)
    assert j.start()
    first = j.flush()
    assert first > 0 and j.flush() == 0  # nothing new: nothing written
    _grow(p, 50)
    p.threads[101] = Thread(1, 101, [(5, "late")], 5, 6)
    second = j.flush()
    assert 0 < second < first  # only the new rows (and the threads, which changed)
    assert jn.pending(h.dir) == []  # its writer holds the journal's lock
    j.close(discard=False)
    assert [i for i, _ in jn.pending(h.dir)] == [7]
    stored = h.scan()  # recovers it, then lists it
    assert [s.id for s in stored] == [7] and not os.path.exists(h.journal_of(7))
    s = stored[0].summary
    assert s["end_reason"] == INTERRUPTED and s["state"] == "stopped" and s["samples"] == 150
    a = fm.load(stored[0].path)
    assert _views(a.profile) == _views(p)
    assert a.profile.threads[101].name == "late"


def test_torn_last_chunk_is_ignored(tmp_path: Path) -> None:
    h = History(str(tmp_path / "runs"))
    p = build_profile(SPLIT)
    j = jn.Journal(h.journal_of(3), p, lambda: RUN, interval=3600)
    assert j.start()
    j.flush()
    _grow(p, 40)
    j.flush()
    j.close(discard=False)
    chunks = os.path.join(h.journal_of(3), jn.CHUNKS)
    with open(chunks, "r+b") as f:  # the crash came in the middle of the second chunk
        f.truncate(os.path.getsize(chunks) - 10)
    assert recover_all(h.dir, h.path_of) == [3]
    a = fm.load(h.path_of(3))
    assert len(a.profile.s_stack) == 100  # the first flush, whole
    assert a.run["samples"] == 100 and a.run["end_reason"] == INTERRUPTED


def test_garbage_journal_is_left_alone(tmp_path: Path) -> None:
    h = History(str(tmp_path / "runs"))
    os.makedirs(h.journal_of(4))
    with open(os.path.join(h.journal_of(4), jn.CHUNKS), "wb") as f:
        f.write(b"not a journal at all")
    assert recover_all(h.dir, h.path_of) == [4]  # an empty run: nothing was intact
    assert fm.load(h.path_of(4)).run["samples"] == 0


def test_unwritable_directory_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    j = jn.Journal(str(tmp_path / "file" / "run-1.journal"), build_profile(SPLIT), lambda: RUN)
    assert not j.start() and "cannot write" in (j.error or "")
