"""A lean walker over the DIEs of one compilation unit, for the inline index (inline.py).

pyelftools builds a DIE object through ``construct`` for every entry it passes, attributes and
all: decoding the bodies of a big LTO function (hundreds of parameters, variables and call
sites) that way dominated the symbolising of a CPython run. This reader decodes the abbreviation
table once per unit (through pyelftools), reads the unit's bytes once, and per entry decodes only
the few attributes the inline index needs (the rest are skipped by their form's size).

A form it does not know raises ``Unsupported``; inline.py then uses pyelftools for that function.
"""

from __future__ import annotations

import struct
from typing import Any

from stax.leb128 import read_sleb, read_uleb

WANTED = frozenset({"DW_AT_abstract_origin", "DW_AT_call_file", "DW_AT_call_line",
                    "DW_AT_low_pc", "DW_AT_high_pc", "DW_AT_ranges", "DW_AT_sibling"})
_FIXED = {
    "DW_FORM_data1": 1, "DW_FORM_ref1": 1, "DW_FORM_flag": 1, "DW_FORM_strx1": 1,
    "DW_FORM_addrx1": 1, "DW_FORM_data2": 2, "DW_FORM_ref2": 2, "DW_FORM_strx2": 2,
    "DW_FORM_addrx2": 2, "DW_FORM_strx3": 3, "DW_FORM_addrx3": 3, "DW_FORM_data4": 4,
    "DW_FORM_ref4": 4, "DW_FORM_strx4": 4, "DW_FORM_addrx4": 4, "DW_FORM_ref_sup4": 4,
    "DW_FORM_data8": 8, "DW_FORM_ref8": 8, "DW_FORM_ref_sig8": 8, "DW_FORM_ref_sup8": 8,
    "DW_FORM_data16": 16, "DW_FORM_flag_present": 0, "DW_FORM_implicit_const": 0,
}
_OFFSET = frozenset({"DW_FORM_strp", "DW_FORM_line_strp", "DW_FORM_sec_offset",
                     "DW_FORM_strp_sup", "DW_FORM_GNU_ref_alt", "DW_FORM_GNU_strp_alt"})
_ULEB = frozenset({"DW_FORM_udata", "DW_FORM_sdata", "DW_FORM_ref_udata", "DW_FORM_strx",
                   "DW_FORM_addrx", "DW_FORM_rnglistx", "DW_FORM_loclistx",
                   "DW_FORM_GNU_addr_index", "DW_FORM_GNU_str_index"})
_UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}
_CU_REFS = frozenset({"DW_FORM_ref1", "DW_FORM_ref2", "DW_FORM_ref4", "DW_FORM_ref8",
                      "DW_FORM_ref_udata"})


class Unsupported(Exception):
    """A form (or attribute encoding) this reader leaves to pyelftools."""


class Die:
    __slots__ = ("offset", "tag", "has_children", "attrs", "forms", "end")

    def __init__(self, offset: int, tag: str, has_children: bool, attrs: dict[str, int],
                 forms: dict[str, str], end: int) -> None:
        self.offset = offset
        self.tag = tag
        self.has_children = has_children
        self.attrs = attrs  # the WANTED attributes, references made absolute
        self.forms = forms
        self.end = end  # offset just past this entry's attributes


