"""End-to-end: the Python stacks of real CPython 3.11-3.13 processes (Debian's
/usr/bin/python3.11, statically linked with libpython and not position-independent, and pyenv
3.11/3.12/3.13 builds with a shared libpython) read from their memory: recursion, a lambda
called back from a C function (sorted), a generator, three threads matched by native thread
id, lines from co_linetable."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from stax.elfread import read_build_id
from stax.pystacks.reader import PyStackReader
from stax.symbols.elf import ElfImage

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "tests" / "workloads" / "python" / "stacks_known.py"
PYTHONS = [
    p
    for p in [
        "/usr/bin/python3.11",
        "/root/.pyenv/versions/3.11.7/bin/python3.11",
        "/root/.pyenv/versions/3.12.1/bin/python3.12",
        "/root/.pyenv/versions/3.13.0/bin/python3.13",
    ]
    if shutil.which(p)
]
# the entry frames (first frame of an interpreter activation) per version: 3.12+ run
# generators and calls of plain functions through f(*args, **kw) in the same activation
ENTRIES = {
    "3.11": {
        "worker": ["Worker.run.<locals>.<lambda>", "Worker.run", "Thread._bootstrap"],
        "gen": ["gen", "consume", "Thread._bootstrap"],
    },
    "3.12": {
        "worker": ["Worker.run.<locals>.<lambda>", "Worker.run", "Thread._bootstrap"],
        "gen": ["Thread._bootstrap"],
    },
}
ENTRIES["3.13"] = ENTRIES["3.12"]


def _line(text: str) -> int:
    return next(i for i, s in enumerate(TARGET.read_text().splitlines(), 1) if text in s)


def _settled(r: PyStackReader, main: int) -> dict:
    """The stacks once the main thread, which prints the ids just before it sleeps, sleeps."""
    import time

    sleep_line = _line("time.sleep(600)")
    deadline = time.monotonic() + 10
    while True:
        threads = r.stacks_by_tid()
        frames = threads[main].frames if main in threads else []
        if (frames and frames[0].line == sleep_line) or time.monotonic() > deadline:
            return threads
        time.sleep(0.01)


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11 here")
@pytest.mark.parametrize("python", PYTHONS)
def test_reads_known_stacks_of_a_real_interpreter(python):
    version = ""
    p = subprocess.Popen([python, str(TARGET)], stdout=subprocess.PIPE, text=True)
    try:
        main, worker, gen = (int(x) for x in p.stdout.readline().split())
        with PyStackReader(p.pid) as r:
            version = ".".join(r.version.split(".")[:2])
            assert python.endswith(version)
            threads = _settled(r, main)
            interp = r.interpreter
    finally:
        p.kill()
        p.wait()
    assert {main, worker, gen} <= set(threads)
    # the interpreter's eval function, as file offsets stax's own symbolizer agrees on
    assert interp.eval_offsets is not None
    image = ElfImage.open(interp.path, read_build_id(interp.path))
    lo, hi = interp.eval_offsets
    for off in (lo, hi - 1):
        hit = image.lookup(image.offset_to_vaddr(off))
        assert hit is not None and hit[0] == "_PyEval_EvalFrameDefault", (off, hit)
    sleep_line = _line("time.sleep(600)")

    m = threads[main].frames
    assert [f.qualname for f in m] == ["park"] + ["recurse"] * 6 + ["<module>"]
    assert m[0].line == sleep_line and m[0].filename == str(TARGET)
    assert m[1].line == _line("        park()") and m[2].line == _line("return recurse(n - 1) + 1")
    assert [f.is_entry for f in m] == [False] * 7 + [True]
    assert threads[main].activations() == 1

    w = [f.qualname for f in threads[worker].frames]
    assert w[:4] == ["park", "Worker.key", "Worker.run.<locals>.<lambda>", "Worker.run"]
    assert w[-1] == "Thread._bootstrap"
    # sorted() (C) calls the lambda, Thread.run calls its target through f(*args, **kw)
    # (CALL_FUNCTION_EX): each starts an interpreter activation of its own
    entries = [f.qualname for f in threads[worker].frames if f.is_entry]
    assert entries == ENTRIES[version]["worker"]

    g = threads[gen].frames
    assert [f.qualname for f in g[:3]] == ["park", "gen", "consume"]
    assert g[1].owner == 1  # FRAME_OWNED_BY_GENERATOR
    # 3.11: the generator runs in an activation of its own (FOR_ITER resumes it from C)
    assert [f.qualname for f in g if f.is_entry] == ENTRIES[version]["gen"]
    assert g[-1].filename.endswith("threading.py")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or "/usr/bin/python3.11" not in PYTHONS,
    reason="needs root (to switch users), setpriv and /usr/bin/python3.11",
)
def test_a_same_uid_unprivileged_reader():
    """As user nobody, read the stacks of a target that user started (no root, no staxd)."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        _read_as_nobody(Path(d) / "reader.py")


