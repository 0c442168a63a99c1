"""Load shedding in the record orderer and the capture loop's accounting, on hand-built
records (the end-to-end behaviour is in test_load_e2e.py)."""

from __future__ import annotations

import time

from test_capture_unit import comm, sample

from stax.capture import records as rec
from stax.capture.loop import Shedding
from stax.profile.tables import Profile


def _samples(n: int, start: int = 1000) -> bytes:
    return b"".join(sample(10, 10, start + i, [rec.CONTEXT_USER, 0x401000]) for i in range(n))


def test_keeping_one_sample_in_n_keeps_the_total_weight() -> None:
    p = Profile()
    o = rec.Orderer(p)
    o.keep_every = 4
    o.add(_samples(100) + comm(10, 10, "prog", 2000))
    o.flush(None)
    assert p.counts["samples"] == 25 and o.shed_samples == 75
    assert sum(p.s_weight) == 100 * 1_000_000  # each kept sample stands for four
    assert p.threads[10].name == "prog"  # side-band records are never shed


def test_keep_none_sheds_every_sample() -> None:
    p = Profile()
    o = rec.Orderer(p)
    o.keep_every = 0
    o.add(_samples(10))
    o.flush(None)
    assert p.counts["samples"] == 0 and o.shed_samples == 10 and o.records == 10


def test_a_time_boxed_flush_stops_and_says_it_is_behind() -> None:
    p = Profile()
    o = rec.Orderer(p)
    o.add(_samples(3 * rec.Orderer.SLICE))
    o.flush(None, until=time.monotonic() - 1)  # already late: one slice, then stop
    assert p.counts["samples"] == rec.Orderer.SLICE and o.behind
    o.flush(None)
    assert p.counts["samples"] == 3 * rec.Orderer.SLICE and not o.behind


def test_records_after_the_end_of_the_span_are_left_out() -> None:
    p = Profile()
    o = rec.Orderer(p)
    o.add(_samples(10, start=1000))  # t = 1000..1009
    o.set_end(1004)
    o.add(_samples(10, start=1005))
    o.flush(None)
    assert p.counts["samples"] == 5
    assert max(p.s_time) == 1004


def test_shedding_report() -> None:
    st = Shedding(requested_hz=50_000, rate_hz=50_000)
    assert not st.active
    st.rate_hz = 12_500
    st.shed_samples = 7
    st.max_keep_every = 8
    assert st.active
    d = st.to_dict()
    assert d["rate_lowered_to_hz"] == 12_500 and d["shed_samples"] == 7
    note = st.note()
    assert note.startswith("overloaded:") and "12500 Hz" in note and "7 samples" in note


class _FakeRecorder:
    def __init__(self) -> None:
        self.orderer = rec.Orderer(Profile())
        self.shedding = Shedding(requested_hz=50_000, rate_hz=50_000)
        self.lowered = 0

    def lower_rate(self) -> int:
        self.lowered += 1
        self.shedding.rate_hz //= 2
        return self.shedding.rate_hz


def test_controller_sheds_for_a_lasting_lag_and_eases_off() -> None:
    from stax.capture import loop

    r = _FakeRecorder()
    sink = r.orderer.sink
    ctl = loop._Controller(r, sink)  # type: ignore[arg-type]
    t = ctl.next
    ctl.update(1.5, t)  # one slow check (a big binary's tables loading): no shedding yet
    assert r.orderer.keep_every == 1 and r.lowered == 0
    t += loop.CONTROL_S
    ctl.update(1.5, t)  # still behind: lower the rate, keep one sample in two, no walks
    assert r.lowered == 1 and r.orderer.keep_every == 2 and r.orderer.strip_stacks
    t += loop.CONTROL_S
    ctl.update(3.5, t)  # far behind: keep none until caught up
    assert r.orderer.keep_every == 0 and r.shedding.max_keep_every == 0
    t += loop.EASE_S + loop.CONTROL_S
    ctl.update(0.01, t)  # caught up: ease off
    assert r.orderer.keep_every == 1 and not r.orderer.strip_stacks
    assert r.shedding.overloaded_s > 0 and r.shedding.active


def test_lost_records_lower_the_rate() -> None:
    from stax.capture import loop

    r = _FakeRecorder()
    sink = r.orderer.sink
    ctl = loop._Controller(r, sink)  # type: ignore[arg-type]
    sink.counts["lost"] = 10
    ctl.update(0.0, ctl.next)
    assert r.lowered == 1 and r.orderer.keep_every == 1


def test_a_patient_call_waits_for_a_slow_server_that_lives(tmp_path) -> None:  # noqa: ANN001
    import json
    import socket
    import threading

    import pytest

    from stax.client import Client, ServerUnavailable

    path = str(tmp_path / "slow.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()

    def serve() -> None:  # answers each request after 1.2 s (a run being stopped)
        conn, _ = srv.accept()
        buf = b""
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    time.sleep(1.2)
                    rid = json.loads(line)["id"]
                    try:
                        conn.sendall(json.dumps({"id": rid, "result": "done"}).encode()
                                     + b"\n")
                    except OSError:
                        return  # the impatient client hung up

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    c = Client(path, timeout=5)
    assert c.server_alive()  # the peer is this very process
    assert c.call("wait", timeout=0.3, patient=True) == "done"
    with pytest.raises(ServerUnavailable, match="did not answer in time"):
        c.call("wait", timeout=0.3)
    c.close()
    server.join(5)
    srv.close()
