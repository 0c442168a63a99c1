"""End-to-end: staxd as root serving a real unprivileged user created by the test.

Covers user-only stacks without staxd; kernel frames, off-CPU intervals and wakers through staxd;
refusals with a reason, garbage on the socket, and `stax setup` as root and as the
unprivileged user.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import ROOT, stop_server, throwaway_user, tool, wait_for_socket

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None
                                or shutil.which("setpriv") is None,
                                reason="needs root, useradd and setpriv (util-linux)")


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path  # a temp dir it owns
    python: str
    pythonpath: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home),
               "PYTHONPATH": self.pythonpath, "LANG": "C.UTF-8",
               "STAX_SERVER_SOCKET": str(self.home / "stax.sock"),
               "XDG_STATE_HOME": str(self.home / "state"),
               "XDG_CACHE_HOME": str(self.home / "cache"), "STAX_NO_AUTOSTART": "1"}
        env.update(extra)
        return env

    def argv(self, *cmd: str) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--", *cmd]

    def run(self, *cmd: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*cmd), env=self.env(**env), capture_output=True,
                              text=True, timeout=timeout, cwd=str(self.home))

    def stax(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        p = self.run(self.python, "-m", "stax.cli.main", *args, timeout=timeout)
        assert "Traceback" not in p.stderr, p.stderr
        return p


_SKIP_COPY = ("playwright", "pip", "setuptools", "pygments", "hypothesis", "_pytest",
              "pytest", "ruff", "__pycache__")


def _user_python(user: User, base: Path) -> tuple[str, str] | None:
    """An interpreter and PYTHONPATH with which ``user`` can import stax and its dependencies.
    The venv's files may sit under a directory it cannot read (such as /root): then stax and
    the venv's packages (minus test-only tools) are copied under ``base``."""
    candidates = [os.path.realpath(sys.executable)]
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system:
        candidates.append(system)
    purelib = sysconfig.get_paths()["purelib"]
    direct = ":".join([str(ROOT / "src"), purelib])
    copy = base / "pylib"
    copied = f"{copy / 'src'}:{copy / 'site'}"
    for py in candidates:
        for pp in (direct, copied):
            if pp == copied and not copy.exists():
                copy.mkdir(mode=0o755)
                shutil.copytree(ROOT / "src" / "stax", copy / "src" / "stax",
                                ignore=shutil.ignore_patterns("__pycache__"))
                shutil.copytree(purelib, copy / "site", symlinks=True,
                                ignore=lambda d, names: [n for n in names if n.split("-")[0]
                                                         .split(".")[0] in _SKIP_COPY])
                subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
            probe = subprocess.run(
                user.argv(py, "-c", "import sys, stax.cli.main, stax.server.daemon, numpy, "
                          "elftools, cxxfilt; "
                          f"sys.exit(sys.version_info[:2] != {tuple(sys.version_info[:2])})"),
                env={"PYTHONPATH": pp, "PATH": "/usr/bin:/bin"}, capture_output=True,
                cwd="/")
            if probe.returncode == 0:
                return py, pp
    return None


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    """A real unprivileged user, removed afterwards, with a home it owns under a directory it
    can traverse (pytest's temp root is root-only)."""
    pub = Path(f"/tmp/stax-staxd-{secrets.token_hex(4)}")
    with throwaway_user("staxt") as pw:
        try:
            pub.mkdir(mode=0o755)
            home = pub / "home"
            home.mkdir(mode=0o700)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            u = User(pw.pw_name, pw.pw_uid, pw.pw_gid, home, "", "")
            found = _user_python(u, pub)
            if found is None:
                pytest.skip("no Python interpreter the unprivileged user can run with stax's "
                            "dependencies (needs Python "
                            f"{sys.version_info[0]}.{sys.version_info[1]})")
            u.python, u.pythonpath = found
            yield u
        finally:
            shutil.rmtree(pub, ignore_errors=True)


