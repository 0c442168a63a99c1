"""The staxd client: an Opener that asks the broker for each descriptor instead of opening it.

``opener_for`` picks staxd when its socket exists and answers, else in-process opening.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat

from stax.capture import perf, sched
from stax.capture.events import EventSpec, LocalOpener, Opener
from stax.capture.recorder import CaptureError

MAX_FDS = 64


class BrokerUnavailable(Exception):
    """Nothing answers on the staxd socket."""


class BrokerRefused(CaptureError):
    """staxd refused the request; the message is staxd's reason, prefixed for the user."""


class BrokerOpener:
    """Opens events through staxd over one connection, kept until ``close``."""

    mode = "staxd"

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = b""
        self.connect()

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise BrokerUnavailable(f"staxd does not answer on {self.path}: "
                                    f"{e.strerror or e}") from None
        self.sock = s
        self._buf = b""

    def request(self, pid: int, events: list[tuple[EventSpec, int, int]]) -> list[int]:
        """Send one request; the descriptors, or PerfError / BrokerRefused."""
        from stax.capture import brokerwire as wire

        return self.exchange(wire.encode_request(pid, events), len(events), "events")

    def exchange(self, payload: bytes, want: int, what: str) -> list[int]:
        """Send one request line and read its answer: the ``want`` descriptors it grants (for
        ``what``, in messages), or CaptureError / BrokerRefused / PerfError (staxd's errno)."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        fds: list[int] = []
        try:
            self._send(payload)
            while b"\n" not in self._buf:
                data, got, _flags, _addr = socket.recv_fds(
                    self.sock, 65536, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
                fds.extend(got)
                if not data:
                    raise BrokerUnavailable("staxd closed the connection")
                self._buf += data
        except (OSError, BrokerUnavailable) as e:
            for fd in fds:
                os.close(fd)
            self.close()
            if isinstance(e, BrokerUnavailable):
                raise CaptureError(f"staxd ({self.path}): {e}") from None
            raise CaptureError(f"staxd ({self.path}) failed: {e.strerror or e}") from None
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            ans = json.loads(line)
            ok = bool(ans.get("ok"))
        except (ValueError, AttributeError):
            ans, ok = {}, False
        if ok and len(fds) == want:
            return fds
        for fd in fds:
            os.close(fd)
        msg = str(ans.get("error") or "malformed answer")
        if ok:
            raise CaptureError(f"staxd sent {len(fds)} descriptors for {want} {what}")
        if ans.get("refused"):
            raise BrokerRefused(f"staxd refused: {msg}")
        if ans.get("busy"):
            raise CaptureError(f"staxd turned the connection away: {msg}")
        if isinstance(ans.get("errno"), int):
            raise perf.PerfError(ans["errno"], msg)
        raise CaptureError(f"staxd rejected the request: {msg}")

    def sched_probe(self, local: sched.Probe) -> sched.Probe:
        """The scheduler tracepoints as staxd sees them (this process may not read tracefs);
        ``local`` (and its reason) when staxd cannot describe them either."""
        from stax.capture import brokerwire as wire

        try:
            if self.sock is None:
                self.connect()
            assert self.sock is not None
            self._send(wire.encode_formats_request())
            while b"\n" not in self._buf:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise BrokerUnavailable("staxd closed the connection")
                self._buf += data
            line, self._buf = self._buf.split(b"\n", 1)
            formats = json.loads(line).get("formats") or {}
        except (OSError, ValueError, AttributeError, BrokerUnavailable):
            self.close()
            return local
        try:
            return self._probe_from(formats, local)
        except (ValueError, AttributeError):
            return local

    def _probe_from(self, formats: dict[str, object], local: sched.Probe) -> sched.Probe:
        pr = sched.Probe(tracefs=f"staxd ({self.path})")
        sw, wk = formats.get("sched_switch"), formats.get("sched_waking")
        if not isinstance(sw, str):
            return local
        if not sched.use_switch_format(pr, sw):
            return local
        if not isinstance(wk, str):
            pr.waking_problem = "staxd's host has no sched:sched_waking tracepoint"
            return pr
        sched.use_waking_format(pr, wk)
        return pr

    def _send(self, data: bytes) -> None:
        """Send a request; when staxd has closed the connection (it turns a connection over its
        limits away with an answer at once), its answer is still read: only when there is none
        does the send's error stand."""
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError:
            try:
                while b"\n" not in self._buf:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        break
                    self._buf += chunk
            except OSError:
                pass
            if b"\n" not in self._buf:
                raise

    def open(self, spec: EventSpec, pid: int, tid: int, cpu: int) -> int:
        return self.request(pid, [(spec, tid, cpu)])[0]

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def opener_for(daemon_socket: str | None) -> tuple[Opener, str | None]:
    """staxd when its socket exists and answers; else in-process, with a note when a socket
    exists but nothing answers on it."""
    if daemon_socket and is_socket(daemon_socket):
        try:
            return BrokerOpener(daemon_socket), None
        except BrokerUnavailable as e:
            return LocalOpener(), f"{e}; opening events in-process"
    return LocalOpener(), None


def python_stream(daemon_socket: str, pid: int, hz: int, interpreter: dict[str, object],
                  timeout: float = 10.0) -> int:
    """Ask staxd to read the Python stacks of ``pid`` (stax.staxd.pyworkers): the read end of
    the stack-reading process's output (stax.pystacks.worker's lines). CaptureError (staxd's
    reason, or why it could not be asked) or PerfError (staxd's errno) otherwise."""
    from stax.capture import brokerwire as wire

    try:
        opener = BrokerOpener(daemon_socket, timeout)
    except BrokerUnavailable as e:
        raise CaptureError(str(e)) from None
    try:
        return opener.exchange(wire.encode_python_request(pid, hz, dict(interpreter)), 1,
                               "Python stack readers")[0]
    finally:
        opener.close()
