"""The CFA program interpreter: runs a CIE's initial instructions and an FDE's program into
Rows, the unwind rules (CFA and saved registers) of each PC range the FDE covers."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from stax.leb128 import read_sleb as sleb
from stax.leb128 import read_uleb as uleb
from stax.unwind.cfi import CIE, FDE, CFIError, read_encoded

# rule kinds for a register (and for the return-address column)
SAME = 0
UNDEF = 1
OFFSET = 2  # saved at CFA + n
VAL_OFFSET = 3  # value is CFA + n
REGISTER = 4  # value is in register n
EXPR = 5  # saved at the address the expression computes (CFA pushed first)
VAL_EXPR = 6  # value is what the expression computes

_u16 = struct.Struct("<H")
_u32 = struct.Struct("<I")


@dataclass(slots=True, frozen=True)
class Row:
    """The unwind rule for a PC range: the CFA (register + offset, or an expression) and the
    rules of the registers it restores; ``rules`` lists only registers not "same value"."""

    cfa_reg: int  # -1: cfa_expr computes the CFA
    cfa_off: int
    cfa_expr: bytes | None
    rules: tuple[tuple[int, int, int | bytes], ...]
    ra_reg: int
    signal: bool
    fast: tuple[int, int, int, tuple[tuple[int, int], ...]] | None = None
    """(CFA register, CFA offset, RA offset, ((register, offset), ...)) when the row is the
    common shape: CFA = register + offset and every rule "saved at CFA + n"."""


def _fast_form(cfa_reg: int, cfa_off: int, cfa_expr: bytes | None,
               rules: tuple[tuple[int, int, int | bytes], ...], ra_reg: int, signal: bool
               ) -> tuple[int, int, int, tuple[tuple[int, int], ...]] | None:
    if cfa_expr is not None or signal or not 0 <= cfa_reg < 17:
        return None
    ra_off = None
    saves: list[tuple[int, int]] = []
    for reg, kind, arg in rules:
        if kind != OFFSET or not isinstance(arg, int):
            return None
        if reg == ra_reg:
            ra_off = arg
        elif reg < 17:
            saves.append((reg, arg))
    if ra_off is None:
        return None
    return cfa_reg, cfa_off, ra_off, tuple(saves)


def run_program(fde: FDE, buf_vaddr: int = 0) -> tuple[list[int], list[Row]]:
    """Execute the CIE's initial instructions and the FDE's program: one row per location
    where the rules change, covering [pc_begin, pc_end)."""
    cie = fde.cie
    state = _State(cie)
    _execute(state, cie.instructions, cie, None, buf_vaddr)
    initial = dict(state.regs)
    state.initial = initial
    state.loc = fde.pc_begin

    # collect rows at every advance
    rows_at: list[tuple[int, Row]] = []

    def advance(new_loc: int) -> None:
        rows_at.append((state.loc, state.row()))
        state.loc = new_loc

    _execute(state, fde.instructions, cie, advance, buf_vaddr)
    rows_at.append((state.loc, state.row()))
    # keep the last row for each location (an advance of 0 replaces)
    out_locs: list[int] = []
    out_rows: list[Row] = []
    for loc, row in rows_at:
        if out_locs and out_locs[-1] == loc:
            out_rows[-1] = row
        elif out_locs and loc < out_locs[-1]:
            continue
        else:
            out_locs.append(loc)
            out_rows.append(row)
    return out_locs, out_rows


class _State:
    __slots__ = ("cfa_reg", "cfa_off", "cfa_expr", "regs", "stack", "initial", "loc", "cie")

    def __init__(self, cie: CIE) -> None:
        self.cie = cie
        self.cfa_reg = -1
        self.cfa_off = 0
        self.cfa_expr: bytes | None = None
        self.regs: dict[int, tuple[int, int | bytes]] = {}
        self.stack: list[tuple[int, int, bytes | None, dict[int, tuple[int, int | bytes]]]] = []
        self.initial: dict[int, tuple[int, int | bytes]] = {}
        self.loc = 0

    def row(self) -> Row:
        rules = tuple((r, k, a) for r, (k, a) in sorted(self.regs.items()) if k != SAME)
        cfa_reg = self.cfa_reg if self.cfa_expr is None else -1
        ra, sig = self.cie.ra_reg, self.cie.signal
        return Row(cfa_reg, self.cfa_off, self.cfa_expr, rules, ra, sig,
                   _fast_form(cfa_reg, self.cfa_off, self.cfa_expr, rules, ra, sig))


def _execute(st: _State, code: bytes, cie: CIE, advance: Callable[[int], None] | None,
             buf_vaddr: int) -> None:
    p = 0
    n = len(code)
    caf = cie.code_align
    daf = cie.data_align
    regs = st.regs
    while p < n:
        op = code[p]
        p += 1
        hi = op & 0xC0
        low = op & 0x3F
        if hi == 0x40:  # advance_loc
            if advance is not None:
                advance(st.loc + low * caf)
            continue
        if hi == 0x80:  # offset
            off, p = uleb(code, p)
            regs[low] = (OFFSET, off * daf)
            continue
        if hi == 0xC0:  # restore
            _restore(st, low)
            continue
        if op == 0x00:
            pass
        elif op == 0x01:  # set_loc
            loc, p = read_encoded(code, p, cie.fde_enc, 0)
            if advance is not None:
                advance(loc)
        elif op in (0x02, 0x03, 0x04):  # advance_loc1/2/4
            if op == 0x02:
                delta = code[p]
                p += 1
            elif op == 0x03:
                delta = _u16.unpack_from(code, p)[0]
                p += 2
            else:
                delta = _u32.unpack_from(code, p)[0]
                p += 4
            if advance is not None:
                advance(st.loc + delta * caf)
        elif op == 0x05:  # offset_extended
            reg, p = uleb(code, p)
            off, p = uleb(code, p)
            regs[reg] = (OFFSET, off * daf)
        elif op == 0x06:  # restore_extended
            reg, p = uleb(code, p)
            _restore(st, reg)
        elif op == 0x07:  # undefined
            reg, p = uleb(code, p)
            regs[reg] = (UNDEF, 0)
        elif op == 0x08:  # same_value
            reg, p = uleb(code, p)
            regs[reg] = (SAME, 0)
        elif op == 0x09:  # register
            reg, p = uleb(code, p)
            reg2, p = uleb(code, p)
            regs[reg] = (REGISTER, reg2)
        elif op == 0x0A:  # remember_state
            st.stack.append((st.cfa_reg, st.cfa_off, st.cfa_expr, dict(regs)))
        elif op == 0x0B:  # restore_state
            if not st.stack:
                raise CFIError("restore_state with an empty stack")
            st.cfa_reg, st.cfa_off, st.cfa_expr, saved = st.stack.pop()
            regs.clear()
            regs.update(saved)
        elif op == 0x0C:  # def_cfa
            st.cfa_reg, p = uleb(code, p)
            st.cfa_off, p = uleb(code, p)
            st.cfa_expr = None
        elif op == 0x0D:  # def_cfa_register
            st.cfa_reg, p = uleb(code, p)
            st.cfa_expr = None
        elif op == 0x0E:  # def_cfa_offset
            st.cfa_off, p = uleb(code, p)
        elif op == 0x0F:  # def_cfa_expression
            ln, p = uleb(code, p)
            st.cfa_expr = bytes(code[p:p + ln])
            p += ln
        elif op == 0x10:  # expression
            reg, p = uleb(code, p)
            ln, p = uleb(code, p)
            regs[reg] = (EXPR, bytes(code[p:p + ln]))
            p += ln
        elif op == 0x11:  # offset_extended_sf
            reg, p = uleb(code, p)
            off, p = sleb(code, p)
            regs[reg] = (OFFSET, off * daf)
        elif op == 0x12:  # def_cfa_sf
            st.cfa_reg, p = uleb(code, p)
            off, p = sleb(code, p)
            st.cfa_off = off * daf
            st.cfa_expr = None
        elif op == 0x13:  # def_cfa_offset_sf
            off, p = sleb(code, p)
            st.cfa_off = off * daf
        elif op == 0x14:  # val_offset
            reg, p = uleb(code, p)
            off, p = uleb(code, p)
            regs[reg] = (VAL_OFFSET, off * daf)
        elif op == 0x15:  # val_offset_sf
            reg, p = uleb(code, p)
            off, p = sleb(code, p)
            regs[reg] = (VAL_OFFSET, off * daf)
        elif op == 0x16:  # val_expression
            reg, p = uleb(code, p)
            ln, p = uleb(code, p)
            regs[reg] = (VAL_EXPR, bytes(code[p:p + ln]))
            p += ln
        elif op == 0x2E:  # GNU_args_size
            _v, p = uleb(code, p)
        elif op == 0x2F:  # GNU_negative_offset_extended
            reg, p = uleb(code, p)
            off, p = uleb(code, p)
            regs[reg] = (OFFSET, -off * daf)
        else:
            raise CFIError(f"unknown CFA opcode {op:#x}")


def _restore(st: _State, reg: int) -> None:
    init = st.initial.get(reg)
    if init is None:
        st.regs.pop(reg, None)
    else:
        st.regs[reg] = init