def _read_as_nobody(script: Path) -> None:
    script.write_text(
        "import subprocess, sys, os\n"
        "from stax.pystacks.reader import PyStackReader\n"
        "p = subprocess.Popen([sys.executable, sys.argv[1]], stdout=subprocess.PIPE, text=True)\n"
        "main = int(p.stdout.readline().split()[0])\n"
        "with PyStackReader(p.pid) as r:\n"
        "    print(os.getuid(), *[f.qualname for f in r.stacks_by_tid()[main].frames])\n"
        "p.kill()\n"
    )
    script.chmod(0o644)
    import elftools

    path = f"{ROOT / 'src'}:{Path(elftools.__file__).parents[1]}"
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env",
         f"PYTHONPATH={path}", "/usr/bin/python3.11", str(script), str(TARGET)],
        capture_output=True, text=True, timeout=60, cwd="/",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["65534", "park"] + ["recurse"] * 6 + ["<module>"]


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11 here")
def test_sampler_pairs_times_with_stacks():
    import time

    from stax.pystacks.sampler import PyStackSampler

    p = subprocess.Popen([PYTHONS[0], str(TARGET)], stdout=subprocess.PIPE, text=True)
    try:
        main = int(p.stdout.readline().split()[0])
        with PyStackReader(p.pid) as r:
            s = PyStackSampler(r, hz=200)
            s.start()
            time.sleep(0.5)
            now = time.monotonic_ns()
            s.stop()
    finally:
        p.kill()
        p.wait()
    store = s.store
    assert store.reads >= 20 and store.failed_reads == 0
    frames = store.at(main, now, tolerance_ns=50_000_000)
    assert frames is not None and frames[0].qualname == "park"
    assert store.at(main, now + 10**10, tolerance_ns=50_000_000) is None
    assert store.at(main + 10**6, now, tolerance_ns=50_000_000) is None


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11 here")
@pytest.mark.parametrize("python", PYTHONS)
def test_stack_reading_process_streams_the_stacks(python):
    """The stack-reading process (stax.pystacks.worker), handed the interpreter located here,
    streams the same stacks the reader sees: names, lines, entry flags, thread ids."""
    import time

    from stax.pystacks.sampler import SnapshotStore
    from stax.pystacks.stream import PyStackStream

    p = subprocess.Popen([python, str(TARGET)], stdout=subprocess.PIPE, text=True)
    try:
        main, worker, gen = (int(x) for x in p.stdout.readline().split())
        with PyStackReader(p.pid) as r:
            direct = _settled(r, main)
            interp = r.interpreter
        store = SnapshotStore()
        first = []
        stream = PyStackStream(p.pid, interp, 300, store, on_first=lambda: first.append(1))
        assert stream.start()
        deadline = time.monotonic() + 10
        while store.reads < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        now = time.monotonic_ns()
        stream.stop()
    finally:
        p.kill()
        p.wait()
    assert stream.running and first == [1] and stream.problem is None
    assert store.reads >= 30 and store.failed_reads == 0
    for tid in (main, worker, gen):
        got = store.at(tid, now, tolerance_ns=10**9)
        assert got is not None
        if tid == main:  # parked for good: the very same frames
            assert got == tuple(direct[tid].frames)
        else:
            assert [f.qualname for f in got][-1] == [f.qualname for f in direct[tid].frames][-1]


def test_stack_reading_process_says_why_it_cannot_read(tmp_path):
    import time

    from stax.pystacks.locate import Interpreter
    from stax.pystacks.sampler import SnapshotStore
    from stax.pystacks.stream import PyStackStream

    p = subprocess.Popen(["sleep", "30"])
    try:
        store = SnapshotStore()
        # a process with nothing at that address: every read fails, and it says so
        stream = PyStackStream(p.pid, Interpreter("/x/python3.11", 0, 0x1000, (3, 11, 4), None),
                               100, store)
        assert stream.start()
        deadline = time.monotonic() + 10
        while store.failed_reads < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        stream.stop()
    finally:
        p.kill()
        p.wait()
    assert store.failed_reads >= 3 and store.reads == 0 and not stream.running
    stream = PyStackStream(2**22 + 12345, Interpreter("/x/python3.11", 0, 0x1000, (3, 11, 4),
                                                      None), 100, SnapshotStore())
    assert stream.start()
    stream.stop()
    time.sleep(0.1)


@pytest.mark.skipif(not any("3.13" in p for p in PYTHONS), reason="no CPython 3.13 here")
def test_a_313_interpreter_describes_its_structs_itself():
    """The _Py_DebugOffsets at the start of a live 3.13's _PyRuntime, read, give the offsets
    of stax's 3.13 table (the reader uses the interpreter's own when they differ)."""
    from stax.pystacks.debugoffsets import from_runtime
    from stax.pystacks.layout import layout_for

    python = next(p for p in PYTHONS if "3.13" in p)
    p = subprocess.Popen([python, str(TARGET)], stdout=subprocess.PIPE, text=True)
    try:
        main = int(p.stdout.readline().split()[0])
        with PyStackReader(p.pid) as r:
            table = layout_for((3, 13))
            assert from_runtime(r.mem, r.interpreter.runtime_addr, table) == table
            assert r.layout == table
            assert [f.qualname for f in _settled(r, main)[main].frames][:2] == ["park", "recurse"]
    finally:
        p.kill()
        p.wait()


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11 here")
def test_stack_reading_process_stops_on_a_target_no_longer_the_requesters():
    """Run for a requester (staxd passes its uid) that the target does not belong to, as after
    an exec of a setuid program: it writes no snapshot and ends."""
    from stax.pystacks.worker import command

    p = subprocess.Popen([PYTHONS[0], str(TARGET)], stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()
        with PyStackReader(p.pid) as r:
            spec = r.interpreter.spec()
        assert os.stat(f"/proc/{p.pid}").st_uid != 54321
        out = subprocess.run(command(p.pid, 100, spec, owner=54321), capture_output=True,
                             timeout=30)
        assert out.returncode == 0 and b'"s"' not in out.stdout, out.stdout[:300]
        assert p.poll() is None  # the target itself runs on
    finally:
        p.kill()
        p.wait()
