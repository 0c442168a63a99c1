"""`stax record … & stax wait …` as scripts write it: wait never races the backgrounded record
(no run registered yet, no server started yet, or a run already over), and it returns soon after
the run holds what it asked for."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from harness import Stax, tool

from stax.archive.reader import load
from stax.client import Client, RemoteError

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 20

# the examples of docs/cli.md ("Scripts: record in the background, then wait")
EXAMPLE = re.compile(r"^stax record (?P<record>.+?) & stax wait (?P<wait>[^#]+?)\s*(#.*)?$")
# what each of them becomes on the test's short workload (spin: spin_hot for 0.4 s)
SMALL = {"--for-samples": "--for-samples 60", "--for-seconds": "--for-seconds 0.15",
         "--until-symbol": "--until-symbol spin_hot"}


def _doc_examples() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "cli.md").read_text()
    found = [(m["record"], m["wait"]) for line in text.splitlines() if (m := EXAMPLE.match(line))]
    assert len(found) == 3, found
    return found


def _loop(stax: Stax, record: str, wait: str, rounds: int = ROUNDS) -> list[str]:
    """``rounds`` times in one shell: ``stax record RECORD & stax wait WAIT; wait $!``; returns
    one line per round: the wait's exit status, then its output."""
    script = (f'for i in $(seq {rounds}); do {record} >/dev/null 2>&1 & '
              f'out=$({wait} 2>&1); rc=$?; wait $!; echo "$rc $out"; done')
    p = subprocess.run(["bash", "-c", script], env=stax.env, capture_output=True, text=True,
                       timeout=60 + rounds * 10)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


@pytest.mark.parametrize("example", range(3))
def test_the_documented_examples_succeed_every_time(stax: Stax, workloads: dict[str, Path],
                                                    example: int) -> None:
    record, wait = _doc_examples()[example]
    option = wait.split()[0]
    spin = workloads["spin"]
    exe = tool("stax")
    if "-p" in record.split():  # attach: a fresh spinning process each round, spinning long
        # enough to outlive a slow first attach (a fresh server loads its symbolizer then)
        rec = f'{spin} 1.5 & {exe} record -p $!'
    else:
        rec = f"{exe} record -- {spin} 0.4"
    lines = _loop(stax, rec, f"{exe} wait {SMALL[option]} --timeout-ms 20000")
    assert len(lines) == ROUNDS, lines
    for i, line in enumerate(lines, 1):
        # met on this round's own run, never an earlier one
        assert line.startswith(f"0 condition met: run {i}  ["), (i, lines)


def test_wait_starts_before_the_server(stax_noserver: Stax, workloads: dict[str, Path]) -> None:
    exe = tool("stax")
    lines = _loop(stax_noserver, f"{exe} record -- {workloads['spin']} 0.4",
                  f"{exe} wait --for-samples 50", rounds=1)
    assert lines[0].startswith("0 condition met: run 1  ["), lines


def test_wait_returns_soon_after_the_run_has_n_samples(stax: Stax,
                                                       workloads: dict[str, Path]) -> None:
    n = 300
    lags = []
    for i in range(1, 6):
        rec = stax.popen("record", "--", str(workloads["spin"]), "1")
        w = stax.popen("wait", "--for-samples", str(n), "--timeout-ms", "20000")
        w.wait(30)
        returned = time.monotonic_ns()
        assert w.returncode == 0, w.stderr.read()  # type: ignore[union-attr]
        assert rec.wait(30) == 0
        archive = Path(stax.env["XDG_STATE_HOME"]) / "stax" / "runs" / f"run-{i}.stax"
        times = sorted(load(str(archive)).profile.s_time)
        assert len(times) >= n
        lags.append((returned - times[n - 1]) / 1e9)
    # the n-th sample's own timestamp is the earliest the run could hold it
    assert all(0 < lag for lag in lags), lags
    assert sorted(lags)[len(lags) // 2] < 0.3 and max(lags) < 0.5, lags


def _rpc(stax: Stax, **params: object) -> dict:
    with Client(stax.env["STAX_SERVER_SOCKET"]) as c:
        return c.call("wait", **params)


def test_a_run_that_ended_before_wait_was_heard(stax: Stax, workloads: dict[str, Path]) -> None:
    before = time.monotonic_ns()
    stax("record", "--", str(workloads["spin"]), "0.3", check=True)
    after = time.monotonic_ns()
    # it stopped after the (simulated) wait started: wait answers on it, as it ended
    res = _rpc(stax, for_samples=50, stopped_since_ns=before)
    assert res["status"] == "met" and res["run"]["id"] == 1
    res = _rpc(stax, for_samples=10**8, stopped_since_ns=before)
    assert res["status"] == "stopped"
    assert _rpc(stax, stopped_since_ns=before)["status"] == "stopped"  # no condition: its end
    res = _rpc(stax, until_symbol="spin_hot", stopped_since_ns=before)
    assert res["status"] == "met" and "spin_hot" in res["symbol"]
    # stopped before wait started: not the run it is waiting for
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="no active run"):
        _rpc(stax, for_samples=50, stopped_since_ns=after, wait_for_run_ms=300)
    assert 0.25 < time.monotonic() - t0 < 5
    r = stax("wait", "--for-samples", "50", "--timeout-ms", "300")
    assert r.code == 1 and r.err.startswith("error: no active run to wait for")


def test_wait_without_a_run_gives_up_after_the_grace(stax: Stax) -> None:
    t0 = time.monotonic()
    r = stax("wait")
    took = time.monotonic() - t0
    assert r.code == 1 and r.err == "error: no active run to wait for\n"
    assert 4.5 < took < 10, took


def test_wait_times_out_waiting_for_the_condition(stax: Stax, workloads: dict[str, Path]) -> None:
    exe = tool("stax")
    lines = _loop(stax, f"{exe} record -- {workloads['spin']} 3",
                  f"{exe} wait --for-samples 100000000 --timeout-ms 700", rounds=1)
    assert lines[0].startswith("1 timed out: run 1  [recording]"), lines