@dataclass
class Staxd:
    proc: subprocess.Popen[bytes]
    socket: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def staxd(user: User) -> Iterator[Staxd]:
    """A root staxd on a temp socket the user can reach."""
    d = user.home.parent / f"staxd-{secrets.token_hex(3)}"
    d.mkdir(mode=0o755)
    sock = d / "staxd.sock"
    log = d / "staxd.log"
    with open(log, "ab") as lf:
        proc = subprocess.Popen([tool("staxd"), "--socket", str(sock)], stdout=lf,
                                stderr=lf)
    try:
        wait_for_socket(sock, proc, log, name="staxd")
        yield Staxd(proc, str(sock), log)
    finally:
        stop_server(proc)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def user_server(user: User) -> Iterator[User]:
    """The user's own stax-server, running as that user."""
    sock = user.home / "stax.sock"
    with open(user.home / "server.log", "ab") as lf:
        proc = subprocess.Popen(user.argv(user.python, "-m", "stax.server.main", "--socket",
                                          str(sock)), env=user.env(), stdout=lf, stderr=lf,
                                cwd=str(user.home))
    try:
        wait_for_socket(sock, proc, user.home / "server.log", timeout=20)
        yield user
    finally:
        stop_server(proc)


def _user_copy(user: User, exe: Path) -> str:
    dst = user.home / exe.name
    shutil.copy2(exe, dst)
    os.chown(dst, user.uid, user.gid)
    return str(dst)


def _top_binaries(user: User) -> dict[str, int]:
    top = json.loads(user.stax("top", "--json", "-n", "0").stdout)
    out: dict[str, int] = {}
    for row in top["rows"]:
        out[row["binary"]] = out.get(row["binary"], 0) + row["self_samples"]
    return out


def _dd() -> str:
    dd = shutil.which("dd")
    if dd is None:
        pytest.skip("dd (coreutils) not installed")
    return dd


def test_unprivileged_without_staxd_records_user_stacks_only(
        user_server: User, workloads: dict[str, Path]) -> None:
    user = user_server
    split = _user_copy(user, workloads["split"])
    p = user.stax("record", "--daemon-socket", str(user.home / "no-staxd.sock"), "--", split,
                  "400")
    assert p.returncode == 0, p.stderr
    assert "kernel frames unavailable" in p.stderr and "sudo stax setup" in p.stderr, p.stderr
    st = json.loads(user.stax("status", "--json").stdout)["current"]
    assert st["capture_mode"] == "in-process" and st["kernel_frames"] is False
    assert st["samples"] > 50
    assert "capture: events opened in-process, kernel frames no" in user.stax("status").stdout
    bins = _top_binaries(user)
    assert "[kernel.kallsyms]" not in bins, bins
    diag = json.loads(user.stax("diagnose", "--json").stdout)["run"]["capture"]
    assert diag["mode"] == "in-process" and diag["kernel_frames"] is False


def test_unprivileged_through_staxd_gets_kernel_frames(user_server: User, staxd: Staxd) -> None:
    user = user_server
    p = user.stax("record", "--daemon-socket", staxd.socket, "--", _dd(), "if=/dev/zero",
                  "of=/dev/null", "bs=64k", "count=200000")
    assert p.returncode == 0, p.stderr + staxd.log_text()
    assert "kernel frames unavailable" not in p.stderr
    st = json.loads(user.stax("status", "--json").stdout)["current"]
    assert st["capture_mode"] == "staxd" and st["daemon_socket"] == staxd.socket
    assert st["kernel_frames"] is True
    bins = _top_binaries(user)
    assert bins.get("[kernel.kallsyms]", 0) > 0, bins
    assert f"events opened by staxd ({staxd.socket})" in user.stax("status").stdout
    diag = user.stax("diagnose").stdout
    assert f"capture: staxd ({staxd.socket})" in diag
    log = staxd.log_text()
    assert f"granted uid {user.uid} pid " in log, log


