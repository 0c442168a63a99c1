"""End-to-end: annotate on a saved archive (directory and single file), on a run restored after
a server restart, where the binary is missing, and with the code embedded (--with-code)."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import Stax, start_server, stop_server

KEYS = ("self_samples", "placed_samples", "unplaced_samples", "unplaced", "instructions",
        "sources", "has_line_info")


def _annotate(stax: Stax, *args: str) -> dict:
    res = stax("annotate", "work_a", "--json", *args, check=True).json()
    assert isinstance(res, dict)
    return res


def _same(a: dict, b: dict) -> None:
    for k in KEYS:
        assert a[k] == b[k], k


def _record_copy(stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> Path:
    exe = tmp_path / "bin" / "split"
    exe.parent.mkdir()
    shutil.copy2(workloads["split"], exe)
    stax("record", "--", str(exe), "300", check=True)
    return exe


def test_annotate_same_on_archive_and_single_file(stax: Stax, workloads: dict[str, Path],
                                                  tmp_path: Path) -> None:
    _record_copy(stax, workloads, tmp_path)
    live = _annotate(stax)
    assert live["self_samples"] > 0 and live["placed_samples"] == live["self_samples"]
    stax("save", str(tmp_path / "d.stax"), check=True)
    r = stax("save", str(tmp_path / "f.stax"), "--format", "file", check=True)
    assert (tmp_path / "f.stax").is_file() and (tmp_path / "d.stax").is_dir()
    assert "saved run 1" in r.out
    for path in ("d.stax", "f.stax"):
        stax("open", str(tmp_path / path), check=True)
        _same(_annotate(stax), live)
    # compare reads the single file too
    r = stax("compare", str(tmp_path / "d.stax"), str(tmp_path / "f.stax"), "--json", check=True)
    assert r.code == 0


def test_annotate_same_after_restart(stax: Stax, workloads: dict[str, Path],
                                     tmp_path: Path) -> None:
    _record_copy(stax, workloads, tmp_path)
    live = _annotate(stax, "--run", "1")
    stop_server(stax.server)  # type: ignore[attr-defined]
    restarted = start_server(stax.env, tmp_path)
    try:
        _same(_annotate(stax, "--run", "1"), live)
        _same(_annotate(stax), live)
    finally:
        stop_server(restarted)


def test_annotate_without_the_binary_and_with_embedded_code(
        stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    exe = _record_copy(stax, workloads, tmp_path)
    live = _annotate(stax)
    stax("save", str(tmp_path / "plain.stax"), check=True)
    r = stax("save", str(tmp_path / "code.stax"), "--with-code", "--format", "file", check=True)
    assert "code of" in r.out
    exe.rename(tmp_path / "moved")
    stax("open", str(tmp_path / "plain.stax"), check=True)
    res = _annotate(stax)
    assert res["binary_missing"] is True and res["instructions"] == []
    assert res["self_samples"] == live["self_samples"]
    by_addr = {i["addr"]: i["samples"] for i in live["instructions"] if i["samples"]}
    assert {a["addr"]: a["samples"] for a in res["addresses"]} == by_addr
    text = stax("annotate", "work_a", check=True).out
    assert "the binary is missing" in text
    stax("open", str(tmp_path / "code.stax"), check=True)
    res = _annotate(stax)
    _same(res, live)
    assert res["binary_missing"] is False and "code from the archive" in (res["note"] or "")
    assert any(s["text"] and "work_a" in s["text"] for s in res["sources"])
