"""_Py_DebugOffsets (CPython 3.13) read into a Layout: a header built from the 3.13 table gives
the table back; a field the header moves is taken from it; anything else keeps the table."""

from __future__ import annotations

import dataclasses

from stax.pystacks.debugoffsets import _FIELDS_313, _WORDS, COOKIE, layout_from
from stax.pystacks.layout import layout_for

T313 = layout_for((3, 13))


def _header(version: int = 0x030D00F0, free_threaded: int = 0, **moved: int) -> bytes:
    assert T313 is not None
    words = [0] * _WORDS
    words[0], words[1] = version, free_threaded
    for name, i in _FIELDS_313.items():
        words[i] = moved.get(name, getattr(T313, name))
    return COOKIE + b"".join(w.to_bytes(8, "little") for w in words)


def test_the_header_of_the_common_build_is_the_table() -> None:
    assert layout_from(_header(), T313) == T313


def test_offsets_the_header_moves_are_taken_from_it() -> None:
    lay = layout_from(_header(ob_type=24, tstate_native_thread_id=200, unicode_ascii_data=48),
                      T313)
    assert lay is not None and lay != T313
    assert (lay.ob_type, lay.tstate_native_thread_id, lay.unicode_ascii_data,
            lay.unicode_compact_data) == (24, 200, 48, 64)
    assert dataclasses.replace(lay, ob_type=8, tstate_native_thread_id=160,
                               unicode_ascii_data=40, unicode_compact_data=56) == T313


def test_other_headers_keep_the_table() -> None:
    assert layout_from(b"xdebugpz" + _header()[8:], T313) is None  # no cookie
    assert layout_from(_header()[:100], T313) is None  # cut short
    assert layout_from(_header(version=0x030E00F0), T313) is None  # 3.14: another header
    assert layout_from(_header(free_threaded=1), T313) is None
    assert layout_from(_header(frame_owner=1 << 40), T313) is None  # garbage
    t311 = layout_for((3, 11))
    assert t311 is not None and layout_from(_header(), t311) is None
