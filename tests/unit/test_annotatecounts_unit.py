"""Annotate's code_id and counts-only answers (stax.profile.annotatecounts), on hand-built
results (tests/e2e/test_web_defects_e2e.py sees the page use them on a real run)."""

from __future__ import annotations

import copy
from typing import Any

from stax.profile.annotatecounts import code_id, with_code_id


def _result() -> dict[str, Any]:
    ins = [{"addr": 0x1000 + 4 * i, "size": 4, "text": f"add x{i}", "samples": s,
            "self_ns": s * 1000, "pct": 10.0 * s, "file": "a.c", "line": 10 + i // 2}
           for i, s in enumerate([0, 3, 0, 7])]
    return {"function": {"func": "f", "binary": "prog", "path": "/bin/prog", "build_id": "ab",
                         "addr": 0x1000, "size": 16},
            "arch": "x86-64", "instructions": ins, "self_samples": 10,
            "sources": [{"file": "a.c", "line": 10, "text": "x++;", "hidden": None,
                         "samples": 3, "self_ns": 3000},
                        {"file": "a.c", "line": 11, "text": "y++;", "hidden": None,
                         "samples": 7, "self_ns": 7000}]}


def test_code_id_names_the_code_not_the_counts() -> None:
    a, b = _result(), _result()
    b["instructions"][0]["samples"] = 5
    b["sources"][0]["samples"] = 9
    assert code_id(a) == code_id(b) and len(code_id(a) or "") == 24
    c = _result()
    c["instructions"][2]["text"] = "sub x2"
    d = _result()
    d["sources"][1]["text"] = "z++;"
    e = _result()
    e["function"]["build_id"] = "cd"
    assert len({code_id(a), code_id(c), code_id(d), code_id(e)}) == 4
    assert code_id({"function": None, "instructions": []}) is None
    assert code_id({**_result(), "instructions": []}) is None


def test_a_known_code_is_answered_with_the_counts_only() -> None:
    full = with_code_id(_result(), None)
    assert full["instructions"] and full["code_id"] == code_id(_result())
    again = with_code_id(_result(), full["code_id"])
    assert again["instructions"] is None and again["sources"] is None
    assert again["instruction_counts"] == [[1, 3, 3000], [3, 7, 7000]]
    assert again["source_counts"] == [[0, 3, 3000], [1, 7, 7000]]
    other = with_code_id(_result(), "0" * 24)  # another code: the whole answer
    assert other["instructions"] == _result()["instructions"]
    assert "instruction_counts" not in other
    bare = copy.deepcopy(_result())
    bare["instructions"] = []
    assert with_code_id(bare, "x")["code_id"] is None
