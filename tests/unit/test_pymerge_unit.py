"""PyMerge on hand-built tables: a CPython sample's interpreter activations replaced by the
Python frames of the nearest snapshot, named by qualname with the .py file as the binary; the
counts of merged samples, mismatches and misses; native samples untouched."""

from __future__ import annotations

from stax.profile.model import Tables
from stax.profile.pymerge import PyMerge
from stax.pystacks.locate import Interpreter
from stax.pystacks.reader import PyFrame

PY = "/usr/bin/python3.11"


class FakeSampler:
    def __init__(self, snaps: list[tuple[int, dict[int, tuple[PyFrame, ...]]]]) -> None:
        self.snaps = snaps

    def around(self, tid, t):
        before = [(ts, s.get(tid)) for ts, s in self.snaps if ts < t]
        after = [(ts, s.get(tid)) for ts, s in self.snaps if ts >= t]
        return (before[-1] if before else None), (after[0] if after else None)


class FakeWatch:
    pid = 10
    period_ns = 2_000_000

    def __init__(self, sampler) -> None:
        self.sampler = sampler
        self.interpreter = Interpreter(PY, 0, 0, (3, 11, 2), None, (0x1000, 0x2000))

    def tolerance_ns(self, t):
        return self.period_ns

    def trigger(self):
        self.triggered = True


def _frame(q: str, entry: bool, line: int = 5) -> PyFrame:
    return PyFrame(q, "/src/app.py", line, 1, entry, 0)


def _stack(t: Tables, frames: list[int]) -> int:
    sid = -1
    for f in reversed(frames):
        sid = t.stack_id(sid, f)
    return sid


def _names(t: Tables, sid: int) -> list[tuple[str, str]]:
    out = []
    while sid >= 0:
        f = t.funcs[t.frame_func[t.stack_frame[sid]]] if t.frame_func[t.stack_frame[sid]] >= 0 \
            else None
        out.append((f.name, f.binary) if f else ("native", ""))
        sid = t.stack_parent[sid]
    return out


def test_merges_counts_and_leaves_native_samples_alone() -> None:
    t = Tables()
    py = t.binary_id(PY, None, 10)
    libc = t.binary_id("/lib/libc.so.6", None, 10)
    leaf = t.frame_id(libc, 0x10)
    ev = t.frame_id(py, 0x1500)
    main = t.frame_id(py, 0x3000)
    stack = _stack(t, [leaf, ev, main])
    frames = (_frame("inner", False), _frame("<module>", True))
    m = PyMerge(FakeWatch(FakeSampler([(1000, {7: frames}), (5_000_000, {7: frames})])))
    merged = m.apply(t, 7, 2_000_000, stack)
    assert _names(t, merged) == [("native", ""), ("inner", "app.py"), ("<module>", "app.py"),
                                 ("native", "")]
    assert m.apply(t, 7, 2_000_000, stack) == merged  # interned once
    # two activations natively, one run of Python frames: keep native frames
    two = _stack(t, [leaf, ev, ev, main])
    assert m.apply(t, 7, 2_000_000, two) == two
    # no snapshot close enough
    assert m.apply(t, 7, 90_000_000, stack) == stack
    # not running the interpreter: not counted
    native = _stack(t, [leaf, main])
    assert m.apply(t, 7, 2_000_000, native) == native
    c = t.counts
    assert (c["python_running"], c["python_samples"], c["python_mismatches"],
            c["python_misses"]) == (4, 2, 1, 1)


def test_mmap_of_a_python_binary_triggers_location() -> None:
    w = FakeWatch(None)
    m = PyMerge(w)
    m.on_mmap(11, "/usr/bin/python3.11")
    assert not hasattr(w, "triggered")
    m.on_mmap(10, "/usr/lib/libc.so.6")
    assert not hasattr(w, "triggered")
    m.on_mmap(10, "/usr/lib/x86_64-linux-gnu/libpython3.12.so.1.0")
    assert w.triggered


