"""The stack-reading processes staxd runs for its clients (stax.pystacks.worker, as root, on a
process the client may trace but not read: Yama's ptrace_scope, an LSM): each gets a pidfd of
its target, so that it stops once that process exits and never reads a process that reused the
pid; the read end of its output goes to the client. At most PER_UID per user and TOTAL in all
at once; each is reaped when it ends (its target exited, or its client closed the pipe)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

from stax.capture.brokerwire import PythonRequest

__all__ = ["PER_UID", "TOTAL", "Busy", "PyWorkers"]

log = logging.getLogger("staxd")

PER_UID = 4
TOTAL = 32


class Busy(Exception):
    """Too many stack-reading processes already; the message says which limit."""


class PyWorkers:
    def __init__(self, per_uid: int = PER_UID, total: int = TOTAL) -> None:
        self.per_uid = per_uid
        self.total = total
        self.by_uid: dict[int, int] = {}
        self.lock = threading.Lock()

    def running(self) -> int:
        with self.lock:
            return sum(self.by_uid.values())

    def start(self, uid: int, req: PythonRequest, pidfd: int) -> int:
        """Start one for ``uid`` on ``req.pid`` (``pidfd`` stays the caller's); the read end
        of its output, for the client."""
        with self.lock:
            mine = self.by_uid.get(uid, 0)
            if uid != 0 and mine >= self.per_uid:
                raise Busy(f"uid {uid} already has {mine} Python stack readers (at most "
                           f"{self.per_uid} per user)")
            if sum(self.by_uid.values()) >= self.total:
                raise Busy(f"staxd runs {self.total} Python stack readers already")
            self.by_uid[uid] = mine + 1
        spec = json.dumps({"pid": req.pid, "hz": req.hz, "interpreter": req.interpreter,
                           "pidfd": pidfd})
        try:
            proc = subprocess.Popen([sys.executable, "-m", "stax.pystacks.worker", spec],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, pass_fds=(pidfd,))
        except OSError:
            self._done(uid)
            raise
        assert proc.stdout is not None
        try:
            fd = os.dup(proc.stdout.fileno())
        finally:
            proc.stdout.close()
        threading.Thread(target=self._reap, args=(uid, proc), name="staxd-pyworker",
                         daemon=True).start()
        return fd

    def _reap(self, uid: int, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        log.info("Python stack reader %d for uid %d ended (exit %d)", proc.pid, uid, code)
        self._done(uid)

    def _done(self, uid: int) -> None:
        with self.lock:
            left = self.by_uid.get(uid, 0) - 1
            if left > 0:
                self.by_uid[uid] = left
            else:
                self.by_uid.pop(uid, None)
