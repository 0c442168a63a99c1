"""Tests for separate debug info: build-id tree, .gnu_debuglink (CRC-checked) and debuginfod, unit
level and end to end (stripped binaries recorded with stax get their names back in `stax top`)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Stax, isolated_env

from stax.symbols import Symbolizer, find_debug_file, read_build_id
from stax.symbols.debuginfo import DebugInfoFinder, file_crc32, read_debuglink
from stax.symbols.debuginfod import DebuginfodClient, server_urls

HAVE_GCC = shutil.which("gcc") is not None and shutil.which("objcopy") is not None
DEBUGINFOD = shutil.which("debuginfod")
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="gcc/objcopy not available")
needs_debuginfod = pytest.mark.skipif(
    DEBUGINFOD is None, reason="debuginfod not installed (Debian package debuginfod)"
)

SPIN_SRC = r"""
#include <time.h>
static volatile unsigned long sink;
__attribute__((noinline)) static void stax_hidden_leaf(void) {
    for (unsigned long i = 0; i < 200000; i++) sink += i * 7;
}
__attribute__((noinline)) void stax_hidden_outer(void) { stax_hidden_leaf(); }
int main(int argc, char **argv) {
    (void)argv;
    long ms = argc > 1 ? 1500 : 800;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        stax_hidden_outer();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L < ms);
    return 0;
}
"""


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


def _build(d: Path, name: str, variant: str = "") -> Path:
    """Compile `name` with -g; returns the unstripped binary."""
    src = d / f"{name}.c"
    src.write_text(SPIN_SRC + variant)
    out = d / name
    _run("gcc", "-O2", "-g", "-o", out, src)
    return out


def _split(binary: Path, out_dir: Path, link: bool) -> tuple[Path, Path]:
    """(stripped binary, debug file): objcopy --only-keep-debug, then strip, then optionally
    --add-gnu-debuglink."""
    out_dir.mkdir(parents=True, exist_ok=True)
    debug = out_dir / (binary.name + ".debug")
    stripped = out_dir / binary.name
    _run("objcopy", "--only-keep-debug", binary, debug)
    _run("objcopy", "--strip-debug", "--strip-unneeded", binary, stripped)
    if link:
        _run("objcopy", f"--add-gnu-debuglink={debug}", stripped)
    return stripped, debug


def _func_offset(binary: Path, name: str) -> int:
    out = subprocess.run(["nm", str(binary)], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            vaddr = int(parts[0], 16)
            # -O2 PIE: the first PT_LOAD maps offset 0 at vaddr 0, text offset == vaddr.
            return vaddr + 2
    raise AssertionError(f"{name} not in {binary}")


def _offline_finder(roots: tuple[str, ...] = ()) -> DebugInfoFinder:
    return DebugInfoFinder(debug_roots=roots, debuginfod=DebuginfodClient(urls=[]))


# --------------------------------------------------------------------------------------------
# unit: debuglink parsing, CRC, lookup order


@needs_gcc
def test_debuglink_crc_matches_zlib(tmp_path: Path) -> None:
    binary = _build(tmp_path, "spin")
    stripped, debug = _split(binary, tmp_path / "out", link=True)
    link = read_debuglink(str(stripped))
    assert link is not None
    name, crc = link
    assert name == debug.name
    assert crc == zlib.crc32(debug.read_bytes()) == file_crc32(str(debug))
    assert read_debuglink(str(binary)) is None
    assert read_debuglink(str(tmp_path / "spin.c")) is None
    assert read_debuglink(str(tmp_path / "missing")) is None


@needs_gcc
def test_lookup_order_and_locations(tmp_path: Path) -> None:
    binary = _build(tmp_path, "spin")
    bid = read_build_id(str(binary))
    assert bid
    finder = _offline_finder()
    # 1. the binary itself carries DWARF and a .symtab
    assert finder.find(str(binary), bid, "dwarf") == str(binary)
    assert finder.find(str(binary), None, "symtab") == str(binary)
    assert finder.find(str(binary), bid, "separate") is None

    # 3. debuglink, next to the binary
    stripped, debug = _split(binary, tmp_path / "a", link=True)
    assert _offline_finder().find(str(stripped), bid, "dwarf") == str(debug)
    # ... in DIR/.debug/
    os.makedirs(tmp_path / "a" / ".debug")
    debug.rename(tmp_path / "a" / ".debug" / debug.name)
    assert _offline_finder().find(str(stripped)) == str(tmp_path / "a" / ".debug" / debug.name)
    # ... under <root>/DIR/
    root = tmp_path / "root"
    under = root / str(tmp_path / "a").lstrip("/")
    under.mkdir(parents=True)
    (tmp_path / "a" / ".debug" / debug.name).rename(under / debug.name)
    assert _offline_finder((str(root),)).find(str(stripped)) == str(under / debug.name)
    assert _offline_finder().find(str(stripped)) is None

    # 2. the build-id tree wins over the debuglink
    tree = root / ".build-id" / bid[:2]
    tree.mkdir(parents=True)
    shutil.copy(under / debug.name, tree / (bid[2:] + ".debug"))
    found = _offline_finder((str(root),)).find(str(stripped), bid)
    assert found == str(tree / (bid[2:] + ".debug"))


@needs_gcc
def test_debuglink_crc_mismatch_refused(tmp_path: Path) -> None:
    binary = _build(tmp_path, "spin")
    stripped, debug = _split(binary, tmp_path / "out", link=True)
    with open(debug, "ab") as f:
        f.write(b"\0")  # same build-id, different bytes: the CRC no longer matches
    finder = _offline_finder()
    assert finder.find(str(stripped)) is None
    assert finder.stats["debuglink_crc_mismatch"] >= 1
    assert "CRC mismatch" in finder.last_refusal


@needs_gcc
def test_build_id_tree_refuses_other_build(tmp_path: Path) -> None:
    binary = _build(tmp_path, "spin")
    (tmp_path / "o").mkdir()
    other = _build(tmp_path / "o", "spin", "int other_marker(void) { return 3; }\n")
    bid = read_build_id(str(binary))
    assert bid and read_build_id(str(other)) != bid
    root = tmp_path / "root"
    tree = root / ".build-id" / bid[:2]
    tree.mkdir(parents=True)
    shutil.copy(other, tree / (bid[2:] + ".debug"))
    stripped, _debug = _split(binary, tmp_path / "s", link=False)
    assert _offline_finder((str(root),)).find(str(stripped), bid) is None


@needs_gcc
def test_symbolizer_uses_debuglink(tmp_path: Path) -> None:
    binary = _build(tmp_path, "spin")
    offset = _func_offset(binary, "stax_hidden_leaf")
    stripped, debug = _split(binary, tmp_path / "out", link=True)
    bid = read_build_id(str(stripped))
    sym = Symbolizer(debug_finder=_offline_finder())
    r = sym.resolve_user(str(stripped), bid, offset)
    assert r.resolved and r.name == "stax_hidden_leaf", r
    assert sym.stats()["debug_debuglink"] == 1
    # CRC mismatch: the names stay missing rather than coming from the wrong file
    with open(debug, "ab") as f:
        f.write(b"x")
    sym2 = Symbolizer(debug_finder=_offline_finder())
    r2 = sym2.resolve_user(str(stripped), bid, offset)
    assert r2.name != "stax_hidden_leaf"


def test_server_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.urls").write_text("https://one.example/ # comment\nhttp://two.example\n")
    (tmp_path / "b.urls").write_text("ftp://ignored https://one.example\n")
    monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
    assert server_urls(str(tmp_path / "*.urls")) == ["https://one.example", "http://two.example"]
    monkeypatch.setenv("DEBUGINFOD_URLS", "http://127.0.0.1:1/  http://127.0.0.1:2")
    assert server_urls(str(tmp_path / "*.urls")) == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    monkeypatch.setenv("DEBUGINFOD_URLS", "")  # set but empty: debuginfod is off
    assert server_urls(str(tmp_path / "*.urls")) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_miss_is_cached(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there: connection refused at once
    client = DebuginfodClient(urls=[f"http://127.0.0.1:{port}"], cache_dir=str(tmp_path))
    bid = "ab" * 20
    t0 = time.monotonic()
    assert client.debuginfo(bid) is None
    assert time.monotonic() - t0 < 10
    assert (tmp_path / bid / "miss").is_file()
    assert client.stats["misses"] == 1 and client.stats["errors"] == 1
    # the cached miss answers without asking again
    assert client.debuginfo(bid) is None
    assert client.stats["misses"] == 1 and client.stats["cache_hits"] == 1
    # once the TTL has passed, the servers are asked again
    old = time.time() - 2 * client.miss_ttl
    os.utime(tmp_path / bid / "miss", (old, old))
    assert client.debuginfo(bid) is None
    assert client.stats["misses"] == 2
    assert client.debuginfo("not-hex") is None


# --------------------------------------------------------------------------------------------
# a real debuginfod server on loopback


@pytest.fixture(scope="module")
def debuginfod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    if DEBUGINFOD is None or not HAVE_GCC:
        pytest.skip("debuginfod or gcc not installed")
    d = tmp_path_factory.mktemp("debuginfod")
    binary = _build(d, "spin_di")
    stripped, debug = _split(binary, d / "srv", link=False)
    served = d / "served"
    served.mkdir()
    shutil.move(str(debug), served / debug.name)  # only the debug file is served
    bid = read_build_id(str(stripped))
    assert bid
    port = _free_port()
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
    binary = _build(tmp_path, "spin")
    stripped, debug = _split(binary, tmp_path / "out", link=True)
    assert b"stax_hidden_leaf" not in stripped.read_bytes()
    stax("record", "--", str(stripped), check=True, timeout=120)
    rows = _top_rows(stax)
    assert _hot_name(rows) == "stax_hidden_leaf", rows[:5]


@needs_gcc
def test_e2e_debuglink_crc_mismatch(stax: Stax, tmp_path: Path) -> None:
    binary = _build(tmp_path, "spin")
    stripped, debug = _split(binary, tmp_path / "out", link=True)
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


def test_bad_inputs_are_none(tmp_path: Path) -> None:
    finder = _offline_finder((str(tmp_path),))
    (tmp_path / "junk").write_bytes(b"\x7fELF" + b"\xff" * 60)
    (tmp_path / "text").write_text("hello")
    for path in (tmp_path / "junk", tmp_path / "text", tmp_path / "missing", tmp_path):
        for want in ("dwarf", "symtab", "separate"):
            assert finder.find(str(path), None, want) is None  # type: ignore[arg-type]
    assert finder.find(str(tmp_path / "missing"), "00" * 20) is None
    assert finder.find(str(tmp_path / "missing"), "zz-not-hex") is None