def test_unprivileged_gets_offcpu_and_wakers_only_through_staxd(
        user_server: User, staxd: Staxd, workloads: dict[str, Path]) -> None:
    if not _tracefs_ready():
        pytest.skip("tracefs is not mounted at /sys/kernel/tracing and cannot be mounted")
    user = user_server
    threads = _user_copy(user, workloads["threads"])
    alone = user.stax("record", "--json", "--daemon-socket", str(user.home / "none.sock"),
                      "--", threads, timeout=90)
    assert alone.returncode == 0, alone.stderr
    run = json.loads(alone.stdout)
    # intervals from context-switch records (test_offcpu_unpriv_e2e.py), but no wakeups
    assert run["offcpu"]["intervals_recorded"] and not run["offcpu"]["wakeups_recorded"], run
    assert run["wakeups"] == 0 and "sudo stax setup" in run["offcpu"]["wakeups_problem"], run
    p = user.stax("record", "--json", "--daemon-socket", staxd.socket, "--", threads,
                  timeout=90)
    assert p.returncode == 0, p.stderr + staxd.log_text()
    run = json.loads(p.stdout)
    assert run["capture_mode"] == "staxd" and run["kernel_frames"] is True, run
    assert run["offcpu"]["intervals_recorded"] and run["offcpu"]["wakeups_recorded"], run
    assert run["intervals"] > 10, run
    wakers = json.loads(user.stax("wakers", "--json", "-n", "0").stdout)
    edges = {(r["waker"], r["wakee"]) for r in wakers["rows"]}
    assert ("holder", "waiter") in edges, edges  # the mutex hand-over in threads.c
    assert f"gave uid {user.uid} pid" in staxd.log_text()


WAKEUPS = r"""
import json, os, struct, sys, threading
from stax.capture import perf
from stax.capture import records as rec
from stax.capture.broker import BrokerOpener
from stax.capture.events import EventSpec, LocalOpener

sock = sys.argv[1]
opener = BrokerOpener(sock) if sock != "-" else LocalOpener()
me = threading.get_native_id()
spec = EventSpec("sched_waking", kernel=True, buffer_bytes=8 * 4096,
                 sample_type=rec.SAMPLE_TYPE | perf.SAMPLE_RAW)
try:
    fds = [opener.open(spec, os.getpid(), me, cpu) for cpu in perf.online_cpus()]
except OSError as e:
    print(json.dumps({"error": e.errno}))
    sys.exit(0)
opener.close()
rbs = [perf.RingBuffer(fd, 8) for fd in fds]
r, w = os.pipe()
reader_tid = []
def reader():
    reader_tid.append(threading.get_native_id())
    while os.read(r, 1) != b"q":
        pass
t = threading.Thread(target=reader)
t.start()
import time
for _ in range(200):
    os.write(w, b"x")
    time.sleep(0.002)
os.write(w, b"q")
t.join()
edges = samples = kernel = 0
for rb in rbs:
    data = rb.read()
    off = 0
    while off + 8 <= len(data):
        typ, misc, size = struct.unpack_from("<IHH", data, off)
        if size == 0:
            break
        if typ == 9:
            samples += 1
            ident, ip, pid, tid, tm, cpu, res, period, nr = struct.unpack_from(
                "<QQIIQIIQQ", data, off + 8)
            ips = struct.unpack_from(f"<{nr}Q", data, off + 64)
            if any(0xffff800000000000 <= a < (1 << 64) - 4095 for a in ips):
                kernel += 1
            rsize = struct.unpack_from("<I", data, off + 64 + 8 * nr)[0]
            raw = data[off + 68 + 8 * nr: off + 68 + 8 * nr + rsize]
            wakee = struct.unpack_from("<i", raw, 24)[0]
            if tid == me and wakee == reader_tid[0]:
                edges += 1
        off += size
print(json.dumps({"samples": samples, "edges": edges, "kernel_stacks": kernel}))
"""


def _tracefs_ready() -> bool:
    idf = "/sys/kernel/tracing/events/sched/sched_waking/id"
    if os.path.exists(idf):
        return True
    subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                   capture_output=True)
    return os.path.exists(idf)


def test_unprivileged_gets_wakeup_edges_only_through_staxd(user: User, staxd: Staxd) -> None:
    if not _tracefs_ready():
        pytest.skip("tracefs is not mounted at /sys/kernel/tracing and cannot be mounted")
    script = user.home / "wakeups.py"
    script.write_text(WAKEUPS)
    os.chown(script, user.uid, user.gid)
    alone = user.run(user.python, str(script), "-")
    assert alone.returncode == 0, alone.stderr
    assert "error" in json.loads(alone.stdout), alone.stdout  # no tracepoints unprivileged
    p = user.run(user.python, str(script), staxd.socket)
    assert p.returncode == 0, p.stderr + staxd.log_text()
    res = json.loads(p.stdout)
    assert "error" not in res, (res, staxd.log_text())
    # 200 wakeups of the reader by this thread; generous for a loaded machine
    assert res["edges"] >= 50, res
    assert res["kernel_stacks"] >= res["edges"] // 2, res
    assert f"granted uid {user.uid} pid" in staxd.log_text()


