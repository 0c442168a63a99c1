"""Tests for stax.symbols in user space: ELF and vDSO symbolization and build-ids. Small C/C++
programs are compiled into a temporary directory with the system gcc/g++. Kernel symbols and
demangling are in test_kernel_symbols_unit.py and test_demangle_unit.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from io import BytesIO
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stax.binaries import read_vdso_image
from stax.symbols import Resolved, Symbolizer, read_build_id

HAVE_GCC = shutil.which("gcc") is not None
HAVE_GXX = shutil.which("g++") is not None
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="gcc not available")
needs_gxx = pytest.mark.skipif(not HAVE_GXX, reason="g++ not available")

C_SRC = r"""
static int __attribute__((noipa)) static_worker(int x) {
    volatile int s = 0;
    for (int i = 0; i < x; i++) s += i * 3;
    return s;
}
int __attribute__((noinline)) global_worker(int x) {
    volatile int s = 1;
    for (int i = 0; i < x; i++) s ^= i;
    return s + static_worker(x);
}
int main(int argc, char **argv) { (void)argv; return global_worker(argc) & 1; }
"""

C_SRC_V2 = C_SRC.replace("i * 3", "i * 7 + 1")

LABEL_SRC = r"""
__asm__(".text\n.globl notype_label\nnotype_label:\n nop\n nop\n nop\n ret\n");
int main(void) { return 0; }
"""

LIB_SRC = r"""
static int __attribute__((noipa)) lib_static(int x) {
    volatile int s = 0;
    for (int i = 0; i < x; i++) s += i;
    return s;
}
int __attribute__((noinline)) lib_api(int x) { return lib_static(x) + 1; }
"""

CXX_SRC = r"""
namespace ns {
template <typename T> struct Type {
    T v;
    __attribute__((noinline)) T method();
};
template <typename T> T Type<T>::method() { volatile T x = v; return x * 2; }
template struct Type<int>;
}
int main(int argc, char **) { ns::Type<int> t{argc}; return t.method(); }
"""


def _compile(tmp: Path, name: str, src: str, *flags: str, cxx: bool = False) -> Path:
    ext = ".cc" if cxx else ".c"
    src_path = tmp / f"{name}{ext}"
    src_path.write_text(src)
    out = tmp / name
    cmd = ["g++" if cxx else "gcc", "-O2", "-g", *flags, "-o", str(out), str(src_path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not HAVE_GCC:
        pytest.skip("gcc not available")
    tmp = tmp_path_factory.mktemp("symbins")
    bid = "-Wl,--build-id=sha1"
    out = {
        "pie": _compile(tmp, "prog_pie", C_SRC, "-fPIE", "-pie", bid),
        "nopie": _compile(tmp, "prog_nopie", C_SRC, "-fno-pie", "-no-pie", bid),
        "v2": _compile(tmp, "prog_v2", C_SRC_V2, "-fPIE", "-pie", bid),
        "nobid": _compile(tmp, "prog_nobid", C_SRC, "-Wl,--build-id=none"),
        "label": _compile(tmp, "prog_label", LABEL_SRC, bid),
        "lib": _compile(tmp, "libdemo.so", LIB_SRC, "-shared", "-fPIC", bid),
    }
    for key in ("pie", "lib"):
        stripped = tmp / (out[key].name + ".stripped")
        subprocess.run(
            ["strip", "--strip-all", "-o", str(stripped), str(out[key])],
            check=True,
            capture_output=True,
        )
        out[key + "_stripped"] = stripped
    if HAVE_GXX:
        out["cxx"] = _compile(tmp, "prog_cxx", CXX_SRC, bid, cxx=True)
    return out


def _symbol(path: Path, name: str) -> tuple[int, int]:
    """(st_value, st_size) of `name` from .symtab or .dynsym."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for secname in (".symtab", ".dynsym"):
            sec = elf.get_section_by_name(secname)
            if sec is None:
                continue
            found = sec.get_symbol_by_name(name)
            if found:
                return found[0]["st_value"], found[0]["st_size"]
    raise LookupError(name)


