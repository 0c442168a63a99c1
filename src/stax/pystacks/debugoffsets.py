"""The struct offsets a CPython 3.13 interpreter publishes about itself: ``_PyRuntime`` starts
with ``_Py_DebugOffsets`` (the cookie ``xdebugpy``, the version as ``PY_VERSION_HEX``, then
tables of uint64 offsets per struct). Read from the target, they replace the 3.13 table of
stax.pystacks.layout, so a build whose structs differ from the common one (another configure,
a debug build) is read right. Only the 3.13 arrangement of that header is known here: another
version keeps its table (3.14 rearranged the header and changed the frame itself)."""

from __future__ import annotations

import dataclasses

from stax.pystacks.layout import Layout

__all__ = ["COOKIE", "from_runtime", "layout_from"]

COOKIE = b"xdebugpy"
_WORDS = 72  # uint64s after the cookie that the 3.13 header has up to the unicode object's

# index (in the uint64s after the cookie) of each Layout field, in 3.13's _Py_DebugOffsets
_FIELDS_313 = {
    "runtime_interpreters_head": 4,
    "interp_next": 7,
    "interp_threads_head": 8,
    "tstate_next": 20,
    "tstate_interp": 21,
    "tstate_current_frame": 22,
    "tstate_thread_id": 23,
    "tstate_native_thread_id": 24,
    "frame_previous": 28,
    "frame_code": 29,  # f_executable
    "frame_prev_instr": 30,  # instr_ptr
    "frame_owner": 32,
    "code_filename": 34,
    "code_qualname": 36,
    "code_linetable": 37,
    "code_firstlineno": 38,
    "code_adaptive": 42,
    "ob_type": 44,
    "bytes_size": 64,
    "bytes_data": 65,
    "unicode_state": 67,
    "unicode_length": 68,
    "unicode_ascii_data": 69,
}
_MAX_OFFSET = 1 << 20  # no struct field of the interpreter is that far in


def layout_from(raw: bytes, table: Layout) -> Layout | None:
    """``table`` with the offsets of the header in ``raw`` (the first bytes of ``_PyRuntime``);
    None when it is not a 3.13 header of a build stax can read (no cookie, another version,
    the free-threaded build, offsets out of range)."""
    if len(raw) < 8 + 8 * _WORDS or raw[:8] != COOKIE:
        return None
    words = [int.from_bytes(raw[8 + 8 * i:16 + 8 * i], "little") for i in range(_WORDS)]
    version, free_threaded = words[0], words[1]
    if (version >> 24, (version >> 16) & 0xFF) != (3, 13) or table.version != (3, 13):
        return None
    if free_threaded:
        return None  # another object header and thread state: not tabled
    values = {name: words[i] for name, i in _FIELDS_313.items()}
    if any(v >= _MAX_OFFSET for v in values.values()):
        return None
    # the compact (non-ASCII) data follows the ASCII header's two extra words
    values["unicode_compact_data"] = values["unicode_ascii_data"] + 16
    return dataclasses.replace(table, **values)


def from_runtime(mem: object, runtime_addr: int, table: Layout) -> Layout | None:
    """``layout_from`` on the header read from a live target (None if it cannot be read)."""
    try:
        raw = mem.read(runtime_addr, 8 + 8 * _WORDS)  # type: ignore[attr-defined]
    except OSError:
        return None
    return layout_from(raw, table)
