"""The staxd daemon: the socket, peer credentials, the may-this-peer-trace-that-pid rule, and
opening the events as root before handing the descriptors over with SCM_RIGHTS.

One thread per connection; nothing a client sends can stop the accept loop.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import select
import signal
import socket
import stat
import struct
import sys
import threading
from dataclasses import dataclass
from typing import NoReturn

from stax import __version__
from stax.capture import brokerwire as wire
from stax.capture import events, perf
from stax.capture import recorder as _recorder  # noqa: F401 - loaded before any client thread
from stax.limits import STAXD_SOCKET as DEFAULT_SOCKET
from stax.staxd.slots import Slots

log = logging.getLogger("staxd")

IDLE_TIMEOUT_S = 30.0  # a connection that sends nothing for this long is closed


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"uid {self.uid} pid {self.pid}"


def peer_of(conn: socket.socket) -> Peer:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


class Refused(Exception):
    """The peer may not have descriptors for this target; the message says why."""


class Gone(Exception):
    """The target process or thread does not exist (any more)."""


def _ids(status: str, key: str) -> list[int]:
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return [int(x) for x in line.split()[1:4]]
    raise ValueError(f"no {key} line")


def check_access(peer: Peer, pid: int, tid: int, proc: str = "/proc") -> None:
    """Refuse unless ``peer`` could trace ``pid`` itself: it is root, or the process runs with
    the peer's uid and gid as its real, effective and saved ids and is dumpable (its /proc
    directory is owned by that uid). ``tid`` must be one of ``pid``'s threads.
    """
    base = f"{proc}/{pid}"
    try:
        st = os.stat(base)
        with open(f"{base}/status", errors="replace") as f:  # Name: may not be UTF-8
            status = f.read()
        uids = _ids(status, "Uid")
        gids = _ids(status, "Gid")
    except (OSError, ValueError):
        raise Gone(f"no process with pid {pid}") from None
    if not os.path.exists(f"{base}/task/{tid}"):
        raise Gone(f"no thread {tid} in process {pid}")
    if peer.uid == 0:
        return
    if uids[0] != peer.uid:
        raise Refused(f"pid {pid} belongs to uid {uids[0]}")
    if any(u != peer.uid for u in uids):
        raise Refused(f"pid {pid} runs with another effective or saved uid "
                      f"({'/'.join(map(str, uids))}: setuid)")
    if any(g != peer.gid for g in gids):
        raise Refused(f"pid {pid} runs with group ids {'/'.join(map(str, gids))}, not the "
                      f"requester's gid {peer.gid}")
    if st.st_uid != peer.uid:
        raise Refused(f"pid {pid} is not dumpable (its /proc entry belongs to uid {st.st_uid})")


def _alive(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited (poll: no FD_SETSIZE limit)."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return not p.poll(0)


def _raise_fd_limit() -> None:
    """64 clients x 64 descriptors in flight need more than the default 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Broker:
    """Accepts connections on a Unix socket and answers open requests."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.stop = threading.Event()
        self.slots = Slots()
        self.granted = 0
        self.refused = 0
        self.turned_away: dict[int, int] = {}  # connections refused per uid (for the log)
        from stax.staxd.pyworkers import PER_UID, TOTAL, PyWorkers

        self.pyworkers = PyWorkers(Slots(TOTAL, PER_UID, "Python stack readers"))

    # --- socket -------------------------------------------------------------------------------

    def listen(self) -> None:
        path = self.path
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None:
            if not stat.S_ISSOCK(mode):
                raise SystemExit(f"error: {path} exists and is not a socket; not touching it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
                raise SystemExit(f"error: another staxd is already listening on {path}")
            except OSError:
                os.unlink(path)  # a stale socket from a previous staxd
            finally:
                probe.close()
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, mode=0o755, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            # access is decided per request from the peer's credentials, not by file mode
            os.chmod(path, 0o666)
            sock.listen(128)
        except OSError as e:
            sock.close()
            raise SystemExit(f"error: cannot listen on {path}: {e.strerror or e}") from None
        self.sock = sock

    def serve(self) -> None:
        assert self.sock is not None
        log.info("staxd %s listening on %s (pid %d, uid %d)", __version__, self.path,
                 os.getpid(), os.getuid())
        if os.geteuid() != 0:
            log.warning("staxd is not running as root: it can only open what uid %d could",
                        os.geteuid())
        while not self.stop.is_set():
            try:
                r, _, _ = select.select([self.sock], [], [], 0.5)
                if not r:
                    continue
                conn, _ = self.sock.accept()
            except InterruptedError:
                continue
            except OSError as e:
                if self.stop.is_set():
                    break
                log.warning("accept failed: %s", e)
                continue
            try:
                peer = peer_of(conn)
            except OSError as e:
                log.warning("no credentials for a connection: %s", e)
                conn.close()
                continue
            why = self.slots.take(peer.uid)
            if why is not None:
                self._turn_away(conn, peer, why)
                continue
            try:
                threading.Thread(target=self._client, args=(conn, peer), daemon=True).start()
            except RuntimeError as e:  # no thread to be had: refuse this one, keep serving
                log.warning("cannot serve a client: %s", e)
                conn.close()
                self.slots.give(peer.uid)

    def _turn_away(self, conn: socket.socket, peer: Peer, why: str) -> None:
        """Answer a connection over the limits with the reason, and close it; the accept loop
        never waits on it (the answer is sent without blocking)."""
        n = self.turned_away.get(peer.uid, 0) + 1
        self.turned_away[peer.uid] = n
        if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th… of each uid: a flood cannot fill the log
            log.warning("turned away %s (%d so far): %s", peer, n, why)
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            conn.send(wire.answer_busy(why))
        conn.close()

    def close(self) -> None:
        self.stop.set()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    # --- one client ---------------------------------------------------------------------------

    def _client(self, conn: socket.socket, peer: Peer) -> None:
        """Serve one connection, holding the slot ``serve`` took for ``peer``."""
        try:
            conn.settimeout(IDLE_TIMEOUT_S)
            buf = b""
            while not self.stop.is_set():
                while b"\n" not in buf:
                    if len(buf) > wire.MAX_LINE:
                        log.info("refused %s: request line too long", peer)
                        conn.sendall(wire.answer_bad("request line too long"))
                        return
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\n", 1)
                self._request(conn, peer, line)
        except (OSError, TimeoutError):
            pass  # the client went away or stalled
        except Exception:  # never let one client take staxd down
            log.exception("internal error serving a client")
        finally:
            conn.close()
            self.slots.give(peer.uid)

    def _request(self, conn: socket.socket, peer: Peer, line: bytes) -> None:
        try:
            req = wire.parse_request(line)
        except wire.BadRequest as e:
            self.refused += 1
            log.info("refused %s: bad request: %s", peer, e)
            conn.sendall(wire.answer_bad(str(e)))
            return
        if isinstance(req, wire.FormatsRequest):
            formats = {n: events.tracepoint_format(n) for n in req.names}
            log.info("gave %s the formats of %s", peer, ", ".join(req.names))
            conn.sendall(wire.answer_formats(formats))
            return
        if isinstance(req, wire.PythonRequest):
            what = f"the Python stacks of pid {req.pid}"
        else:
            what = (f"pid {req.pid} " + ",".join(f"{ev.spec.kind}@{ev.tid}/cpu{ev.cpu}"
                                                 for ev in req.events[:8])
                    + (f",+{len(req.events) - 8}" if len(req.events) > 8 else ""))
        fds: list[int] = []
        try:
            fds = (self._reader(peer, req) if isinstance(req, wire.PythonRequest)
                   else self._open(peer, req))
        except Refused as e:
            self.refused += 1
            log.warning("refused %s: %s (asked for %s)", peer, e, what)
            conn.sendall(wire.answer_refused(str(e)))
            return
        except Gone as e:
            log.info("failed %s: %s", peer, e)
            conn.sendall(wire.answer_failed(errno.ESRCH, str(e)))
            return
        except OSError as e:
            code = e.errno or errno.EIO
            log.info("failed %s: %s: %s", peer, what, e.strerror or e)
            conn.sendall(wire.answer_failed(code, e.strerror or os.strerror(code)))
            return
        try:
            self.granted += 1
            log.info("granted %s: %s (%d descriptors)", peer, what, len(fds))
            socket.send_fds(conn, [wire.answer_ok(len(fds))], fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _reader(self, peer: Peer, req: wire.PythonRequest) -> list[int]:
        """A stack-reading process on ``req.pid``: the read end of its output."""
        try:
            pidfd = os.pidfd_open(req.pid)
        except OSError:
            raise Gone(f"no process with pid {req.pid}") from None
        try:
            check_access(peer, req.pid, req.pid)
            return [self.pyworkers.start(peer.uid, req, pidfd)]
        finally:
            os.close(pidfd)

    def _open(self, peer: Peer, req: wire.Request) -> list[int]:
        try:
            pidfd = os.pidfd_open(req.pid)
        except OSError:
            raise Gone(f"no process with pid {req.pid}") from None
        fds: list[int] = []
        try:
            for ev in req.events:
                check_access(peer, req.pid, ev.tid)
                attr = events.build_attr(ev.spec)
                fds.append(perf.perf_event_open(attr, ev.tid, ev.cpu))
            # the pid cannot have been reused while our pidfd is open and not readable; check
            # again that nothing changed hands (exec of a setuid program) meanwhile
            if not _alive(pidfd):
                raise Gone(f"process {req.pid} exited")
            for ev in req.events:
                check_access(peer, req.pid, ev.tid)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        finally:
            os.close(pidfd)
        return fds


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see: staxd --help)\n")
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(
        prog="staxd", description="Open perf_event descriptors as root for stax-servers of "
        "users who may trace the target themselves, and pass them over a Unix socket.")
    ap.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                    help=f"listening socket (default {DEFAULT_SOCKET}, created mode 0666)")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ap.add_argument("--version", action="version", version=f"staxd {__version__}")
    args = ap.parse_args(argv)
    level = logging.DEBUG if (args.verbose or os.environ.get("STAX_LOG")) else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s staxd %(levelname)s %(message)s")
    _raise_fd_limit()
    broker = Broker(os.path.abspath(args.socket))
    try:
        broker.listen()
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: object) -> None:
        broker.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        broker.serve()
    finally:
        broker.close()
        log.info("staxd stopped: %d requests granted, %d refused", broker.granted,
                 broker.refused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
