"""Separate debug info end to end: a real debuginfod server on loopback (the client fetching and
caching from it) and stripped binaries recorded with stax that get their names back in
`stax top` through a .gnu_debuglink file (CRC-checked) or debuginfod."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from build_helpers import HAVE_GCC, build, free_port, needs_gcc, split_debug
from harness import Stax, isolated_env

from stax.symbols import find_debug_file, read_build_id
from stax.symbols.debuginfod import DebuginfodClient

DEBUGINFOD = shutil.which("debuginfod")
needs_debuginfod = pytest.mark.skipif(
    DEBUGINFOD is None, reason="debuginfod not installed (Debian package debuginfod)"
)


# --------------------------------------------------------------------------------------------
# a real debuginfod server on loopback


@pytest.fixture(scope="module")
def debuginfod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    if DEBUGINFOD is None or not HAVE_GCC:
        pytest.skip("debuginfod or gcc not installed")
    d = tmp_path_factory.mktemp("debuginfod")
    binary = build(d, "spin_di")
    stripped, debug = split_debug(binary, d / "srv", link=False)
    served = d / "served"
    served.mkdir()
    shutil.move(str(debug), served / debug.name)  # only the debug file is served
    bid = read_build_id(str(stripped))
    assert bid
    port = free_port()
    log = open(d / "debuginfod.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [DEBUGINFOD, "-F", "-p", str(port), "-d", str(d / "db.sqlite"), "-t", "0", "-g", "0",
         str(served)],
        stdout=log, stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/buildid/{bid}/debuginfo", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("debuginfod did not serve: " + (d / "debuginfod.log").read_text())
            time.sleep(0.2)
        yield {"url": url, "stripped": stripped, "build_id": bid, "binary": binary}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@needs_debuginfod
def test_debuginfod_client_fetches_and_caches(
    debuginfod_server: dict[str, object], tmp_path: Path
) -> None:
    bid = str(debuginfod_server["build_id"])
    client = DebuginfodClient(urls=[str(debuginfod_server["url"])], cache_dir=str(tmp_path))
    got = client.debuginfo(bid)
    assert got == str(tmp_path / bid / "debuginfo")
    assert read_build_id(got) == bid
    assert client.stats["fetched"] == 1
    assert client.debuginfo(bid) == got and client.stats["cache_hits"] == 1
    # a build-id the server does not have: a cached miss
    missing = "cd" * 20
    assert client.debuginfo(missing) is None
    assert (tmp_path / missing / "miss").is_file()
    assert client.stats["errors"] == 0
    # the cached download is used even without network access
    offline = DebuginfodClient(urls=[], cache_dir=str(tmp_path))
    assert offline.debuginfo(bid) == got


@needs_debuginfod
def test_find_debug_file_via_debuginfod(
    debuginfod_server: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEBUGINFOD_URLS", str(debuginfod_server["url"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stripped = str(debuginfod_server["stripped"])
    got = find_debug_file(stripped, want="dwarf")
    assert got is not None and got.startswith(str(tmp_path / "stax" / "debuginfod"))
    assert find_debug_file(stripped, want="dwarf", fetch=False) == got


# --------------------------------------------------------------------------------------------
# end to end: stax record + stax top


def _top_rows(stax: Stax) -> list[dict[str, object]]:
    r = stax("top", "-n", "0", "--json", check=True)
    return list(r.json()["rows"])


def _hot_name(rows: list[dict[str, object]]) -> str:
    return str(max(rows, key=lambda r: int(r["self_samples"]))["func"])  # type: ignore[call-overload]


@pytest.fixture
def stax_env(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The isolated server's environment: debuginfod off, or the loopback test server when the
    test uses it."""
    env = isolated_env(tmp_path)
    env["DEBUGINFOD_URLS"] = ""
    if "debuginfod_server" in request.fixturenames:
        env["DEBUGINFOD_URLS"] = str(request.getfixturevalue("debuginfod_server")["url"])
    return env


@needs_gcc
def test_e2e_debuglink(stax: Stax, tmp_path: Path) -> None:
    binary = build(tmp_path, "spin")
    stripped, debug = split_debug(binary, tmp_path / "out", link=True)
    assert b"stax_hidden_leaf" not in stripped.read_bytes()
    stax("record", "--", str(stripped), check=True, timeout=120)
    rows = _top_rows(stax)
    assert _hot_name(rows) == "stax_hidden_leaf", rows[:5]


@needs_gcc
def test_e2e_debuglink_crc_mismatch(stax: Stax, tmp_path: Path) -> None:
    binary = build(tmp_path, "spin")
    stripped, debug = split_debug(binary, tmp_path / "out", link=True)
    with open(debug, "ab") as f:
        f.write(b"\0")
    stax("record", "--", str(stripped), check=True, timeout=120)
    rows = _top_rows(stax)
    names = {str(r["func"]) for r in rows}
    assert "stax_hidden_leaf" not in names
    assert _hot_name(rows).startswith("spin+0x"), rows[:5]
    diag = stax("diagnose", check=True).out
    assert re.search(r"debug_debuglink_crc_mismatch [1-9]", diag), diag


@needs_debuginfod
def test_e2e_debuginfod(debuginfod_server: dict[str, object], stax_env: dict[str, str],
                        stax: Stax, tmp_path: Path) -> None:
    stripped = Path(str(debuginfod_server["stripped"]))
    assert stax_env.get("DEBUGINFOD_URLS") == debuginfod_server["url"]  # the server's env
    stax("record", "--", str(stripped), check=True, timeout=120)
    rows = _top_rows(stax)
    assert _hot_name(rows) == "stax_hidden_leaf", rows[:5]
    bid = str(debuginfod_server["build_id"])
    cached = tmp_path / "cache" / "stax" / "debuginfod" / bid / "debuginfo"
    assert cached.is_file()
