"""End-to-end: names from C++ and Rust binaries come out demangled in real recordings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from harness import ROOT, Stax


def _rustc() -> str | None:
    return shutil.which("rustc") or (str(Path.home() / ".cargo/bin/rustc")
                                     if (Path.home() / ".cargo/bin/rustc").exists() else None)


def test_cxx_template_method_is_demangled(stax: Stax, tmp_path: Path) -> None:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path / "template"
    subprocess.run([gxx, "-O2", "-g", "-o", str(exe), str(ROOT / "tests/workloads/template.cpp")],
                   check=True)
    stax("record", "--", str(exe), "12000", check=True)
    rows = stax("top", "--json", check=True).json()["rows"]  # type: ignore[index]
    assert rows[0]["func"] == "ns::Type<int>::method(int)", rows[:3]
    assert rows[0]["self_pct"] > 90


def test_rust_release_binary_is_demangled(stax: Stax, tmp_path: Path) -> None:
    rustc = _rustc()
    if rustc is None:
        pytest.skip("rustc is not installed")
    exe = tmp_path / "hot"
    subprocess.run([rustc, "-O", "-o", str(exe), str(ROOT / "tests/workloads/hot.rs")],
                   check=True)
    stax("record", "--", str(exe), "1200", check=True)
    rows = stax("top", "--json", check=True).json()["rows"]  # type: ignore[index]
    assert rows[0]["func"] == "hot::hot::burn", rows[:3]
