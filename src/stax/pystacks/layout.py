"""Struct layouts of the CPython interpreter per version, as tables of byte offsets (x86-64 and
other LP64 targets). Only what the frame walk reads is listed. A version without a table is not
read (3.14+ are not tabled yet). Since 3.13 ``_PyRuntime`` starts with ``_Py_DebugOffsets``: a
3.13 target's own offsets replace its table where they differ (stax.pystacks.debugoffsets)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FRAME_OWNED_BY_CSTACK",
    "FRAME_OWNED_BY_FRAME_OBJECT",
    "FRAME_OWNED_BY_GENERATOR",
    "FRAME_OWNED_BY_THREAD",
    "Layout",
    "layout_for",
    "supported_versions",
]


@dataclass(frozen=True, slots=True)
class Layout:
    version: tuple[int, int]
    # _PyRuntimeState
    runtime_interpreters_head: int
    # PyInterpreterState
    interp_next: int
    interp_threads_head: int
    # PyThreadState
    tstate_next: int
    tstate_interp: int
    tstate_cframe: int
    tstate_thread_id: int
    tstate_native_thread_id: int
    # _PyCFrame
    cframe_current_frame: int
    # _PyInterpreterFrame
    frame_code: int
    frame_previous: int
    frame_prev_instr: int
    frame_is_entry: int  # -1: none (3.12+: a shim frame owned by the C stack marks entries)
    frame_owner: int
    # PyObject header (without Py_TRACE_REFS) and PyCodeObject
    ob_type: int
    code_firstlineno: int
    code_filename: int
    code_qualname: int
    code_linetable: int
    code_adaptive: int
    # PyASCIIObject / PyCompactUnicodeObject / PyBytesObject
    unicode_length: int
    unicode_state: int
    unicode_ascii_data: int
    unicode_compact_data: int
    bytes_size: int
    bytes_data: int
    # 3.13+: the thread state points at its current frame itself (tstate_cframe is -1)
    tstate_current_frame: int = -1


# CPython 3.11: Include/internal/pycore_runtime.h, pycore_interp.h, cpython/pystate.h,
# internal/pycore_frame.h, cpython/code.h, cpython/unicodeobject.h, cpython/bytesobject.h.
# The same for every 3.11 release build (checked against Debian's 3.11.2 and a pyenv 3.11.7).
_PY311 = Layout(
    version=(3, 11),
    runtime_interpreters_head=40,
    interp_next=0,
    interp_threads_head=16,
    tstate_next=8,
    tstate_interp=16,
    tstate_cframe=56,
    tstate_thread_id=152,
    tstate_native_thread_id=160,
    cframe_current_frame=8,
    frame_code=32,
    frame_previous=48,
    frame_prev_instr=56,
    frame_is_entry=68,
    frame_owner=69,
    ob_type=8,
    code_firstlineno=72,
    code_filename=112,
    code_qualname=128,
    code_linetable=136,
    code_adaptive=184,
    unicode_length=16,
    unicode_state=32,
    unicode_ascii_data=48,
    unicode_compact_data=72,
    bytes_size=16,
    bytes_data=32,
)

# CPython 3.12 (checked against the DWARF of a pyenv 3.12.1): _PyCFrame lost use_tracing,
# f_code moved first, entries are marked by a shim frame (owner FRAME_OWNED_BY_CSTACK), and
# str lost wstr.
_PY312 = Layout(
    version=(3, 12),
    runtime_interpreters_head=40,
    interp_next=0,
    interp_threads_head=72,
    tstate_next=8,
    tstate_interp=16,
    tstate_cframe=56,
    tstate_thread_id=136,
    tstate_native_thread_id=144,
    cframe_current_frame=0,
    frame_code=0,
    frame_previous=8,
    frame_prev_instr=56,
    frame_is_entry=-1,
    frame_owner=70,
    ob_type=8,
    code_firstlineno=68,
    code_filename=112,
    code_qualname=128,
    code_linetable=136,
    code_adaptive=192,
    unicode_length=16,
    unicode_state=32,
    unicode_ascii_data=40,
    unicode_compact_data=56,
    bytes_size=16,
    bytes_data=32,
)

# CPython 3.13 (checked against the DWARF of a pyenv 3.13.0; the default build, not the
# free-threaded one): no _PyCFrame, frames point at their code through f_executable and at the
# current instruction through instr_ptr.
_PY313 = Layout(
    version=(3, 13),
    runtime_interpreters_head=632,
    interp_next=7264,
    interp_threads_head=7344,
    tstate_next=8,
    tstate_interp=16,
    tstate_cframe=-1,
    tstate_thread_id=152,
    tstate_native_thread_id=160,
    cframe_current_frame=0,
    frame_code=0,
    frame_previous=8,
    frame_prev_instr=56,
    frame_is_entry=-1,
    frame_owner=70,
    ob_type=8,
    code_firstlineno=68,
    code_filename=112,
    code_qualname=128,
    code_linetable=136,
    code_adaptive=200,
    unicode_length=16,
    unicode_state=32,
    unicode_ascii_data=40,
    unicode_compact_data=56,
    bytes_size=16,
    bytes_data=32,
    tstate_current_frame=72,
)

_LAYOUTS = {(3, 11): _PY311, (3, 12): _PY312, (3, 13): _PY313}

# _PyInterpreterFrame.owner values (3.11, 3.12)
FRAME_OWNED_BY_THREAD = 0
FRAME_OWNED_BY_GENERATOR = 1
FRAME_OWNED_BY_FRAME_OBJECT = 2
FRAME_OWNED_BY_CSTACK = 3  # 3.12+: the shim frame each interpreter activation pushes


def layout_for(version: tuple[int, int]) -> Layout | None:
    return _LAYOUTS.get(version)


def supported_versions() -> list[str]:
    return [f"{a}.{b}" for a, b in sorted(_LAYOUTS)]
