"""Reasons of off-CPU intervals recorded without the scheduler tracepoints (profile.blockprobe),
and the ``[truncated]`` root frame."""

from __future__ import annotations

import os
import subprocess
import time

from stax.profile import offcpu
from stax.profile.blockprobe import Blocked, probe
from stax.profile.model import TRUNCATED_NAME, TRUNCATED_OFFSET, UNKNOWN_BINARY
from stax.profile.tables import Profile

S = offcpu.STATE_INTERRUPTIBLE
X86 = os.uname().machine == "x86_64"


def _b(wchan: str = "", nr: int = -1) -> Blocked:
    return Blocked(S, wchan, nr, 0, 0, b"")


def test_wchan_goes_through_the_kernel_rules_first() -> None:
    assert _b("hrtimer_nanosleep", 202).reason() == "sleep"
    assert _b("futex_wait_queue").reason() == "lock"
    assert _b("pipe_read", 0).reason() == "ipc"  # a read on a pipe, not ioR
    assert _b("do_epoll_wait").reason() == "conn"


def test_the_system_call_decides_when_wchan_says_nothing() -> None:
    if not X86:
        assert _b("", 35).reason() is None
        return
    assert _b("", 230).reason() == "sleep" and _b("wait_woken", 35).reason() == "sleep"
    assert _b("", 202).reason() == "lock" and _b("", 0).reason() == "ioR"
    assert _b("", 61).reason() == "ipc" and _b("", 232).reason() == "conn"
    assert _b("", 65).reason() == "sem" and _b("", 1).reason() == "ioW"
    assert _b("", -1).reason() is None and _b("", 39).reason() is None  # getpid: the stack


def test_probe_reads_a_sleeping_child_and_skips_a_running_one() -> None:
    child = subprocess.Popen(["sleep", "5"])
    try:
        for _ in range(100):
            b = probe(child.pid, child.pid, 2048)
            if b is not None and b.syscall >= 0:
                break
            time.sleep(0.02)
        assert b is not None and b.state == S, b
        assert b.reason() == "sleep", b
        assert b.pc and b.sp and 0 < len(b.stack) <= 2048, b
    finally:
        child.kill()
        child.wait()
    assert probe(child.pid, child.pid, 2048) is None  # gone
    assert probe(os.getpid(), os.getpid(), 64) is None  # running (this thread)


def test_truncated_frame_is_named() -> None:
    p = Profile()
    with p.lock:
        fid = p.frame_id(UNKNOWN_BINARY, TRUNCATED_OFFSET)
    assert p.funcs[p.func_of_frame(fid)].name == TRUNCATED_NAME == "[truncated]"
