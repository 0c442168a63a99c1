"""Slots for what staxd serves at once: ``total`` in all, and at most ``per_uid`` for any one
uid but root's, so that one user cannot lock the others out. Used for connections
(stax.staxd.daemon) and for the Python stack readers staxd runs (stax.staxd.pyworkers)."""

from __future__ import annotations

import threading

__all__ = ["MAX_CLIENTS", "MAX_PER_UID", "Slots"]

MAX_CLIENTS = 64  # connections served at once, all users together
MAX_PER_UID = 8  # connections one user (other than root) may hold at once


class Slots:
    """Connection slots: ``total`` in all, and at most ``per_uid`` for any one uid but root's,
    so that one user holding idle connections cannot lock the others out."""

    def __init__(self, total: int = MAX_CLIENTS, per_uid: int = MAX_PER_UID,
                 what: str = "connections") -> None:
        self.total = total
        self.per_uid = per_uid
        self.what = what  # what the slots are for, in the reasons
        self.used = 0
        self.by_uid: dict[int, int] = {}
        self.lock = threading.Lock()

    def take(self, uid: int) -> str | None:
        """Take a slot for ``uid``: None when it got one, else why not (for the client)."""
        with self.lock:
            mine = self.by_uid.get(uid, 0)
            if uid != 0 and mine >= self.per_uid:
                return (f"too many {self.what} from uid {uid}: it holds {mine} (staxd serves "
                        f"at most {self.per_uid} per user at once); close one and retry")
            if self.used >= self.total:
                return (f"staxd is busy: {self.used} {self.what} open (at most "
                        f"{self.total}); retry shortly")
            self.by_uid[uid] = mine + 1
            self.used += 1
            return None

    def give(self, uid: int) -> None:
        with self.lock:
            left = self.by_uid.get(uid, 0) - 1
            if left > 0:
                self.by_uid[uid] = left
            else:
                self.by_uid.pop(uid, None)
            self.used = max(0, self.used - 1)
