"""Unit: replacing interpreter activations in a native stack by the Python frames they ran."""

from __future__ import annotations

from stax.pystacks.merge import EVAL_FUNCTIONS, activation_runs, merge_stack
from stax.pystacks.reader import PyFrame


def _py(name: str, entry: bool = False) -> PyFrame:
    return PyFrame(name, "/t.py", 1, 1, entry, 0)


def _merge(native, frames):
    return merge_stack(native, lambda n: n in EVAL_FUNCTIONS, frames, lambda f: "py:" + f.qualname)


def test_a_c_function_between_two_activations_keeps_both_sides():
    native = [
        "zlib_compress", "_PyEval_EvalFrameDefault", "cfunction_call",
        "_PyEval_EvalFrameDefault", "Py_RunMain", "main",
    ]
    frames = [_py("pack"), _py("<lambda>", True), _py("run"), _py("<module>", True)]
    assert _merge(native, frames) == [
        "zlib_compress", "py:pack", "py:<lambda>", "cfunction_call",
        "py:run", "py:<module>", "Py_RunMain", "main",
    ]


def test_counts_that_disagree_keep_the_native_stack():
    native = ["_PyEval_EvalFrameDefault", "main"]
    assert _merge(native, [_py("a", True), _py("b", True)]) is None
    assert _merge(native, [_py("a"), _py("b")]) is None  # no entry frame: read mid-change
    assert _merge(["main"], []) == ["main"]
    assert activation_runs([_py("a", True), _py("b")]) is None
    assert activation_runs([]) == []


def test_a_native_walk_cut_short_is_completed_by_the_python_frames() -> None:
    def f(q: str, entry: bool) -> PyFrame:
        return PyFrame(q, "/a.py", 1, 1, entry, 0)

    py = [f("inner", True), f("mid", True), f("outer", False), f("<module>", True)]
    native = ["leaf", "EVAL", "trampoline"]  # the walk stopped at a trampoline with no CFI

    def is_eval(n: str) -> bool:
        return n == "EVAL"

    assert merge_stack(native, is_eval, py, lambda p: p.qualname) is None
    assert merge_stack(native, is_eval, py, lambda p: p.qualname, cut_short=True) == [
        "leaf", "inner", "trampoline", "mid", "outer", "<module>"]
    # more activations natively than Python runs, or none at all: no anchor, nothing merged
    assert merge_stack(["EVAL"] * 4, is_eval, py, lambda p: p.qualname, cut_short=True) is None
    assert merge_stack(["leaf"], is_eval, py, lambda p: p.qualname, cut_short=True) is None
