"""The exports on hand-built profiles: folded stacks (one thread, off-CPU), speedscope (its
documented structure and, when installed, its own schema), pprof decoded back to the same stacks,
and the Firefox Profiler's (gecko) tables."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from archive_helpers import RUN, SPLIT, build_profile, pb_decode, pprof_stacks

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


def _speedscope_schema() -> dict | None:
    """The schema shipped in the speedscope npm package, if one is installed here."""
    import subprocess

    cands = [os.environ.get("SPEEDSCOPE_SCHEMA", "")]
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
            cands.append(os.path.join(root, "speedscope/dist/release/file-format-schema.json"))
        except (OSError, subprocess.SubprocessError):
            pass
    for c in cands:
        if c and os.path.exists(c):
            return json.loads(Path(c).read_text())
    return None


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


def _speedscope_doc() -> dict:
    import numpy as np

    p = build_profile(SPLIT, tid_of={"work_c": 101})
    iv = {"tid": np.array([101], np.int32), "start_ns": np.array([20_000_000_000], np.int64),
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

    schema = _speedscope_schema()
    if schema is None:
        pytest.skip("the speedscope npm package (file-format-schema.json) is not installed; "
                    "set SPEEDSCOPE_SCHEMA=PATH to validate against it")
    jsonschema.validate(_speedscope_doc(), schema)


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
