"""The views behind the web UI's thread tracks and stack chart: `timeline` per thread and in a
range, and `samples` (time-ordered stacks, thinned), on hand-built profiles."""

from __future__ import annotations

from archive_helpers import SPLIT, build_profile

from stax.profile import samples, views


def test_timeline_per_thread_sums_to_the_total() -> None:
    p = build_profile(SPLIT, tid_of={"work_c": 101})
    t = views.timeline(p, views.Filter(), 10, per_thread=True)
    assert sum(t["counts"]) == 100 and t["start_ns"] == 0
    by = {r["tid"]: r for r in t["threads"]}
    assert by[100]["samples"] == 90 and by[101]["samples"] == 10
    assert [sum(x) for x in zip(*(r["counts"] for r in t["threads"]), strict=True)] == t["counts"]
    assert by[101]["name"] == "worker-101"
    # without per_thread the reply is as before
    assert "threads" not in views.timeline(p, views.Filter(), 10)


def test_timeline_in_a_range_narrows_the_axis() -> None:
    p = build_profile(SPLIT)  # 100 samples, 1 ms apart from t=0
    t = views.timeline(p, views.Filter(start_ns=20_000_000, end_ns=40_000_000), 20,
                       per_thread=True)
    assert t["start_ns"] == 20_000_000 and t["bucket_ns"] == 1_000_000
    assert t["counts"] == [1] * 20  # the samples at 20..39 ms, one a bucket
    assert t["threads"][0]["counts"] == [1] * 20


def test_samples_in_time_order_with_shared_stacks() -> None:
    p = build_profile(SPLIT, tid_of={"work_c": 101})
    r = samples.samples(p, views.Filter(tid=100))
    assert r["total"] == r["returned"] == 90 and r["step"] == 1
    times = [s[0] for s in r["samples"]]
    assert times == sorted(times) and r["interval_ns"] == 1_000_000
    names = [[r["funcs"][f]["func"] for f in st] for st in r["stacks"]]
    assert sorted(names) == [["main", "work_a"], ["main", "work_b"]]
    leaf = [names[s[1]][-1] for s in r["samples"]]
    assert leaf.count("work_a") == 60 and leaf.count("work_b") == 30


def test_samples_thinned_and_ranged() -> None:
    p = build_profile(SPLIT)
    r = samples.samples(p, views.Filter(), max_samples=25)
    assert r["total"] == 100 and r["step"] == 4 and r["returned"] == 25
    r = samples.samples(p, views.Filter(start_ns=10_000_000, end_ns=20_000_000))
    assert r["total"] == 10 and r["samples"][0][0] == 10_000_000
    assert samples.samples(p, views.Filter(tid=999))["samples"] == []
