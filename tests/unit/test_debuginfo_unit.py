"""Separate debug info on hand-built files: .gnu_debuglink parsing and its CRC, the lookup order
(the binary itself, the build-id tree, the debuglink locations), refusals of other builds, the
symbolizer through a debuglink, DEBUGINFOD_URLS parsing and a cached miss of an unreachable
server. The real debuginfod server and recordings are in e2e/test_debuginfo_e2e.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from build_helpers import build, free_port, needs_gcc, split_debug

from stax.symbols import Symbolizer, read_build_id
from stax.symbols.debuginfo import DebugInfoFinder, file_crc32, read_debuglink
from stax.symbols.debuginfod import DebuginfodClient, server_urls


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
    binary = build(tmp_path, "spin")
    stripped, debug = split_debug(binary, tmp_path / "out", link=True)
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
    binary = build(tmp_path, "spin")
    bid = read_build_id(str(binary))
    assert bid
    finder = _offline_finder()
    # 1. the binary itself carries DWARF and a .symtab
    assert finder.find(str(binary), bid, "dwarf") == str(binary)
    assert finder.find(str(binary), None, "symtab") == str(binary)
    assert finder.find(str(binary), bid, "separate") is None

    # 3. debuglink, next to the binary
    stripped, debug = split_debug(binary, tmp_path / "a", link=True)
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
    binary = build(tmp_path, "spin")
    stripped, debug = split_debug(binary, tmp_path / "out", link=True)
    with open(debug, "ab") as f:
        f.write(b"\0")  # same build-id, different bytes: the CRC no longer matches
    finder = _offline_finder()
    assert finder.find(str(stripped)) is None
    assert finder.stats["debuglink_crc_mismatch"] >= 1
    assert "CRC mismatch" in finder.last_refusal


@needs_gcc
def test_build_id_tree_refuses_other_build(tmp_path: Path) -> None:
    binary = build(tmp_path, "spin")
    (tmp_path / "o").mkdir()
    other = build(tmp_path / "o", "spin", "int other_marker(void) { return 3; }\n")
    bid = read_build_id(str(binary))
    assert bid and read_build_id(str(other)) != bid
    root = tmp_path / "root"
    tree = root / ".build-id" / bid[:2]
    tree.mkdir(parents=True)
    shutil.copy(other, tree / (bid[2:] + ".debug"))
    stripped, _debug = split_debug(binary, tmp_path / "s", link=False)
    assert _offline_finder((str(root),)).find(str(stripped), bid) is None


@needs_gcc
def test_symbolizer_uses_debuglink(tmp_path: Path) -> None:
    binary = build(tmp_path, "spin")
    offset = _func_offset(binary, "stax_hidden_leaf")
    stripped, debug = split_debug(binary, tmp_path / "out", link=True)
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


def test_unreachable_server_miss_is_cached(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: connection refused at once
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


def test_bad_inputs_are_none(tmp_path: Path) -> None:
    finder = _offline_finder((str(tmp_path),))
    (tmp_path / "junk").write_bytes(b"\x7fELF" + b"\xff" * 60)
    (tmp_path / "text").write_text("hello")
    for path in (tmp_path / "junk", tmp_path / "text", tmp_path / "missing", tmp_path):
        for want in ("dwarf", "symtab", "separate"):
            assert finder.find(str(path), None, want) is None  # type: ignore[arg-type]
    assert finder.find(str(tmp_path / "missing"), "00" * 20) is None
    assert finder.find(str(tmp_path / "missing"), "zz-not-hex") is None
