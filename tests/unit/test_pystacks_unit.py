"""Unit: the pieces of the Python stack reader that need no other process: the location
table decoder against the interpreter's own ``co_lines()``, /proc/PID/maps parsing and the
interpreter file names, the version tables, and the reader pointed at this very process."""

from __future__ import annotations

import json.decoder
import os
import sys
import threading

import pytest

from stax.pystacks.codeloc import line_for_offset
from stax.pystacks.layout import layout_for, supported_versions
from stax.pystacks.locate import _name_version, find_interpreter, parse_maps
from stax.pystacks.procmem import ProcessMemory, RemoteReadError
from stax.pystacks.reader import NotPythonError, PyStackReader


def _codes(co):
    yield co
    for c in co.co_consts:
        if hasattr(c, "co_lines"):
            yield from _codes(c)


def test_line_table_matches_co_lines_for_a_real_module():
    src = open(json.decoder.__file__).read()
    checked = 0
    for co in _codes(compile(src, json.decoder.__file__, "exec")):
        for start, end, line in co.co_lines():
            for off in range(start, end, 2):
                assert line_for_offset(co.co_linetable, co.co_firstlineno, off // 2) == line
                checked += 1
    assert checked > 1000


def test_line_table_edges():
    co = compile("x = 1\ny = 2\n", "f", "exec")
    assert line_for_offset(co.co_linetable, 1, -1) is None
    assert line_for_offset(co.co_linetable, 1, 10_000) is None
    assert line_for_offset(b"\x01\x02", 1, 0) is None  # not a location table
    assert line_for_offset(b"", 1, 0) is None


def test_parse_maps_and_interpreter_names():
    text = (
        "00400000-00401000 r--p 00000000 08:01 12 /usr/bin/python3.11\n"
        "7f00-7f10 r-xp 00001000 08:01 13 /opt/lib/libpython3.11.so.1.0\n"
        "7f20-7f30 rw-p 00000000 00:00 0 \n"
        "garbage line\n"
    )
    maps = parse_maps(text)
    assert [(m.start, m.offset, m.path) for m in maps] == [
        (0x400000, 0, "/usr/bin/python3.11"),
        (0x7F00, 0x1000, "/opt/lib/libpython3.11.so.1.0"),
        (0x7F20, 0, ""),
    ]
    assert _name_version("/usr/bin/python3.11") == (3, 11)
    assert _name_version("/opt/lib/libpython3.12.so.1.0") == (3, 12)
    assert _name_version("/usr/lib/python3.11/lib-dynload/zlib.cpython-311.so") is None
    assert _name_version("/usr/bin/python3") is None


def test_versions_are_tables():
    assert "3.11" in supported_versions()
    assert layout_for((3, 11)) is not None
    assert layout_for((2, 7)) is None


def test_not_python_and_bad_reads():
    with pytest.raises(RemoteReadError):
        ProcessMemory(os.getpid()).read(8, 8)
    maps = "00400000-00401000 r-xp 00000000 08:01 12 /bin/true\n"
    assert find_interpreter(os.getpid(), None, maps_text=maps) is None


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="a 3.11 layout test")
def test_reader_reads_a_parked_thread_of_this_process():
    # (the reading thread's own frames change under the read: a parked thread's do not)
    parked, release = threading.Event(), threading.Event()

    def inner():
        parked.set()
        release.wait(30)

    def outer():
        inner()

    t = threading.Thread(target=outer)
    t.start()
    try:
        parked.wait(10)
        with PyStackReader(os.getpid()) as r:
            threads = r.stacks_by_tid()
            version = r.version
    finally:
        release.set()
        t.join()
    assert version.startswith("3.11.")
    frames = threads[t.native_id].frames
    names = [f.qualname for f in frames]
    i = names.index("test_reader_reads_a_parked_thread_of_this_process.<locals>.inner")
    assert names[i + 1] == "test_reader_reads_a_parked_thread_of_this_process.<locals>.outer"
    assert frames[i].filename == __file__
    assert frames[i].line == inner.__code__.co_firstlineno + 2
    assert names[0] == "Event.wait" or names[0] == "Condition.wait"
    assert frames[-1].is_entry and threads[t.native_id].activations() >= 2


def test_reader_refuses_a_non_python_process(tmp_path):
    import subprocess

    p = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(NotPythonError):
            PyStackReader(p.pid)
    finally:
        p.kill()
        p.wait()


class _MovingStack(PyStackReader):
    """A reader of one thread whose reads are scripted: the thread's current frame pointer
    read by read, and what each walk of its chain finds (frames, whether every link held)."""

    def __init__(self, currents, walks):
        self.currents = list(currents)
        self.walks = list(walks)

    def thread_states(self):
        return [(0x1000, 42, 1)]

    def _current_frame(self, ts):
        return self.currents.pop(0)

    def _walk(self, frame, frames):
        got, whole = self.walks.pop(0)
        frames.extend(got)
        return whole


def _f(name, entry=False, owner=0):
    from stax.pystacks.reader import PyFrame

    return PyFrame(name, "/x.py", 1, 1, entry, owner)


def test_a_stack_that_moved_under_the_walk_is_read_again_or_left_out():
    good = [_f("leaf"), _f("<module>", entry=True)]
    # the current frame changed during the first walk: the second, stable one counts
    r = _MovingStack([0xA, 0xB, 0xB, 0xB], [([_f("torn")], True), (good, True)])
    (t,) = r.threads()
    assert [f.qualname for f in t.frames] == ["leaf", "<module>"]
    assert not r.walks and not r.currents
    # a link that led nowhere, then a chain ending at a (suspended) generator's frame
    r = _MovingStack([0xA] * 5, [([_f("cut")], False),
                                 ([_f("produce", entry=True, owner=1)], True), (good, True)])
    (t,) = r.threads()
    assert [f.qualname for f in t.frames] == ["leaf", "<module>"]
    assert not r.walks and not r.currents
    # moving under every try: the thread is left out (not read)
    r = _MovingStack([0xA, 0xB, 0xB, 0xC, 0xC, 0xD], [(good, True)] * 3)
    assert r.threads() == [] and not r.walks
