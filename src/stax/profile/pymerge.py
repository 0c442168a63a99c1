"""Python frames in native samples: for a sample of the CPython process a PythonWatch reads,
the thread's Python stack nearest in time replaces the ``_PyEval_EvalFrameDefault``
activations of its native stack (stax.pystacks.merge). A Python frame is interned as a frame of
a pseudo-binary, its ``.py`` file (no build-id), at (function id << 32 | line), named by its
qualname directly (the ELF symbolizer never sees it). Counted in the profile's counts:
``python_running`` (samples whose native stack runs the interpreter), ``python_samples`` (merged),
``python_mismatches`` (the two views disagree: native frames kept), ``python_misses`` (no
snapshot close enough: native frames kept)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from stax.profile.model import Func
from stax.pystacks.merge import merge_stack

if TYPE_CHECKING:
    from stax.profile.model import Tables
    from stax.pystacks.live import PythonWatch
    from stax.pystacks.reader import PyFrame
    from stax.pystacks.sampler import SnapshotStore

__all__ = ["COUNTS", "PyMerge"]

# snapshots further apart than this do not vouch for the stack between them
MAX_GAP_NS = 50_000_000

COUNTS = ("python_running", "python_samples", "python_mismatches", "python_misses")


class PyMerge:
    """The sink's side of one PythonWatch (its process only)."""

    def __init__(self, watch: PythonWatch) -> None:
        self.watch = watch
        self.pid = watch.pid
        self._eval_bins: dict[int, tuple[int, int] | None] = {}
        self._frames: dict[tuple[str, str, int, int], int] = {}
        self._funcs: dict[tuple[str, str, int], int] = {}
        self._counted = False
        self._woke: dict[int, int] = {}  # thread -> its last switch-in

    def on_switch_in(self, pid: int, tid: int, time: int) -> None:
        if pid == self.pid:
            self._woke[tid] = time

    def on_mmap(self, pid: int, filename: str) -> None:
        if pid == self.pid:
            from stax.pystacks.live import looks_like_python

            if looks_like_python(filename):
                self.watch.trigger()

    def _eval_range(self, t: Tables, bid: int) -> tuple[int, int] | None:
        if bid not in self._eval_bins:
            interp = self.watch.interpreter
            assert interp is not None
            b = t.binaries[bid]
            same = b.path == interp.path or b.path == interp.path + " (deleted)"
            self._eval_bins[bid] = interp.eval_offsets if same else None
        return self._eval_bins[bid]

    def apply(self, t: Tables, tid: int, time: int, sid: int, cut_short: bool = False) -> int:
        """The stack ``sid`` of a sample of this process with its Python frames, or ``sid``
        (``cut_short``: its native walk stopped early; the Python frames complete it)."""
        sampler = self.watch.sampler
        if sampler is None or sid < 0 or self.watch.interpreter is None:
            return sid
        counts = t.counts
        if not self._counted:
            self._counted = True
            for k in COUNTS:
                counts.setdefault(k, 0)
        native: list[int] = []
        s = sid
        while s >= 0:
            native.append(t.stack_frame[s])
            s = t.stack_parent[s]
        fb, fo = t.frame_binary, t.frame_offset

        def is_eval(fid: int) -> bool:
            r = self._eval_range(t, fb[fid])
            return r is not None and r[0] <= fo[fid] < r[1]

        if not any(is_eval(f) for f in native):
            return sid
        counts["python_running"] += 1
        candidates = self._stacks_at(sampler, tid, time)
        if not candidates:
            counts["python_misses"] += 1
            return sid
        for py in candidates:
            merged = merge_stack(native, is_eval, py, lambda f: self._frame(t, f), cut_short)
            if merged is not None:
                break
        else:
            counts["python_mismatches"] += 1
            return sid
        counts["python_samples"] += 1
        out = -1
        for fid in reversed(merged):
            out = t.stack_id(out, fid)
        return out

    def _stacks_at(self, sampler: SnapshotStore, tid: int,
                   time: int) -> list[tuple[PyFrame, ...]]:
        """The thread's Python stacks that may have been running at ``time``, the likeliest
        first: the snapshots either side when they are close enough together (the nearest
        first, but the later one when the thread came back on the CPU after the earlier was
        read; when both show the same functions, they vouch for the stack between them and
        the nearest alone is the answer), else the one within a read period or two. The
        sample's native stack picks between them (its interpreter activations must match)."""
        before, after = sampler.around(tid, time)
        if before is not None and after is not None and after[0] - before[0] <= MAX_GAP_NS:
            b, a = before[1], after[1]
            if b is not None and a is not None:
                if _functions(b) == _functions(a):
                    return [b if time - before[0] <= after[0] - time else a]
                woke = self._woke.get(tid, 0)
                if before[0] < woke <= time:
                    # read while the thread was off the CPU: its stack as it woke, which it
                    # leaves at once (a sleep returns into the caller's next call)
                    return [a, b]
                return [b, a] if time - before[0] <= after[0] - time else [a, b]
        tol = self.watch.tolerance_ns(time)
        near = [snap for snap in (before, after)
                if snap is not None and snap[1] is not None and abs(snap[0] - time) <= tol]
        near.sort(key=lambda snap: abs(snap[0] - time))
        return [snap[1] for snap in near if snap[1] is not None]

    def _frame(self, t: Tables, f: PyFrame) -> int:
        line = f.line if f.line is not None else f.firstlineno
        key = (f.filename, f.qualname, f.firstlineno, line)
        fid = self._frames.get(key)
        if fid is not None:
            return fid
        bid = t.binary_id(f.filename, None, self.pid)
        fkey = (f.filename, f.qualname, f.firstlineno)
        with t.sym_lock:
            func = self._funcs.get(fkey)
            if func is None:
                func = self._funcs[fkey] = len(t.funcs)
                t.funcs.append(Func(f.qualname, os.path.basename(f.filename) or f.filename,
                                    f.filename, f.firstlineno, 0, True, python=True))
        # the offset in the .py pseudo-binary: the function's id above the line, so two
        # functions running on one line (a lambda and its caller) stay two frames
        fid = t.frame_id(bid, (func << 32) | (max(0, line) & 0xFFFFFFFF))
        if t.frame_func[fid] < 0:
            t.frame_func[fid] = func
        self._frames[key] = fid
        return fid


def _functions(frames: tuple[PyFrame, ...]) -> list[tuple[str, str, int, bool]]:
    return [(f.qualname, f.filename, f.firstlineno, f.is_entry) for f in frames]
