"""Merging one sample's native stack with the Python stack read for its thread: every
``_PyEval_EvalFrameDefault`` activation in the native stack is replaced by the Python frames it
was executing. The Python frames (innermost first) split into runs, each ending at an entry
frame; the k-th interpreter activation from the leaf gets the k-th run. When the counts differ
the two views were not taken at the same point and the sample keeps its native frames."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from stax.pystacks.reader import PyFrame

__all__ = ["EVAL_FUNCTIONS", "activation_runs", "merge_stack"]

N = TypeVar("N")

# the native function of one interpreter activation (3.11)
EVAL_FUNCTIONS = frozenset({"_PyEval_EvalFrameDefault"})


def activation_runs(frames: Sequence[PyFrame]) -> list[list[PyFrame]] | None:
    """The Python frames split per interpreter activation, innermost first; None when frames
    follow the outermost entry frame (a chain read mid-change)."""
    runs: list[list[PyFrame]] = []
    cur: list[PyFrame] = []
    for f in frames:
        cur.append(f)
        if f.is_entry:
            runs.append(cur)
            cur = []
    return None if cur else runs


def merge_stack(
    native: Sequence[N],
    is_eval: Callable[[N], bool],
    frames: Sequence[PyFrame],
    make: Callable[[PyFrame], N],
    cut_short: bool = False,
) -> list[N] | None:
    """``native`` (innermost first) with each eval activation replaced by its Python frames
    made by ``make``; None when the activation counts do not agree. ``cut_short``: the native
    walk stopped before the thread's entry (code without unwind information, such as the
    trampolines of ``python -X perf``): its activations are the innermost ones, and the Python
    frames of the others go on above its last frame, completing the stack."""
    runs = activation_runs(frames)
    if runs is None:
        return None
    n_eval = sum(1 for n in native if is_eval(n))
    if n_eval != len(runs) and not (cut_short and 0 < n_eval < len(runs)):
        return None
    out: list[N] = []
    k = 0
    for n in native:
        if is_eval(n):
            out.extend(make(f) for f in runs[k])
            k += 1
        else:
            out.append(n)
    for run in runs[k:]:
        out.extend(make(f) for f in run)
    return out
