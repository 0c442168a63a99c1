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