class UnitReader:
    """The entries of the unit at ``cu`` (a pyelftools CompileUnit of ``dwarf``)."""

    def __init__(self, dwarf: Any, cu: Any) -> None:
        self.base = cu.cu_offset
        stream = dwarf.debug_info_sec.stream
        stream.seek(self.base)
        self.data = stream.read(cu.size)
        self.little = dwarf.config.little_endian
        self.addr_size = cu["address_size"]
        self.off_size = 8 if cu.structs.dwarf_format == 64 else 4
        self.version = cu["version"]
        self.abbrevs: dict[int, tuple[str, bool, list[tuple[str, str, Any]]]] = {}
        table = cu.get_abbrev_table()
        self._table = table

    def _abbrev(self, code: int) -> tuple[str, bool, list[tuple[str, str, Any]]]:
        got = self.abbrevs.get(code)
        if got is None:
            decl = self._table.get_abbrev(code)
            specs = [(s.name, s.form, getattr(s, "value", None)) for s in decl["attr_spec"]]
            got = self.abbrevs[code] = (decl["tag"], decl.has_children(), specs)
        return got

    def _fixed(self, pos: int, size: int) -> int:
        if size == 3:
            b = self.data[pos:pos + 3]
            return int.from_bytes(b, "little" if self.little else "big")
        fmt = ("<" if self.little else ">") + _UNSIGNED[size]
        return struct.unpack_from(fmt, self.data, pos)[0]

    def die_at(self, offset: int) -> Die | None:
        """The entry at ``offset`` (absolute, in .debug_info); None for a null entry."""
        pos = offset - self.base
        code, pos = read_uleb(self.data, pos)
        if code == 0:
            return None
        tag, has_children, specs = self._abbrev(code)
        attrs: dict[str, int] = {}
        forms: dict[str, str] = {}
        for name, form, implicit in specs:
            while form == "DW_FORM_indirect":
                v, pos = read_uleb(self.data, pos)
                from elftools.dwarf.enums import ENUM_DW_FORM

                form = next((k for k, x in ENUM_DW_FORM.items() if x == v), "")
            want = name in WANTED
            size = _FIXED.get(form)
            if size is not None:
                if want:
                    if form == "DW_FORM_implicit_const":
                        value = int(implicit)
                    elif form == "DW_FORM_flag_present":
                        value = 1
                    else:
                        value = self._fixed(pos, size) if size in (1, 2, 3, 4, 8) else 0
                pos += size
            elif form in _ULEB:
                if want:
                    if form == "DW_FORM_sdata":
                        value, pos = read_sleb(self.data, pos)
                    else:
                        value, pos = read_uleb(self.data, pos)
                else:
                    _, pos = read_uleb(self.data, pos)
            elif form in _OFFSET or (form == "DW_FORM_ref_addr" and self.version >= 3):
                if want:
                    value = self._fixed(pos, self.off_size)
                pos += self.off_size
            elif form == "DW_FORM_addr" or form == "DW_FORM_ref_addr":
                if want:
                    value = self._fixed(pos, self.addr_size)
                pos += self.addr_size
            elif form == "DW_FORM_string":
                pos = self.data.index(b"\0", pos) + 1
                if want:
                    raise Unsupported(form)
            elif form in ("DW_FORM_block1", "DW_FORM_block2", "DW_FORM_block4"):
                n = int(form[-1])
                length = self._fixed(pos, n)
                pos += n + length
                if want:
                    raise Unsupported(form)
            elif form in ("DW_FORM_block", "DW_FORM_exprloc"):
                length, pos = read_uleb(self.data, pos)
                pos += length
                if want:
                    raise Unsupported(form)
            else:
                raise Unsupported(form)
            if want:
                if form in _CU_REFS:
                    value += self.base
                attrs[name] = value
                forms[name] = form
        return Die(offset, tag, has_children, attrs, forms, pos + self.base)

    def children(self, die: Die) -> list[Die]:
        """The entries directly under ``die`` (subtrees skipped through DW_AT_sibling when the
        producer wrote it, else walked)."""
        out: list[Die] = []
        if not die.has_children:
            return out
        off = die.end
        while True:
            child = self.die_at(off)
            if child is None:
                return out
            out.append(child)
            off = self._after(child)

    def _after(self, die: Die) -> int:
        """The offset just past ``die`` and its subtree (past its children's null entry)."""
        if not die.has_children:
            return die.end
        sib = die.attrs.get("DW_AT_sibling")
        if sib is not None and die.forms.get("DW_AT_sibling") in _CU_REFS:
            return sib
        off = die.end
        while True:
            child = self.die_at(off)
            if child is None:
                return off + 1  # the null entry is one byte (code 0)
            off = self._after(child)