def test_staxd_refuses_a_root_process_with_a_reason(user_server: User, staxd: Staxd) -> None:
    user = user_server
    target = subprocess.Popen(["sleep", "60"])
    try:
        p = user.stax("record", "--daemon-socket", staxd.socket, "-p", str(target.pid), "-l",
                      "1")
        assert p.returncode == 1
        assert p.stderr.strip().splitlines()[-1] == \
            f"error: staxd refused: pid {target.pid} belongs to uid 0", p.stderr
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()
    log = staxd.log_text()
    assert f"refused uid {user.uid} pid" in log and f"pid {target.pid} belongs to uid 0" in log


def _request(sock_path: str, payload: bytes, timeout: float = 5.0) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out
    except OSError:
        return b""
    finally:
        s.close()


def test_garbage_on_the_socket_leaves_staxd_serving(staxd: Staxd) -> None:
    import random

    rng = random.Random(1234)
    idle = []
    for _ in range(10):  # connections that never send anything do not block others
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(staxd.socket)
        idle.append(s)
    payloads = [b"", b"\n", b"garbage\n", b"\x00\xff\xfe" * 100 + b"\n", b"[]\n", b"null\n",
                b'{"pid": -1, "events": [{"kind": "sample"}]}\n',
                b'{"pid": 1, "events": [{"kind": "sample", "cpu": 99999}]}\n',
                b'{"pid": 1, "events": [{"kind": "exec", "path": "/bin/sh"}]}\n',
                b'{"pid": 1, "events": []}\n', b"[" * 100000 + b"\n",
                b"x" * (200 * 1024), b'{"pid": 1, "events": [' + b'{"kind":"sample"},' * 70
                + b'{"kind":"sample"}]}\n']
    payloads += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))
                 for _ in range(30)]
    for payload in payloads:
        out = _request(staxd.socket, payload)
        for line in out.splitlines():
            ans = json.loads(line)
            assert ans["ok"] is False, (payload[:80], ans, staxd.log_text())
    assert staxd.proc.poll() is None, staxd.log_text()
    for s in idle:
        s.close()
    # still serving: a valid request from root for a real process is granted with a descriptor
    target = subprocess.Popen(["sleep", "30"])
    try:
        sys.path.insert(0, str(ROOT / "src"))
        from stax.capture.broker import BrokerOpener
        from stax.capture.events import EventSpec

        try:
            op = BrokerOpener(staxd.socket)
            fd = op.open(EventSpec("sample", frequency=99, buffer_bytes=65536), target.pid,
                         target.pid, 0)
            op.close()
        except Exception as e:  # say why, with staxd's side of the story
            pytest.fail(f"valid request after garbage failed: {e!r}\n{staxd.log_text()}")
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]"
        os.close(fd)
    finally:
        target.kill()
        target.wait()
    assert staxd.proc.poll() is None
    assert "refused uid 0 pid" in staxd.log_text()


