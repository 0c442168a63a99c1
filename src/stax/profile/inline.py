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
from dataclasses import dataclass
from typing import Any

from stax.profile import srclines

_MAX_UNITS = 512  # decoded unit indexes kept
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
    """The functions of one compilation unit: ranges sorted by start, each with its inlined
    subroutines."""

    starts: list[int]
    ranges: list[tuple[int, int, list[_Entry]]]

    def lookup(self, addr: int) -> list[Inlined]:
        i = bisect_right(self.starts, addr) - 1
        # function ranges do not overlap, but a function's range list may interleave another's
        while i >= 0:
            lo, hi, entries = self.ranges[i]
            if lo <= addr < hi:
                hits = [e for e in entries if e[0] <= addr < e[1]]
                hits.sort(key=lambda e: -e[2])
                return [e[3] for e in hits]
            if not entries and hi <= addr:
                break
            i -= 1
            if addr - lo > 1 << 24:
                break
        return []


_LOCK = threading.Lock()
_UNITS: OrderedDict[tuple[Any, ...], _Unit] = OrderedDict()
_DEBUG: dict[tuple[str, str | None], str | None] = {}


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
                names = _file_names(df, off)
                unit = _index_unit(df.dwarf, off, names)
                with _LOCK:
                    _UNITS[key] = unit
                    while len(_UNITS) > _MAX_UNITS:
                        _UNITS.popitem(last=False)
        return unit.lookup(vaddr)
    except Exception:
        return []


def _file_names(df: Any, cu_offset: int) -> tuple[list[str], int]:
    table = df.table_for_cu(cu_offset)
    cu = df.dwarf.get_CU_at(cu_offset)
    return (table.names if table is not None else []), int(cu.header["version"])


def _index_unit(dwarf: Any, cu_offset: int, names: tuple[list[str], int]) -> _Unit:
    cu = dwarf.get_CU_at(cu_offset)
    top = cu.get_top_DIE()
    base = _attr(top, "DW_AT_low_pc") or 0
    ranges: list[tuple[int, int, list[_Entry]]] = []
    origin_names: dict[int, str] = {}

    def name_of(die: Any) -> str:
        off = die.offset
        got = origin_names.get(off)
        if got is None:
            got = origin_names[off] = _name(die) or "[inlined]"
        return got

    def inlined(die: Any, depth: int, out: list[_Entry]) -> None:
        for child in die.iter_children():
            tag = child.tag
            if tag == "DW_TAG_inlined_subroutine" and depth < _MAX_DEPTH:
                try:
                    origin = child.get_DIE_from_attribute("DW_AT_abstract_origin")
                    name = name_of(origin)
                except Exception:
                    name = "[inlined]"
                cf = _attr(child, "DW_AT_call_file")
                file = _file_name(names, cf) if cf is not None else ""
                item = Inlined(name, file, int(_attr(child, "DW_AT_call_line") or 0))
                for lo, hi in _ranges(dwarf, cu, child, base):
                    out.append((lo, hi, depth, item))
                inlined(child, depth + 1, out)
            elif tag == "DW_TAG_lexical_block" or tag == "DW_TAG_try_block" or \
                    tag == "DW_TAG_catch_block":
                inlined(child, depth, out)

    def scope(die: Any) -> None:
        for child in die.iter_children():
            tag = child.tag
            if tag == "DW_TAG_subprogram":
                spans = _ranges(dwarf, cu, child, base)
                if not spans:
                    continue
                entries: list[_Entry] = []
                inlined(child, 1, entries)
                for lo, hi in spans:
                    ranges.append((lo, hi, [e for e in entries if lo < e[1] and e[0] < hi]))
            elif tag in _SCOPES:
                scope(child)

    scope(top)
    ranges.sort(key=lambda r: r[0])
    return _Unit([r[0] for r in ranges], ranges)


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
    lists = dwarf.range_lists()
    if lists is None:
        return []
    # pyelftools turns a DW_FORM_rnglistx index into the list's offset
    entries = lists.get_range_list_at_offset(rng.value, cu=cu)
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