def _vaddr_to_offset(path: Path | BytesIO, vaddr: int) -> int:
    f = open(path, "rb") if isinstance(path, Path) else path
    try:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            if seg["p_vaddr"] <= vaddr < seg["p_vaddr"] + seg["p_filesz"]:
                return vaddr - seg["p_vaddr"] + seg["p_offset"]
    finally:
        if isinstance(path, Path):
            f.close()
    raise LookupError(hex(vaddr))


def _func_offset(path: Path, name: str, delta: int = 2) -> tuple[int, int, int]:
    value, size = _symbol(path, name)
    return _vaddr_to_offset(path, value + delta), value, size


# ---------------------------------------------------------------------------------------------
# user space


@needs_gcc
@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_resolve_functions(bins: dict[str, Path], kind: str) -> None:
    path = bins[kind]
    sym = Symbolizer()
    bid = read_build_id(str(path))
    assert bid
    for name in ("global_worker", "static_worker", "main"):
        off, value, size = _func_offset(path, name)
        r = sym.resolve_user(str(path), bid, off)
        assert isinstance(r, Resolved)
        assert r.resolved, r
        assert r.name == name
        assert r.binary == path.name
        assert r.path == str(path)
        assert r.func_addr == value
        assert r.func_size == size
        # same answer without a build-id (cache keyed by the file's own build-id)
        assert sym.resolve_user(str(path), None, off).name == name


@needs_gcc
def test_file_offset_to_vaddr(bins: dict[str, Path]) -> None:
    path = bins["pie"]
    sym = Symbolizer()
    off, value, _ = _func_offset(path, "global_worker", delta=0)
    assert sym.file_offset_to_vaddr(str(path), None, off) == value
    assert sym.file_offset_to_vaddr(str(path), read_build_id(str(path)), off) == value
    assert sym.file_offset_to_vaddr("/nonexistent/file", None, off) is None


@needs_gxx
def test_cxx_template_method_demangled(bins: dict[str, Path]) -> None:
    path = bins["cxx"]
    off, value, _ = _func_offset(path, "_ZN2ns4TypeIiE6methodEv")
    r = Symbolizer().resolve_user(str(path), read_build_id(str(path)), off)
    assert r.resolved
    assert r.name == "ns::Type<int>::method()"
    assert r.func_addr == value


@needs_gcc
def test_shared_library(bins: dict[str, Path]) -> None:
    path = bins["lib"]
    sym = Symbolizer()
    for name in ("lib_api", "lib_static"):
        off, value, _ = _func_offset(path, name)
        r = sym.resolve_user(str(path), None, off)
        assert (r.name, r.binary, r.func_addr, r.resolved) == (name, "libdemo.so", value, True)


@needs_gcc
def test_stripped_binaries(bins: dict[str, Path]) -> None:
    sym = Symbolizer()
    # executable: .symtab gone, static function has no symbol at all
    exe = bins["pie_stripped"]
    off, value, size = _func_offset(bins["pie"], "static_worker")
    r = sym.resolve_user(str(exe), None, off)
    assert not r.resolved
    # named after the start of its FDE (the function's extent from .eh_frame)
    assert r.name == f"{exe.name}+0x{off - 2:x}"
    assert (r.func_addr, r.func_size, r.binary) == (value, size, exe.name)
    # shared library: exported function survives in .dynsym, static one does not
    lib = bins["lib_stripped"]
    off_api, value, _ = _func_offset(bins["lib"], "lib_api")
    r = sym.resolve_user(str(lib), None, off_api)
    assert r.resolved and r.name == "lib_api" and r.func_addr == value
    off_static, _, _ = _func_offset(bins["lib"], "lib_static")
    r = sym.resolve_user(str(lib), None, off_static)
    assert not r.resolved
    assert r.name == f"{lib.name}+0x{off_static - 2:x}"
    # no FDE covers the ELF header: an address name of its own
    r = sym.resolve_user(str(lib), None, 0x10)
    assert not r.resolved and r.name == f"{lib.name}+0x10" and r.func_size == 0


@needs_gcc
def test_notype_label_fallback(bins: dict[str, Path]) -> None:
    path = bins["label"]
    off, value, _ = _func_offset(path, "notype_label", delta=1)
    r = Symbolizer().resolve_user(str(path), None, off)
    assert r.resolved and r.name == "notype_label" and r.func_addr == value


