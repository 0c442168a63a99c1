"""Shared fixtures for tests/unit and tests/e2e: compiled workloads, an isolated stax-server per
test, and a CLI runner. The isolated environment itself lives in ``harness`` (the benchmarks use
it too); its names are re-exported here for test files that import them from ``conftest``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    ROOT,
    Result,
    Stax,
    compile_c,
    isolated_env,
    start_server,
    stop_server,
    stop_server_at,
)

__all__ = ["ROOT", "Result", "Stax", "isolated_env", "start_server", "stop_server"]


UNIT = ROOT / "tests" / "unit"
SERVER_FIXTURES = {"stax", "stax_noserver", "stax_env"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep tests/unit fast and hermetic: a test there may not ask for a server."""
    for item in items:
        if item.path.is_relative_to(UNIT) and SERVER_FIXTURES & set(
                getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid} uses a stax server fixture: it belongs in "
                                    "tests/e2e")


class Workloads(dict[str, Path]):
    """The C workloads (``workloads/*.c`` and ``tests/workloads/*.c``), each compiled on first
    use: ``NAME`` with frame pointers, ``NAME_nofp`` without."""

    def __init__(self, dest: Path) -> None:
        super().__init__()
        self.dest = dest
        self.sources = {src.stem: src for src in [*sorted((ROOT / "workloads").glob("*.c")),
                                                 *sorted((ROOT / "tests" / "workloads")
                                                         .glob("*.c"))]}

    def __missing__(self, name: str) -> Path:
        stem, nofp = (name[:-5], True) if name.endswith("_nofp") else (name, False)
        if stem not in self.sources:
            raise KeyError(name)
        flag = "-fomit-frame-pointer" if nofp else "-fno-omit-frame-pointer"
        self[name] = compile_c(self.sources[stem], self.dest / name, flag)
        return self[name]


@pytest.fixture(scope="session")
def workloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return Workloads(tmp_path_factory.mktemp("workloads"))


@pytest.fixture
def stax_env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture
def stax(tmp_path: Path, stax_env: dict[str, str]) -> Iterator[Stax]:
    """A CLI runner with its own running stax-server."""
    proc = start_server(stax_env, tmp_path)
    runner = Stax(stax_env, tmp_path)
    runner.server = proc  # type: ignore[attr-defined]
    try:
        yield runner
    finally:
        stop_server(proc)


@pytest.fixture
def stax_noserver(tmp_path: Path, stax_env: dict[str, str]) -> Iterator[Stax]:
    """A CLI runner with no server (record may start one; it is stopped afterwards)."""
    runner = Stax(stax_env, tmp_path)
    try:
        yield runner
    finally:
        try:  # a debug snapshot in the server's log, then stop it
            subprocess.run([runner.exe, "dump"], env=stax_env, capture_output=True, timeout=10)
            stop_server_at(stax_env)
        except Exception:
            pass
