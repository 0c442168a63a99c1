"""Kernel symbolization: the live /proc/kallsyms, a hand-written one with modules and data
symbols, and a restricted one (all addresses zero)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stax.symbols import Resolved, Symbolizer


def _kallsyms_text_line() -> tuple[int, set[str], str] | None:
    try:
        lines = Path("/proc/kallsyms").read_text().splitlines()
    except OSError:
        return None
    by_addr: dict[int, list[tuple[str, str]]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[1] not in "tTwW":
            continue
        by_addr.setdefault(int(parts[0], 16), []).append((parts[2], parts[1]))
    for addr, entries in by_addr.items():
        if addr and len(entries) == 1 and entries[0][0] in ("schedule", "do_sys_open", "vfs_read"):
            return addr, {entries[0][0]}, entries[0][0]
    for addr, entries in by_addr.items():
        if addr and len(entries) == 1 and entries[0][1] == "T":
            return addr, {entries[0][0]}, entries[0][0]
    return None


def test_kernel_resolution() -> None:
    found = _kallsyms_text_line()
    if found is None:
        pytest.skip("/proc/kallsyms unreadable or restricted")
    addr, names, name = found
    sym = Symbolizer()
    r = sym.resolve_kernel(addr)
    assert r.resolved and r.name in names and r.func_addr == addr
    assert r.binary == "[kernel.kallsyms]" and r.path == ""
    r = sym.resolve_kernel(addr + 1)
    assert r.name == name and r.func_addr == addr
    assert sym.stats()["kernel_symbols"] > 1000


def test_kernel_fake_kallsyms(tmp_path: Path) -> None:
    fake = tmp_path / "kallsyms"
    fake.write_text(
        "ffffffff81000000 T _stext\n"
        "ffffffff81000000 T startup_64\n"
        "ffffffff81001000 t helper\n"
        "ffffffff81002000 D some_data\n"
        "ffffffff81003000 T last_core\n"
        "ffffffffc0001000 t ext4_thing\t[ext4]\n"
        "ffffffffc0000000 T early_mod\t[xfs]\n"
    )
    sym = Symbolizer(kallsyms_path=str(fake))
    assert sym.resolve_kernel(0xFFFFFFFF81000010).name == "startup_64"
    assert sym.resolve_kernel(0xFFFFFFFF81002010).name == "helper"  # data is not a function
    r = sym.resolve_kernel(0xFFFFFFFFC0001004)
    assert (r.name, r.binary, r.func_addr) == ("ext4_thing", "[ext4]", 0xFFFFFFFFC0001000)
    assert sym.resolve_kernel(0xFFFFFFFFC0000008).binary == "[xfs]"
    r = sym.resolve_kernel(0x1000)
    assert not r.resolved and r.name == "[kernel]+0x1000"


def test_kernel_restricted(tmp_path: Path) -> None:
    fake = tmp_path / "kallsyms"
    fake.write_text(
        "0000000000000000 T _stext\n0000000000000000 t helper\n0000000000000000 T schedule\n"
    )
    sym = Symbolizer(kallsyms_path=str(fake))
    r = sym.resolve_kernel(0xFFFFFFFF81234567)
    assert r == Resolved("[kernel]+0xffffffff81234567", "[kernel.kallsyms]", "", 0, 0, False)
    missing = Symbolizer(kallsyms_path=str(tmp_path / "nope"))
    assert not missing.resolve_kernel(0xFFFFFFFF81234567).resolved