@needs_gcc
def test_build_id_mismatch_is_unresolved(bins: dict[str, Path]) -> None:
    sym = Symbolizer()
    good = read_build_id(str(bins["pie"]))
    other = read_build_id(str(bins["v2"]))
    assert good and other and good != other
    off, _, _ = _func_offset(bins["pie"], "global_worker")
    # the file at this path is v2, but the profiled process mapped the original build
    r = sym.resolve_user(str(bins["v2"]), good, off)
    assert not r.resolved
    assert r.name == f"{bins['v2'].name}+0x{off:x}"
    r = sym.resolve_user(str(bins["pie"]), "ab" * 20, off)
    assert not r.resolved
    assert sym.stats()["build_id_mismatches"] >= 2
    # the matching build-id still resolves; upper-case / zero-padded ids are accepted
    assert sym.resolve_user(str(bins["pie"]), good.upper(), off).name == "global_worker"
    padded = good + "0" * (40 - len(good)) + "00000000"
    assert sym.resolve_user(str(bins["pie"]), padded, off).name == "global_worker"
    # a file with no build-id cannot be verified against an expected one (fresh symbolizer:
    # a cached image for `good` would legitimately be reused whatever the path)
    off2, _, _ = _func_offset(bins["nobid"], "global_worker")
    assert not Symbolizer().resolve_user(str(bins["nobid"]), good, off2).resolved


@needs_gcc
def test_no_build_id_binary(bins: dict[str, Path]) -> None:
    path = bins["nobid"]
    assert read_build_id(str(path)) is None
    off, _, _ = _func_offset(path, "static_worker")
    assert Symbolizer().resolve_user(str(path), None, off).name == "static_worker"


@needs_gcc
def test_read_build_id_matches_tools(bins: dict[str, Path]) -> None:
    for key in ("pie", "nopie", "lib", "lib_stripped"):
        path = bins[key]
        ours = read_build_id(str(path))
        with open(path, "rb") as f:
            elf = ELFFile(f)
            expected = None
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_NOTE":
                    continue
                for note in seg.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        expected = note["n_desc"]
        assert ours == expected
        if shutil.which("readelf"):
            out = subprocess.run(
                ["readelf", "-n", str(path)], check=True, capture_output=True, text=True
            ).stdout
            m = re.search(r"Build ID:\s*([0-9a-f]+)", out)
            assert m and m.group(1) == ours


def test_read_build_id_bad_inputs(tmp_path: Path) -> None:
    assert read_build_id(str(tmp_path / "missing")) is None
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an elf file at all")
    assert read_build_id(str(junk)) is None
    assert read_build_id(str(tmp_path)) is None
    short = tmp_path / "short"
    short.write_bytes(b"\x7fELF\x02\x01\x01")
    assert read_build_id(str(short)) is None


