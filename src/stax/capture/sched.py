"""Scheduler tracepoints for off-CPU capture: finding tracefs, the event ids and payload layouts.

Owns the tracefs probe (mounting it when it is missing and stax may), and decoding of the RAW
payloads of sched:sched_switch and sched:sched_waking.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import struct
from dataclasses import dataclass, field

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

# trace_entry.common_flags bits (kernel/trace/trace.h): the event fired in interrupt context
TRACE_FLAG_HARDIRQ = 0x08
TRACE_FLAG_SOFTIRQ = 0x10
TRACE_FLAG_NMI = 0x40

_FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                    r"\s*signed:(?P<signed>\d)")


_STRUCT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


@dataclass(frozen=True, slots=True)
class Field:
    offset: int
    size: int
    signed: bool

    def read(self, raw: bytes) -> int:
        end = self.offset + self.size
        if end > len(raw):
            return 0
        code = _STRUCT_CODES.get(self.size)
        if code is None:
            return int.from_bytes(raw[self.offset:end], "little", signed=self.signed)
        return struct.unpack_from("<" + (code if self.signed else code.upper()), raw,
                                  self.offset)[0]


def parse_format(text: str) -> tuple[int, dict[str, Field]]:
    """The event id and named fields of a tracefs ``format`` file."""
    ev_id = -1
    fields: dict[str, Field] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ID:"):
            ev_id = int(line[3:].strip())
            continue
        m = _FIELD.search(line)
        if m is None:
            continue
        decl = m.group("decl").strip()
        name = decl.split()[-1].split("[")[0]
        fields[name] = Field(int(m.group("off")), int(m.group("size")),
                             m.group("signed") == "1")
    return ev_id, fields


# Layouts of this kernel generation (used when the format files cannot be read, e.g. in tests).
_DEFAULT_SWITCH = {"common_flags": Field(2, 1, False), "common_pid": Field(4, 4, True),
                   "prev_pid": Field(24, 4, True), "prev_state": Field(32, 8, True),
                   "next_pid": Field(56, 4, True)}
_DEFAULT_WAKING = {"common_flags": Field(2, 1, False), "common_pid": Field(4, 4, True),
                   "pid": Field(24, 4, True), "target_cpu": Field(32, 4, True)}


@dataclass
class Formats:
    """Where the fields stax reads live in each tracepoint's RAW payload."""

    switch: dict[str, Field] = field(default_factory=lambda: dict(_DEFAULT_SWITCH))
    waking: dict[str, Field] = field(default_factory=lambda: dict(_DEFAULT_WAKING))

    def switch_out(self, raw: bytes) -> tuple[int, int]:
        """(prev_pid, prev_state) of a sched_switch payload."""
        f = self.switch
        return f["prev_pid"].read(raw), f["prev_state"].read(raw)

    def waking_of(self, raw: bytes) -> tuple[int, bool]:
        """(woken pid, fired in interrupt context) of a sched_waking payload."""
        f = self.waking
        flags = f["common_flags"].read(raw)
        return f["pid"].read(raw), bool(flags & (TRACE_FLAG_HARDIRQ | TRACE_FLAG_SOFTIRQ
                                                  | TRACE_FLAG_NMI))


@dataclass
class Probe:
    """What the scheduler tracepoints look like on this host, or why they are unavailable."""

    tracefs: str | None = None
    switch_id: int = -1
    waking_id: int = -1
    formats: Formats = field(default_factory=Formats)
    mounted_by_stax: bool = False
    problem: str | None = None  # why off-CPU capture is unavailable
    waking_problem: str | None = None  # why wakeups are unavailable (switches may still work)

    @property
    def switch_ok(self) -> bool:
        return self.switch_id >= 0

    @property
    def waking_ok(self) -> bool:
        return self.waking_id >= 0


def _mount_tracefs(path: str) -> str | None:
    """Mount tracefs at ``path``; None on success, else the reason it failed."""
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.mount(b"nodev", path.encode(), b"tracefs", ctypes.c_ulong(0), None)
    if rc != 0:
        err = ctypes.get_errno()
        return f"mount -t tracefs nodev {path} failed: {os.strerror(err)}"
    return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def tracefs_dirs() -> tuple[str, ...]:
    """Where tracefs is looked for: ``$STAX_TRACEFS`` alone when it is set, else the usual
    places."""
    override = os.environ.get("STAX_TRACEFS")
    return (override,) if override else TRACEFS_DIRS


