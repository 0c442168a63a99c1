"""perf_event_open(2) bindings: the attribute struct, the syscall and the ring buffer.

Knows nothing of profiles or servers: it opens events, maps buffers and hands back raw bytes.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import struct
from dataclasses import dataclass

from stax import sysctl

# --- constants from include/uapi/linux/perf_event.h -------------------------------------------

PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_CONTEXT_SWITCHES = 3
PERF_COUNT_SW_DUMMY = 9

SAMPLE_IP = 1 << 0
SAMPLE_TID = 1 << 1
SAMPLE_TIME = 1 << 2
SAMPLE_ADDR = 1 << 3
SAMPLE_READ = 1 << 4
SAMPLE_CALLCHAIN = 1 << 5
SAMPLE_ID = 1 << 6
SAMPLE_CPU = 1 << 7
SAMPLE_PERIOD = 1 << 8
SAMPLE_STREAM_ID = 1 << 9
SAMPLE_RAW = 1 << 10
SAMPLE_REGS_USER = 1 << 12
SAMPLE_STACK_USER = 1 << 13
SAMPLE_IDENTIFIER = 1 << 16

# bit positions in the flags word of perf_event_attr
FLAG_BITS = {
    "disabled": 0,
    "inherit": 1,
    "pinned": 2,
    "exclusive": 3,
    "exclude_user": 4,
    "exclude_kernel": 5,
    "exclude_hv": 6,
    "exclude_idle": 7,
    "mmap": 8,
    "comm": 9,
    "freq": 10,
    "inherit_stat": 11,
    "enable_on_exec": 12,
    "task": 13,
    "watermark": 14,
    "mmap_data": 17,
    "sample_id_all": 18,
    "exclude_callchain_kernel": 21,
    "exclude_callchain_user": 22,
    "mmap2": 23,
    "comm_exec": 24,
    "use_clockid": 25,
    "context_switch": 26,
    "build_id": 34,
}

PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_PERIOD = 0x40082404
PERF_EVENT_IOC_SET_OUTPUT = 0x2405
PERF_EVENT_IOC_ID = 0x80082407

CLOCK_MONOTONIC = 1
ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7

_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass
class EventAttr:
    """The subset of perf_event_attr stax sets."""

    type: int = PERF_TYPE_SOFTWARE
    config: int = PERF_COUNT_SW_CPU_CLOCK
    sample_period_or_freq: int = 0
    sample_type: int = 0
    flags: tuple[str, ...] = ()
    wakeup: int = 0  # wakeup_events, or wakeup_watermark (bytes) when "watermark" is set
    sample_regs_user: int = 0
    sample_stack_user: int = 0
    clockid: int = CLOCK_MONOTONIC
    sample_max_stack: int = 0

    def pack(self) -> bytes:
        flags = 0
        for name in self.flags:
            flags |= 1 << FLAG_BITS[name]
        buf = bytearray(ATTR_SIZE)
        struct.pack_into(
            "<IIQQQQQII", buf, 0,
            self.type, ATTR_SIZE, self.config, self.sample_period_or_freq,
            self.sample_type, 0, flags, self.wakeup, 0,
        )
        struct.pack_into("<QIi", buf, 80, self.sample_regs_user, self.sample_stack_user,
                         self.clockid)
        struct.pack_into("<H", buf, 108, self.sample_max_stack)
        return bytes(buf)


class PerfError(OSError):
    """perf_event_open failed; errno tells why."""


def perf_event_open(attr: EventAttr, pid: int, cpu: int, group_fd: int = -1) -> int:
    """Open one event; returns the descriptor (close-on-exec)."""
    nr = _NR_PERF_EVENT_OPEN.get(os.uname().machine)
    if nr is None:
        raise PerfError(errno.ENOSYS, f"perf_event_open unsupported on {os.uname().machine}")
    raw = attr.pack()
    cbuf = ctypes.create_string_buffer(raw, len(raw))
    fd = _libc.syscall(nr, cbuf, ctypes.c_int(pid), ctypes.c_int(cpu), ctypes.c_int(group_fd),
                       ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise PerfError(err, os.strerror(err))
    return fd


def ioctl(fd: int, request: int, arg: int = 0) -> None:
    fcntl.ioctl(fd, request, arg)


def set_output(fd: int, target_fd: int) -> None:
    fcntl.ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, target_fd)


def event_id(fd: int) -> int:
    """The kernel's id for an event (what PERF_SAMPLE_IDENTIFIER reports; inherited copies in
    child threads and processes report their parent's id)."""
    buf = bytearray(8)
    fcntl.ioctl(fd, PERF_EVENT_IOC_ID, buf)
    return struct.unpack("<Q", buf)[0]


def online_cpus() -> list[int]:
    """CPU numbers from /sys/devices/system/cpu/online (e.g. "0-3,6")."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


def paranoid_level() -> int:
    return sysctl.read_int("kernel.perf_event_paranoid", 2)


_HEAD_OFF = 1024  # perf_event_mmap_page.data_head
_TAIL_OFF = 1032  # perf_event_mmap_page.data_tail


class RingBuffer:
    """One mmap'd perf ring buffer: a control page followed by 2^n data pages.

    The reader loads data_head, copies out [tail, head) (stitching the wrap-around so a record
    split across the end comes out whole), then stores data_tail. On x86-64 loads are not
    reordered with other loads and stores are not reordered with earlier loads, so the two
    barriers perf uses (rmb after reading data_head, mb before writing data_tail) are implied by
    the hardware; Python's struct access is a plain load/store.
    """

    def __init__(self, fd: int, data_pages: int) -> None:
        if data_pages & (data_pages - 1):
            raise ValueError("data_pages must be a power of two")
        self.fd = fd
        self.page = mmap.PAGESIZE
        self.size = data_pages * self.page
        self.map = mmap.mmap(fd, self.page + self.size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.tail = struct.unpack_from("<Q", self.map, _TAIL_OFF)[0]
        self.bytes_read = 0

    def read(self) -> bytes:
        """All complete records the kernel has written since the last read, as one bytes."""
        head = struct.unpack_from("<Q", self.map, _HEAD_OFF)[0]
        tail = self.tail
        if head == tail:
            return b""
        size = self.size
        start = tail % size
        length = head - tail
        base = self.page
        if start + length <= size:
            data = self.map[base + start: base + start + length]
        else:
            first = size - start
            data = self.map[base + start: base + size] + self.map[base: base + length - first]
        self.tail = head
        struct.pack_into("<Q", self.map, _TAIL_OFF, head)
        self.bytes_read += length
        return data

    def unread(self) -> int:
        try:
            return struct.unpack_from("<Q", self.map, _HEAD_OFF)[0] - self.tail
        except ValueError:  # unmapped meanwhile
            return 0

    def close(self) -> None:
        try:
            self.map.close()
        except (BufferError, ValueError):
            pass
