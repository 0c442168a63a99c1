"""Inline frames: the chain of ``DW_TAG_inlined_subroutine`` DIEs that cover a code address, from
the DWARF of a binary (itself, its separate debug file, debuginfod: ``srclines.debug_elf_for``).

Decoding every DIE of a big binary (libpython) with pyelftools takes seconds, so the index is
built per compilation unit, only when a sampled address falls in it (the unit is found through
``.debug_aranges``, as for line tables), and cached: per unit, the address ranges of its
functions, each with the inlined subroutines inside it (their ranges, nesting depth, name and
call site).

``chain(path, build_id, vaddr)`` answers innermost first: ``[Inlined(name, call_file,
call_line), ...]``; each call site is the line in the next outer function where the inlined one
was called. The profile model turns a chain into extra stack levels (stax.profile.model).
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from stax.profile import dwarfdies, srclines
from stax.profile.linetable import unit_file_names

_MAX_UNITS = 512  # decoded unit indexes kept
_MAX_READERS = 4  # units whose bytes are kept for decoding their functions
_MAX_DEPTH = 64  # nesting followed in one function (a guard against malformed DWARF)
_SCOPES = frozenset({"DW_TAG_namespace", "DW_TAG_class_type", "DW_TAG_structure_type",
                     "DW_TAG_union_type", "DW_TAG_module"})


@dataclass(frozen=True, slots=True)
class Inlined:
    name: str
    call_file: str  # where the next outer function calls it ("" if unknown)
    call_line: int  # 0 if unknown


# one inlined range: (lo, hi, depth, Inlined)
_Entry = tuple[int, int, int, Inlined]


@dataclass(slots=True)
class _Unit:
    """The functions of one compilation unit: their ranges sorted by start (with the running
    maximum of their ends, to stop the backward walk), each the index of a subprogram whose
    inlined subroutines are decoded the first time an address falls in it."""

    starts: list[int]
    ranges: list[tuple[int, int, int]]  # (lo, hi, subprogram index)
    max_hi: list[int]  # max(hi) of ranges[: i + 1]
    subprograms: list[int]  # DIE offsets
    entries: list[list[_Entry] | None]  # per subprogram, once decoded
    names: tuple[list[str], int] | None = None  # the unit's file names and DWARF version
    origins: dict[int, str] = field(default_factory=dict)  # abstract origin -> its name

    def lookup(self, addr: int, decode: Any) -> list[Inlined]:
        i = bisect_right(self.starts, addr) - 1
        # function ranges do not overlap, but a function's range list may interleave another's
        while i >= 0 and self.max_hi[i] > addr:
            lo, hi, sp = self.ranges[i]
            if lo <= addr < hi:
                entries = self.entries[sp]
                if entries is None:
                    entries = self.entries[sp] = decode(self.subprograms[sp])
                hits = [e for e in entries if e[0] <= addr < e[1]]
                hits.sort(key=lambda e: -e[2])
                return [e[3] for e in hits]
            i -= 1
        return []


_LOCK = threading.Lock()
_UNITS: OrderedDict[tuple[Any, ...], _Unit] = OrderedDict()
_DEBUG: dict[tuple[str, str | None], str | None] = {}
_READERS: OrderedDict[tuple[Any, ...], dwarfdies.UnitReader] = OrderedDict()


def debug_file(path: str, build_id: str | None) -> str | None:
    """The file holding ``path``'s DWARF (cached per binary)."""
    key = (path, build_id)
    with _LOCK:
        if key in _DEBUG:
            return _DEBUG[key]
    found = srclines.debug_elf_for(path, build_id)
    if found is not None and not srclines.has_section(found, ".debug_info"):
        found = None
    with _LOCK:
        _DEBUG[key] = found
    return found


def chain(path: str, build_id: str | None, vaddr: int) -> list[Inlined]:
    """The inlined subroutines covering ``vaddr`` (an ELF virtual address) of the binary at
    ``path``, innermost first; [] without DWARF or inlining there."""
    dbg = debug_file(path, build_id)
    if dbg is None:
        return []
    return chain_in(dbg, vaddr)


def chain_in(debug_path: str, vaddr: int) -> list[Inlined]:
    """``chain`` on a file known to hold the DWARF."""
    df = srclines.dwarf_file(debug_path)
    if df is None:
        return []
    try:
        with df.lock:  # the section streams have one position each
            off = df.cu_offset_for(vaddr)
            if off is None:
                return []
            key = (*df.key, off)
            with _LOCK:
                unit = _UNITS.get(key)
                if unit is not None:
                    _UNITS.move_to_end(key)
            if unit is None:
                unit = _index_unit(df.dwarf, off)
                with _LOCK:
                    _UNITS[key] = unit
                    while len(_UNITS) > _MAX_UNITS:
                        _UNITS.popitem(last=False)
            return unit.lookup(vaddr, lambda die: _decode_subprogram(df, off, unit, die))
    except Exception:
        return []


