"""The stalls and neighbors views on hand-built profiles: off-CPU intervals and sample gaps of
busy threads, their ranking, filters and histogram; callers and callees with recursion."""

from __future__ import annotations

import pytest
from archive_helpers import SPLIT, build_profile

from stax.cli.commands import stalls as stalls_cmd
from stax.profile import neighbors as nb
from stax.profile import stalls as st
from stax.profile.offcpu import REASON_CODE, REASONS, STATE_INTERRUPTIBLE
from stax.profile.selection import Filter
from stax.profile.tables import Func, Profile, Thread

MS = 1_000_000
T0 = 10_000_000_000


class Builder:
    """A profile from explicit samples and intervals (times in ms from T0)."""

    def __init__(self) -> None:
        self.p = Profile(None)
        self.prog = self.p.binary_id("/usr/bin/prog", "abcd1234", 1)
        self.funcs: dict[str, int] = {}

    def stack(self, *names: str) -> int:
        p = self.p
        sid = -1
        for name in names:
            if name not in self.funcs:
                self.funcs[name] = len(p.funcs)
                p.funcs.append(Func(name, "prog", "/usr/bin/prog", 0x1000 + 16 * len(p.funcs),
                                    16, True))
            fid = p.frame_id(self.prog, 0x1000 + 16 * self.funcs[name])
            p.frame_func[fid] = self.funcs[name]
            sid = p.stack_id(sid, fid)
        return sid

    def thread(self, tid: int, name: str) -> None:
        self.p.threads[tid] = Thread(1, tid, [(T0, name)], T0, T0)

    def samples(self, tid: int, start_ms: float, end_ms: float, sid: int,
                period_ms: float = 1.0) -> None:
        p = self.p
        t = start_ms
        while t <= end_ms + 1e-9:
            p.s_time.append(T0 + round(t * MS))
            p.s_tid.append(tid)
            p.s_stack.append(sid)
            p.s_weight.append(round(period_ms * MS))
            p.s_cpu.append(0)
            t += period_ms

    def interval(self, tid: int, start_ms: float, dur_ms: float, reason: str, sid: int,
                 waker: int | None = None) -> None:
        iv, wk = self.p.intervals, self.p.wakeups
        w = -1
        if waker is not None:
            wk.time_ns.append(T0 + round((start_ms + dur_ms - 0.5) * MS))
            wk.waker_tid.append(waker)
            wk.wakee_tid.append(tid)
            wk.waker_stack.append(-1)
            w = len(wk) - 1
        iv.tid.append(tid)
        iv.start_ns.append(T0 + round(start_ms * MS))
        iv.duration_ns.append(round(dur_ms * MS))
        iv.reason.append(REASON_CODE[reason])
        iv.stack.append(sid)
        iv.state.append(STATE_INTERRUPTIBLE)
        iv.wakeup.append(w)

    def done(self) -> Profile:
        p = self.p
        p.first_time = T0
        p.last_time = max(p.s_time) if len(p.s_time) else T0
        return p


@pytest.fixture
def prof() -> Profile:
    b = Builder()
    b.thread(100, "worker")
    b.thread(101, "sleeper")
    b.thread(102, "idler")
    run = b.stack("main", "work")
    # worker: busy 0..100 ms, a 50 ms hole with no interval (a gap), busy 150..250, then a
    # hole covered by a 140 ms sleep (the interval, not a gap), busy 400..500
    b.samples(100, 0, 100, run)
    b.samples(100, 150, 250, run)
    b.interval(100, 255, 140, "sleep", b.stack("main", "nap", "clock_nanosleep"))
    b.samples(100, 400, 500, run)
    # sleeper: a 30 ms lock wait ended by the worker, and a 5 ms one (under --min-ms)
    lock = b.stack("main", "take", "__lll_lock_wait")
    b.interval(101, 20, 30, "lock", lock, waker=100)
    b.interval(101, 300, 5, "lock", lock)
    # idler: samples 40 ms apart, never busy: no gaps
    b.samples(102, 0, 480, b.stack("main", "poll"), period_ms=40)
    return b.done()


