"""Reading another process's memory: ``process_vm_readv`` (one system call, no ptrace stop),
with ``/proc/PID/mem`` as the fallback where that call is not available. Either needs the
permission ptrace would (root, or the same uid under the Yama ptrace_scope in force)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

__all__ = ["RemoteReadError", "ProcessMemory"]


class RemoteReadError(OSError):
    """A read of the target's memory failed (unmapped address, target gone, no permission)."""


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _load_vm_readv():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.process_vm_readv
    except (OSError, AttributeError):
        return None
    fn.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(_IoVec),
        ctypes.c_ulong,
        ctypes.POINTER(_IoVec),
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    fn.restype = ctypes.c_ssize_t
    return fn


_VM_READV = _load_vm_readv()
_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")


class ProcessMemory:
    """Reads of one process's memory; ``close()`` releases the /proc/PID/mem descriptor if the
    fallback opened one."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd: int | None = None
        self._use_vm = _VM_READV is not None
        self._buf = ctypes.create_string_buffer(4096)
        self._local = _IoVec(ctypes.addressof(self._buf), 0)
        self._remote = _IoVec(0, 0)
        self._local_p = ctypes.byref(self._local)
        self._remote_p = ctypes.byref(self._remote)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, addr: int, size: int) -> bytes:
        if addr <= 0 or size < 0 or addr + size >= 1 << 64:
            raise RemoteReadError(f"bad address {addr:#x}")
        if size == 0:
            return b""
        if self._use_vm:
            if size > len(self._buf):
                self._buf = ctypes.create_string_buffer(size)
                self._local.iov_base = ctypes.addressof(self._buf)
            self._local.iov_len = size
            self._remote.iov_base = addr
            self._remote.iov_len = size
            n = _VM_READV(self.pid, self._local_p, 1, self._remote_p, 1, 0)
            if n == size:
                return ctypes.string_at(self._local.iov_base, size)
            err = ctypes.get_errno()
            if n < 0 and err == 38:  # ENOSYS: fall back to /proc/PID/mem
                self._use_vm = False
            else:
                msg = f"cannot read {size} bytes at {addr:#x}: {os.strerror(err)}"
                raise RemoteReadError(err, msg)
        return self._read_mem(addr, size)

    def _read_mem(self, addr: int, size: int) -> bytes:
        try:
            if self._fd is None:
                self._fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(self._fd, size, addr)
        except OSError as e:
            msg = f"cannot read {size} bytes at {addr:#x}: {e.strerror}"
            raise RemoteReadError(e.errno, msg) from e
        if len(data) != size:
            raise RemoteReadError(f"short read at {addr:#x}")
        return data

    def u64(self, addr: int) -> int:
        return _U64.unpack(self.read(addr, 8))[0]

    def i32(self, addr: int) -> int:
        return _I32.unpack(self.read(addr, 4))[0]
