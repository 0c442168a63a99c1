"""End-to-end: off-CPU intervals as an unprivileged user with no tracefs access and no staxd
(perf_event_paranoid 2), from context-switch records and /proc; wakeups named as needing staxd.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_staxd_e2e import User, _user_copy, user, user_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None
                                or shutil.which("setpriv") is None,
                                reason="needs root, useradd and setpriv (util-linux)")


def _paranoid() -> int:
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        return int(f.read())


def test_unprivileged_threads_get_intervals_reasons_and_a_staxd_line(
        user_server: User, workloads: dict[str, Path]) -> None:  # noqa: F811
    if _paranoid() > 2:
        pytest.skip("perf_event_paranoid > 2: no perf events for unprivileged users")
    u = user_server
    threads = _user_copy(u, workloads["threads"])
    p = u.stax("record", "--json", "--daemon-socket", str(u.home / "none.sock"), "--",
               threads, timeout=90)
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    assert run["capture_mode"] == "in-process" and run["kernel_frames"] is False, run
    assert run["offcpu"]["intervals_recorded"] and not run["offcpu"]["wakeups_recorded"], run
    assert run["intervals"] >= 5, run
    rows = {r["name"]: r for r in json.loads(u.stax("threads", "--json", "-n", "0").stdout)
            ["rows"]}
    sleeper, waiter, reader = rows["sleeper"], rows["waiter"], rows["reader"]
    assert 1400e6 <= sleeper["offcpu_ns"] <= 2500e6, sleeper
    assert sleeper["blocked"] == "sleep", sleeper
    assert 1300e6 <= waiter["offcpu_ns"] <= 2500e6 and waiter["blocked"] == "lock", waiter
    assert reader["blocked"] == "ipc", reader
    # the blocking stack is the user's, DWARF-unwound from /proc: the sleeper's reaches libc's
    # sleep wrapper and the thread function
    flame = json.loads(u.stax("flame", "--mode", "offcpu", "--json").stdout)
    text = json.dumps(flame)
    assert "sleeper" in text and ("usleep" in text or "nanosleep" in text), text[:2000]
    wall = u.stax("flame", "--mode", "wall", "--json")
    assert wall.returncode == 0, wall.stderr
    stalls = u.stax("stalls", "--json")
    assert stalls.returncode == 0, stalls.stderr
    diag = u.stax("diagnose")
    assert diag.returncode == 0, diag.stderr
    assert ("wakeups: unavailable (wakeups need the sched_waking tracepoint: run sudo stax "
            "setup (staxd))") in diag.stdout, diag.stdout
    assert "from switch records" in diag.stdout, diag.stdout