def test_ranks_intervals_and_gaps_of_busy_threads(prof: Profile) -> None:
    res = st.stalls(prof, Filter())
    got = [(r["kind"], r["tid"], r["reason"], r["start_ns"], r["duration_ns"])
           for r in res["rows"]]
    assert got == [("offcpu", 100, "sleep", 255 * MS, 140 * MS),
                   ("gap", 100, "gap", 100 * MS, 49 * MS),
                   ("offcpu", 101, "lock", 20 * MS, 30 * MS)]
    assert res["stalls"] == 3 and res["gaps"] == 1
    assert res["stalled_ns"] == (140 + 49 + 30) * MS
    assert res["by_reason"]["sleep"] == {"stalls": 1, "stalled_ns": 140 * MS}
    sleep, gap, lock = res["rows"]
    assert sleep["stack"][0]["func"] == "clock_nanosleep" and sleep["waker"] is None
    assert gap["stack"][0]["func"] == "work" and gap["state"] is None  # last seen running
    assert lock["waker"]["tid"] == 100 and lock["waker"]["name"] == "worker"
    assert lock["waker"]["runnable_ns"] == MS // 2 and lock["thread"] == "sleeper"


def test_min_tid_reason_limit_and_window(prof: Profile) -> None:
    assert st.stalls(prof, Filter(), min_ns=1)["stalls"] == 4  # the 5 ms lock wait too
    assert st.stalls(prof, Filter(), min_ns=100 * MS)["stalls"] == 1
    assert [r["tid"] for r in st.stalls(prof, Filter(tid=101))["rows"]] == [101]
    only_gaps = st.stalls(prof, Filter(), reason="gap")
    assert [r["kind"] for r in only_gaps["rows"]] == ["gap"]
    assert [r["reason"] for r in st.stalls(prof, Filter(), reason="lock")["rows"]] == ["lock"]
    one = st.stalls(prof, Filter(), limit=1)
    assert one["stalls"] == 3 and len(one["rows"]) == 1
    # a window keeps the stalls overlapping it
    win = st.stalls(prof, Filter(start_ns=120 * MS, end_ns=260 * MS))
    assert {r["reason"] for r in win["rows"]} == {"gap", "sleep"}
    assert "stack" not in st.stalls(prof, Filter(), stacks=False)["rows"][0]


def test_histogram_counts_starts_and_spreads_time(prof: Profile) -> None:
    h = st.stalls(prof, Filter(), bucket_ns=100 * MS)["histogram"]
    assert h["bucket_ns"] == 100 * MS and h["start_ns"] == 0
    b = h["buckets"]
    assert [x["started"] for x in b] == [1, 1, 1, 0, 0]
    # the 140 ms sleep from 255 spreads over buckets 2 and 3; the gap from 100 in bucket 1
    assert [x["stalled_ns"] for x in b] == [30 * MS, 49 * MS, 45 * MS, 95 * MS, 0]
    assert sum(x["stalled_ns"] for x in b) == (140 + 49 + 30) * MS
    with pytest.raises(st.StallsError, match="too small"):
        st.stalls(prof, Filter(), bucket_ns=1)


def test_gap_needs_busy_neighbours_and_no_covering_interval() -> None:
    b = Builder()
    b.thread(7, "t")
    s = b.stack("main", "spin")
    b.samples(7, 0, 10, s)
    b.samples(7, 60, 60, s)  # a lone sample after the hole: not busy after it
    b.samples(7, 100, 110, s)
    b.interval(7, 120, 1, "ready", s)  # short preemption inside the next hole: explains it
    b.samples(7, 200, 210, s)
    res = st.stalls(b.done(), Filter())
    assert res["stalls"] == 0, res["rows"]
    # no samples at all: nothing, and no error
    assert st.stalls(Builder().done(), Filter(), bucket_ns=MS)["stalls"] == 0


def test_cli_reason_names_match_the_view() -> None:
    assert stalls_cmd.REASONS == (*REASONS, "gap")


def test_callees_and_callers_of_split() -> None:
    p = build_profile(SPLIT)
    res = nb.neighbors(p, Filter(), "main")
    fn = res["function"]
    assert fn["func"] == "main" and fn["samples"] == 100 and fn["self_ns"] == 0
    assert [(r["func"], round(r["pct"])) for r in res["callees"]] == \
        [("work_a", 60), ("work_b", 30), ("work_c", 10)]
    assert [(r["func"], r["pct"]) for r in res["callers"]] == [("[root]", 100.0)]
    a = nb.neighbors(p, Filter(), "work_a")
    assert [r["func"] for r in a["callers"]] == ["main"] and a["callees"] == []
    assert a["function"]["self_pct"] == 100.0 and round(a["function"]["pct"]) == 60
    assert len(nb.neighbors(p, Filter(), "main", limit=1)["callees"]) == 1
    assert nb.neighbors(p, Filter(), "main", limit=1)["callee_count"] == 3


