"""Why perf cannot sample a program that changes its ids: a setuid, setgid or file-capability
program launched by ``stax record``, or a running process whose ids differ from ours.

The kernel drops a task's perf events when it execs a program that gains privileges (the task
stops being dumpable), and refuses to open events on another user's (or a setuid, or a
non-dumpable) process except for root. Without this the user only sees "no samples".
"""

from __future__ import annotations

import os
import stat


def _no_new_privs() -> bool:
    """True when this process (and so the target it launches) may not gain privileges: then
    setuid bits and file capabilities are ignored at exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("NoNewPrivs:"):
                    return line.split()[1] == "1"
    except (OSError, IndexError):
        pass
    return False


def launch_obstacle(path: str, uid: int | None = None, gid: int | None = None) -> str | None:
    """Why a program at ``path`` launched by (real) ``uid``/``gid`` cannot be sampled once it
    runs: it is setuid or setgid to other ids, or has file capabilities, on a filesystem that
    honours them. None when nothing stands in the way."""
    try:
        st = os.stat(path)
        nosuid = bool(os.statvfs(path).f_flag & os.ST_NOSUID)
    except OSError:
        return None
    if nosuid or _no_new_privs():
        return None
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    gains = []
    if st.st_mode & stat.S_ISUID and st.st_uid != uid:
        gains.append(f"setuid (it runs as uid {st.st_uid})")
    if st.st_mode & stat.S_ISGID and st.st_mode & stat.S_IXGRP and st.st_gid != gid:
        gains.append(f"setgid (it runs with gid {st.st_gid})")
    if not gains:
        try:
            os.getxattr(path, "security.capability")
            gains.append("given file capabilities")
        except OSError:
            pass
    if not gains:
        return None
    return (f"{path} is {' and '.join(gains)}: the kernel stops perf sampling when a program "
            "gains privileges at exec, so stax records nothing of it; start it yourself and "
            "attach as root (sudo stax record -p PID), or record a copy without the "
            f"{'setuid/setgid bits' if 'set' in gains[0] else 'capabilities'}")


def _ids(status: str, key: str) -> list[int]:
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return [int(x) for x in line.split()[1:4]]
    return []


def attach_obstacle(pid: int, uid: int | None = None, gid: int | None = None,
                    proc: str = "/proc") -> str | None:
    """Why the kernel will not let (real) ``uid``/``gid`` sample running process ``pid``: its
    real, effective or saved ids differ from the caller's, or it is not dumpable. None for
    root, or when nothing stands in the way (or the process cannot be read)."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    if uid == 0:
        return None
    try:
        with open(f"{proc}/{pid}/status", errors="replace") as f:
            status = f.read()
        owner = os.stat(f"{proc}/{pid}").st_uid
    except (OSError, ValueError):
        return None
    uids, gids = _ids(status, "Uid"), _ids(status, "Gid")
    if len(uids) < 3 or len(gids) < 3:
        return None
    why = None
    if uids[0] != uid:
        why = f"it belongs to uid {uids[0]}"
    elif any(u != uid for u in uids):
        why = (f"it runs setuid (real/effective/saved uids {'/'.join(map(str, uids))})")
    elif any(g != gid for g in gids):
        why = (f"it runs setgid (real/effective/saved gids {'/'.join(map(str, gids))})")
    elif owner != uid:
        why = "it is not dumpable (it changed its ids or gave up being traced)"
    if why is None:
        return None
    return (f"pid {pid} cannot be sampled by uid {uid}: {why}, and the kernel lets only root "
            f"sample such a process; record it as root (sudo stax record -p {pid})")
