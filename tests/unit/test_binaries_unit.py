"""The locator rules of stax.binaries: which file (or image) a recorded binary is read from,
on hand-built Binary records and on real processes whose files were deleted or replaced."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stax.binaries import DELETED, Binary, Pins, display, locate, mapped_build_id, vdso_image
from stax.capture import records as rec
from stax.profile.tables import Profile
from stax.symbols import Symbolizer, read_build_id

SLEEP = shutil.which("sleep") or "/bin/sleep"
ROOT_USER = os.geteuid() == 0


def _bin(path: bytes, bid: str | None = None, pid: int = 0, start: int = 0,
         end: int = 0) -> Binary:
    return Binary(display(path), bid, pid, path, start, end)


def _exec_range(pid: int, raw: bytes) -> tuple[int, int]:
    with open(f"/proc/{pid}/maps", "rb") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and b"x" in parts[1] and parts[5].rstrip(b"\n") == raw:
                lo, hi = parts[0].split(b"-")
                return int(lo, 16), int(hi, 16)
    raise AssertionError(f"{raw!r} not mapped in {pid}")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], bytes]]:
    """A copy of sleep(1) under a non-UTF-8 name, running."""
    exe = os.fsencode(tmp_path) + b"/sl\xff\xfe"
    shutil.copy(SLEEP, exe)
    proc = subprocess.Popen([exe, "30"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:  # exec is complete once the program's code is mapped
            if _exec_range(proc.pid, exe):
                break
        except (OSError, AssertionError):
            pass
        time.sleep(0.01)
    try:
        yield proc, exe
    finally:
        proc.kill()
        proc.wait()


def test_display_escapes_bytes_that_are_not_utf8() -> None:
    assert display(b"/tmp/x/w\xff\xfe") == "/tmp/x/w\\xff\\xfe"
    assert display("/tmp/é".encode()) == "/tmp/é"


def test_plain_path_with_and_without_build_id(tmp_path: Path) -> None:
    exe = os.fsencode(tmp_path) + b"/w\xff\xfe"
    shutil.copy(SLEEP, exe)
    bid = read_build_id(os.fsdecode(exe))
    assert bid
    loc = locate(_bin(exe))
    assert loc.ok and loc.how == "path" and os.fsencode(loc.path or "") == exe
    assert loc.build_id == bid
    assert locate(_bin(exe, bid.upper())).ok  # build-ids compare case-insensitively
    bad = locate(_bin(exe, "ab" * 20))
    assert not bad.ok and bad.problem == "mismatch" and "build-id differs" in bad.reason
    gone = locate(_bin(exe + b"x"))
    assert not gone.ok and gone.problem == "missing" and "not found" in gone.reason
    assert "\\xff\\xfe" in gone.reason  # reasons show the name escaped


def test_deleted_name_needs_a_build_id_to_be_trusted(tmp_path: Path) -> None:
    exe = os.fsencode(tmp_path) + b"/prog"
    shutil.copy(SLEEP, exe)
    bid = read_build_id(os.fsdecode(exe))
    loc = locate(_bin(exe + DELETED))
    assert not loc.ok and loc.problem == "mismatch"
    loc = locate(_bin(exe + DELETED, bid))
    assert loc.ok and loc.how == "path"


def test_special_names() -> None:
    for name in (b"[heap]", b"[stack]", b"", b"[anon]"):
        loc = locate(_bin(name))
        assert not loc.ok and loc.problem == "nofile"
    data, bid = vdso_image()
    if data is None:
        pytest.skip("no vDSO")
    loc = locate(_bin(b"[vdso]"))
    assert loc.ok and loc.data == data and loc.how == "vdso"
    assert locate(_bin(b"[vdso]", bid)).ok
    loc = locate(_bin(b"[vdso]", "cd" * 20))
    assert not loc.ok and loc.problem == "mismatch"


def test_live_process_in_our_root_reads_the_name_itself(
        running: tuple[subprocess.Popen[bytes], bytes]) -> None:
    # the same file as /proc/PID/root/NAME, by a name that still opens once the process exited
    proc, exe = running
    lo, hi = _exec_range(proc.pid, exe)
    loc = locate(_bin(exe, None, proc.pid, lo, hi))
    assert loc.ok and loc.how == "path" and loc.path == os.fsdecode(exe)


def test_live_process_in_another_root_reads_through_its_root(
        running: tuple[subprocess.Popen[bytes], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    import stax.binaries as binaries

    proc, exe = running
    monkeypatch.setattr(binaries, "_shares_our_root", lambda proc: False)  # a container
    lo, hi = _exec_range(proc.pid, exe)
    loc = locate(_bin(exe, None, proc.pid, lo, hi))
    assert loc.ok and loc.how == "root"
    assert loc.path == os.fsdecode(b"/proc/%d/root" % proc.pid + exe)
    pins = Pins()
    b = _bin(exe, None, proc.pid, lo, hi)
    pins.consider(b)
    assert b.pinned is None and pins.kept == 0  # reachable by name: nothing kept


def test_deleted_binary_of_a_live_process(running: tuple[subprocess.Popen[bytes],
                                                         bytes]) -> None:
    proc, exe = running
    bid = read_build_id(os.fsdecode(exe))
    lo, hi = _exec_range(proc.pid, exe)
    os.unlink(exe)
    raw = exe + DELETED
    assert mapped_build_id(proc.pid, raw, lo, hi) == bid
    loc = locate(_bin(raw, bid, proc.pid, lo, hi))
    assert loc.ok and loc.build_id == bid
    assert loc.how == ("map_files" if ROOT_USER else "exe")
    # without a build-id the mapping itself is still trusted (it is the very file mapped)
    assert locate(_bin(raw, None, proc.pid, lo, hi)).ok
    # a range that no longer holds the file: map_files is not used for it
    other = locate(_bin(raw, bid, proc.pid, lo + 0x1000_0000, hi + 0x1000_0000))
    assert other.how != "map_files"

    pins = Pins()
    b = _bin(raw, bid, proc.pid, lo, hi)
    pins.consider(b)
    assert b.pinned is not None and pins.stats()["kept_open"] == 1
    proc.kill()
    proc.wait()
    loc = locate(b)  # the process is gone: the descriptor kept at first sight still reads
    assert loc.ok and loc.how == "pinned" and loc.build_id == bid
    assert read_build_id(loc.path or "") == bid
    unpinned = locate(_bin(raw, bid, proc.pid, lo, hi))
    assert not unpinned.ok and unpinned.problem == "missing"
    assert f"process {proc.pid} is gone" in unpinned.reason

    sym = Symbolizer()
    assert sym.offset_to_vaddr(_bin(raw, None, proc.pid, lo, hi), 0x100) is None
    assert sym.stats()["missing_files"] == 1  # counted, with the reason kept
    assert sym.offset_to_vaddr(b, 0x1000) is not None
    fd = b.pinned.fd
    b.pinned.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_replaced_binary_is_read_from_the_mapping(tmp_path: Path,
                                                  running: tuple[subprocess.Popen[bytes],
                                                                 bytes]) -> None:
    proc, exe = running
    bid = read_build_id(os.fsdecode(exe))
    lo, hi = _exec_range(proc.pid, exe)
    other = tmp_path / "other"
    shutil.copy(shutil.which("true") or "/bin/true", other)
    os.rename(other, exe)  # the name now holds another program
    raw = exe + DELETED
    assert mapped_build_id(proc.pid, raw, lo, hi) == bid
    loc = locate(_bin(raw, bid, proc.pid, lo, hi))
    assert loc.ok and loc.how in ("map_files", "exe") and loc.build_id == bid
    # recorded under its old name (a mapping seen before the rename): build-id tells them apart
    loc = locate(_bin(exe, bid, proc.pid, lo, hi))
    assert loc.ok and loc.how in ("map_files", "exe") and loc.build_id == bid
    proc.kill()
    proc.wait()
    loc = locate(_bin(raw, bid, proc.pid, lo, hi))
    assert not loc.ok and loc.problem == "mismatch"


def test_pins_are_bounded(running: tuple[subprocess.Popen[bytes], bytes]) -> None:
    proc, exe = running
    lo, hi = _exec_range(proc.pid, exe)
    os.unlink(exe)
    pins = Pins(limit=0)
    b = _bin(exe + DELETED, None, proc.pid, lo, hi)
    pins.consider(b)
    assert b.pinned is None and pins.stats() == {"kept_open": 0, "keep_failed": 0,
                                                  "over_limit": 1}


def test_mmap_record_name_stays_bytes() -> None:
    name = b"/opt/w\xff\xfe"
    body = (rec._mmap2.pack(7, 7, 0x400000, 0x1000, 0) + bytes(24)
            + (5).to_bytes(4, "little") + bytes(4) + name + b"\0" * (8 - len(name) % 8))
    tail = rec._id_tail.pack(7, 7, 123, 0, 0, 0)
    size = 8 + len(body) + len(tail)
    buf = rec._hdr.pack(rec.RECORD_MMAP2, 0, size) + body + tail
    p = Profile(None)
    p.ingest(buf)
    b = p.binaries[2]
    assert (b.raw, b.path, b.name) == (name, "/opt/w\\xff\\xfe", "w\\xff\\xfe")
    assert (b.pid, b.start, b.end) == (7, 0x400000, 0x401000)


def test_seed_from_proc_keeps_a_deleted_binary(running: tuple[subprocess.Popen[bytes],
                                                               bytes]) -> None:
    proc, exe = running
    bid = read_build_id(os.fsdecode(exe))
    os.unlink(exe)
    p = Profile(Symbolizer())
    p.seed_from_proc(proc.pid, 0)
    mine = [b for b in p.binaries if b.raw == exe + DELETED]
    assert len(mine) == 1
    b = mine[0]
    assert b.build_id == bid and b.pinned is not None
    assert b.path == os.fsdecode(exe + DELETED).encode("utf-8", "surrogateescape").decode(
        "utf-8", "backslashreplace")


def test_proc_link_must_name_the_recorded_file(tmp_path: Path) -> None:
    from stax.binaries import _link_names

    link = os.fsencode(tmp_path) + b"/link"
    os.symlink(b"/var/lib/ctr/merged/usr/bin/w\xff (deleted)", link)
    assert _link_names(link, b"/var/lib/ctr/merged/usr/bin/w\xff")
    assert _link_names(link, b"/usr/bin/w\xff (deleted)")  # as seen inside a container
    assert not _link_names(link, b"/usr/bin/w")
    assert not _link_names(link, b"w\xff")
    assert not _link_names(link + b"x", b"/usr/bin/w\xff")


def test_a_fifo_at_the_name_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = os.fsencode(tmp_path) + b"/prog"
    os.mkfifo(fifo)
    loc = locate(_bin(fifo))
    assert not loc.ok and loc.problem == "bad" and "not a regular file" in loc.reason
