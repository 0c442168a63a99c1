"""Folded export modes (cpu / offcpu / wall: one weight per file) and per-thread root frames,
on hand-built profiles."""

from __future__ import annotations

import pytest
from archive_helpers import RUN, SPLIT, build_profile

from stax.archive.export import converter


def _iv(rows: list[tuple[int, int, int, int]]) -> dict:
    """Off-CPU intervals (tid, duration_ns, reason, stack)."""
    import numpy as np

    return {"tid": np.array([r[0] for r in rows], np.int32),
            "start_ns": np.array([10_000_000_000 + i for i in range(len(rows))], np.int64),
            "duration_ns": np.array([r[1] for r in rows], np.int64),
            "reason": np.array([r[2] for r in rows], np.int16),
            "stack": np.array([r[3] for r in rows], np.int32)}


def _folded(p, iv, **kw) -> dict[str, int]:
    text = converter("folded")(p, None, iv, RUN, **kw).decode()
    assert text.endswith("\n")
    out = {}
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        out[stack] = int(n)
    return out


def test_cpu_mode_has_only_on_cpu_stacks_weighted_by_samples() -> None:
    p = build_profile(SPLIT)
    iv = _iv([(100, 2_000_000_000, 2, 0)])  # a long block under main: must not show
    got = _folded(p, iv, mode="cpu")
    assert got == {"main;work_a": 60, "main;work_b": 30, "main;work_c": 10}
    total = sum(got.values())
    assert got["main;work_a"] / total == pytest.approx(0.6)
    assert _folded(p, iv) == got  # cpu is the default


def test_offcpu_mode_weights_blocking_stacks_by_nanoseconds() -> None:
    p = build_profile(SPLIT)
    # stack 0 is main; two intervals on one stack and reason add up
    iv = _iv([(100, 1_500, 2, 0), (100, 2_500, 2, 0), (100, 7, 0, 1)])
    got = _folded(p, iv, mode="offcpu")
    # stack 1 is main;work_a (ids in build_profile's order)
    assert got == {"main;[off-cpu:sem]": 4_000, "main;work_a;[off-cpu:idle]": 7}


def test_wall_mode_puts_both_in_nanoseconds() -> None:
    p = build_profile(SPLIT, period=1_000_000)
    iv = _iv([(100, 3_000_000, 0, 0)])
    got = _folded(p, iv, mode="wall")
    assert got["main;work_a"] == 60 * 1_000_000
    assert got["main;work_c"] == 10 * 1_000_000
    assert got["main;[off-cpu:idle]"] == 3_000_000
    assert len(got) == 4


def test_per_thread_roots() -> None:
    p = build_profile(SPLIT, tid_of={"work_c": 101})
    got = _folded(p, _iv([(101, 5, 0, 0)]), per_thread=True)
    assert got == {"worker-100 (100);main;work_a": 60, "worker-100 (100);main;work_b": 30,
                   "worker-101 (101);main;work_c": 10}
    got = _folded(p, _iv([(101, 5, 0, 0)]), mode="offcpu", per_thread=True)
    assert got == {"worker-101 (101);main;[off-cpu:idle]": 5}


def test_thread_names_cannot_split_frames() -> None:
    from stax.profile.tables import Thread

    p = build_profile({("main",): 3})
    p.threads[100] = Thread(1, 100, [(0, "a;b c")], 0, 0)
    assert _folded(p, None, per_thread=True) == {"a:b c (100);main": 3}


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown folded mode"):
        converter("folded")(build_profile(SPLIT), None, None, RUN, mode="both")
