"""Finished runs kept on disk under ``$XDG_STATE_HOME/stax/runs/`` so they survive restarts.

Bounded: at most ``STAX_HISTORY_RUNS`` runs (default 50) and ``STAX_HISTORY_BYTES`` bytes
(default 2 GiB); the oldest runs are evicted first.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

from stax import paths

log = logging.getLogger("stax.server")

DEFAULT_MAX_RUNS = 50
DEFAULT_MAX_BYTES = 2 << 30
_NAME = re.compile(r"^run-(\d+)\.stax$")


def _env_int(name: str, default: int) -> int:
    try:
        v = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return v if v >= 0 else default


@dataclass
class Stored:
    id: int
    path: str
    summary: dict[str, Any]
    diagnostics: dict[str, Any]


class History:
    def __init__(self, directory: str | None = None, max_runs: int | None = None,
                 max_bytes: int | None = None) -> None:
        self.dir = directory or os.path.join(paths.state_dir(), "runs")
        self.max_runs = (max_runs if max_runs is not None
                         else _env_int("STAX_HISTORY_RUNS", DEFAULT_MAX_RUNS))
        self.max_bytes = (max_bytes if max_bytes is not None
                          else _env_int("STAX_HISTORY_BYTES", DEFAULT_MAX_BYTES))
        self.error: str | None = None  # why the last save failed

    @property
    def enabled(self) -> bool:
        return self.max_runs > 0 and self.max_bytes > 0

    def journal_of(self, run_id: int) -> str:
        return os.path.join(self.dir, f"run-{run_id}.journal")

    def path_of(self, run_id: int) -> str:
        return os.path.join(self.dir, f"run-{run_id}.stax")

    def _entries(self) -> list[tuple[int, str]]:
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        out = []
        for n in names:
            m = _NAME.match(n)
            if m:
                out.append((int(m.group(1)), os.path.join(self.dir, n)))
        return sorted(out)

    def clean(self) -> int:
        """Remove what a save cut short by a crash left behind (hidden ``.tmp``/``.old``
        directories); called at server start, when no save can be under way."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return 0
        gone = 0
        for n in names:
            if n.startswith(".run-") and (n.endswith(".tmp") or n.endswith(".old")):
                shutil.rmtree(os.path.join(self.dir, n), ignore_errors=True)
                gone += 1
        return gone

    def scan(self) -> list[Stored]:
        """Every kept run's manifest (the tables load later, on first use); bad ones skipped."""
        from stax.archive.format import ArchiveError, read_manifest

        if self.clean():
            log.info("removed leftovers of interrupted saves from %s", self.dir)
        from stax.server.recover import recover_all

        recover_all(self.dir, self.path_of)  # runs a crashed server was recording
        out = []
        for run_id, path in self._entries():
            try:
                _d, m = read_manifest(path)
            except ArchiveError as e:
                log.warning("skipping stored run %s: %s", path, e)
                continue
            run = m.get("run") if isinstance(m.get("run"), dict) else {}
            diag = m.get("diagnostics") if isinstance(m.get("diagnostics"), dict) else {}
            out.append(Stored(run_id, path, run, diag))
        return out

    def save(self, profile: Any, run_id: int, summary: dict[str, Any],
             diagnostics: dict[str, Any]) -> str | None:
        """Persist one finished run, then evict the oldest beyond the bounds."""
        from stax.archive.format import ArchiveError, save

        self.error = None
        if not self.enabled:
            return None
        path = self.path_of(run_id)
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            save(profile, path, summary, diagnostics)
        except (ArchiveError, OSError) as e:  # a read-only or full disk: the run stays in memory
            self.error = (str(e) if isinstance(e, ArchiveError)
                          else f"cannot write {self.dir}: {e.strerror or e}")
            log.warning("could not keep run %d on disk: %s", run_id, self.error)
            return None
        self.evict()
        return path

    @staticmethod
    def _size(path: str) -> int:
        total = 0
        for root, _dirs, files in os.walk(path):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
        return total

    def evict(self) -> list[int]:
        entries = self._entries()
        sizes = [self._size(p) for _i, p in entries]
        gone = []
        while entries and (len(entries) > self.max_runs or sum(sizes) > self.max_bytes):
            run_id, path = entries.pop(0)
            sizes.pop(0)
            shutil.rmtree(path, ignore_errors=True)
            gone.append(run_id)
            log.info("evicted stored run %d (%s)", run_id, path)
        return gone
