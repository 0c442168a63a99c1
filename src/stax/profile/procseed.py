"""Reading /proc when a recording attaches to a running process: the mappings and thread
names it already has (no mmap or comm record will report them) and the threads already
blocked (their switch-out was before the events were opened).
"""

from __future__ import annotations

import os

from stax.binaries import display, mapped_build_id
from stax.profile import offcpu
from stax.profile.model import ANON_PATH, Mapping, Process, is_anon
from stax.profile.sink import RecordSink


class ProcSeeding(RecordSink):
    """The record sink plus what an attach reads from /proc before the first record."""

    def seed_from_proc(self, pid: int, time: int) -> None:
        """Mappings and thread names of an already-running process, read from /proc. File
        names stay bytes; build-ids are read from the mapped files themselves where /proc
        allows (so a deleted or replaced file is still the one identified)."""
        with self.lock:
            proc = self.processes[pid] = Process(pid)
            try:
                with open(f"/proc/{pid}/maps", "rb") as f:
                    lines = f.read().split(b"\n")
            except OSError:
                lines = []
            build_ids: dict[bytes, str | None] = {}
            for line in lines:
                parts = line.split(None, 5)
                if len(parts) < 5 or b"x" not in parts[1]:
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split(b"-"))
                raw = parts[5].strip(b" ") if len(parts) > 5 else b""
                pgoff = int(parts[2], 16)
                if raw.startswith(b"/") and raw not in build_ids:
                    build_ids[raw] = mapped_build_id(pid, raw, lo, hi)
                if is_anon(display(raw)):
                    raw, pgoff = ANON_PATH.encode(), lo
                elif raw.endswith(b".dump"):
                    self._note_jitdump(pid, display(raw))
                bid = self.binary_id(raw, build_ids.get(raw), pid, lo, hi)
                proc.add(Mapping(lo, hi, pgoff, bid))
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                tids = []
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8",
                              errors="replace") as f:  # as records decode a comm
                        name = f.read().strip()
                except OSError:
                    continue
                th = self.ensure_thread(pid, tid, time)
                th.names.append((time, name))
            self._chain_cache.clear()
            if self.unwinder is not None:
                self.unwinder.forget(pid)

    def seed_blocked(self, pid: int, time: int) -> int:
        """Threads of ``pid`` already blocked when an attach began: their off-CPU interval
        starts now, classified from /proc (state and wchan, the kernel function they wait in)
        since their blocking stack was not recorded. Returns how many."""
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return 0
        n = 0
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", errors="replace") as f:
                    stat = f.read()
                with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                    wchan = f.read().strip()
            except OSError:
                continue
            letter = stat[stat.rfind(")") + 2:][:1]
            state = {"S": offcpu.STATE_INTERRUPTIBLE, "D": offcpu.STATE_UNINTERRUPTIBLE}.get(
                letter)
            if state is None:
                continue
            kernel = [wchan] if wchan and wchan != "0" else []
            code = offcpu.REASON_CODE[offcpu.classify(state, kernel, [])]
            with self.lock:
                self.offcpu.seed(tid, time, state, code)
            n += 1
        return n
