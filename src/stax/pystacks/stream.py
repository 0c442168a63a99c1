"""The server's side of the stack-reading process (stax.pystacks.worker): started with the
interpreter the server located, its snapshots read from a pipe on a thread and put in a
SnapshotStore, with the worker's own time stamps. ``on_first`` runs once the first snapshot is
in (the in-process sampler that covered the start then stops)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from typing import IO

from stax.pystacks.locate import Interpreter
from stax.pystacks.reader import PyFrame
from stax.pystacks.sampler import SnapshotStore
from stax.pystacks.worker import command

__all__ = ["PyStackStream"]

log = logging.getLogger("stax.server")


class PyStackStream:
    def __init__(self, pid: int, interpreter: Interpreter, hz: float, store: SnapshotStore,
                 on_first: Callable[[], None] | None = None) -> None:
        self.pid = pid
        self.store = store
        self.problem: str | None = None
        self.running = False  # snapshots came in
        self._on_first = on_first
        self._command = command(pid, hz, interpreter.spec())
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe: IO[bytes] | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._codes: dict[int, tuple[str, str, int]] = {}
        self._frames: dict[tuple[int, int, int, int], PyFrame] = {}

    def start(self, fd: int | None = None) -> bool:
        """Start the stack-reading process, or read the one whose output ``fd`` is (staxd
        runs it: stax.capture.broker.python_stream; the stream owns ``fd`` then)."""
        if fd is not None:
            self._pipe = os.fdopen(fd, "rb")
        else:
            try:
                self._proc = subprocess.Popen(
                    self._command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, close_fds=True)
            except OSError as e:
                self.problem = f"cannot start the stack-reading process: {e.strerror or e}"
                return False
            self._pipe = self._proc.stdout
        assert self._pipe is not None
        self._thread = threading.Thread(target=self._run, args=(self._pipe,),
                                        name="stax-pystacks-stream", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stopping = True
        p = self._proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # staxd's reader writes every read period: the thread sees the flag at its next line
        # and closes the pipe, and that reader ends at its next write
        if self._thread is not None:
            self._thread.join(5)

    def _run(self, pipe: IO[bytes]) -> None:
        try:
            self._read(pipe)
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    def _read(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            if self._stopping:
                return
            try:
                msg = json.loads(raw)
                kind = msg[0]
                if kind == "s":
                    self._snapshot(msg)
                elif kind == "c":
                    self._codes[int(msg[1])] = (str(msg[2]), str(msg[3]), int(msg[4]))
                elif kind == "f":
                    self.store.failed()
                elif kind == "x":
                    self.problem = str(msg[1])
            except (ValueError, IndexError, KeyError, TypeError):
                log.warning("stack-reading process of %d: a line not understood", self.pid)

    def _snapshot(self, msg: list) -> None:
        _kind, stamp, read_ns, stacks = msg
        codes, frames = self._codes, self._frames
        snap: dict[int, tuple[PyFrame, ...]] = {}
        for tid, flat in stacks:
            out = []
            for i in range(0, len(flat), 4):
                key = (flat[i], flat[i + 1], flat[i + 2], flat[i + 3])
                f = frames.get(key)
                if f is None:
                    q, fn, first = codes[key[0]]
                    f = PyFrame(q, fn, None if key[1] < 0 else key[1], first, bool(key[2]),
                                key[3])
                    if len(frames) > 1 << 16:
                        frames.clear()
                    frames[key] = f
                out.append(f)
            snap[int(tid)] = tuple(out)
        self.store.add(int(stamp), snap, int(read_ns))
        if not self.running:
            self.running = True
            if self._on_first is not None:
                self._on_first()