def _file_names(df: Any, cu_offset: int) -> tuple[list[str], int]:
    """The unit's file names from its line program header (call files index them)."""
    got = unit_file_names(df.dwarf, cu_offset)
    if got is None:
        return [], int(df.dwarf.get_CU_at(cu_offset).header["version"])
    return got


def _index_unit(dwarf: Any, cu_offset: int) -> _Unit:
    """The ranges of a unit's functions, without decoding their bodies (the children of the
    unit's top DIE are walked through their DW_AT_sibling links)."""
    cu = dwarf.get_CU_at(cu_offset)
    top = cu.get_top_DIE()
    base = _attr(top, "DW_AT_low_pc") or 0
    ranges: list[tuple[int, int, int]] = []
    subprograms: list[int] = []

    def scope(die: Any) -> None:
        for child in die.iter_children():
            tag = child.tag
            if tag == "DW_TAG_subprogram":
                spans = _ranges(dwarf, cu, child, base)
                if not spans or not child.has_children:
                    continue
                sp = len(subprograms)
                subprograms.append(child.offset)
                ranges.extend((lo, hi, sp) for lo, hi in spans)
            elif tag in _SCOPES:
                scope(child)

    scope(top)
    ranges.sort(key=lambda r: r[0])
    max_hi: list[int] = []
    m = 0
    for r in ranges:
        m = max(m, r[1])
        max_hi.append(m)
    return _Unit([r[0] for r in ranges], ranges, max_hi, subprograms,
                 [None] * len(subprograms))


def _decode_subprogram(df: Any, cu_offset: int, unit: _Unit, die_offset: int) -> list[_Entry]:
    """The inlined subroutines inside one function (called with ``df.lock`` held): with the
    lean DIE reader, else (a form it leaves alone) with pyelftools."""
    if unit.names is None:
        unit.names = _file_names(df, cu_offset)
    try:
        return _decode_lean(df, cu_offset, unit, die_offset)
    except dwarfdies.Unsupported:
        return _decode_pyelftools(df, cu_offset, unit, die_offset)


def _decode_lean(df: Any, cu_offset: int, unit: _Unit, die_offset: int) -> list[_Entry]:
    dwarf = df.dwarf
    cu = dwarf.get_CU_at(cu_offset)
    key = (*df.key, cu_offset)
    with _LOCK:
        reader = _READERS.get(key)
        if reader is not None:
            _READERS.move_to_end(key)
    if reader is None:
        reader = dwarfdies.UnitReader(dwarf, cu)
        with _LOCK:
            _READERS[key] = reader
            while len(_READERS) > _MAX_READERS:
                _READERS.popitem(last=False)
    base = _attr(cu.get_top_DIE(), "DW_AT_low_pc") or 0
    names = unit.names or ([], 5)
    origins = unit.origins
    out: list[_Entry] = []

    def name_of(off: int) -> str:
        got = origins.get(off)
        if got is None:
            try:
                got = _name(dwarf.get_DIE_from_refaddr(off)) or "[inlined]"
            except Exception:
                got = "[inlined]"
            origins[off] = got
        return got

    def inlined(die: dwarfdies.Die, depth: int) -> None:
        for child in reader.children(die):
            tag = child.tag
            if tag == "DW_TAG_inlined_subroutine" and depth < _MAX_DEPTH:
                a = child.attrs
                origin = a.get("DW_AT_abstract_origin")
                name = name_of(origin) if origin is not None else "[inlined]"
                cf = a.get("DW_AT_call_file")
                file = _file_name(names, cf) if cf is not None else ""
                item = Inlined(name, file, a.get("DW_AT_call_line", 0))
                for lo, hi in _lean_ranges(dwarf, cu, child, base):
                    out.append((lo, hi, depth, item))
                if child.has_children:
                    inlined(child, depth + 1)
            elif (tag == "DW_TAG_lexical_block" or tag == "DW_TAG_try_block" or
                  tag == "DW_TAG_catch_block") and child.has_children:
                inlined(child, depth)

    top = reader.die_at(die_offset)
    if top is not None:
        inlined(top, 1)
    return out