def test_the_native_stack_picks_between_the_snapshots_either_side() -> None:
    """Snapshots either side that differ: the nearest first, the other when the nearest's
    interpreter activations do not match the native stack's."""
    t = Tables()
    py = t.binary_id(PY, None, 10)
    ev, main = t.frame_id(py, 0x1500), t.frame_id(py, 0x3000)
    one = (_frame("f", False), _frame("<module>", True))
    two = (_frame("cb", True), _frame("g", False), _frame("<module>", True))
    m = PyMerge(FakeWatch(FakeSampler([(1_000_000, {7: one}), (3_000_000, {7: two})])))
    single, double = _stack(t, [ev, main]), _stack(t, [ev, ev, main])
    # nearer the first snapshot: its stack, for a native stack that agrees with it
    assert [n for n, _b in _names(t, m.apply(t, 7, 1_500_000, single))] == [
        "f", "<module>", "native"]
    # nearer the first, but two activations natively: the second snapshot's stack
    assert [n for n, _b in _names(t, m.apply(t, 7, 1_500_000, double))] == [
        "cb", "g", "<module>", "native"]
    # nearer the second: its stack
    assert [n for n, _b in _names(t, m.apply(t, 7, 2_500_000, double))] == [
        "cb", "g", "<module>", "native"]
    c = t.counts
    assert (c["python_samples"], c["python_mismatches"], c["python_misses"]) == (3, 0, 0)


def test_snapshot_store_orders_two_producers_and_forgets_old_ones() -> None:
    from stax.pystacks.sampler import SnapshotStore

    s = SnapshotStore(window_s=1.0)
    a, b = (_frame("a", True),), (_frame("b", True),)
    s.add(100, {7: a}, 10)
    s.add(300, {7: a}, 10)
    s.add(200, {7: b}, 10)  # the other producer, a little behind
    assert s.around(7, 150) == ((100, a), (200, b))
    assert s.around(7, 250) == ((200, b), (300, a))
    assert s.at(7, 190, 20) == b and s.at(7, 150, 20) is None and s.at(8, 200, 20) is None
    assert (s.reads, s.read_ns, s.first_ns) == (3, 30, 100)
    assert s.around(7, 301) == ((300, a), None)  # the newest is the last
    s.add(2_000_000_000, {7: b}, 10)
    assert s.around(7, 150) == (None, (2_000_000_000, b))  # older than the window: gone


def test_elf_symbols_read_with_struct_match_pyelftools() -> None:
    import sys

    import pytest

    from stax.pystacks import elfsyms, locate

    names = ("_PyRuntime", "Py_Version", "PyCode_Type", "_PyEval_EvalFrameDefault", "nope_x")
    paths = [p for p in ("/usr/bin/python3.11", sys.executable) if __import__("os").path.exists(p)]
    checked = 0
    for path in paths:
        quick = elfsyms.read_symbols(path, names)
        if quick is None:
            continue
        orig = elfsyms.read_symbols
        try:
            elfsyms.read_symbols = lambda p, n: None  # type: ignore[assignment]
            slow = locate._elf_symbols(path, names)
        finally:
            elfsyms.read_symbols = orig  # type: ignore[assignment]
        assert quick == slow and "nope_x" not in quick[0]
        checked += 1
    if not checked:
        pytest.skip("no 64-bit ELF python here")


def test_elf_symbols_of_files_that_are_not_elf(tmp_path) -> None:
    import pytest

    from stax.pystacks.elfsyms import read_symbols

    text = tmp_path / "python3.11"
    text.write_bytes(b"#!/bin/sh\n")
    assert read_symbols(str(text), ("_PyRuntime",)) is None
    cut = tmp_path / "cut"
    cut.write_bytes(open("/bin/true", "rb").read()[:100])
    with pytest.raises(ValueError):
        read_symbols(str(cut), ("_PyRuntime",))


def test_a_thread_back_on_the_cpu_gets_the_stack_read_after_it_woke() -> None:
    """A snapshot read while the thread slept shows the stack it woke with, which it leaves at
    once: a sample after the switch-in takes the later snapshot even when the earlier is
    nearer."""
    t = Tables()
    py = t.binary_id(PY, None, 10)
    ev, main = t.frame_id(py, 0x1500), t.frame_id(py, 0x3000)
    asleep = (_frame("beta", False), _frame("<module>", True))
    spinning = (_frame("spin", False), _frame("beta", False), _frame("<module>", True))
    m = PyMerge(FakeWatch(FakeSampler([(1_000_000, {7: asleep}), (3_000_000, {7: spinning})])))
    stack = _stack(t, [ev, main])
    assert [n for n, _b in _names(t, m.apply(t, 7, 1_500_000, stack))][0] == "beta"
    m.on_switch_in(10, 7, 1_200_000)
    m.on_switch_in(11, 7, 1_300_000)  # another process's thread: not this one
    assert [n for n, _b in _names(t, m.apply(t, 7, 1_500_000, stack))][0] == "spin"
