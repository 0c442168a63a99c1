"""End-to-end: a recording run is journaled as it records, so that after ``kill -9`` of
stax-server the next server lists it, marked interrupted, with what was journaled."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from harness import Stax, start_server, stop_server


def test_run_survives_kill_9_of_the_server(stax: Stax, workloads: dict[str, Path],
                                           tmp_path: Path) -> None:
    target = subprocess.Popen([str(workloads["spin"]), "60", "2"])
    rec = None
    try:
        time.sleep(0.2)
        rec = stax.record_bg("-p", str(target.pid), samples=300)
        journals = list((tmp_path / "state" / "stax" / "runs").glob("run-*.journal"))
        assert len(journals) == 1, journals
        time.sleep(2.5)  # at least two flushes
        live = stax("status", "--json", check=True).json()["active"]  # type: ignore[index]
        os.kill(stax.server.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        stax.server.wait()  # type: ignore[attr-defined]
        rec.wait(30)
    finally:
        target.kill()
        target.wait()
        if rec is not None and rec.poll() is None:
            rec.kill()
    server = start_server(stax.env, tmp_path)  # the killed server's socket file remains:
    stax.server = server  # type: ignore[attr-defined]  # the fixture stops this one
    deadline = time.monotonic() + 20
    while stax("status").code != 0:  # wait until the new server answers on it
        assert server.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    runs = stax("list", "--json", check=True).json()["runs"]  # type: ignore[index]
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["state"] == "stopped" and run["end_reason"] == "interrupted", run
    # everything up to the last flush (about a second before the kill)
    assert run["samples"] >= min(300, live["samples"] // 3), (run["samples"], live["samples"])
    assert run["pid"] == target.pid and run["threads"] == 2
    assert any("recovered from the journal" in n for n in run["notes"])
    assert not list((tmp_path / "state" / "stax" / "runs").glob("run-*.journal"))
    top = stax("top", "--run", str(run["id"]), "--json", check=True).json()
    assert top["rows"][0]["func"] == "spin_hot", top["rows"][:3]  # type: ignore[index]
    assert "interrupted" in stax("list", check=True).out
    flame = stax("flame", "--run", str(run["id"]), check=True).out
    assert "spin_hot" in flame
    stax("threads", "--run", str(run["id"]), check=True)
    diag = stax("diagnose", "--run", str(run["id"]), "--json", check=True).json()
    assert diag["run"]["end_reason"] == "interrupted"  # type: ignore[index]
    # a new run gets the next id, and a normal stop leaves no journal behind
    stax("record", "--", str(workloads["spin"]), "0.3", check=True)
    runs = stax("list", "--json", check=True).json()["runs"]  # type: ignore[index]
    assert [r["id"] for r in runs] == [run["id"], run["id"] + 1]
    assert runs[1]["end_reason"] == "exited"
    assert not list((tmp_path / "state" / "stax" / "runs").glob("run-*.journal"))
    stop_server(server)
