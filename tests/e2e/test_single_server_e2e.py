"""End-to-end: one stax-server per socket (a lock file taken before binding), and a server
unlinks only the socket it created."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import Stax, start_server, stop_server, tool

from stax.server.lock import SocketLock, identity, lock_path, unlink_if_ours

BUSY = "another run is already active"


def _servers_for(sock: str) -> list[int]:
    """Pids of stax-server processes serving ``sock``."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(b"stax.server.main" in a or a.endswith(b"stax-server") for a in argv) and \
                sock.encode() in argv:
            out.append(int(d))
    return out


def _answers(sock: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(sock)
        s.sendall(b'{"id": 1, "method": "hello"}\n')
        return b'"stax-server"' in s.recv(4096)
    except OSError:
        return False
    finally:
        s.close()


def test_two_records_at_once_share_one_server(stax_noserver: Stax,
                                              workloads: dict[str, Path]) -> None:
    sock = stax_noserver.env["STAX_SERVER_SOCKET"]
    procs = [stax_noserver.popen("record", "--", str(workloads["spin"]), "0.5")
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = [p.returncode for p in procs]
    for (_out, err), code in zip(outs, codes, strict=True):
        assert "Traceback" not in err
        assert "unreachable" not in err and "could not start" not in err, err
        assert code == 0 or BUSY in err, err  # the only refusal: one active run at a time
    assert 0 in codes
    time.sleep(0.5)  # a loser exits at once; give it time to be gone
    assert len(_servers_for(sock)) == 1, _servers_for(sock)
    runs = stax_noserver("list", "--json", check=True).json()["runs"]  # type: ignore[index]
    assert len(runs) == codes.count(0)
    assert all(r["samples"] > 0 for r in runs)
    # both recordings, one after the other, land on the same server
    stax_noserver("record", "--", str(workloads["spin"]), "0.2", check=True)
    assert len(_servers_for(sock)) == 1


def test_second_server_exits_and_leaves_the_first_alone(stax: Stax, tmp_path: Path) -> None:
    sock = stax.env["STAX_SERVER_SOCKET"]
    before = identity(sock)
    p = subprocess.Popen([tool("stax-server"), "--socket", sock], env=stax.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _out, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=15)
        raise AssertionError("a second server kept running: " + err) from None
    assert p.returncode == 1
    assert err.startswith("error: a stax-server already serves"), err
    assert f"pid {stax.server.pid}" in err  # type: ignore[attr-defined]
    assert "Traceback" not in err
    assert identity(sock) == before and _answers(sock)
    assert oct(os.stat(lock_path(sock)).st_mode & 0o777) == "0o600"
    stax("status", check=True)


def test_sigterm_of_a_late_server_spares_the_socket(stax: Stax, tmp_path: Path) -> None:
    """A server whose socket path was taken over (its file replaced) must not unlink it."""
    sock = stax.env["STAX_SERVER_SOCKET"]
    other = str(tmp_path / "other.sock")
    env = dict(stax.env, STAX_SERVER_SOCKET=other)
    second = start_server(env, tmp_path)
    try:
        # the second server's socket file is replaced by a live foreign socket
        os.unlink(other)
        foreign = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        foreign.bind(other)
        foreign.listen(1)
        stop_server(second)
        assert second.returncode == 0
        assert os.path.exists(other), "the server unlinked a socket it did not create"
        foreign.close()
    finally:
        stop_server(second)
    assert _answers(sock)


def test_lock_helpers(tmp_path: Path) -> None:
    sock = str(tmp_path / "s.sock")
    a = SocketLock(sock)
    a.acquire()
    b = SocketLock(sock)
    try:
        b.acquire()
    except Exception as e:
        assert f"pid {os.getpid()}" in str(e)
    else:
        raise AssertionError("a second lock was granted")
    a.release()
    b.acquire()  # free again once released
    b.release()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    ours = identity(sock)
    os.unlink(sock)
    s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s2.bind(sock)
    assert not unlink_if_ours(sock, ours) and os.path.exists(sock)
    assert unlink_if_ours(sock, identity(sock)) and not os.path.exists(sock)
    s.close()
    s2.close()


def test_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        return  # needs to give the file away
    sock = str(tmp_path / "t.sock")
    with open(lock_path(sock), "w"):
        pass
    os.chown(lock_path(sock), 65534, 65534)
    try:
        SocketLock(sock).acquire()
    except Exception as e:
        assert "belongs to another user" in str(e)
    else:
        raise AssertionError("a planted lock file was used")