def test_ambiguous_exact_and_equal_name_wins() -> None:
    p = build_profile({("__libc_start_main", "main", "work_a"): 5,
                       ("__libc_start_main", "main", "work_b"): 3})
    assert nb.neighbors(p, Filter(), "main")["function"]["func"] == "main"
    amb = nb.neighbors(p, Filter(), "WORK")
    assert amb["function"] is None and amb["matches"] == 2
    assert [c["func"] for c in amb["candidates"]] == ["work_a", "work_b"]
    assert nb.neighbors(p, Filter(), "work", exact=True)["candidates"] == []
    assert nb.neighbors(p, Filter(), "work_b", exact=True)["function"]["samples"] == 3
    assert nb.neighbors(p, Filter(), "start")["function"]["func"] == "__libc_start_main"
    with pytest.raises(nb.NeighborsError):
        nb.neighbors(p, Filter(), "  ")


def test_recursion_is_counted_once() -> None:
    p = build_profile({("main", "f", "f", "f", "leaf"): 10, ("main", "f", "g"): 10,
                       ("main", "g", "f", "h"): 5, ("main", "other"): 5})
    res = nb.neighbors(p, Filter(), "f", exact=True)
    fn = res["function"]
    assert fn["samples"] == 25 and fn["recursive_ns"] == 10 * MS
    assert {r["func"]: r["samples"] for r in res["callers"]} == {"main": 20, "g": 5}
    assert {r["func"]: r["samples"] for r in res["callees"]} == {"leaf": 10, "g": 10, "h": 5}
    assert sum(r["pct"] for r in res["callers"]) == pytest.approx(100.0)


def test_offcpu_and_wall_modes_weigh_blocked_time(prof: Profile) -> None:
    off = nb.neighbors(prof, Filter(), "main", mode="offcpu")
    assert {r["func"]: r["time_ns"] for r in off["callees"]} == {"nap": 140 * MS,
                                                                "take": 35 * MS}
    wall = nb.neighbors(prof, Filter(), "main", mode="wall")
    assert wall["function"]["time_ns"] == off["function"]["time_ns"] + \
        nb.neighbors(prof, Filter(), "main")["function"]["time_ns"]
    assert nb.neighbors(prof, Filter(tid=101), "work")["function"] is None


HOSTILE = "\x1b]0;pwned\x07\x9b31m\u202e\r\n\t"


def _unsafe(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F
            or c in "\u202e\u2028\u2029"]


def test_commands_print_hostile_names_escaped(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from stax.cli import common
    from stax.cli.commands import neighbors as nb_cmd

    b = Builder()
    b.thread(9, HOSTILE)
    s = b.stack("main", HOSTILE)
    b.samples(9, 0, 20, s)
    b.samples(9, 80, 100, s)
    b.interval(9, 105, 20, "lock", s, waker=9)
    b.samples(9, 150, 170, s)
    p = b.done()
    run = {"id": 1, "state": "stopped", "command": HOSTILE}
    answers = {"stalls": {**st.stalls(p, Filter(), bucket_ns=10 * MS), "run": run,
                          "note": HOSTILE},
               "neighbors": {**nb.neighbors(p, Filter(), "main"), "run": run}}
    for module in (nb_cmd, common):  # common: what stalls' query_text asks
        monkeypatch.setattr(module, "query", lambda method, *a, **k: answers[method])
    args = argparse.Namespace(json=False, run=None, tid=None, window=None, no_inline=False,
                              n=20, min_ms=10.0, bucket_ms=10.0, reason=None, func="main",
                              exact=False,
                              mode="cpu")
    assert stalls_cmd.cmd_stalls(args) == 0
    assert nb_cmd.cmd_neighbors(args) == 0
    got = capsys.readouterr()
    assert not _unsafe(got.out + got.err), got.out
    assert got.out.count("\\x1b]0;pwned\\x07") >= 4 and "stalls over time" in got.out
    assert " gap " in got.out and " lock " in got.out
