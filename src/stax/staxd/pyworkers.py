"""The stack-reading processes staxd runs for its clients (stax.pystacks.worker, as root, on a
process the client may trace but not read: Yama's ptrace_scope, an LSM): each gets a pidfd of
its target, so that it stops once that process exits and never reads a process that reused the
pid; the read end of its output goes to the client. At most PER_UID per user and TOTAL in all
at once; each is reaped when it ends (its target exited, or its client closed the pipe)."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading

from stax.capture.brokerwire import PythonRequest
from stax.pystacks.worker import command
from stax.staxd.slots import Slots

__all__ = ["PER_UID", "TOTAL", "Busy", "PyWorkers"]

log = logging.getLogger("staxd")

PER_UID = 4
TOTAL = 32


class Busy(OSError):
    """Too many stack-reading processes already (EAGAIN); the message says which limit."""


class PyWorkers:
    def __init__(self, slots: Slots) -> None:
        self.slots = slots  # one per running reader

    def running(self) -> int:
        with self.slots.lock:
            return self.slots.used

    def start(self, uid: int, req: PythonRequest, pidfd: int) -> int:
        """Start one for ``uid`` on ``req.pid`` (``pidfd`` stays the caller's); the read end
        of its output, for the client."""
        busy = self.slots.take(uid)
        if busy is not None:
            raise Busy(errno.EAGAIN, busy)
        try:
            proc = subprocess.Popen(command(req.pid, req.hz, req.interpreter, pidfd, uid),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, pass_fds=(pidfd,))
        except OSError:
            self.slots.give(uid)
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
        self.slots.give(uid)
