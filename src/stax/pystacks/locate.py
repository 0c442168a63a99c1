"""Finding the CPython interpreter in a process: the mapped executable or ``libpython`` that
defines ``_PyRuntime`` (.dynsym, else .symtab), its load bias from /proc/PID/maps, and the
version from ``Py_Version`` (3.11+) or the file name."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["Interpreter", "MapEntry", "find_interpreter", "parse_maps"]

_SYMBOLS = ("_PyRuntime", "Py_Version", "PyCode_Type", "_PyEval_EvalFrameDefault")
_CANDIDATE = re.compile(r"(?:^|/)(?:lib)?python(\d)\.(\d+)[a-z]*(?:\.so[.\d]*|-[\w.-]+)?$")


@dataclass(frozen=True, slots=True)
class MapEntry:
    start: int
    end: int
    perms: str
    offset: int
    path: str


@dataclass(frozen=True, slots=True)
class Interpreter:
    path: str  # the ELF file holding _PyRuntime (executable or libpython)
    bias: int  # run-time address = file virtual address + bias
    runtime_addr: int  # run-time address of _PyRuntime
    version: tuple[int, int, int]
    code_type_addr: int | None  # run-time address of PyCode_Type, for checking code objects
    # [start, end) file offsets of _PyEval_EvalFrameDefault in ``path``: a native frame at
    # (path, offset) in that range is one interpreter activation
    eval_offsets: tuple[int, int] | None = None

    def spec(self) -> dict[str, object]:
        """What a reader needs of it, as JSON values (handed to the stack-reading process,
        through staxd too: stax.pystacks.worker)."""
        return {"path": self.path, "bias": self.bias, "runtime_addr": self.runtime_addr,
                "version": list(self.version), "code_type_addr": self.code_type_addr}

    @classmethod
    def from_spec(cls, i: dict[str, object]) -> Interpreter:
        """``spec()`` read back; KeyError / TypeError / ValueError when it is not one."""
        code_type = i["code_type_addr"]
        version = tuple(int(v) for v in i["version"])  # type: ignore[attr-defined]
        if len(version) != 3:
            raise ValueError("version must be [major, minor, micro]")
        return cls(str(i["path"]), int(i["bias"]), int(i["runtime_addr"]),  # type: ignore[arg-type]
                   version,  # type: ignore[arg-type]
                   None if code_type is None else int(code_type))  # type: ignore[arg-type]


def parse_maps(text: str) -> list[MapEntry]:
    out: list[MapEntry] = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            lo, hi = (int(x, 16) for x in parts[0].split("-", 1))
            off = int(parts[2], 16)
        except ValueError:
            continue
        path = parts[5].strip() if len(parts) > 5 else ""
        out.append(MapEntry(lo, hi, parts[1], off, path))
    return out


def _elf_symbols(path: str, names: tuple[str, ...]) -> tuple[dict[str, tuple[int, int]], int, list]:
    """The (file virtual address, size) of ``names`` found in .dynsym or .symtab, the ELF
    type's ET_EXEC-ness (1 if fixed addresses), and the PT_LOAD segments (vaddr, offset,
    file size)."""
    from stax.pystacks.elfsyms import read_symbols

    quick = read_symbols(path, names)
    if quick is not None:
        return quick
    from elftools.elf.elffile import ELFFile

    found: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as f:
        elf = ELFFile(f)
        fixed = 1 if elf.header["e_type"] == "ET_EXEC" else 0
        loads = [
            (seg["p_vaddr"], seg["p_offset"], seg["p_filesz"])
            for seg in elf.iter_segments()
            if seg["p_type"] == "PT_LOAD"
        ]
        for secname in (".dynsym", ".symtab"):
            sec = elf.get_section_by_name(secname)
            if sec is None or not hasattr(sec, "get_symbol_by_name"):
                continue
            for name in names:
                if name in found:
                    continue
                syms = sec.get_symbol_by_name(name)
                for sym in syms or ():
                    if sym["st_shndx"] != "SHN_UNDEF" and sym["st_value"]:
                        found[name] = (sym["st_value"], sym["st_size"])
                        break
    return found, fixed, loads


def _bias(entries: list[MapEntry], fixed: int, loads: list) -> int | None:
    if fixed:
        return 0
    for e in entries:
        for vaddr, off, _filesz in loads:
            page_off = off & ~0xFFF
            if e.offset == page_off:
                return e.start - (vaddr & ~0xFFF)
    return None


def _file_range(loads: list, vaddr: int, size: int) -> tuple[int, int] | None:
    for seg_vaddr, seg_off, filesz in loads:
        if seg_vaddr <= vaddr < seg_vaddr + filesz:
            start = vaddr - seg_vaddr + seg_off
            return (start, start + max(size, 1))
    return None


def _name_version(path: str) -> tuple[int, int] | None:
    m = _CANDIDATE.search(path)
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_interpreter(pid: int, mem=None, maps_text: str | None = None) -> Interpreter | None:
    """The CPython interpreter mapped into ``pid``, or None when it runs none that stax can
    locate. ``mem`` (a ProcessMemory) reads ``Py_Version`` from the running image."""
    if maps_text is None:
        with open(f"/proc/{pid}/maps") as f:
            maps_text = f.read()
    by_path: dict[str, list[MapEntry]] = {}
    for e in parse_maps(maps_text):
        if e.path.startswith("/") and _CANDIDATE.search(e.path):
            by_path.setdefault(e.path, []).append(e)
    # libpython first: an executable that links it dynamically has no _PyRuntime of its own
    for path in sorted(by_path, key=lambda p: "libpython" not in p):
        real = f"/proc/{pid}/root{path}" if os.path.exists(f"/proc/{pid}/root{path}") else path
        try:
            syms, fixed, loads = _elf_symbols(real, _SYMBOLS)
        except Exception:  # not an ELF file, unreadable, truncated: not this one
            continue
        if "_PyRuntime" not in syms:
            continue
        bias = _bias(by_path[path], fixed, loads)
        if bias is None:
            continue
        version = None
        if mem is not None and "Py_Version" in syms:
            try:
                hexv = mem.u64(syms["Py_Version"][0] + bias) & 0xFFFFFFFF
                version = (hexv >> 24, (hexv >> 16) & 0xFF, (hexv >> 8) & 0xFF)
            except OSError:
                version = None
        if version is None:
            nv = _name_version(path)
            if nv is None:
                continue
            version = (nv[0], nv[1], 0)
        code_type = syms.get("PyCode_Type")
        ev = syms.get("_PyEval_EvalFrameDefault")
        return Interpreter(
            path=path,
            bias=bias,
            runtime_addr=syms["_PyRuntime"][0] + bias,
            version=version,
            code_type_addr=code_type[0] + bias if code_type is not None else None,
            eval_offsets=_file_range(loads, *ev) if ev is not None else None,
        )
    return None
