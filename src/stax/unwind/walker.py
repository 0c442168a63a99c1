"""The DWARF stack walker: from sampled user registers and a copy of the user stack to the list
of caller PCs, with DWARF expressions, per-process PC caches and early-stop accounting.

Memory reads come from the stack copy only; an address outside it stops the walk with a reason.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from stax.leb128 import read_sleb as sleb
from stax.leb128 import read_uleb as uleb
from stax.unwind.cfaprogram import (
    EXPR,
    OFFSET,
    REGISTER,
    SAME,
    UNDEF,
    VAL_EXPR,
    VAL_OFFSET,
    Row,
)
from stax.unwind.cfi import MASK64

# perf_regs bits (arch/x86/include/uapi/asm/perf_regs.h): AX BX CX DX SI DI BP SP IP, R8..R15
REGS_MASK = (0x1FF) | (0xFF << 16)
# position in the sampled tuple -> DWARF register number (x86-64 psABI numbering)
PERF_TO_DWARF = (0, 3, 2, 1, 4, 5, 6, 7, 16, 8, 9, 10, 11, 12, 13, 14, 15)
N_DWARF = 17
RSP = 7
RBP = 6
RIP = 16
MAX_FRAMES = 512

# why a walk stopped before the outermost frame
NO_FDE = "no FDE"
NO_CFI = "no unwind info"
UNMAPPED = "pc outside mappings"
EXHAUSTED = "stack copy exhausted"
BAD_CFA = "bad CFA"
UNREADABLE = "unreadable memory"
TOO_DEEP = "too deep"
OUTERMOST = "outermost"  # resolver verdict: no CFI, but known to be the entry point

_u64 = struct.Struct("<Q").unpack_from


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Memory:
    """Reads 8-byte words of the user stack copy, which starts at ``sp``."""

    __slots__ = ("stack", "sp", "end", "full")

    def __init__(self, stack: bytes, sp: int, full: bool) -> None:
        self.stack = stack
        self.sp = sp
        self.end = sp + len(stack)
        self.full = full  # the copy is as long as was asked for

    def read(self, addr: int) -> int:
        off = addr - self.sp
        if off < 0:
            raise _Stop(UNREADABLE)
        if addr + 8 > self.end:
            raise _Stop(EXHAUSTED if self.full else UNREADABLE)
        return _u64(self.stack, off)[0]


def eval_expr(expr: bytes, regs: list[int | None], mem: Memory, push_cfa: int | None) -> int:
    """Evaluate a DWARF location expression (the subset call-frame information uses)."""
    st: list[int] = [] if push_cfa is None else [push_cfa]
    p = 0
    n = len(expr)
    while p < n:
        op = expr[p]
        p += 1
        if 0x70 <= op <= 0x8F:  # breg0..31
            off, p = sleb(expr, p)
            r = op - 0x70
            v = regs[r] if r < N_DWARF else None
            if v is None:
                raise _Stop(BAD_CFA)
            st.append((v + off) & MASK64)
        elif 0x30 <= op <= 0x4F:  # lit0..31
            st.append(op - 0x30)
        elif 0x50 <= op <= 0x6F:  # reg0..31 (value of the register)
            r = op - 0x50
            v = regs[r] if r < N_DWARF else None
            if v is None:
                raise _Stop(BAD_CFA)
            st.append(v)
        elif op == 0x06:  # deref
            st.append(mem.read(st.pop()))
        elif op == 0x08:
            st.append(expr[p])
            p += 1
        elif op == 0x09:
            st.append(struct.unpack_from("<b", expr, p)[0] & MASK64)
            p += 1
        elif op == 0x0A:
            st.append(struct.unpack_from("<H", expr, p)[0])
            p += 2
        elif op == 0x0B:
            st.append(struct.unpack_from("<h", expr, p)[0] & MASK64)
            p += 2
        elif op == 0x0C:
            st.append(struct.unpack_from("<I", expr, p)[0])
            p += 4
        elif op == 0x0D:
            st.append(struct.unpack_from("<i", expr, p)[0] & MASK64)
            p += 4
        elif op == 0x0E:
            st.append(struct.unpack_from("<Q", expr, p)[0])
            p += 8
        elif op == 0x0F:
            st.append(struct.unpack_from("<q", expr, p)[0] & MASK64)
            p += 8
        elif op == 0x10:
            v, p = uleb(expr, p)
            st.append(v & MASK64)
        elif op == 0x11:
            v, p = sleb(expr, p)
            st.append(v & MASK64)
        elif op == 0x12:
            st.append(st[-1])
        elif op == 0x13:
            st.pop()
        elif op == 0x14:
            st.append(st[-2])
        elif op == 0x15:
            st.append(st[-1 - expr[p]])
            p += 1
        elif op == 0x16:
            st[-1], st[-2] = st[-2], st[-1]
        elif op == 0x17:
            st[-1], st[-2], st[-3] = st[-2], st[-3], st[-1]
        elif op == 0x23:  # plus_uconst
            v, p = uleb(expr, p)
            st.append((st.pop() + v) & MASK64)
        elif op == 0x92:  # bregx
            r, p = uleb(expr, p)
            off, p = sleb(expr, p)
            v = regs[r] if r < N_DWARF else None
            if v is None:
                raise _Stop(BAD_CFA)
            st.append((v + off) & MASK64)
        elif op == 0x90:  # regx
            r, p = uleb(expr, p)
            v = regs[r] if r < N_DWARF else None
            if v is None:
                raise _Stop(BAD_CFA)
            st.append(v)
        elif op == 0x96:  # nop
            pass
        elif op == 0x2F:  # skip
            d = struct.unpack_from("<h", expr, p)[0]
            p += 2 + d
        elif op == 0x28:  # bra
            d = struct.unpack_from("<h", expr, p)[0]
            p += 2
            if st.pop():
                p += d
        elif op in _BINOPS:
            b = st.pop()
            a = st.pop()
            st.append(_BINOPS[op](a, b) & MASK64)
        elif op in _UNOPS:
            st.append(_UNOPS[op](st.pop()) & MASK64)
        else:
            raise _Stop(BAD_CFA)
    if not st:
        raise _Stop(BAD_CFA)
    return st[-1]


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


_BINOPS: dict[int, Callable[[int, int], int]] = {
    0x1A: lambda a, b: a & b,
    0x1B: lambda a, b: int(_signed(a) / _signed(b)) if b else 0,
    0x1C: lambda a, b: a - b,
    0x1D: lambda a, b: a % b if b else 0,
    0x1E: lambda a, b: a * b,
    0x21: lambda a, b: a | b,
    0x22: lambda a, b: a + b,
    0x24: lambda a, b: a << b if b < 64 else 0,
    0x25: lambda a, b: a >> b,
    0x26: lambda a, b: _signed(a) >> b,
    0x27: lambda a, b: a ^ b,
    0x29: lambda a, b: int(a == b),
    0x2A: lambda a, b: int(_signed(a) >= _signed(b)),
    0x2B: lambda a, b: int(_signed(a) > _signed(b)),
    0x2C: lambda a, b: int(_signed(a) <= _signed(b)),
    0x2D: lambda a, b: int(_signed(a) < _signed(b)),
    0x2E: lambda a, b: int(a != b),
}
_UNOPS: dict[int, Callable[[int], int]] = {
    0x19: lambda a: abs(_signed(a)),
    0x1F: lambda a: -a,
    0x20: lambda a: ~a,
}


def step(row: Row, regs: list[int | None], mem: Memory) -> tuple[list[int | None], int | None]:
    """Apply one row: the caller's registers and its return address (None: outermost frame)."""
    if row.cfa_reg >= 0:
        base = regs[row.cfa_reg] if row.cfa_reg < N_DWARF else None
        if base is None:
            raise _Stop(BAD_CFA)
        cfa = (base + row.cfa_off) & MASK64
    else:
        cfa = eval_expr(row.cfa_expr or b"", regs, mem, None)
    new = list(regs)
    new[RSP] = cfa
    ra_reg = row.ra_reg
    ra: int | None = None
    ra_set = False
    for reg, kind, arg in row.rules:
        if kind == OFFSET:
            addr = (cfa + arg) & MASK64  # type: ignore[operator]
            if addr < mem.sp and reg != ra_reg and reg < N_DWARF:
                # an epilogue after its pops: the slot lies below SP (outside the copy) and the
                # pop already put the caller's value back in the register
                v: int | None = regs[reg]
            else:
                v = mem.read(addr)
        elif kind == VAL_OFFSET:
            v = (cfa + arg) & MASK64  # type: ignore[operator]
        elif kind == REGISTER:
            v = regs[arg] if arg < N_DWARF else None  # type: ignore[operator]
        elif kind == UNDEF:
            v = None
        elif kind == EXPR:
            v = mem.read(eval_expr(arg, regs, mem, cfa))  # type: ignore[arg-type]
        elif kind == VAL_EXPR:
            v = eval_expr(arg, regs, mem, cfa)  # type: ignore[arg-type]
        elif kind == SAME:
            v = regs[reg] if reg < N_DWARF else None
        else:
            v = None
        if reg == ra_reg:
            ra = v
            ra_set = True
        elif reg < N_DWARF:
            new[reg] = v
    if not ra_set:
        ra = None  # an unspecified return address column: treat as the outermost frame
    return new, ra


