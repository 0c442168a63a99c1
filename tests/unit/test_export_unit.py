"""The exports on hand-built profiles: folded stacks (one thread, off-CPU), speedscope (its
documented structure and, when installed, its own schema), pprof decoded back to the same stacks,
and the Firefox Profiler's (gecko) tables."""

from __future__ import annotations

import json

import pytest
from archive_helpers import RUN, SPLIT, build_profile, pb_decode, pprof_stacks
from consumer_helpers import MISSING, speedscope_schema

from stax.archive.export import converter


def test_folded_export() -> None:
    p = build_profile(SPLIT)
    text = converter("folded")(p, None, None, RUN).decode()
    assert text.splitlines() == ["main;work_a 60", "main;work_b 30", "main;work_c 10"]


def test_folded_export_of_one_thread_and_off_cpu() -> None:
    import numpy as np

    p = build_profile(SPLIT, tid_of={"work_c": 101})
    assert converter("folded")(p, 101, None, RUN).decode() == "main;work_c 10\n"
    iv = {"tid": np.array([100], np.int32), "start_ns": np.array([0], np.int64),
          "duration_ns": np.array([5_000_000], np.int64), "reason": np.array([0], np.int16),
          "stack": np.array([0], np.int32)}
    # the default (cpu) mode carries on-CPU samples only, whatever the off-CPU table holds
    assert converter("folded")(p, None, iv, RUN).decode().splitlines() == [
        "main;work_a 60", "main;work_b 30", "main;work_c 10"]
    lines = converter("folded")(p, None, iv, RUN, mode="offcpu").decode().splitlines()
    assert lines == ["main;[off-cpu:idle] 5000000"]  # blocked nanoseconds


# The structure speedscope's file-format page documents (written from its description, not
# copied): frames shared by name, sampled profiles with one weight per sample.
STRUCTURE = {
    "type": "object",
    "required": ["$schema", "shared", "profiles"],
    "properties": {
        "$schema": {"const": "https://www.speedscope.app/file-format-schema.json"},
        "shared": {"type": "object", "required": ["frames"], "properties": {"frames": {
            "type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "file": {"type": "string"},
                "line": {"type": "number"}, "col": {"type": "number"}}}}}},
        "profiles": {"type": "array", "items": {
            "type": "object",
            "required": ["type", "name", "unit", "startValue", "endValue", "samples",
                         "weights"],
            "properties": {
                "type": {"const": "sampled"}, "name": {"type": "string"},
                "unit": {"enum": ["none", "nanoseconds", "microseconds", "milliseconds",
                                  "seconds", "bytes"]},
                "startValue": {"type": "number"}, "endValue": {"type": "number"},
                "samples": {"type": "array",
                            "items": {"type": "array", "items": {"type": "integer",
                                                                 "minimum": 0}}},
                "weights": {"type": "array", "items": {"type": "number"}}}}},
        "name": {"type": "string"}, "activeProfileIndex": {"type": "number"},
        "exporter": {"type": "string"},
    },
}


def _speedscope_doc(early: bool = False) -> dict:
    """SPLIT over two threads, tid 101 blocked 3 ms (from before the first sample if early)."""
    import numpy as np

    p = build_profile(SPLIT, tid_of={"work_c": 101})
    at = 9_000_000_000 if early else 20_000_000_000
    iv = {"tid": np.array([101], np.int32), "start_ns": np.array([at], np.int64),
          "duration_ns": np.array([3_000_000], np.int64), "reason": np.array([2], np.int16),
          "stack": np.array([0], np.int32)}
    return json.loads(converter("speedscope")(p, None, iv, RUN))