@needs_gcc
def test_robust_against_bad_files(bins: dict[str, Path], tmp_path: Path) -> None:
    sym = Symbolizer()
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x00" * 4096)
    data = bins["pie"].read_bytes()
    truncated = tmp_path / "trunc"
    truncated.write_bytes(data[:100])
    half = tmp_path / "half"
    half.write_bytes(data[: len(data) // 3])
    unreadable = tmp_path / "noperm"
    unreadable.write_bytes(data)
    unreadable.chmod(0)
    cases = ["/does/not/exist/libx.so", str(junk), str(truncated), str(half), str(unreadable)]
    cases.append(str(tmp_path))  # a directory
    for path in cases:
        for bid in (None, "12" * 20):
            r = sym.resolve_user(path, bid, 0x1234)
            assert not r.resolved or path in (str(half), str(unreadable))
            assert r.binary == os.path.basename(path)
        assert sym.file_offset_to_vaddr(path, None, 0x1234) in (None, 0x1234) or path in (
            str(half),
            str(unreadable),
        )
    st = sym.stats()
    assert st["missing_files"] >= 1
    assert st["bad_files"] >= 2
    assert st["unresolved"] >= 6


def test_special_mappings() -> None:
    sym = Symbolizer()
    r = sym.resolve_user("", None, 0x10)
    assert (r.name, r.binary, r.resolved) == ("[anon]+0x10", "[anon]", False)
    assert sym.resolve_user("//anon", None, 0x20).name == "[anon]+0x20"
    r = sym.resolve_user("[heap]", None, 0x30)
    assert (r.name, r.binary, r.resolved) == ("[heap]+0x30", "[heap]", False)
    assert sym.resolve_user("[stack]", None, 0x40).name == "[stack]+0x40"


@needs_gcc
def test_deleted_file_without_build_id_is_unresolved(bins: dict[str, Path]) -> None:
    path = bins["pie"]
    off, _, _ = _func_offset(path, "global_worker")
    sym = Symbolizer()
    r = sym.resolve_user(str(path) + " (deleted)", None, off)
    assert not r.resolved and r.binary == path.name
    r = sym.resolve_user(str(path) + " (deleted)", read_build_id(str(path)), off)
    assert r.resolved and r.name == "global_worker"


@needs_gcc
def test_pid_root_fallback(bins: dict[str, Path]) -> None:
    # /proc/<pid>/root of ourselves is "/", so a missing path stays missing without errors
    sym = Symbolizer()
    r = sym.resolve_user("/no/such/dir/prog", None, 0x100, pid=os.getpid())
    assert not r.resolved
    off, _, _ = _func_offset(bins["pie"], "main")
    assert sym.resolve_user(str(bins["pie"]), None, off, pid=os.getpid()).name == "main"


@needs_gcc
def test_lru_eviction_and_stats(bins: dict[str, Path]) -> None:
    sym = Symbolizer(max_binaries=1)
    for key in ("pie", "nopie", "pie"):
        off, _, _ = _func_offset(bins[key], "main")
        assert sym.resolve_user(str(bins[key]), None, off).name == "main"
    st = sym.stats()
    assert st["binaries_cached"] == 1
    assert st["binaries_evicted"] >= 2
    assert st["user_lookups"] == 3
    assert st["binaries_loaded"] == 3


@needs_gcc
def test_thread_safety(bins: dict[str, Path]) -> None:
    sym = Symbolizer()
    targets = []
    for key in ("pie", "nopie", "lib"):
        for name in ("main", "global_worker") if key != "lib" else ("lib_api", "lib_static"):
            off, _, _ = _func_offset(bins[key], name)
            targets.append((str(bins[key]), off, name))
    errors: list[str] = []

    def work() -> None:
        for _ in range(200):
            for path, off, name in targets:
                r = sym.resolve_user(path, None, off)
                if r.name != name:
                    errors.append(f"{path}: {r.name} != {name}")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_libc_load_and_lookup_speed() -> None:
    libc = None
    for cand in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib/libc.so.6"):
        if os.path.exists(cand):
            libc = Path(cand)
            break
    if libc is None:
        pytest.skip("libc not found")
    off, value, _ = _func_offset(libc, "malloc")
    sym = Symbolizer()
    t0 = time.perf_counter()
    r = sym.resolve_user(str(libc), read_build_id(str(libc)), off)
    load = time.perf_counter() - t0
    assert r.resolved and r.func_addr == value
    assert r.name in ("malloc", "__libc_malloc")
    assert load < 0.5  # typically ~20 ms
    t0 = time.perf_counter()
    for i in range(2000):
        sym.resolve_user(str(libc), None, off + (i & 31))
    per = (time.perf_counter() - t0) / 2000
    assert per < 200e-6  # typically a few microseconds


# ---------------------------------------------------------------------------------------------
# vDSO


def test_vdso() -> None:
    image = read_vdso_image()
    if image is None:
        pytest.skip("no vDSO in this process")
    elf = ELFFile(BytesIO(image))
    dynsym = elf.get_section_by_name(".dynsym")
    assert dynsym is not None
    wanted = None
    for sym in dynsym.iter_symbols():
        if sym.name in ("__vdso_clock_gettime", "clock_gettime") and sym["st_value"]:
            wanted = sym
            break
    if wanted is None:
        pytest.skip("vDSO has no clock_gettime")
    off = _vaddr_to_offset(BytesIO(image), wanted["st_value"] + 4)
    r = Symbolizer().resolve_user("[vdso]", None, off)
    assert r.resolved
    assert r.name in ("__vdso_clock_gettime", "clock_gettime")
    assert r.binary == "[vdso]"
    assert not Symbolizer().resolve_user("[vdso]", "cd" * 20, off).resolved