def _lean_ranges(dwarf: Any, cu: Any, die: dwarfdies.Die, base: int) -> list[tuple[int, int]]:
    a, forms = die.attrs, die.forms
    lo = a.get("DW_AT_low_pc")
    hi = a.get("DW_AT_high_pc")
    if lo is not None and hi is not None:
        if forms["DW_AT_low_pc"] != "DW_FORM_addr":
            raise dwarfdies.Unsupported(forms["DW_AT_low_pc"])
        if forms["DW_AT_high_pc"] != "DW_FORM_addr":
            hi = lo + hi  # DWARF 4+: high_pc is a length
        return [(lo, hi)] if hi > lo else []
    if "DW_AT_ranges" not in a:
        return []
    if forms["DW_AT_ranges"] != "DW_FORM_sec_offset":
        raise dwarfdies.Unsupported(forms["DW_AT_ranges"])
    return _range_list(dwarf, cu, a["DW_AT_ranges"], base)


def _decode_pyelftools(df: Any, cu_offset: int, unit: _Unit, die_offset: int) -> list[_Entry]:
    dwarf = df.dwarf
    cu = dwarf.get_CU_at(cu_offset)
    base = _attr(cu.get_top_DIE(), "DW_AT_low_pc") or 0
    names = unit.names or ([], 5)
    origin_names: dict[int, str] = {}
    out: list[_Entry] = []

    def name_of(die: Any) -> str:
        off = die.offset
        got = origin_names.get(off)
        if got is None:
            got = origin_names[off] = _name(die) or "[inlined]"
        return got

    def inlined(die: Any, depth: int) -> None:
        for child in die.iter_children():
            tag = child.tag
            if tag == "DW_TAG_inlined_subroutine" and depth < _MAX_DEPTH:
                try:
                    name = name_of(child.get_DIE_from_attribute("DW_AT_abstract_origin"))
                except Exception:
                    name = "[inlined]"
                cf = _attr(child, "DW_AT_call_file")
                file = _file_name(names, cf) if cf is not None else ""
                item = Inlined(name, file, int(_attr(child, "DW_AT_call_line") or 0))
                for lo, hi in _ranges(dwarf, cu, child, base):
                    out.append((lo, hi, depth, item))
                if child.has_children:
                    inlined(child, depth + 1)
            elif (tag == "DW_TAG_lexical_block" or tag == "DW_TAG_try_block" or
                  tag == "DW_TAG_catch_block") and child.has_children:
                inlined(child, depth)

    inlined(dwarf.get_DIE_from_refaddr(die_offset, cu), 1)
    return out


def _attr(die: Any, name: str) -> Any:
    a = die.attributes.get(name)
    return a.value if a is not None else None


def _file_name(names: tuple[list[str], int], index: int) -> str:
    files, version = names
    i = index if version >= 5 else index - 1
    return files[i] if 0 <= i < len(files) else ""


def _name(die: Any) -> str:
    """The name of a subprogram DIE: its linkage name demangled, else its name, following
    DW_AT_specification / DW_AT_abstract_origin to the declaration that has one."""
    from stax.symbols.demangle import demangle

    for _ in range(4):
        for attr in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name"):
            v = _attr(die, attr)
            if isinstance(v, bytes):
                return demangle(v.decode("utf-8", "replace"))
        v = _attr(die, "DW_AT_name")
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        for link in ("DW_AT_specification", "DW_AT_abstract_origin"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return ""
    return ""


def _ranges(dwarf: Any, cu: Any, die: Any, base: int) -> list[tuple[int, int]]:
    """The address ranges of a DIE: low/high pc, or its range list."""
    lo_a = die.attributes.get("DW_AT_low_pc")
    hi_a = die.attributes.get("DW_AT_high_pc")
    if lo_a is not None and hi_a is not None:
        lo = lo_a.value
        hi = hi_a.value
        if hi_a.form not in ("DW_FORM_addr", "DW_FORM_addrx"):
            hi = lo + hi  # DWARF 4+: high_pc is a length
        return [(lo, hi)] if hi > lo else []
    rng = die.attributes.get("DW_AT_ranges")
    if rng is None:
        return []
    # pyelftools turns a DW_FORM_rnglistx index into the list's offset
    return _range_list(dwarf, cu, rng.value, base)


def _range_list(dwarf: Any, cu: Any, offset: int, base: int) -> list[tuple[int, int]]:
    lists = dwarf.range_lists()
    if lists is None:
        return []
    entries = lists.get_range_list_at_offset(offset, cu=cu)
    out = []
    cur = base
    for e in entries:
        if hasattr(e, "base_address"):  # a base address entry
            cur = e.base_address
            continue
        lo, hi = e.begin_offset, e.end_offset
        if not getattr(e, "is_absolute", False):
            lo, hi = lo + cur, hi + cur
        if hi > lo:
            out.append((lo, hi))
    return out


def clear_caches() -> None:
    with _LOCK:
        _UNITS.clear()
        _DEBUG.clear()
        _READERS.clear()
