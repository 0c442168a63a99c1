"""Unit tests of staxd's pieces: the request parser (fuzzed), the access rule on a hand-built
/proc, the event kinds, and the client's handling of answers."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stax.capture import brokerwire as wire
from stax.capture import perf
from stax.capture.broker import BrokerOpener, BrokerRefused, opener_for
from stax.capture.events import BUILDERS, EventSpec, LocalOpener, build_attr
from stax.capture.recorder import CaptureError
from stax.staxd.daemon import Broker, Gone, Peer, Refused, check_access, peer_of
from stax.staxd.slots import Slots

# --- the parser -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_parser_total_on_bytes(data: bytes) -> None:
    try:
        req = wire.parse_request(data)
    except wire.BadRequest:
        return
    if isinstance(req, wire.FormatsRequest):
        return
    assert req.pid >= 1 and req.events


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids,
                                                              max_size=5),
    max_leaves=30)

events = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["sample", "switch", "sched_waking", "sched_switch", "exec", ""])
    | json_values,
    "tid": st.integers(-5, 2**23) | json_values, "cpu": st.integers(-3, 300) | json_values,
    "frequency": st.integers(-1, 200_000) | json_values, "launch": json_values,
    "kernel": st.booleans() | json_values, "build_id": st.booleans(),
    "buffer_bytes": st.integers(-1, 2**31), "path": st.text(max_size=10),
    "sample_type": st.integers(-1, 2**21), "regs_user_mask": st.integers(-1, 2**65)})

requests = st.fixed_dictionaries({}, optional={
    "v": st.integers(0, 2) | json_values, "pid": st.integers(-5, 2**23) | json_values,
    "events": st.lists(events, max_size=70) | json_values, "argv": json_values})


@settings(max_examples=600, deadline=None)
@given(requests)
def test_parser_total_on_json(doc: dict) -> None:
    line = json.dumps(doc).encode()
    try:
        req = wire.parse_request(line, ncpus=4)
    except wire.BadRequest as e:
        assert str(e)
        return
    assert isinstance(req, wire.Request)
    assert 1 <= req.pid <= wire.MAX_ID and 1 <= len(req.events) <= wire.MAX_EVENTS
    for ev in req.events:
        assert ev.spec.kind in BUILDERS
        assert 1 <= ev.tid <= wire.MAX_ID and -1 <= ev.cpu < 4
        assert 1 <= ev.spec.frequency <= 100_000


def test_parser_round_trip_and_refusals() -> None:
    spec = EventSpec("sample", frequency=499, launch=True, kernel=False, buffer_bytes=8192)
    req = wire.parse_request(wire.encode_request(42, [(spec, 43, 1)]), ncpus=2)
    assert isinstance(req, wire.Request)
    assert req.pid == 42 and req.events[0].tid == 43 and req.events[0].cpu == 1
    assert req.events[0].spec == spec
    for bad, why in [
        (b'{"pid": 1, "events": [{"kind": "sample"}], "path": "/etc/shadow"}', "unknown"),
        (b'{"pid": 1, "events": [{"kind": "sample", "path": "/x"}]}', "unknown event field"),
        (b'{"pid": 1, "events": [{"kind": "exec"}]}', "unknown event kind"),
        (b'{"pid": -1, "events": [{"kind": "sample"}]}', "pid must be"),
        (b'{"pid": true, "events": [{"kind": "sample"}]}', "pid must be"),
        (b'{"pid": 1, "events": [{"kind": "sample", "cpu": 2}]}', "cpu must be"),
        (b'{"pid": 1, "events": [{"kind": "sample", "frequency": 0}]}', "frequency"),
        (b'{"pid": 1, "events": [{"kind": "sample", "launch": 1}]}', "launch"),
        (b'{"pid": 1, "events": [{"kind": "sample", "sample_type": 524288}]}', "sample_type"),
        (b'{"v": 2, "pid": 1, "events": [{"kind": "sample"}]}', "version"),
        (b"[" * 50000, "JSON"),
    ]:
        with pytest.raises(wire.BadRequest, match=why):
            wire.parse_request(bad, ncpus=2)


def test_every_kind_builds_an_attr() -> None:
    for kind in BUILDERS:
        try:
            attr = build_attr(EventSpec(kind, launch=True))
        except perf.PerfError:
            assert kind.startswith("sched_")  # tracefs unreadable or unmounted here
            continue
        packed = attr.pack()
        assert len(packed) == perf.ATTR_SIZE
        assert "enable_on_exec" in attr.flags and "inherit" in attr.flags
    assert "exclude_kernel" in build_attr(EventSpec("sample", kernel=False)).flags
    assert build_attr(EventSpec("sample", frequency=123)).sample_period_or_freq == 123


# --- the access rule --------------------------------------------------------------------------


def _proc(tmp: Path, pid: int, uids: tuple[int, ...], gids: tuple[int, ...],
          tids: tuple[int, ...] = (), owner: int | None = None) -> Path:
    d = tmp / str(pid)
    (d / "task").mkdir(parents=True)
    for t in (pid, *tids):
        (d / "task" / str(t)).mkdir()
    (d / "status").write_text(f"Name:\tx\nUid:\t{' '.join(map(str, uids))}\t{uids[0]}\n"
                              f"Gid:\t{' '.join(map(str, gids))}\t{gids[0]}\n")
    os.chown(d, owner if owner is not None else uids[0], gids[0])
    return tmp


@pytest.mark.skipif(os.geteuid() != 0, reason="builds a fake /proc owned by other uids (root)")
def test_check_access_rules(tmp_path: Path) -> None:
    proc = tmp_path
    _proc(proc, 100, (1000, 1000, 1000), (1000, 1000, 1000), tids=(101,))
    _proc(proc, 200, (0, 0, 0), (0, 0, 0))
    _proc(proc, 300, (1000, 0, 0), (1000, 1000, 1000))  # a setuid-root program
    _proc(proc, 400, (1000, 1000, 1000), (1000, 50, 50))  # setgid
    _proc(proc, 500, (1000, 1000, 1000), (1000, 1000, 1000), owner=0)  # not dumpable
    user = Peer(pid=9, uid=1000, gid=1000)
    root = Peer(pid=9, uid=0, gid=0)
    check_access(user, 100, 100, str(proc))
    check_access(user, 100, 101, str(proc))
    for pid in (100, 200, 300, 400, 500):
        check_access(root, pid, pid, str(proc))
    with pytest.raises(Refused, match="^pid 200 belongs to uid 0$"):
        check_access(user, 200, 200, str(proc))
    with pytest.raises(Refused, match="setuid"):
        check_access(user, 300, 300, str(proc))
    with pytest.raises(Refused, match="group ids"):
        check_access(user, 400, 400, str(proc))
    with pytest.raises(Refused, match="not dumpable"):
        check_access(user, 500, 500, str(proc))
    with pytest.raises(Refused, match="belongs to uid 1000"):
        check_access(Peer(9, 1001, 1001), 100, 100, str(proc))
    with pytest.raises(Gone):
        check_access(user, 100, 102, str(proc))  # not one of its threads
    with pytest.raises(Gone):
        check_access(user, 999, 999, str(proc))


# --- the client against a scripted broker ------------------------------------------------------


def _fake_staxd(path: str, answers: list[tuple[bytes, int]]) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            for line, nfds in answers:
                buf = b""
                while b"\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(nfds)]
                socket.send_fds(conn, [line], fds)
                for fd in fds:
                    os.close(fd)
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_client_maps_answers(tmp_path: Path) -> None:
    path = str(tmp_path / "fake.sock")
    t = _fake_staxd(path, [
        (wire.answer_ok(1), 1),
        (wire.answer_refused("pid 1 belongs to uid 0"), 0),
        (wire.answer_failed(13, "Permission denied"), 0),
        (wire.answer_ok(1), 0),  # claims success without a descriptor
        (b"not json\n", 0),
    ])
    op, note = opener_for(path)
    assert isinstance(op, BrokerOpener) and note is None
    spec = EventSpec("sample")
    fd = op.open(spec, 1, 1, 0)
    os.close(fd)
    with pytest.raises(BrokerRefused, match="^staxd refused: pid 1 belongs to uid 0$"):
        op.open(spec, 1, 1, 0)
    with pytest.raises(perf.PerfError) as ei:
        op.open(spec, 1, 1, 0)
    assert ei.value.errno == 13
    with pytest.raises(CaptureError, match="descriptors"):
        op.open(spec, 1, 1, 0)
    with pytest.raises(CaptureError, match="malformed"):
        op.open(spec, 1, 1, 0)
    op.close()
    t.join(5)


def test_opener_for_falls_back_in_process(tmp_path: Path) -> None:
    op, note = opener_for(str(tmp_path / "absent.sock"))
    assert isinstance(op, LocalOpener) and note is None
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()  # a socket file nobody listens on
    op, note = opener_for(str(dead))
    assert isinstance(op, LocalOpener)
    assert note is not None and "does not answer" in note and "in-process" in note
    plain = tmp_path / "plain"
    plain.write_text("")
    assert isinstance(opener_for(str(plain))[0], LocalOpener)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=3000) | st.builds(
    lambda d: json.dumps(d).encode() + b"\n", requests), max_size=4))
def test_connection_loop_answers_any_bytes(chunks: list[bytes]) -> None:
    """The per-connection loop of the real daemon, over a socketpair: every line gets a JSON
    answer, the loop ends when the peer closes, and nothing is logged as an internal error."""
    errors = _Errors()
    logging.getLogger("staxd").addHandler(errors)
    broker = Broker("/nonexistent/staxd.sock")
    a, b = socket.socketpair()
    b.settimeout(20)
    peer = peer_of(a)
    assert broker.slots.take(peer.uid) is None
    t = threading.Thread(target=broker._client, args=(a, peer), daemon=True)
    t.start()
    try:
        for c in chunks:
            b.sendall(c)
        b.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := b.recv(65536):
            out += chunk
    finally:
        b.close()
        t.join(20)
        logging.getLogger("staxd").removeHandler(errors)
    assert not t.is_alive()
    assert not errors.records, errors.records
    for line in out.splitlines():
        ans = json.loads(line)
        assert isinstance(ans, dict) and "ok" in ans


def test_formats_request_names_only_known_tracepoints() -> None:
    req = wire.parse_request(wire.encode_formats_request())
    assert isinstance(req, wire.FormatsRequest)
    assert req.names == ("sched_switch", "sched_waking")
    for bad in (b'{"formats": ["../../etc/shadow"]}', b'{"formats": []}',
                b'{"formats": ["sched_switch"], "pid": 1}', b'{"formats": "sched_switch"}'):
        with pytest.raises(wire.BadRequest, match="formats"):
            wire.parse_request(bad)


# --- connection slots: fair to every user -----------------------------------------------------


def test_slots_limit_each_user_but_root_and_all_together() -> None:
    slots = Slots(total=12, per_uid=3)
    assert [slots.take(1000) for _ in range(3)] == [None] * 3
    why = slots.take(1000)
    assert why is not None and "too many connections from uid 1000" in why
    assert "at most 3 per user" in why
    assert slots.take(1001) is None  # another user is still served
    assert [slots.take(0) for _ in range(5)] == [None] * 5  # root has no per-user limit
    assert slots.used == 9 and slots.by_uid == {1000: 3, 1001: 1, 0: 5}
    slots.give(1000)
    assert slots.take(1000) is None  # a slot given back can be taken again
    assert [slots.take(u) for u in (1002, 1003, 1004)] == [None] * 3
    busy = slots.take(1005)  # all 12 taken: the global cap still holds
    assert busy is not None and "staxd is busy" in busy and "at most 12" in busy
    for uid, n in list(slots.by_uid.items()):
        for _ in range(n):
            slots.give(uid)
    assert slots.used == 0 and slots.by_uid == {}


def test_client_reads_the_answer_of_a_connection_turned_away(tmp_path: Path) -> None:
    """staxd answers a connection over its limits at once and closes it; the client, whose
    request then meets a closed socket, still reports staxd's reason."""
    path = str(tmp_path / "busy.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    op = BrokerOpener(path)
    conn, _ = srv.accept()
    conn.sendall(wire.answer_busy("too many connections from uid 1000: it holds 8"))
    conn.close()
    srv.close()
    with pytest.raises(CaptureError, match="^staxd turned the connection away: too many "
                                           "connections from uid 1000: it holds 8$"):
        op.open(EventSpec("sample"), 1, 1, 0)
    op.close()


interpreters = st.fixed_dictionaries({}, optional={
    "path": st.text(max_size=10) | json_values, "bias": st.integers(-5, 2**65) | json_values,
    "runtime_addr": st.integers(-5, 2**65) | json_values,
    "version": st.lists(st.integers(-1, 300), max_size=4) | json_values,
    "code_type_addr": st.none() | st.integers(-5, 2**65) | json_values,
    "eval_offsets": json_values, "x": json_values})
python_requests = st.fixed_dictionaries({"python": st.fixed_dictionaries({}, optional={
    "pid": st.integers(-5, 2**23) | json_values, "hz": st.integers(-5, 5000) | json_values,
    "interpreter": interpreters | json_values, "y": json_values}) | json_values},
    optional={"pid": st.integers(1, 10), "v": st.just(1)})


@settings(max_examples=600, deadline=None)
@given(python_requests)
def test_python_request_parser_is_total(doc: dict) -> None:
    try:
        req = wire.parse_request(json.dumps(doc).encode(), ncpus=4)
    except wire.BadRequest as e:
        assert str(e)
        return
    assert isinstance(req, wire.PythonRequest)
    assert 1 <= req.pid <= wire.MAX_ID and 1 <= req.hz <= 1000
    i = req.interpreter
    assert set(i) == {"path", "bias", "runtime_addr", "version", "code_type_addr"}
    assert isinstance(i["path"], str) and 0 < i["runtime_addr"] < 2**64


def test_python_request_round_trip() -> None:
    interp = {"path": "/usr/bin/python3.11", "bias": 0, "runtime_addr": 0x1000,
              "version": [3, 11, 2], "code_type_addr": None}
    req = wire.parse_request(wire.encode_python_request(42, 900, interp))
    assert req == wire.PythonRequest(42, 900, interp)
    with pytest.raises(wire.BadRequest, match="alone"):
        wire.parse_request(json.dumps({"python": {}, "pid": 3}).encode())


def test_python_readers_are_limited_per_user(tmp_path: Path) -> None:
    from stax.staxd.pyworkers import Busy, PyWorkers

    w = PyWorkers(Slots(total=2, per_uid=1, what="Python stack readers"))
    interp = {"path": "/x/python3.11", "bias": 0, "runtime_addr": 0x1000,
              "version": [3, 11, 2], "code_type_addr": None}
    sleeper = subprocess.Popen(["sleep", "30"])
    pidfd = os.pidfd_open(sleeper.pid)
    fds = []
    try:
        fds.append(w.start(1000, wire.PythonRequest(sleeper.pid, 10, interp), pidfd))
        with pytest.raises(Busy, match="too many Python stack readers from uid 1000"):
            w.start(1000, wire.PythonRequest(sleeper.pid, 10, interp), pidfd)
        fds.append(w.start(0, wire.PythonRequest(sleeper.pid, 10, interp), pidfd))
        with pytest.raises(Busy, match="busy: 2 Python stack readers open"):
            w.start(0, wire.PythonRequest(sleeper.pid, 10, interp), pidfd)
        # nothing readable at that address: it says so, line by line, and ends with its target
        with os.fdopen(os.dup(fds[0]), "rb") as f:
            assert f.readline().strip() == b'["f"]'
        sleeper.kill()
        sleeper.wait()
        deadline = time.monotonic() + 10
        while w.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.running() == 0
    finally:
        sleeper.kill()
        sleeper.wait()
        os.close(pidfd)
        for fd in fds:
            os.close(fd)
