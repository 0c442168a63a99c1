"""End-to-end: staxd is fair to every user. One real unprivileged user holding many idle
connections gets at most its share (the rest are turned away with the reason), and another
real user's recording through staxd is still served meanwhile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import test_staxd_e2e as base
from harness import throwaway_user
from test_staxd_e2e import Staxd, User, _dd

from stax.staxd.slots import MAX_PER_UID

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None
                                or shutil.which("setpriv") is None,
                                reason="needs root, useradd and setpriv (util-linux)")

user, user_server, staxd = base.user, base.user_server, base.staxd  # shared fixtures

# any interpreter the other user can run: the scripts below need only the standard library
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or os.path.realpath(sys.executable)

# Opens N connections to staxd and sends nothing on them; after a second, reports how many
# staxd kept open (no answer yet) and the answers of those it turned away; holds the kept ones
# until its stdin closes.
HOG = r"""
import json, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    socks.append(s)
time.sleep(1.0)
held, answers = 0, []
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(4096)
    except BlockingIOError:
        held += 1
        continue
    answers.append(data.decode())
print(json.dumps({"held": held, "answers": answers}), flush=True)
sys.stdin.read()
"""

# One formats request on a fresh connection: staxd's answer.
ASK = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:  # a connection turned away is answered and closed at once: the send may find it closed
    s.sendall(b'{"v": 1, "formats": ["sched_switch"]}\n')
except (BrokenPipeError, ConnectionResetError):
    pass
buf = b""
while b"\n" not in buf:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
print(buf.decode().strip())
"""


@pytest.fixture(scope="module")
def hog_user() -> Iterator[tuple[str, int, int]]:
    """A second real unprivileged user (name, uid, gid), removed afterwards."""
    with throwaway_user("staxh") as pw:
        yield pw.pw_name, pw.pw_uid, pw.pw_gid


def _as(uid: int, gid: int, *cmd: str) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *cmd]


def test_one_user_holding_connections_does_not_lock_out_another(
        hog_user: tuple[str, int, int], user_server: User, staxd: Staxd) -> None:
    _name, uid, gid = hog_user
    n = MAX_PER_UID + 12
    hog = subprocess.Popen(_as(uid, gid, PYTHON, "-I", "-S", "-c", HOG, staxd.socket, str(n)),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, cwd="/")
    try:
        assert hog.stdout is not None
        line = hog.stdout.readline()
        assert line, hog.stderr.read() if hog.stderr else ""
        held = json.loads(line)
        # its share, and a clear answer for every connection beyond it
        assert held["held"] == MAX_PER_UID, (held, staxd.log_text())
        assert len(held["answers"]) == n - MAX_PER_UID, held
        for text in held["answers"]:
            ans = json.loads(text)
            assert ans["ok"] is False and ans["busy"] is True, ans
            assert ans["error"].startswith(f"too many connections from uid {uid}: it holds "
                                           f"{MAX_PER_UID} (staxd serves at most "
                                           f"{MAX_PER_UID} per user at once)"), ans
        # meanwhile another user records through staxd as usual (kernel frames come only
        # from staxd's descriptors)
        u = user_server
        p = u.stax("record", "--json", "--daemon-socket", staxd.socket, "--", _dd(),
                      "if=/dev/zero", "of=/dev/null", "bs=64k", "count=100000")
        assert p.returncode == 0, p.stderr + staxd.log_text()
        run = json.loads(p.stdout)
        assert run["capture_mode"] == "staxd" and run["kernel_frames"] is True, run
        assert run["samples"] > 0, run
        # and the hogging user itself is refused a new connection while it holds its share
        again = subprocess.run(_as(uid, gid, PYTHON, "-I", "-S", "-c", ASK, staxd.socket),
                               capture_output=True, text=True, timeout=30, cwd="/")
        ans = json.loads(again.stdout)
        assert ans["busy"] is True and f"from uid {uid}" in ans["error"], again
    finally:
        if hog.stdin is not None:
            hog.stdin.close()
        hog.wait(10)
    log = staxd.log_text()
    assert f"granted uid {u.uid} pid" in log, log
    assert f"turned away uid {uid} pid" in log, log
    assert staxd.proc.poll() is None
    # once it lets go, the user is served again
    deadline = time.monotonic() + 10
    while True:
        again = subprocess.run(_as(uid, gid, PYTHON, "-I", "-S", "-c", ASK, staxd.socket),
                               capture_output=True, text=True, timeout=30, cwd="/")
        ans = json.loads(again.stdout)
        if ans.get("ok") or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # staxd notices the closed connections as their threads end
    assert ans["ok"] is True and "sched_switch" in ans["formats"], ans
