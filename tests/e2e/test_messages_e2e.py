"""End-to-end: messages that say what is really wrong, for a real unprivileged user.

tracefs that is mounted but closed to the user (mode 0700) is not "not mounted"; a setuid
program the user launches, or another user's process it attaches to, is not a program that
"exited before it used measurable CPU".
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import test_staxd_e2e as base
from test_staxd_e2e import User

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None
                                or shutil.which("setpriv") is None,
                                reason="needs root, useradd and setpriv (util-linux)")

user, user_server = base.user, base.user_server  # the fixtures, shared with those tests

TRACEFS = "/sys/kernel/tracing"


def _tracefs_closed_to_others() -> bool:
    try:
        mode = os.stat(TRACEFS).st_mode
        os.stat(os.path.join(TRACEFS, "events"))
    except OSError:
        return False
    return not mode & stat.S_IXOTH


def test_tracefs_mode_0700_is_not_called_unmounted(user_server: User,
                                                   workloads: dict[str, Path]) -> None:
    if not _tracefs_closed_to_others():
        pytest.skip(f"{TRACEFS} is not a mounted tracefs closed to other users on this host")
    u = user_server
    spin = u.home / "spin"
    shutil.copy2(workloads["spin"], spin)
    os.chown(spin, u.uid, u.gid)
    p = u.stax("record", "--json", "--daemon-socket", str(u.home / "no-staxd.sock"),
                  "--", str(spin), "0.3")
    assert p.returncode == 0, p.stderr
    notes = json.loads(p.stdout)["notes"]
    mode = stat.S_IMODE(os.stat(TRACEFS).st_mode)
    # the scheduler tracepoints are unavailable, and the note says why (off-CPU intervals then
    # come from context-switch records; wakeups need staxd)
    want = (f"tracefs is mounted at {TRACEFS} but not readable by uid {u.uid} (mode {mode:04o}, "
            "owner uid 0)")
    assert any(want in n and "sudo stax setup" in n for n in notes), notes
    assert not any("not mounted" in n for n in notes), notes
    diag = u.stax("diagnose").stdout
    assert f"tracefs is mounted at {TRACEFS} but not readable by uid {u.uid}" in diag, diag


def test_setuid_program_is_said_to_be_unsampleable(user_server: User,
                                                   workloads: dict[str, Path]) -> None:
    u = user_server
    suid = u.home / "spin-suid"
    shutil.copy2(workloads["spin"], suid)  # owned by root
    os.chmod(suid, 0o4755)
    p = u.stax("record", "--daemon-socket", str(u.home / "no-staxd.sock"), "--",
                  str(suid), "0.5")
    assert p.returncode == 0, p.stderr
    why = (f"{suid} is setuid (it runs as uid 0): the kernel stops perf sampling when a "
           "program gains privileges at exec")
    lines = p.stderr.splitlines()
    assert lines[0].startswith(f"warning: {why}"), p.stderr
    st = json.loads(u.stax("status", "--json").stdout)["current"]
    assert st["samples"] == 0 and st["end_reason"] == "exited", st
    assert any(ln.startswith(f"stax: note: {why}") for ln in lines), p.stderr
    top = u.stax("top")
    assert top.returncode == 0, top.stderr
    assert why in top.stdout and "measurable CPU" not in top.stdout, top.stdout
    # the same program without the setuid bit is sampled as usual
    os.chmod(suid, 0o755)
    p = u.stax("record", "--json", "--daemon-socket", str(u.home / "no-staxd.sock"),
                  "--", str(suid), "0.5")
    assert p.returncode == 0 and "setuid" not in p.stderr, p.stderr
    assert json.loads(p.stdout)["samples"] > 0


def test_attaching_to_another_users_process_says_why(user_server: User) -> None:
    u = user_server
    target = subprocess.Popen(["sleep", "60"])  # root's
    try:
        p = u.stax("record", "--daemon-socket", str(u.home / "no-staxd.sock"), "-p",
                      str(target.pid), "-l", "1")
        assert p.returncode == 1
        assert p.stderr.strip().splitlines()[-1] == (
            f"error: pid {target.pid} cannot be sampled by uid {u.uid}: it belongs to uid "
            "0, and the kernel lets only root sample such a process; record it as root "
            f"(sudo stax record -p {target.pid})"), p.stderr
    finally:
        target.kill()
        target.wait()
