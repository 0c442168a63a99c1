"""Small programs compiled for the tests, unit and end to end: a spinning C program with its debug
info split off (objcopy), ELF symbol lookups, a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

HAVE_GCC = shutil.which("gcc") is not None and shutil.which("objcopy") is not None
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="gcc/objcopy not available")

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


def run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


def build(d: Path, name: str, variant: str = "") -> Path:
    """Compile `name` with -g; returns the unstripped binary."""
    src = d / f"{name}.c"
    src.write_text(SPIN_SRC + variant)
    out = d / name
    run("gcc", "-O2", "-g", "-o", out, src)
    return out


def split_debug(binary: Path, out_dir: Path, link: bool) -> tuple[Path, Path]:
    """(stripped binary, debug file): objcopy --only-keep-debug, then strip, then optionally
    --add-gnu-debuglink."""
    out_dir.mkdir(parents=True, exist_ok=True)
    debug = out_dir / (binary.name + ".debug")
    stripped = out_dir / binary.name
    run("objcopy", "--only-keep-debug", binary, debug)
    run("objcopy", "--strip-debug", "--strip-unneeded", binary, stripped)
    if link:
        run("objcopy", f"--add-gnu-debuglink={debug}", stripped)
    return stripped, debug


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def func_sym(path: Path, name: str) -> tuple[int, int]:
    """(st_value, st_size) of ``name`` in the .symtab of ``path``."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
        return sym["st_value"], sym["st_size"]