def _apply(pending: list[tuple[tuple[tuple[int, int], ...], int]], regs: list[int | None],
           stack: bytes, sp: int, last: int) -> None:
    """Read the callee-saved registers of the frames stepped so far, oldest first."""
    for saves, cfa in pending:
        for r, o in saves:
            a = cfa + o - sp
            if 0 <= a <= last:
                regs[r] = _u64(stack, a)[0]
            elif a > last:
                regs[r] = None
            # below SP: an epilogue already restored the register
    pending.clear()


class ProcessCache:
    """Per-process map from an absolute lookup address to (row, binary id, file offset)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[int, tuple[Row | None, int, int, str | None]] = {}


Resolver = Callable[[int, int], "tuple[Row | None, int, int, str | None]"]
"""(pid, lookup address) -> (row or None, binary id, file offset, stop reason if row is None)."""


class Walker:
    """Unwinds user stacks; ``resolve`` maps a lookup address to its row and frame identity."""

    def __init__(self, resolve: Resolver, stack_size: int) -> None:
        self.resolve = resolve
        self.stack_size = stack_size
        self.procs: dict[int, ProcessCache] = {}
        self.walks = 0
        self.complete = 0
        self.frames = 0
        self.fp_frames = 0
        self.max_used = 0  # deepest stack extent a complete walk needed (bytes above SP)
        self.stops: dict[tuple[int, str], int] = {}  # (binary id, reason) -> walks
        self.last_stop: str | None = None  # why the latest walk stopped early (None: it did not)

    def forget(self, pid: int) -> None:
        self.procs.pop(pid, None)

    def walk(self, pid: int, regs_tuple: tuple[int, ...], stack: bytes | None
             ) -> list[tuple[int, int]]:
        """(binary id, file offset) of each user frame, leaf first."""
        self.walks += 1
        regs: list[int | None] = [None] * N_DWARF
        for i, r in enumerate(PERF_TO_DWARF):
            if i < len(regs_tuple):
                regs[r] = regs_tuple[i]
        sp = regs[RSP] or 0
        regs[RSP] = sp
        stack = stack or b""
        full = len(stack) >= self.stack_size
        mem = Memory(stack, sp, full)
        last = len(stack) - 8
        unpack = _u64
        pc = regs[RIP] or 0
        exact = True
        pc_cache = self.procs.get(pid)
        if pc_cache is None:
            pc_cache = self.procs[pid] = ProcessCache()
        entries = pc_cache.entries
        frames: list[tuple[int, int]] = []
        resolve = self.resolve
        reason: str | None = None
        stop_binary = 1
        # Callee-saved registers restored by common-shape rows are applied lazily: most CFAs
        # are SP-based, so their values are needed only when a later frame's CFA (or a general
        # rule) reads one. Each entry is (((register, CFA offset), ...), CFA).
        pending: list[tuple[tuple[tuple[int, int], ...], int]] = []
        while True:
            ent = entries.get(pc if exact else pc - 1)
            if ent is None:
                lookup = pc if exact else pc - 1
                ent = resolve(pid, lookup)
                if len(entries) > 100_000:
                    entries.clear()
                entries[lookup] = ent
            row, binary, offset, why = ent
            frames.append((binary, offset))
            if len(frames) >= MAX_FRAMES:
                reason, stop_binary = TOO_DEEP, binary
                break
            fast = row.fast if row is not None else None
            if fast is not None:  # the common shape, inlined
                creg, coff, raoff, saves = fast
                if creg == RSP:
                    cfa = regs[RSP] + coff  # type: ignore[operator]
                else:
                    if pending:
                        _apply(pending, regs, stack, sp, last)
                    base = regs[creg]
                    if base is None:
                        reason, stop_binary = BAD_CFA, binary
                        break
                    cfa = base + coff
                a = cfa + raoff - sp
                if a < 0 or a > last:
                    reason = EXHAUSTED if a > last and full else UNREADABLE
                    stop_binary = binary
                    break
                ra = unpack(stack, a)[0]
                if ra == 0:
                    break
                if cfa <= regs[RSP]:  # type: ignore[operator]
                    reason, stop_binary = BAD_CFA, binary
                    break
                if saves:
                    pending.append((saves, cfa))
                regs[RSP] = cfa
                regs[RIP] = pc = ra
                exact = False
                continue
            if pending:
                _apply(pending, regs, stack, sp, last)
            try:
                if row is None:
                    if why == OUTERMOST:
                        break
                    new, ra = self._fp_step(regs, mem)
                    if new is None:
                        reason, stop_binary = why or NO_FDE, binary
                        break
                    self.fp_frames += 1
                else:
                    new, ra = step(row, regs, mem)
            except _Stop as e:
                reason, stop_binary = e.reason, binary
                break
            except (IndexError, struct.error):
                reason, stop_binary = BAD_CFA, binary
                break
            if ra is None or ra == 0:
                break  # the outermost frame
            old_sp = regs[RSP]
            cfa = new[RSP]
            if old_sp is not None and cfa is not None and cfa <= old_sp and not (
                    row is not None and row.signal):
                reason, stop_binary = BAD_CFA, binary
                break
            new[RIP] = ra
            regs = new
            pc = ra
            exact = row is not None and row.signal
        self.frames += len(frames)
        self.last_stop = reason
        if reason is None:
            self.complete += 1
            used = (regs[RSP] or sp) - sp
            if used > self.max_used and used < 1 << 24:
                self.max_used = used
        else:
            key = (stop_binary, reason)
            self.stops[key] = self.stops.get(key, 0) + 1
        return frames

    @staticmethod
    def _fp_step(regs: list[int | None], mem: Memory) -> tuple[Any, int | None]:
        """Frame-pointer step for code without CFI (JIT code): only when RBP points into the
        stack copy above SP."""
        rbp = regs[RBP]
        sp = regs[RSP]
        if rbp is None or sp is None or not sp <= rbp < mem.end - 8:
            return None, None
        try:
            ra = mem.read(rbp + 8)
            saved = mem.read(rbp)
        except _Stop:
            return None, None
        new = list(regs)
        new[RSP] = rbp + 16
        new[RBP] = saved
        return new, ra
