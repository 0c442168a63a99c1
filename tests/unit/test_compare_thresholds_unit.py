"""``stax compare``'s --fail-… thresholds and its sides (archives, --run IDs) on hand-built
archives; the real recordings and server runs are in tests/e2e/test_compare_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from archive_helpers import RUN, SPLIT, build_profile

from stax.archive import format as fm
from stax.archive.compare import compare
from stax.archive.thresholds import (
    FUNCTION_PCT,
    OFFCPU_MS,
    ONCPU_MS,
    ONCPU_PCT,
    Thresholds,
    describe,
    evaluate,
)
from stax.cli.compare_sides import side_order
from stax.cli.main import build_parser, main

# 100 samples of 1 ms (SPLIT: work_a 60, work_b 30, work_c 10) against 145: work_a 120 (its share
# 60% -> 82.8%), work_b 20 (30% -> 13.8%), work_d 5 (new, 3.4%), work_c gone
CAND = {("main", "work_a"): 120, ("main", "work_b"): 20, ("main", "work_d"): 5}


def _saved(tmp_path: Path, spec: dict, name: str) -> str:
    return fm.save(build_profile(spec), str(tmp_path / name), RUN)["path"]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    return _saved(tmp_path, SPLIT, "base.stax"), _saved(tmp_path, CAND, "cand.stax")


def _fails(pair: tuple[str, str], **limits: float) -> list[dict]:
    return compare(*pair, fail=Thresholds(**limits))["threshold_failures"]


def test_oncpu_limits_fail_only_above_the_limit(pair: tuple[str, str]) -> None:
    assert compare(*pair)["threshold_failures"] == []  # none asked: none failed
    [f] = _fails(pair, oncpu_delta_pct=40)
    assert f == {"threshold": ONCPU_PCT, "limit": 40, "value": pytest.approx(45.0)}
    assert _fails(pair, oncpu_delta_pct=45) == []  # strictly above fails; equal passes
    [f] = _fails(pair, oncpu_delta_ms=44.5)
    assert f["threshold"] == ONCPU_MS and f["value"] == pytest.approx(45.0)
    assert _fails(pair, oncpu_delta_ms=45) == []
    # the other way round on-CPU time fell: no limit fails, however small
    assert compare(pair[1], pair[0], fail=Thresholds(0, 0, 0, None))["threshold_failures"] == []


def test_function_share_checks_every_function(pair: tuple[str, str]) -> None:
    fails = _fails(pair, function_delta_pct=3)
    assert [(f["threshold"], f["function"]) for f in fails] == [(FUNCTION_PCT, "work_a"),
                                                                 (FUNCTION_PCT, "work_d")]
    assert fails[0]["value"] == pytest.approx(100 * 120 / 145 - 60)
    assert fails[0]["binary"] == "prog" and fails[0]["base_self_pct"] == pytest.approx(60)
    assert [f["function"] for f in _fails(pair, function_delta_pct=5)] == ["work_a"]
    # rows shown are cut to -n, the check is not: work_d is not among 1 regression row
    res = compare(*pair, limit=1, fail=Thresholds(function_delta_pct=3))
    assert [r["func"] for r in res["regressions"]] == ["work_a"]
    assert len(res["threshold_failures"]) == 2
    assert "work_a (prog) self share rose by 22.8 points, 60.0% → 82.8% (limit 3 points)" in \
        describe(fails[0])


def test_offcpu_and_a_rise_from_nothing() -> None:
    base = {"oncpu_ns": 0, "offcpu_ns": 5_000_000}
    cand = {"oncpu_ns": 2_000_000, "offcpu_ns": 30_000_000}
    fails = evaluate(Thresholds(oncpu_delta_pct=1000, offcpu_delta_ms=20), base, cand, [])
    assert fails == [{"threshold": ONCPU_PCT, "limit": 1000, "value": None},
                     {"threshold": OFFCPU_MS, "limit": 20, "value": pytest.approx(25.0)}]
    assert json.dumps(fails)  # no NaN or Infinity in JSON
    assert describe(fails[0]).startswith("threshold failed: --fail-oncpu-delta-pct: on-CPU time"
                                         " rose from 0")
    assert describe(fails[1]) == ("threshold failed: --fail-offcpu-delta-ms: off-CPU time rose "
                                  "by 25.0 ms (limit 20 ms)")
    assert evaluate(Thresholds(offcpu_delta_ms=25), base, cand, []) == []


def test_cli_exit_status_text_and_json(pair: tuple[str, str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", *pair]) == 0
    assert "threshold" not in capsys.readouterr().out  # none asked: not mentioned
    assert main(["compare", *pair, "--fail-oncpu-delta-pct", "50",
                 "--fail-function-delta-pct", "25"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("thresholds: all passed")
    assert main(["compare", *pair, "--fail-oncpu-delta-pct", "10", "--fail-oncpu-delta-ms",
                 "100", "--fail-function-delta-pct", "3"]) == 2
    lines = capsys.readouterr().out.splitlines()
    failed = [x for x in lines if x.startswith("threshold failed:")]
    assert len(failed) == 3 and "all passed" not in "".join(lines)
    assert failed[0] == ("threshold failed: --fail-oncpu-delta-pct: on-CPU time rose by 45.0% "
                         "(limit 10%)")
    assert "work_a" in failed[1] and "work_d" in failed[2]
    assert main(["compare", *pair, "--json", "--fail-function-delta-pct", "5"]) == 2
    res = json.loads(capsys.readouterr().out)
    assert [f["function"] for f in res["threshold_failures"]] == ["work_a"]
    assert res["base"]["run"] is None and res["cand"]["path"] == pair[1]
    assert main(["compare", *pair, "--json", "--fail-oncpu-delta-ms", "0.5e3"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold_failures"] == []


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "-0.5", "1e13", "x", ""])
def test_cli_refuses_bad_limits(pair: tuple[str, str], value: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--fail-oncpu-delta-pct", "--fail-offcpu-delta-ms"):
        with pytest.raises(SystemExit) as e:
            main(["compare", *pair, f"{flag}={value}"])
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: argument {flag}:") and err.count("\n") == 1


def test_sides_in_the_order_written() -> None:
    def order(*argv: str) -> tuple:
        return side_order(build_parser().parse_args(["compare", *argv]))

    assert order("a", "b") == (("path", "a"), ("path", "b"))
    assert order("--run", "3", "--run", "5", "--json") == (("run", 3), ("run", 5))
    assert order("a", "--run", "5") == (("path", "a"), ("run", 5))
    assert order("--run", "3", "-n", "4", "b") == (("run", 3), ("path", "b"))
    assert order("--cand-run", "5", "a") == (("path", "a"), ("run", 5))
    assert order("b", "--base-run", "3") == (("run", 3), ("path", "b"))
    assert order("--base-run", "3", "--cand-run", "4") == (("run", 3), ("run", 4))


@pytest.mark.parametrize("argv", [["a"], [], ["a", "b", "c"], ["--run", "1"],
                                  ["--run", "1", "--run", "2", "--run", "3"],
                                  ["--base-run", "1", "a", "b"], ["--run", "0", "a"]])
def test_not_two_sides_is_an_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["compare", *argv])
    except SystemExit as e:  # argparse: a bad run id
        code = e.code
    assert code == 1
    assert capsys.readouterr().err.startswith("error: ")
