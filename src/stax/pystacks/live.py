"""Python stacks beside a recording: the interpreter of the recorded process located (at once
for an attached process; for a launched one, once its exec mapped a ``python`` binary), then a
PyStackSampler reading its stacks until the recording stops. The record sink pairs each
native sample with the snapshot its thread had closest in time (stax.profile.pymerge)."""

from __future__ import annotations

import errno
import logging
import os
import re
import threading

from stax.pystacks.locate import Interpreter
from stax.pystacks.reader import NO_INTERPRETER, PyStackReader
from stax.pystacks.sampler import PyStackSampler, SnapshotStore

__all__ = ["MAX_HZ", "PythonWatch", "looks_like_python"]

log = logging.getLogger("stax.server")

# reads a second: a read of every stack costs ~40 us in the stack-reading process
MAX_HZ = 1000
# ... and ~0.4-1.2 ms in the server itself, where it waits for the GIL (the fallback)
MAX_HZ_IN_PROCESS = 500
_TRIES = 80  # locating after the trigger: libpython and _PyRuntime may come a little later
_RETRY_S = 0.025
_PYTHON_FILE = re.compile(r"(?:^|/)(?:lib)?python\d\.\d+[a-z]*(?:\.so[.\d]*)?(?: \(deleted\))?$")


def looks_like_python(path: str) -> bool:
    """A mapped file that may hold a CPython interpreter (``python3.11``, ``libpython3.12.so``)."""
    return _PYTHON_FILE.search(path) is not None


class PythonWatch:
    """Locates the interpreter of ``pid`` on a thread of its own and samples its Python stacks
    at ``hz`` (capped at MAX_HZ); ``sampler`` and ``interpreter`` are None until then, and stay
    None for a process that runs no CPython stax can read (``problem`` says why)."""

    def __init__(self, pid: int, hz: int, wait_for_exec: bool,
                 daemon_socket: str | None = None) -> None:
        self.pid = pid
        self.daemon_socket = daemon_socket  # staxd reads what the server may not
        self.hz = max(1, min(int(hz), MAX_HZ))
        self.sampler: SnapshotStore | None = None  # what the reads found, by time
        self._inproc: PyStackSampler | None = None
        self._stream = None  # stax.pystacks.stream.PyStackStream once started
        self._via = "process"  # who runs the stack-reading process: "process" (we), "staxd"
        self.interpreter: Interpreter | None = None
        self.version: str | None = None
        self.problem: str | None = None
        self._wait_for_exec = wait_for_exec
        self._no_interpreter = False
        self._trigger = threading.Event()
        self._stop = threading.Event()
        if not wait_for_exec:
            self._trigger.set()
        self._thread = threading.Thread(target=self._run, name="stax-pystacks-locate",
                                        daemon=True)
        self._thread.start()

    @property
    def period_ns(self) -> int:
        return 1_000_000_000 // self.hz

    def tolerance_ns(self, t_ns: int) -> int:
        """How far from a sample a lone snapshot may be: a period, or twice the mean spacing
        of the reads so far when they fall behind it (a loaded machine)."""
        s = self.sampler
        if s is None or s.reads < 2:
            return self.period_ns
        return max(self.period_ns, 2 * max(0, t_ns - s.first_ns) // s.reads)

    def trigger(self) -> None:
        """The target mapped a python binary: locate its interpreter now."""
        self._trigger.set()

    def _run(self) -> None:
        while not self._trigger.wait(0.05):
            if self._stop.is_set():
                return
        from stax.pystacks.reader import NotPythonError

        reader = None
        # an attached process has its interpreter mapped already (or has none)
        for _ in range(_TRIES if self._wait_for_exec else 3):
            if self._stop.is_set():
                return
            try:
                reader = PyStackReader(self.pid)
                break
            except NotPythonError as e:
                self.problem = str(e)
                self._no_interpreter = e.args[0].endswith(NO_INTERPRETER)
            except OSError as e:
                self.problem = f"cannot read process {self.pid}: {e.strerror or e}"
            self._stop.wait(_RETRY_S)
        if reader is None:
            return
        self.problem = None
        if self._through_staxd(reader):
            return
        store = SnapshotStore()
        # the server reads until the stack-reading process is up (or for good if it fails)
        inproc = PyStackSampler(reader, min(self.hz, MAX_HZ_IN_PROCESS), store)
        inproc.start()
        self._inproc = inproc
        self.interpreter = reader.interpreter
        self.version = reader.version
        self.sampler = store
        if self._stop.is_set():
            return
        from stax.pystacks.stream import PyStackStream

        stream = PyStackStream(self.pid, reader.interpreter, self.hz, store,
                               on_first=lambda: inproc.stop(wait=False))
        self._stream = stream
        if not stream.start():
            log.warning("python stacks of %d read in the server: %s", self.pid, stream.problem)

    def _through_staxd(self, reader: PyStackReader) -> bool:
        """When the server may not read the target's memory (Yama's ptrace_scope, an LSM;
        STAX_PYTHON_READER=staxd asks for it anyway) and staxd answers, staxd runs the
        stack-reading process: True once its stream is up, or when nothing can read them
        (``problem`` says why)."""
        from stax.pystacks.procmem import RemoteReadError

        forced = os.environ.get("STAX_PYTHON_READER") == "staxd"
        if not forced:
            try:
                reader.threads()
                return False
            except RemoteReadError as e:
                if e.errno not in (errno.EPERM, errno.EACCES):
                    return False
                why = f"cannot read process {self.pid}'s memory: {e.strerror or e}"
        else:
            why = "STAX_PYTHON_READER=staxd"
        reader.close()
        if not self.daemon_socket:
            self.problem = why + " (staxd, which could, is not in use)"
            return True
        from stax.capture.broker import python_stream
        from stax.capture.recorder import CaptureError
        from stax.pystacks.stream import PyStackStream

        interp = reader.interpreter
        try:
            fd = python_stream(self.daemon_socket, self.pid, self.hz, interp.spec())
        except (CaptureError, OSError) as e:  # (OSError: staxd's errno, as a PerfError)
            self.problem = f"{why}; {e}"
            return True
        store = SnapshotStore()
        stream = PyStackStream(self.pid, interp, self.hz, store)
        stream.start(fd)
        self._stream, self._via = stream, "staxd"
        self.interpreter, self.version, self.sampler = interp, reader.version, store
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)  # (it ends within one locating attempt)
        if self._stream is not None:
            self._stream.stop()
        if self._inproc is not None:
            self._inproc.stop()
            self._inproc.reader.close()

    def relevant(self) -> bool:
        """An interpreter was found, or one was there that could not be read (a version
        without a layout, memory not readable): worth reporting. A process with no CPython
        mapped at all is not."""
        return self.version is not None or (self.problem is not None
                                            and not self._no_interpreter)

    def info(self) -> dict[str, object]:
        s = self.sampler
        return {"version": self.version, "interpreter": (self.interpreter.path
                                                         if self.interpreter else None),
                "problem": self.problem, "stack_reads_hz": self.hz,
                "stack_reads": s.reads if s else 0,
                "failed_stack_reads": s.failed_reads if s else 0,
                "mean_read_us": (round(s.read_ns / s.reads / 1000, 1)
                                 if s is not None and s.reads else None),
                "stack_reader": (self._via if self._stream is not None and self._stream.running
                                 else "server" if s is not None else None)}
