"""What /proc says about a thread that just went off CPU, for off-CPU capture without the
scheduler tracepoints (no tracefs access and no staxd: perf_event_paranoid 2).

A context-switch record says *when* a thread left the CPU; this reads, moments later, *why*:
its state (``/proc/TID/stat``), the kernel function it waits in (``/proc/TID/wchan``), the
system call it is in with its user stack pointer and program counter (``/proc/TID/syscall``)
and the top of its user stack (``/proc/PID/mem``), from which the DWARF unwinder recovers the
blocking stack. All of these are open to the owner of the process (ptrace read/attach access).
The thread may have run again by the time the record is decoded: then nothing is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from stax.profile import offcpu

# x86-64 system call numbers -> reason bucket, used when wchan names no rule's function
SYSCALL_REASONS: dict[int, str] = {
    35: "sleep", 230: "sleep",  # nanosleep, clock_nanosleep
    202: "lock", 449: "lock",  # futex, futex_waitv
    65: "sem", 220: "sem",  # semop, semtimedop
    0: "ioR", 17: "ioR", 19: "ioR", 295: "ioR",  # read, pread64, readv, preadv
    1: "ioW", 18: "ioW", 20: "ioW", 296: "ioW", 74: "ioW", 75: "ioW",  # write.., fsync
    7: "conn", 23: "conn", 232: "conn", 281: "conn", 271: "conn", 270: "conn",  # poll..
    441: "conn", 42: "conn", 43: "conn", 288: "conn", 44: "conn", 45: "conn",  # connect..
    46: "conn", 47: "conn", 299: "conn", 307: "conn",
    61: "ipc", 247: "ipc", 34: "ipc", 130: "ipc", 128: "ipc", 70: "ipc", 243: "ipc",
}
_X86_64 = os.uname().machine == "x86_64"
_STATES = {"S": offcpu.STATE_INTERRUPTIBLE, "D": offcpu.STATE_UNINTERRUPTIBLE}


@dataclass(frozen=True, slots=True)
class Blocked:
    state: int  # STATE_INTERRUPTIBLE or STATE_UNINTERRUPTIBLE
    wchan: str  # "" when the kernel does not say
    syscall: int  # -1 when not in a system call
    sp: int
    pc: int
    stack: bytes  # user stack from sp (may be short or empty)

    def reason(self) -> str | None:
        """The reason bucket from the kernel's side (wchan first, then the system call), or
        None to leave it to the blocking stack's user frames."""
        if self.wchan:
            got = offcpu.classify(self.state, [self.wchan], [])
            if got != "other":
                return got
        return SYSCALL_REASONS.get(self.syscall) if _X86_64 else None


def _read(path: str) -> str | None:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def probe(pid: int, tid: int, stack_bytes: int) -> Blocked | None:
    """The blocked thread ``tid`` of ``pid`` as /proc shows it now, or None when it is running
    (or gone, or not ours to read)."""
    base = f"/proc/{pid}/task/{tid}"
    stat = _read(base + "/stat")
    if stat is None:
        return None
    state = _STATES.get(stat[stat.rfind(")") + 2:][:1])
    if state is None:
        return None
    wchan = (_read(base + "/wchan") or "").strip()
    if wchan == "0":
        wchan = ""
    nr, sp, pc = -1, 0, 0
    parts = (_read(base + "/syscall") or "").split()
    if len(parts) >= 3 and parts[0].lstrip("-").isdigit():
        try:
            nr, sp, pc = int(parts[0]), int(parts[-2], 16), int(parts[-1], 16)
        except ValueError:
            nr, sp, pc = -1, 0, 0
    stack = b""
    if sp and stack_bytes > 0:
        try:
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                stack = os.pread(fd, stack_bytes, sp)
            except OSError:
                stack = b""
            finally:
                os.close(fd)
    return Blocked(state, wchan, nr, sp, pc, stack)