def test_speedscope_export_has_the_documented_structure() -> None:
    import jsonschema

    doc = _speedscope_doc()
    jsonschema.validate(doc, STRUCTURE)
    frames = [f["name"] for f in doc["shared"]["frames"]]
    on = {pr["name"]: pr for pr in doc["profiles"]}
    main = on["worker-100 (tid 100) on-CPU"]
    assert len(main["samples"]) == len(main["weights"])
    assert sum(main["weights"]) == 90 * 1_000_000
    for pr in doc["profiles"]:
        assert all(0 <= i < len(frames) for s in pr["samples"] for i in s)
    off = on["worker-101 (tid 101) off-CPU"]
    assert off["weights"] == [3_000_000]
    assert [frames[i] for i in off["samples"][0]][-1] == "[off-cpu:sem]"


def test_speedscope_export_validates_against_speedscopes_own_schema() -> None:
    import jsonschema

    schema = speedscope_schema()
    if schema is None:
        pytest.skip(f"speedscope's file-format-schema.json: the speedscope npm package {MISSING}"
                    " (or set SPEEDSCOPE_SCHEMA=PATH)")
    jsonschema.validate(_speedscope_doc(), schema)
    jsonschema.validate(_speedscope_doc(early=True), schema)


def test_speedscope_profiles_span_their_weights_from_a_common_origin() -> None:
    """speedscope lays samples end to end: end - start is the weights' sum, start >= 0 even
    when an off-CPU interval began before the first sample."""
    for early in (False, True):
        doc = _speedscope_doc(early=early)
        starts = []
        for pr in doc["profiles"]:
            assert pr["startValue"] >= 0
            assert pr["endValue"] - pr["startValue"] == sum(pr["weights"]), pr["name"]
            starts.append(pr["startValue"])
        assert min(starts) == 0


def test_pprof_export_decodes_to_the_same_stacks() -> None:
    import numpy as np

    p = build_profile(SPLIT)
    stacks, strings, prof = pprof_stacks(converter("pprof")(p, None, None, RUN))
    assert stacks == {"main;work_a": 60, "main;work_b": 30, "main;work_c": 10}
    types = [strings[pb_decode(t)[1][0]] for t in prof[1]]
    assert types == ["samples", "cpu"]
    assert 3 in prof and 4 in prof and 5 in prof  # mappings, locations, functions
    assert "/usr/bin/prog" in strings
    iv = {"tid": np.array([100], np.int32), "start_ns": np.array([0], np.int64),
          "duration_ns": np.array([7], np.int64), "reason": np.array([1], np.int16),
          "stack": np.array([0], np.int32)}
    _s, strings, prof = pprof_stacks(converter("pprof")(p, None, iv, RUN))
    assert "off_cpu" in strings


def test_gecko_export_tables_are_consistent() -> None:
    p = build_profile(SPLIT, tid_of={"work_c": 101})
    doc = json.loads(converter("gecko")(p, None, None, RUN))
    assert doc["meta"]["preprocessedProfileVersion"] >= 1
    assert len(doc["threads"]) == 2
    total = 0
    for th in doc["threads"]:
        st_, fr, fn = th["stackTable"], th["frameTable"], th["funcTable"]
        names = th["stringArray"]
        for table in (st_, fr, fn, th["samples"], th["resourceTable"]):
            for k, v in table.items():
                if isinstance(v, list):
                    assert len(v) == table["length"], k
        for i, pre in enumerate(st_["prefix"]):
            assert pre is None or 0 <= pre < i
        leaf = {names[fn["name"][fr["func"][st_["frame"][s]]]] for s in th["samples"]["stack"]}
        total += th["samples"]["length"]
        if th["tid"] == 101:
            assert leaf == {"work_c"}
    assert total == 100


def test_gecko_breakpad_id_is_the_guid_form_of_the_build_id() -> None:
    from stax.archive.export.gecko import breakpad_id

    # first three GUID fields byte-swapped, upper case, the 16 bytes only, then the age 0
    bid = "c9e9aa8ce91073e0eb6d873a891b08ba461a8c46"
    assert breakpad_id(bid) == "8CAAE9C910E9E073EB6D873A891B08BA0"
    assert breakpad_id("abcd1234") == "3412CDAB000000000000000000000000" + "0"
    assert breakpad_id(None) == "" and breakpad_id("zz") == ""


