"""One server per socket: an exclusive ``flock`` on ``<socket>.lock`` held for the server's
life, and unlinking only the socket this server bound. Stdlib only (the CLI uses it too).

The lock file itself is never removed: removing it would let two servers each lock a different
file of the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os


class LockHeld(Exception):
    """Another process holds the socket's lock; the message names it."""


def lock_path(socket_path: str) -> str:
    return socket_path + ".lock"


class SocketLock:
    """Take with ``acquire()`` before binding anything; released when the process ends."""

    def __init__(self, socket_path: str) -> None:
        self.socket = socket_path
        self.path = lock_path(socket_path)
        self.fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        if os.fstat(fd).st_uid != os.geteuid():  # planted by another user (e.g. in /tmp)
            os.close(fd)
            raise LockHeld(f"{self.path} belongs to another user; remove it or choose "
                           "another socket (--socket, STAX_SERVER_SOCKET)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder} holds" if holder else "its lock is held:"
            raise LockHeld(f"a stax-server already serves {self.socket} ({who} "
                           f"{self.path})") from None
        except OSError:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None


def holder(socket_path: str) -> int | None:
    """The pid written in the socket's lock file if that process is alive (a server starting
    or running), else None. Only reads: probing with flock could make a starting server fail.
    """
    try:
        fd = os.open(lock_path(socket_path), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        pid = _read_pid(fd)
    finally:
        os.close(fd)
    if not pid:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None


def identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path`` itself, or None when it does not exist."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def unlink_if_ours(path: str, ours: tuple[int, int] | None) -> bool:
    """Remove ``path`` only if it is still the socket this server created."""
    if ours is None or identity(path) != ours:
        return False
    with contextlib.suppress(OSError):
        os.unlink(path)
        return True
    return False