def use_switch_format(pr: Probe, text: str) -> bool:
    """Take sched_switch's format file into ``pr``; False (and switch_id -1) when it lacks the
    fields off-CPU capture reads."""
    pr.switch_id, fields = parse_format(text)
    if not {"prev_pid", "prev_state"} <= fields.keys():
        pr.switch_id = -1
        return False
    pr.formats.switch = fields
    return True


def use_waking_format(pr: Probe, text: str) -> None:
    """Take sched_waking's format file into ``pr``, or say why wakeups cannot use it."""
    pr.waking_id, fields = parse_format(text)
    if not {"pid", "common_flags"} <= fields.keys():
        pr.waking_id = -1
        pr.waking_problem = "sched:sched_waking has an unexpected format"
        return
    pr.formats.waking = fields


def probe(allow_mount: bool = True) -> Probe:
    """Find tracefs and the sched_switch / sched_waking tracepoints.

    ``$STAX_TRACEFS`` names the tracefs directory to use instead of the usual places. When no
    tracefs is mounted, stax mounts it at /sys/kernel/tracing if it runs as root.
    """
    override = os.environ.get("STAX_TRACEFS")
    pr = Probe()
    base = closed = None
    for d in tracefs_dirs():
        try:
            os.stat(os.path.join(d, "events"))
        except PermissionError:  # there, but closed to this user
            closed = closed or d
            continue
        except OSError:
            continue
        base = d
        break
    if base is None and closed is not None:  # mounting another would not help: say so
        pr.problem = unreadable_problem(closed)
        return pr
    if base is None and not override and allow_mount:
        target = TRACEFS_DIRS[0]
        if os.geteuid() != 0:
            pr.problem = (f"tracefs is not mounted at {target} and mounting it needs root "
                          f"(sudo mount -t tracefs nodev {target})")
            return pr
        if not os.path.isdir(target):
            pr.problem = f"tracefs is not available ({target} does not exist)"
            return pr
        err = _mount_tracefs(target)
        if err is not None:
            pr.problem = f"tracefs is not mounted and stax could not mount it ({err})"
            return pr
        pr.mounted_by_stax = True
        base = target
    if base is None:
        where = override or " or ".join(TRACEFS_DIRS)
        pr.problem = f"tracefs not found at {where}"
        return pr
    pr.tracefs = base
    sw = _read(os.path.join(base, "events", "sched", "sched_switch", "format"))
    if sw is None:
        if not os.access(os.path.join(base, "events"), os.R_OK | os.X_OK):
            pr.problem = f"no permission to read {base}/events (run as root or through staxd)"
        else:
            pr.problem = f"this kernel has no sched:sched_switch tracepoint under {base}"
        return pr
    if not use_switch_format(pr, sw):
        pr.problem = "sched:sched_switch has an unexpected format (no prev_pid/prev_state)"
        return pr
    wk = _read(os.path.join(base, "events", "sched", "sched_waking", "format"))
    if wk is None:
        pr.waking_problem = f"this kernel has no sched:sched_waking tracepoint under {base}"
        return pr
    use_waking_format(pr, wk)
    return pr


def _is_tracefs_mount(path: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    try:
        with open(mountinfo) as f:
            for line in f:
                fields = line.split()
                # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE OPTS
                if len(fields) > 5 and fields[4] == path and "-" in fields:
                    if fields[fields.index("-") + 1] == "tracefs":
                        return True
    except OSError:
        pass
    return False


def unreadable_problem(d: str, uid: int | None = None, mountinfo: str = "/proc/self/mountinfo"
                       ) -> str:
    """Why off-CPU capture is unavailable when tracefs directory ``d`` exists but this user may
    not look inside (tracefs is mode 0700 on many systems): what is wrong, and the fixes."""
    uid = os.geteuid() if uid is None else uid
    try:
        st = os.stat(d)
        how = f"mode {st.st_mode & 0o7777:04o}, owner uid {st.st_uid}"
    except OSError as e:
        how = e.strerror or str(e)
    what = (f"tracefs is mounted at {d} but" if _is_tracefs_mount(d, mountinfo)
            else f"{d} is")
    return (f"{what} not readable by uid {uid} ({how}); use staxd (sudo stax setup), run as "
            f"root, or let this user read it (sudo chmod 0755 {d}) with "
            "kernel.perf_event_paranoid=-1")


def open_error(e: OSError, what: str) -> str:
    """A user-facing reason a tracepoint event could not be opened."""
    if e.errno in (errno.EACCES, errno.EPERM):
        return (f"not allowed to open {what} (perf_event_paranoid needs to be -1, or run as "
                "root / through staxd)")
    return f"could not open {what}: {e.strerror}"