def test_gecko_off_cpu_copies_are_distinct_and_spread_over_the_wait() -> None:
    import numpy as np

    from stax.profile.tables import Thread

    p = build_profile(SPLIT, tid_of={"work_c": 101})
    p.threads[100] = Thread(100, 100, [(p.first_time, "prog")], p.first_time, p.last_time)
    p.threads[101] = Thread(100, 101, [(p.first_time, "helper")], p.first_time, p.last_time)
    # 101 blocked 10 ms (sampled at 1 kHz: 10 samples of 1 ms); 100 blocked 5 s (capped)
    iv = {"tid": np.array([101, 100], np.int32),
          "start_ns": np.array([10_020_000_000, 10_200_000_000], np.int64),
          "duration_ns": np.array([10_000_000, 5_000_000_000], np.int64),
          "reason": np.array([2, 1], np.int16), "stack": np.array([0, 0], np.int32)}
    doc = json.loads(converter("gecko")(p, None, iv, RUN))
    assert doc["meta"]["sampleUnits"]["threadCPUDelta"] == "ns"
    assert doc["libs"][0]["breakpadId"] == "3412CDAB0000000000000000000000000"
    th = {t["name"]: t for t in doc["threads"]}
    assert [t["name"] for t in doc["threads"] if t["isMainThread"]] == ["prog (on-CPU)"]
    tids = [t["tid"] for t in doc["threads"]]
    assert len(set(tids)) == len(tids) and th["helper (off-CPU)"]["tid"] == "101-offcpu"
    on = th["prog (on-CPU)"]["samples"]
    assert on["threadCPUDelta"] == [1_000_000] * on["length"]
    helper = th["helper (off-CPU)"]["samples"]
    assert helper["length"] == 10 and helper["weight"] == [1.0] * 10
    assert helper["time"] == [20.0 + k for k in range(10)]
    assert helper["threadCPUDelta"] == [0] * 10
    main = th["prog (off-CPU)"]["samples"]
    assert main["length"] == 1000 and abs(sum(main["weight"]) - 5000.0) < 1e-6
    assert main["time"][1] - main["time"][0] == 5.0 and not th["prog (off-CPU)"]["isMainThread"]


def test_gecko_off_cpu_samples_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from stax.archive.export import gecko
    from stax.archive.export.gecko import offcpu_steps
    from stax.limits import MAX_OFFCPU_SAMPLES_PER_INTERVAL

    steps = offcpu_steps(5, 3_600_000_000_000, 1_000_000)  # an hour at 1 kHz: capped
    assert len(steps) == MAX_OFFCPU_SAMPLES_PER_INTERVAL
    assert sum(w for _t, w in steps) == 3_600_000_000_000 and steps[0] == (5, 3_600_000_000)
    assert offcpu_steps(7, 2_500_000, 1_000_000) == [(7, 1_000_000), (1_000_007, 1_000_000),
                                                     (2_000_007, 500_000)]
    # 400 waits of 1 s at 1 kHz would be 400 000 samples: past the bound the period grows
    monkeypatch.setattr(gecko, "MAX_OFFCPU_SAMPLES", 10_000)
    p = build_profile(SPLIT)
    n = 400
    iv = {"tid": np.full(n, 100, np.int32),
          "start_ns": np.arange(n, dtype=np.int64) * 1_000_000_000 + 20_000_000_000,
          "duration_ns": np.full(n, 1_000_000_000, np.int64), "reason": np.zeros(n, np.int16),
          "stack": np.zeros(n, np.int32)}
    doc = json.loads(converter("gecko")(p, None, iv, RUN))
    off = next(t for t in doc["threads"] if t["name"].endswith(" (off-CPU)"))["samples"]
    assert off["length"] == 10_000
    assert abs(sum(off["weight"]) - n * 1000.0) < 1e-3
