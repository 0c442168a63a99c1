"""The annotate view: one sampled function disassembled from the binary on disk, with the self
samples placed on its instructions and DWARF source lines as headers (a Python function: the
lines of its .py file, stax.profile.pyannotate).

Pure: tables + filter + target in, a JSON-ready dict out. Leaf frames are the sampled
instruction pointers (callers are stored at return address - 1), so only self samples are
placed; a sample that cannot be placed on an instruction boundary is counted, never dropped.
Of the Filter's transforms, those that choose samples apply (``drop``, ``focus``,
``focus_path``: the samples they leave out are not counted, and the totals are of the rest);
``exclude``, ``collapse_binary`` and ``merge_recursion`` only reshape stacks, and an
instruction's samples stay its own.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from stax.binaries import Binary, display, locate
from stax.profile import access, srclines
from stax.profile.codestore import store_of
from stax.profile.selection import (
    Filter,
    FuncPaths,
    TransformedPaths,
    oncpu_weights,
    transformed_groups,
)
from stax.profile.tables import KERNEL_BINARY, UNKNOWN_BINARY, Profile

MIN_CANDIDATES = 256  # the hottest functions a name is matched against (at least)
HOTTEST_LISTED = 20  # names listed when nothing matches
MAX_CODE_BYTES = 1 << 20  # a larger function is disassembled up to this many bytes
UNKNOWN_SIZE_SLACK = 64  # bytes past the last sample when the symbol has no size
UNPLACED_LISTED = 20

_HEX = re.compile(r"^0x[0-9a-f]+$", re.I)


class AnnotateError(Exception):
    """The request cannot be answered (bad target); the message says why."""


@dataclass(slots=True)
class _Ranked:
    func: int
    self_n: int = 0
    self_w: int = 0
    total_n: int = 0
    leaf_frames: dict[int, list[int]] = field(default_factory=dict)  # frame -> [samples, ns]


def parse_target(target: str) -> int | None:
    """The address a target names, or None when it is a name substring."""
    t = target.strip()
    if _HEX.match(t):
        return int(t, 16)
    return None


def _rank(p: Profile, flt: Filter) -> tuple[list[_Ranked], int, int]:
    """Every sampled function, hottest first (self samples, then total samples)."""
    scope = Filter(tid=flt.tid, start_ns=flt.start_ns, end_ns=flt.end_ns)  # no exclusions
    groups, total_n, total_w = oncpu_weights(p, scope)
    if flt.drop or flt.focus or flt.focus_path:  # the samples these transforms leave out
        groups, total_n, total_w = transformed_groups(groups, TransformedPaths(p, flt))
    paths = FuncPaths(p, (), inline=False)  # whole functions: inlined code is their own
    ranked: dict[int, _Ranked] = {}
    for sid, (n, w) in groups.items():
        if sid < 0:
            continue
        path = paths.get(sid)
        for func in set(path):
            r = ranked.get(func)
            if r is None:
                r = ranked[func] = _Ranked(func)
            r.total_n += n
        leaf_frame = p.stack_frame[sid]
        leaf = p.func_of_frame(leaf_frame)
        r = ranked.get(leaf)
        if r is None:
            r = ranked[leaf] = _Ranked(leaf)
            r.total_n += n
        r.self_n += n
        r.self_w += w
        acc = r.leaf_frames.get(leaf_frame)
        if acc is None:
            r.leaf_frames[leaf_frame] = [n, w]
        else:
            acc[0] += n
            acc[1] += w
    order = sorted(ranked.values(),
                   key=lambda r: (-r.self_n, -r.total_n, p.funcs[r.func].name))
    return order, total_n, total_w


def _match(p: Profile, ranked: list[_Ranked], target: str,
           exact: bool = False) -> tuple[_Ranked | None, str]:
    if exact:  # the full name, as a view printed it (a UI selecting a function)
        for r in ranked:
            if p.funcs[r.func].name == target:
                return r, "exact"
        return None, "exact"
    addr = parse_target(target)
    if addr is not None:
        for r in ranked:
            f = p.funcs[r.func]
            if f.has_extent and f.addr <= addr < f.addr + max(f.size, 1):
                return r, "address"
        # a run-time address (as a debugger or /proc/PID/maps shows it): through the mappings
        for path, vaddr in _runtime_to_elf(p, addr):
            for r in ranked:
                f = p.funcs[r.func]
                if f.has_extent and f.path == path and f.addr <= vaddr < f.addr + max(f.size, 1):
                    return r, "address"
        # an unresolved frame named by its own address (binary+0xOFFSET shown in top)
        for r in ranked:
            for fid in r.leaf_frames:
                if p.frame_offset[fid] == addr and not p.funcs[r.func].resolved:
                    return r, "address"
        return None, "address"
    needle = target.strip().lower()
    if not needle:
        raise AnnotateError("empty target: give a hex address (0x401136) or part of a name")
    pool = ranked[:max(MIN_CANDIDATES, len(ranked))]
    for r in pool:
        if needle in p.funcs[r.func].name.lower():
            return r, "name"
    return None, "name"


def _runtime_to_elf(p: Profile, addr: int) -> list[tuple[str, int]]:
    """(binary path, ELF virtual address) of a run-time address in each recorded process that
    had it mapped."""
    out: list[tuple[str, int]] = []
    if p.symbolizer is None:
        return out
    with p.lock:
        hits = [m for proc in p.processes.values() if (m := proc.find(addr)) is not None]
    for m in hits:
        if m.binary in (KERNEL_BINARY, UNKNOWN_BINARY):
            continue
        b = p.binaries[m.binary]
        vaddr = p.symbolizer.offset_to_vaddr(b, addr - m.start + m.pgoff)
        if vaddr is not None and (b.path, vaddr) not in out:
            out.append((b.path, vaddr))
    return out


def _hottest(p: Profile, ranked: list[_Ranked], n: int) -> list[dict[str, Any]]:
    out = []
    landed = [r for r in ranked if r.self_n] or ranked
    for r in landed[:n]:
        f = p.funcs[r.func]
        out.append({"func": f.name, "binary": f.binary, "addr": 0 if f.python else f.addr,
                    "self_samples": r.self_n, "total_samples": r.total_n})
    return out


def annotate(p: Profile, flt: Filter, target: str, exact: bool = False) -> dict[str, Any]:
    """Annotate the function ``target`` names (hex ELF address, or a case-insensitive name
    substring: the hottest match wins; with ``exact``, the function of exactly that name)."""
    ranked, total_n, total_w = _rank(p, flt)
    hit, how = _match(p, ranked, target, exact)
    base: dict[str, Any] = {"target": target, "matched_by": how, "total_samples": total_n,
                            "total_ns": total_w}
    if hit is None:
        base.update({"function": None, "hottest": _hottest(p, ranked, HOTTEST_LISTED)})
        return base
    f = p.funcs[hit.func]
    if f.python:  # the lines of its .py file, not instructions
        from stax.profile.pyannotate import annotate_python

        return annotate_python(p, flt, hit.func, base, hit.self_n, hit.self_w, hit.total_n)
    # the binary of the frames: path and build-id as recorded
    bin_counts: dict[int, int] = defaultdict(int)
    for fid, (n, _w) in hit.leaf_frames.items():
        bin_counts[p.frame_binary[fid]] += n
    bin_id = max(bin_counts, key=lambda b: bin_counts[b]) if bin_counts else None
    if bin_id is None and f.has_extent and f.path:
        # no self samples (only on stacks as a caller): the binary the symbol came from
        with p.lock:
            same = [i for i, b in enumerate(p.binaries) if b.path == f.path]
        bin_id = same[0] if same else None
    binary = p.binaries[bin_id] if bin_id is not None else None
    build_id = binary.build_id if binary is not None else None
    base["function"] = {
        "func": f.name, "binary": f.binary, "path": f.path, "build_id": build_id,
        "addr": f.addr, "size": f.size, "resolved": f.resolved,
        "kernel": bin_id == KERNEL_BINARY,
    }
    base.update({
        "self_samples": hit.self_n, "self_ns": hit.self_w,
        "self_pct": 100.0 * hit.self_n / total_n if total_n else 0.0,
        "total_samples_in_function": hit.total_n,
    })

    # each leaf frame -> ELF virtual address (kernel frames are absolute already)
    at: dict[int, list[int]] = {}  # vaddr -> [samples, ns]
    unmapped = [0, 0]
    store = store_of(p)  # an archive's: segments, maybe embedded code
    for fid, (n, w) in hit.leaf_frames.items():
        b = p.frame_binary[fid]
        off = p.frame_offset[fid]
        vaddr: int | None
        if b == KERNEL_BINARY:
            vaddr = off
        elif b == UNKNOWN_BINARY:
            vaddr = None
        elif p.symbolizer is None:
            vaddr = store.to_vaddr(b, off) if store is not None else None
        else:
            vaddr = p.symbolizer.offset_to_vaddr(p.binaries[b], off)
        if vaddr is None:
            unmapped[0] += n
            unmapped[1] += w
            continue
        acc = at.setdefault(vaddr, [0, 0])
        acc[0] += n
        acc[1] += w

    code, arch, note = b"", None, None
    emb = None
    disk: str | None = None  # the file read (line tables come from it or its debug file)
    start = f.addr
    if bin_id == KERNEL_BINARY:
        note = "kernel code is not disassembled (no kernel image on disk)"
    elif not f.has_extent or binary is None:
        note = "the function has no symbol: its extent is unknown, nothing to disassemble"
    else:
        if not f.resolved:
            note = "no symbol: the function's extent comes from its unwind info (.eh_frame)"
        size = f.size
        if size <= 0:
            hi = max(at) if at else start
            size = max(hi - start, 0) + UNKNOWN_SIZE_SLACK
            note = "the symbol has no size: disassembled up to just past the last sample"
        if size > MAX_CODE_BYTES:
            note = f"the function is {size} bytes: only the first {MAX_CODE_BYTES} disassembled"
            size = MAX_CODE_BYTES
        code, arch, err, disk_path, disk = read_code(binary, start, size)
        emb = store.code_at(bin_id, start) if store is not None and not code else None
        if emb is not None:  # saved with --with-code: the archive's copy of the bytes
            code, arch, disk_path = emb.code[:size], emb.arch, "the archive (saved with the code)"
            err = f"{(err or '').removesuffix(': nothing to disassemble')}; code from the archive"
        elif not code:
            base["binary_missing"] = True
        if err:
            note = err
        base["function"]["disk_path"] = disk_path
    insns = _disassemble(code, start, arch) if code and arch else []

    index = {ins[0]: i for i, ins in enumerate(insns)}
    samples = [0] * len(insns)
    weights = [0] * len(insns)
    lo = start
    hi = insns[-1][0] + insns[-1][1] if insns else start
    unplaced: dict[str, int] = {"mid_instruction": 0, "outside_disassembly": 0,
                                "not_disassembled": 0, "no_address": unmapped[0]}
    unplaced_at: list[dict[str, Any]] = []
    for vaddr, (n, w) in sorted(at.items()):
        i = index.get(vaddr)
        if i is not None:
            samples[i] += n
            weights[i] += w
            continue
        if not insns:
            reason = "not_disassembled"
        else:
            reason = "mid_instruction" if lo <= vaddr < hi else "outside_disassembly"
        unplaced[reason] += n
        unplaced_at.append({"addr": vaddr, "samples": n, "reason": reason})
    unplaced_at.sort(key=lambda u: -u["samples"])
    placed = sum(samples)

    # source lines
    debug_file = None
    table = None
    if emb is not None:
        table = emb.line_table()
        debug_file = disk_path if table is not None else None
    elif insns and binary is not None and disk is not None:
        from stax.symbols import read_build_id

        debug_file = srclines.debug_elf_for(disk, build_id or read_build_id(disk))
        if debug_file is not None:
            table = srclines.line_table(debug_file, start)
            debug_file = (disk_path if debug_file == disk
                          else display(os.fsencode(debug_file)))
    rows = []
    per_line: dict[tuple[str, int], list[int]] = {}
    line_order: list[tuple[str, int]] = []
    denom = hit.self_n or 1
    for i, (addr, size, text) in enumerate(insns):
        loc = table.lookup(addr) if table is not None else None
        row: dict[str, Any] = {"addr": addr, "size": size, "text": text,
                               "samples": samples[i], "self_ns": weights[i],
                               "pct": 100.0 * samples[i] / denom,
                               "file": loc[0] if loc else None, "line": loc[1] if loc else None}
        rows.append(row)
        if loc is not None:
            acc = per_line.get(loc)
            if acc is None:
                acc = per_line[loc] = [0, 0]
                line_order.append(loc)
            acc[0] += samples[i]
            acc[1] += weights[i]
    sources = []
    hidden: dict[str, str] = {}
    owner = p.owner
    for loc in line_order:
        lines, why = access.source_lines(loc[0], owner)
        text = lines[loc[1] - 1] if lines is not None and 0 < loc[1] <= len(lines) else None
        if text is None and why is None and store is not None:
            text = store.source_line(loc[0], loc[1])
        if why is not None:
            hidden[loc[0]] = why
        sources.append({"file": loc[0], "line": loc[1], "text": text, "hidden": why,
                        "samples": per_line[loc][0], "self_ns": per_line[loc][1]})
    if hidden:
        note = "; ".join(filter(None, [note, *hidden.values()]))
    base.update({
        "arch": arch,
        "instructions": rows,
        "placed_samples": placed,
        "unplaced_samples": hit.self_n - placed,
        "unplaced": unplaced,
        "unplaced_addrs": unplaced_at[:UNPLACED_LISTED],
        "debug_file": debug_file,
        "has_line_info": table is not None,
        "sources": sources,
        "note": note,
    })
    base.setdefault("binary_missing", False)
    if not insns:  # nothing disassembled: the samples per address, as they are
        base["addresses"] = [{"addr": a, "samples": n, "self_ns": w,
                              "pct": 100.0 * n / denom} for a, (n, w) in sorted(at.items())]
    return base


# --- reading and disassembling code ---------------------------------------------------------

_ARCHES = {"EM_X86_64": "x86-64", "EM_386": "x86", "EM_AARCH64": "aarch64"}


def read_code(binary: Binary, vaddr: int, size: int
               ) -> tuple[bytes, str | None, str | None, str | None, str | None]:
    """The bytes of [vaddr, vaddr+size) from the recorded binary (found by
    ``stax.binaries.locate``: its file, the process's copy of a deleted one, or the vDSO image),
    its architecture, an error, where they were read (for display) and the file to open for
    line tables (None for an in-memory image)."""
    loc = locate(binary)
    if not loc.ok:
        return b"", None, loc.reason + ": nothing to disassemble", None, None
    if loc.data is not None:
        from io import BytesIO

        return (*_code_from_elf(BytesIO(loc.data), vaddr, size, loc.label), loc.label, None)
    assert loc.path is not None
    try:
        with open(loc.path, "rb") as f:
            return (*_code_from_elf(f, vaddr, size, loc.label), loc.label, loc.path)
    except OSError as e:
        return b"", None, f"{loc.label}: cannot read code ({e.strerror or e})", loc.label, None


def _code_from_elf(f: Any, vaddr: int, size: int,
                   label: str) -> tuple[bytes, str | None, str | None]:
    """Bytes at an ELF virtual address, through the loadable segments of the ELF in ``f``."""
    try:
        from elftools.elf.elffile import ELFFile

        elf = ELFFile(f)
        arch = _ARCHES.get(elf["e_machine"])
        if arch is None:
            return b"", None, f"{elf['e_machine']}: no disassembler for this architecture"
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            sv, sz = seg["p_vaddr"], seg["p_filesz"]
            if sv <= vaddr < sv + sz:
                f.seek(seg["p_offset"] + vaddr - sv)
                return f.read(min(size, sv + sz - vaddr)), arch, None
        return b"", arch, f"{label}: address 0x{vaddr:x} is in no loadable segment"
    except Exception as e:  # a damaged file: say so, never crash the query
        return b"", None, f"{label}: cannot read code ({e})"


def _disassemble(code: bytes, addr: int, arch: str) -> list[tuple[int, int, str]]:
    """(address, size, text) of every instruction; undecodable bytes become ``(bad)`` and the
    walk resumes after them."""
    import capstone as cs

    if arch == "x86-64":
        md = cs.Cs(cs.CS_ARCH_X86, cs.CS_MODE_64)
        step = 1
    elif arch == "x86":
        md = cs.Cs(cs.CS_ARCH_X86, cs.CS_MODE_32)
        step = 1
    else:
        a64 = getattr(cs, "CS_ARCH_ARM64", None) or cs.CS_ARCH_AARCH64
        md = cs.Cs(a64, cs.CS_MODE_ARM)
        step = 4
    out: list[tuple[int, int, str]] = []
    pos = 0
    n = len(code)
    while pos < n:
        last = pos
        for a, size, mnem, ops in md.disasm_lite(code[pos:], addr + pos):
            out.append((a, size, f"{mnem} {ops}" if ops else mnem))
            pos = a - addr + size
        if pos == last or pos < n:
            bad = min(step, n - pos)
            out.append((addr + pos, bad, "(bad)"))
            pos += bad
    return out
