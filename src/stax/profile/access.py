"""Whose eyes a run's source files are read for: the recorded program's owner.

A program's line tables may name any path (``#line 1 "/etc/shadow"``). ``annotate`` shows a
source file only if the program's owner could read it: the run keeps the target's real and
effective uid and gid and its supplementary groups (read from ``/proc/PID/status`` when the
run starts; archives keep them in their manifest), and a file is shown only when both the
real and the effective ids may read it and search every directory on its path, by its mode
bits (root reads everything; a file or directory with a POSIX ACL is shown to root only).
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

_MAX_SOURCES = 64  # source files kept
_MAX_SOURCE_BYTES = 16 << 20
_LOCK = threading.Lock()
_SOURCES: OrderedDict[tuple[str, int, int, int, int], list[str] | None] = OrderedDict()
ANYONE = -1  # the uid/gid of an owner known to be no one in particular: only "other" bits


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int
    euid: int
    egid: int
    groups: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return "every user" if self.uid == ANYONE else f"uid {self.uid}"

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "gid": self.gid, "euid": self.euid, "egid": self.egid,
                "groups": list(self.groups)}

    @classmethod
    def from_json(cls, d: object) -> Owner | None:
        if not isinstance(d, dict):
            return None
        ids = [d.get(k) for k in ("uid", "gid", "euid", "egid")]
        groups = d.get("groups", [])
        if not all(type(i) is int and i >= ANYONE for i in ids) or not isinstance(groups, list) \
                or not all(type(g) is int and g >= 0 for g in groups):
            return None
        return cls(ids[0], ids[1], ids[2], ids[3], tuple(groups))  # type: ignore[arg-type]

    @classmethod
    def of_pid(cls, pid: int) -> Owner | None:
        """The ids of a live process, from /proc/PID/status; None if it cannot be read."""
        uids = gids = None
        groups: tuple[int, ...] = ()
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    key, _, val = line.partition(":")
                    if key == "Uid":
                        uids = [int(x) for x in val.split()]
                    elif key == "Gid":
                        gids = [int(x) for x in val.split()]
                    elif key == "Groups":
                        groups = tuple(int(x) for x in val.split())
        except (OSError, ValueError):
            return None
        if not uids or not gids or len(uids) < 2 or len(gids) < 2:
            return None
        return cls(uids[0], gids[0], uids[1], gids[1], groups)

    @classmethod
    def of_file(cls, path: str) -> Owner:
        """For an archive that names no program owner: the owner of the archive file, with
        that user's groups; an archive owned by root (or unreadable) shows only sources that
        every user may read."""
        try:
            uid = os.stat(path).st_uid
        except OSError:
            uid = 0
        if uid == 0:
            return NOBODY
        try:
            import pwd

            pw = pwd.getpwuid(uid)
            gid = pw.pw_gid
            groups = tuple(os.getgrouplist(pw.pw_name, gid))
        except (KeyError, OSError):
            gid, groups = ANYONE, ()
        return cls(uid, gid, uid, gid, groups)


NOBODY = Owner(ANYONE, ANYONE, ANYONE, ANYONE, ())


def archive_owner(manifest_path: str, stored: object) -> Owner:
    """The program owner of an archived run. Anyone can write a manifest, so what it names is
    believed only when root owns the manifest file (a root server's kept runs); an archive
    owned by another user is read as that user's (``Owner.of_file``), as is one naming no
    owner (a root-owned one then shows only sources every user may read)."""
    named = Owner.from_json(stored)
    try:
        file_uid = os.stat(manifest_path).st_uid
    except OSError:
        return NOBODY
    if named is not None and file_uid == 0:
        return named
    return Owner.of_file(manifest_path)


def _may(st: os.stat_result, uid: int, gid: int, groups: tuple[int, ...], want: int) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid == gid or st.st_gid in groups:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & want == want


def _has_acl(path: str) -> bool:
    try:
        os.getxattr(path, "system.posix_acl_access")
        return True
    except OSError:
        return False


def _allowed(st: os.stat_result, path: str, owner: Owner, want: int) -> bool:
    if owner.uid == 0 and owner.euid == 0:
        return True
    if _has_acl(path):
        return False
    return (_may(st, owner.uid, owner.gid, owner.groups, want)
            and _may(st, owner.euid, owner.egid, owner.groups, want))


def _dirs(path: str) -> list[str]:
    out = []
    d = os.path.dirname(path)
    while True:
        out.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            return out
        d = parent


def hidden_reason(path: str, real: str, st: os.stat_result, owner: Owner | None) -> str | None:
    """Why the source file at ``path`` (an open file whose real path is ``real`` and whose
    fstat is ``st``) must not be shown to its run's owner, or None when it may be."""
    who = owner or NOBODY
    msg = f"source {path} not shown: not readable by {who.label}"
    if not stat.S_ISREG(st.st_mode) or not _allowed(st, real, who, 4):
        return msg
    for p in {*_dirs(os.path.abspath(path)), *_dirs(real)}:
        try:
            dst = os.stat(p)
        except OSError:
            return msg
        if not _allowed(dst, p, who, 1):
            return msg
    return None


def source_lines(path: str, owner: Owner | None) -> tuple[list[str] | None, str | None]:
    """The lines of a source file (cached per file, mtime and size), or None if unreadable;
    and why it is withheld when the run's ``owner`` could not read it (``stax.profile.access``:
    checked on the opened file, so a path swapped after the check is never read)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None, None
    if not stat.S_ISREG(st.st_mode):  # never open a device or a FIFO
        return None, None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError):
        return None, None
    try:
        st = os.fstat(fd)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = os.path.realpath(path)
        why = hidden_reason(path, real, st, owner)
        if why is not None:
            return None, why
        key = (path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        with _LOCK:
            if key in _SOURCES:
                _SOURCES.move_to_end(key)
                return _SOURCES[key], None
        text: list[str] | None = None
        if st.st_size <= _MAX_SOURCE_BYTES:
            try:
                with os.fdopen(os.dup(fd), "rb") as f:
                    text = f.read(_MAX_SOURCE_BYTES + 1).decode("utf-8", "replace").splitlines()
            except OSError:
                text = None
    finally:
        os.close(fd)
    with _LOCK:
        _SOURCES[key] = text
        while len(_SOURCES) > _MAX_SOURCES:
            _SOURCES.popitem(last=False)
    return text, None


def clear_sources() -> None:
    with _LOCK:
        _SOURCES.clear()
