"""Names for code no symbol covers (stax.symbols.fdenames): the FDE extent of each function of a
stripped binary, ``_start`` at the entry point, ``NAME@plt`` for PLT stubs (checked against
objdump's names), and the symbolizer falling back to them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from build_helpers import func_sym, needs_gcc
from elftools.elf.elffile import ELFFile

from stax.symbols import read_build_id
from stax.symbols.elf import ElfImage
from stax.symbols.fdenames import UnwindNames, plt_names
from stax.symbols.symbolizer import Symbolizer

ROOT = Path(__file__).resolve().parents[2]


def _stripped_split(tmp_path: Path) -> tuple[Path, Path]:
    full = tmp_path / "split.full"
    subprocess.run(["gcc", "-O2", "-o", str(full), str(ROOT / "workloads" / "split.c")],
                   check=True)
    stripped = tmp_path / "split"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(full)], check=True)
    return full, stripped


@needs_gcc
def test_stripped_functions_named_by_fde_extent(tmp_path: Path) -> None:
    full, stripped = _stripped_split(tmp_path)
    sym = Symbolizer()
    image = ElfImage.open(str(stripped), None)
    seen = set()
    for name in ("work_a", "work_b", "work_c", "main"):
        start, size = func_sym(full, name)
        off = image.vaddr_to_offset(start)
        assert off is not None
        for delta in (0, 1, size // 2, size - 1):  # every address of the function: one name
            r = sym.resolve_user(str(stripped), None, off + delta)
            assert (r.name, r.func_addr, r.func_size, r.resolved) == (
                f"split+0x{off:x}", start, size, False), (name, delta, r)
        seen.add(r.name)
    assert len(seen) == 4
    assert sym.stats()["by_unwind_info"] == 16
    # the entry point is _start, though stripped
    with open(stripped, "rb") as f:
        entry = ELFFile(f)["e_entry"]
    r = sym.resolve_user(str(stripped), None, image.vaddr_to_offset(entry) or 0)
    assert r.name == "_start" and r.resolved and r.func_addr == entry
    # the unstripped binary keeps its symbols (a fresh symbolizer: both share one build-id)
    off = image.vaddr_to_offset(func_sym(full, "work_b")[0]) or 0
    r = Symbolizer().resolve_user(str(full), read_build_id(str(full)), off)
    assert r.name == "work_b" and r.resolved


@needs_gcc
def test_fde_table_direct_lookup(tmp_path: Path) -> None:
    full, stripped = _stripped_split(tmp_path)
    names = UnwindNames(str(stripped), None)
    start, size = func_sym(full, "work_c")
    u = names.lookup(start + 3)
    assert u is not None and (u.name, u.start, u.size) == (None, start, size)
    assert names.lookup(0) is None  # the ELF header: no function
    assert UnwindNames(str(tmp_path / "missing"), None).lookup(0x1000) is None


def _objdump_plt(path: str) -> dict[int, str]:
    out = subprocess.run(["objdump", "-d", "-j", ".plt", "-j", ".plt.sec", "-j", ".plt.got",
                          path], capture_output=True, text=True, check=True).stdout
    return {int(a, 16): n for a, n in re.findall(r"^([0-9a-f]+) <(\S+@plt)>:", out, re.M)}


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not available")
@pytest.mark.parametrize("path", ["/bin/ls", "/usr/bin/xz"])
def test_plt_names_match_objdump(path: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"{path} not installed")
    with open(path, "rb") as f:
        ours = {start: name for start, _size, name in plt_names(ELFFile(f))}
    theirs = _objdump_plt(path)
    assert len(theirs) > 10
    assert ours == theirs
    # and through the symbolizer: an address inside a stub names it
    start, name = next(iter(sorted(theirs.items())))
    image = ElfImage.open(path, None)
    off = image.vaddr_to_offset(start)
    assert off is not None
    r = Symbolizer().resolve_user(path, None, off + 4)
    assert (r.name, r.func_addr, r.resolved) == (name, start, True)


_SHORT_SIZE_SRC = r"""
__asm__(".text\n.globl short_sized\n.type short_sized, @function\nshort_sized:\n"
        ".cfi_startproc\n" ".rept 32\nnop\n.endr\n" "ret\n.cfi_endproc\n"
        ".size short_sized, 4\n");
void short_sized(void);
int main(void) { short_sized(); return 0; }
"""


@needs_gcc
def test_address_past_a_symbols_size(tmp_path: Path) -> None:
    """A symbol whose size is too small: the rest of its FDE range still carries its name."""
    src = tmp_path / "short.c"
    src.write_text(_SHORT_SIZE_SRC)
    exe = tmp_path / "short"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    start, size = func_sym(exe, "short_sized")
    assert size == 4
    image = ElfImage.open(str(exe), None)
    off = image.vaddr_to_offset(start + 20)
    assert off is not None
    r = Symbolizer().resolve_user(str(exe), read_build_id(str(exe)), off)
    assert (r.name, r.func_addr, r.func_size, r.resolved) == ("short_sized", start, 33, True)