def test_setup_as_root_writes_the_unit_idempotently(tmp_path: Path) -> None:
    env = dict(os.environ, STAX_SETUP_ROOT=str(tmp_path))
    stax = tool("stax")
    first = subprocess.run([stax, "setup"], env=env, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    unit = tmp_path / "etc/systemd/system/staxd.service"
    text = unit.read_text()
    assert "ExecStart=" in text and "--socket /run/staxd.sock" in text
    assert "staxd" in text.split("ExecStart=", 1)[1].split()[0] + text
    assert (tmp_path / "run").is_dir()
    assert f"wrote unit {unit}" in first.stdout
    # no systemd here (no <root>/run/systemd/system): the exact command to start it by hand
    assert "start it by hand" in first.stdout
    cmd_line = [ln for ln in first.stdout.splitlines() if ln.startswith("  nohup ")]
    assert cmd_line and "--socket /run/staxd.sock" in cmd_line[0]
    second = subprocess.run([stax, "setup"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert second.returncode == 0, second.stderr
    assert "already up to date" in second.stdout
    assert unit.read_text() == text


def test_setup_as_non_root_explains_and_exits_1(user: User) -> None:
    p = user.stax("setup")
    assert p.returncode == 1
    assert p.stderr.strip() == "error: stax setup needs root; run: sudo stax setup"
    assert "staxd.service" in p.stdout and "root" in p.stdout
    assert "perf_event_paranoid" in p.stdout


def test_staxd_serves_clients_concurrently(staxd: Staxd) -> None:
    import threading

    sys.path.insert(0, str(ROOT / "src"))
    from stax.capture.broker import BrokerOpener
    from stax.capture.events import EventSpec

    target = subprocess.Popen(["sleep", "30"])
    results: list[object] = []

    def client() -> None:
        try:
            op = BrokerOpener(staxd.socket)
            fds = op.request(target.pid, [(EventSpec("sample", frequency=99,
                                                     buffer_bytes=65536), target.pid, cpu)
                                          for cpu in (-1, 0)])
            op.close()
            results.append(len(fds))
            for fd in fds:
                os.close(fd)
        except Exception as e:  # collected and reported by the assertion below
            results.append(e)

    try:
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        target.kill()
        target.wait()
    log = staxd.log_text()
    assert results == [2] * 8, (results, log)
    assert log.count("granted uid 0 pid") >= 8, log


def test_staxd_will_not_take_over_a_file_or_a_live_socket(staxd: Staxd, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("keep me")
    for path, expect in ((str(plain), f"error: {plain} exists and is not a socket; not "
                                      "touching it"),
                         (staxd.socket, "error: another staxd is already listening on "
                                        f"{staxd.socket}")):
        p = subprocess.run([tool("staxd"), "--socket", path], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 1 and p.stderr.strip() == expect, p.stderr
    assert plain.read_text() == "keep me"
    assert staxd.proc.poll() is None and os.path.exists(staxd.socket)


def test_setup_with_systemd_enables_and_starts_the_unit(tmp_path: Path) -> None:
    """When systemd runs (<root>/run/systemd/system exists), setup reloads, enables and starts
    the unit; a stand-in systemctl on PATH records the calls."""
    root = tmp_path / "root"
    (root / "run/systemd/system").mkdir(parents=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    (fake / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake / "systemctl").chmod(0o755)
    env = dict(os.environ, STAX_SETUP_ROOT=str(root), PATH=f"{fake}:{os.environ['PATH']}")
    for _ in range(2):
        p = subprocess.run([tool("stax"), "setup"], env=env, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert "staxd is enabled and running" in p.stdout
    assert calls.read_text().splitlines() == [
        "daemon-reload", "enable --now staxd.service"] * 2
    assert (root / "etc/systemd/system/staxd.service").exists()


PYSPLIT = ROOT / "tests" / "workloads" / "python" / "pysplit.py"


def test_unprivileged_python_stacks_read_through_staxd(user: User, staxd: Staxd) -> None:
    """A server that may not read its target's memory (forced here with
    STAX_PYTHON_READER=staxd; Yama's ptrace_scope or an LSM on other hosts) has staxd run the
    stack-reading process: Python functions by name, the reader said in diagnose."""
    python = shutil.which("python3.11", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no /usr/bin/python3.11")
    prog = user.home / "pysplit.py"
    shutil.copy(PYSPLIT, prog)
    os.chmod(prog, 0o644)
    sock = user.home / "stax.sock"
    env = user.env(STAX_PYTHON_READER="staxd")
    with open(user.home / "server-py.log", "ab") as lf:
        proc = subprocess.Popen(user.argv(user.python, "-m", "stax.server.main", "--socket",
                                          str(sock)), env=env, stdout=lf, stderr=lf,
                                cwd=str(user.home))
    try:
        wait_for_socket(sock, proc, user.home / "server-py.log", timeout=20)
        p = user.stax("record", "--daemon-socket", staxd.socket, "--", python, str(prog), "2")
        assert p.returncode == 0, p.stderr + staxd.log_text()
        info = json.loads(user.stax("diagnose", "--json").stdout)["run"]["python"]
        assert info["stack_reader"] == "staxd" and info["problem"] is None, info
        assert info["python_samples"] > 0.8 * info["python_running"] > 200, info
        rows = json.loads(user.stax("top", "--json", "-n", "0").stdout)["rows"]
        py = {r["func"] for r in rows if r["binary"] == "pysplit.py"}
        assert {"heavy", "medium", "light"} <= py, sorted(py)
        log = staxd.log_text()
        assert f"granted uid {user.uid} pid" in log and "the Python stacks of pid" in log, log
    finally:
        stop_server(proc)
