"""The Python stacks of a running CPython target, read from its memory: the interpreters
from ``_PyRuntime``, their thread states (matched to OS threads by ``native_thread_id``) and
each thread's chain of ``_PyInterpreterFrame`` from the current ``_PyCFrame``. Every frame
carries its ``is_entry`` flag: the frames of one ``_PyEval_EvalFrameDefault`` activation are
a run ending (outermost) at an entry frame, which is how they are matched to native stacks.

The target runs on while it is read: a frame chain read mid-change is cut short or dropped,
never trusted past a failed read or a pointer that does not lead to a code object."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stax.pystacks.codeloc import LineRanges, decode_lines, line_at
from stax.pystacks.layout import (
    FRAME_OWNED_BY_CSTACK,
    FRAME_OWNED_BY_GENERATOR,
    Layout,
    layout_for,
    supported_versions,
)
from stax.pystacks.locate import Interpreter, find_interpreter
from stax.pystacks.procmem import ProcessMemory, RemoteReadError

__all__ = ["NO_INTERPRETER", "NotPythonError", "PyFrame", "PyStackReader", "PyThread"]

NO_INTERPRETER = "runs no CPython interpreter"  # the end of NotPythonError's message then
_MAX_DEPTH = 4096
_MAX_THREADS = 4096
_MAX_INTERPRETERS = 64
_MAX_STR = 4096
_MAX_LINETABLE = 1 << 20
_CODE_CACHE = 1 << 14
_WALK_TRIES = 3  # reads of one thread's stack before it is given up as moving too fast


class NotPythonError(Exception):
    """The target runs no CPython interpreter stax can read (none mapped, or a version
    without a layout)."""


@dataclass(frozen=True, slots=True)
class PyFrame:
    qualname: str
    filename: str
    line: int | None
    firstlineno: int
    is_entry: bool  # the outermost frame of one _PyEval_EvalFrameDefault activation
    owner: int


@dataclass(slots=True)
class PyThread:
    native_tid: int
    thread_id: int
    frames: list[PyFrame]  # innermost first

    def activations(self) -> int:
        """How many interpreter activations (``_PyEval_EvalFrameDefault`` calls) the frames
        span: one per entry frame."""
        return sum(1 for f in self.frames if f.is_entry)


@dataclass(frozen=True, slots=True)
class _Code:
    qualname: str
    filename: str
    firstlineno: int
    lines: LineRanges


class PyStackReader:
    """Reads the Python stacks of process ``pid``; raises NotPythonError when it runs no
    supported CPython, OSError when its maps or memory cannot be read."""

    def __init__(self, pid: int, interpreter: Interpreter | None = None) -> None:
        """``interpreter``: one already located in this process (stax.pystacks.worker is
        handed it), so that it is not looked for again."""
        self.pid = pid
        self.mem = ProcessMemory(pid)
        try:
            interp = interpreter or find_interpreter(pid, self.mem)
            if interp is None:
                raise NotPythonError(f"process {pid} {NO_INTERPRETER}")
            lay = layout_for(interp.version[:2])
            if lay is None:
                v = ".".join(map(str, interp.version))
                raise NotPythonError(
                    f"CPython {v} is not supported (supported: {', '.join(supported_versions())})"
                )
            if interp.version[:2] >= (3, 13):  # what the interpreter says of itself, if it can
                from stax.pystacks.debugoffsets import from_runtime

                lay = from_runtime(self.mem, interp.runtime_addr, lay) or lay
        except BaseException:
            self.mem.close()
            raise
        self.interpreter: Interpreter = interp
        self.layout: Layout = lay
        self._codes: dict[tuple[int, int, int, int], _Code] = {}
        L = lay
        self._tstate_size = (
            max(L.tstate_native_thread_id, L.tstate_thread_id, L.tstate_interp, L.tstate_next) + 8
        )
        self._frame_size = (
            max(L.frame_code, L.frame_previous, L.frame_prev_instr, L.frame_owner) + 8
        )
        self._code_size = max(L.code_qualname, L.code_filename, L.code_linetable) + 8

    @property
    def version(self) -> str:
        return ".".join(map(str, self.interpreter.version))

    def close(self) -> None:
        self.mem.close()

    def __enter__(self) -> PyStackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- threads ---------------------------------------------------------------------------

    def thread_states(self) -> list[tuple[int, int, int]]:
        """(tstate address, native thread id, thread id) of every thread state."""
        L = self.layout
        out: list[tuple[int, int, int]] = []
        interp = self.mem.u64(self.interpreter.runtime_addr + L.runtime_interpreters_head)
        seen: set[int] = set()
        n_interp = 0
        while interp and n_interp < _MAX_INTERPRETERS:
            n_interp += 1
            ts = self.mem.u64(interp + L.interp_threads_head)
            while ts and ts not in seen and len(out) < _MAX_THREADS:
                seen.add(ts)
                raw = self.mem.read(ts, self._tstate_size)
                if _u64(raw, L.tstate_interp) != interp:
                    break  # freed or mid-change: not a thread state of this interpreter
                native = _u64(raw, L.tstate_native_thread_id)
                out.append((ts, native, _u64(raw, L.tstate_thread_id)))
                ts = _u64(raw, L.tstate_next)
            interp = self.mem.u64(interp + L.interp_next)
        return out

    def threads(self) -> list[PyThread]:
        """Every Python thread's stack, innermost frame first. The thread runs on while its
        frames are read, and frames popped and pushed under a walk can splice two stacks that
        never existed or cut one short: a walk counts only when the thread's current frame is
        the same after it as before, it followed every link to a code object, and it does not
        end at a generator's frame (a suspended generator's has no caller; a thread's outermost
        frame is never one). Else it is tried again; a thread whose stack moved under every try
        is left out of the result (not read)."""
        out: list[PyThread] = []
        for ts, native, tid in self.thread_states():
            frames = self._stable_walk(ts)
            if frames is not None:
                out.append(PyThread(native, tid, frames))
        return out

    def _current_frame(self, ts: int) -> int:
        L = self.layout
        if L.tstate_cframe < 0:
            return self.mem.u64(ts + L.tstate_current_frame)
        cframe = self.mem.u64(ts + L.tstate_cframe)
        return self.mem.u64(cframe + L.cframe_current_frame) if cframe else 0

    def _stable_walk(self, ts: int) -> list[PyFrame] | None:
        for _ in range(_WALK_TRIES):
            frames: list[PyFrame] = []
            try:
                top = self._current_frame(ts)
                whole = self._walk(top, frames)
                if (whole and self._current_frame(ts) == top
                        and not (frames and frames[-1].owner == FRAME_OWNED_BY_GENERATOR)):
                    return frames
            except RemoteReadError:
                pass  # a pointer read mid-change: try again
        return None

    def stacks_by_tid(self) -> dict[int, PyThread]:
        return {t.native_tid: t for t in self.threads()}

    # -- frames ----------------------------------------------------------------------------

    def _walk(self, frame: int, frames: list[PyFrame]) -> bool:
        """Append the frames from ``frame`` outwards; False when a link did not lead to a
        code object or led back into the chain (it changed under the read)."""
        L = self.layout
        seen: set[int] = set()
        while frame and frame not in seen and len(frames) < _MAX_DEPTH:
            seen.add(frame)
            raw = self.mem.read(frame, self._frame_size)
            owner = raw[L.frame_owner]
            if owner == FRAME_OWNED_BY_CSTACK and L.frame_is_entry < 0:
                # 3.12+: the shim under an activation's first frame; that frame is its entry
                if frames and not frames[-1].is_entry:
                    f = frames[-1]
                    frames[-1] = PyFrame(
                        f.qualname, f.filename, f.line, f.firstlineno, True, f.owner
                    )
                frame = _u64(raw, L.frame_previous)
                continue
            code_addr = _u64(raw, L.frame_code)
            code = self._code(code_addr)
            if code is None:
                return False
            index = (_u64(raw, L.frame_prev_instr) - (code_addr + L.code_adaptive)) // 2
            frames.append(
                PyFrame(
                    qualname=code.qualname,
                    filename=code.filename,
                    line=line_at(code.lines, index),
                    firstlineno=code.firstlineno,
                    is_entry=L.frame_is_entry >= 0 and bool(raw[L.frame_is_entry]),
                    owner=owner,
                )
            )
            frame = _u64(raw, L.frame_previous)
        return frame not in seen  # (a loop: links changed under the read)

    def _code(self, addr: int) -> _Code | None:
        if not addr:
            return None
        L = self.layout
        raw = self.mem.read(addr, self._code_size)
        want = self.interpreter.code_type_addr
        if want is not None and _u64(raw, L.ob_type) != want:
            return None
        fn = _u64(raw, L.code_filename)
        qn = _u64(raw, L.code_qualname)
        lt = _u64(raw, L.code_linetable)
        first = struct.unpack_from("<i", raw, L.code_firstlineno)[0]
        key = (addr, fn, qn, lt)
        hit = self._codes.get(key)
        if hit is not None:
            return hit
        code = _Code(self._str(qn), self._str(fn), first, decode_lines(self._bytes(lt), first))
        if len(self._codes) >= _CODE_CACHE:
            self._codes.clear()
        self._codes[key] = code
        return code

    def _str(self, addr: int) -> str:
        if not addr:
            return "?"
        L = self.layout
        head = self.mem.read(addr, L.unicode_state + 4)
        length = _u64(head, L.unicode_length)
        state = head[L.unicode_state]
        kind = (state >> 2) & 7
        compact = state & 0x20
        ascii_ = state & 0x40
        if not compact or kind not in (1, 2, 4) or length > _MAX_STR:
            return "?"
        data = addr + (L.unicode_ascii_data if ascii_ else L.unicode_compact_data)
        raw = self.mem.read(data, length * kind)
        enc = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
        return raw.decode(enc, errors="replace")

    def _bytes(self, addr: int) -> bytes:
        if not addr:
            return b""
        L = self.layout
        size = self.mem.u64(addr + L.bytes_size)
        if size > _MAX_LINETABLE:
            return b""
        return self.mem.read(addr + L.bytes_data, size)


def _u64(buf: bytes, off: int) -> int:
    return int.from_bytes(buf[off : off + 8], "little")
