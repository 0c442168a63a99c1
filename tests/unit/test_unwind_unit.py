"""Unit tests of the DWARF unwinder on hand-built call-frame information and stacks, and of the
.eh_frame reader against readelf's own decoding of a compiled binary."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from harness import ROOT

from stax.leb128 import encode_uleb
from stax.unwind import cfaprogram as cfaprog
from stax.unwind import ehframe as eh
from stax.unwind import walker as wk

# --- building CFI by hand -------------------------------------------------------------------


uleb = encode_uleb


def sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if (v == 0 and not b & 0x40) or (v == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def entry(body: bytes) -> bytes:
    pad = (-(len(body) + 4)) % 8
    body += b"\0" * pad  # DW_CFA_nop padding
    return struct.pack("<I", len(body)) + body


def cie(aug: str = "zR", initial: bytes = b"", signal: bool = False) -> bytes:
    if signal:
        aug += "S"
    body = struct.pack("<I", 0) + b"\x01" + aug.encode() + b"\0"
    body += uleb(1) + sleb(-8) + b"\x10"
    body += uleb(1) + b"\x1b"  # augmentation data: FDE pointers are pcrel | sdata4
    return entry(body + initial)


def fde(cie_off: int, here: int, pc_begin: int, pc_range: int, program: bytes,
        vaddr: int = 0) -> bytes:
    """An FDE placed at offset ``here`` of a buffer mapped at ``vaddr``."""
    field = here + 4  # where the CIE pointer lies
    pc_field = here + 8
    body = struct.pack("<I", field - cie_off)
    body += struct.pack("<i", pc_begin - (vaddr + pc_field)) + struct.pack("<i", pc_range)
    body += uleb(0) + program
    return entry(body)


# x86-64 psABI initial state: CFA = rsp + 8, return address at CFA - 8
X86_INITIAL = b"\x0c" + uleb(7) + uleb(8) + b"\x90" + uleb(1)


def build(program: bytes, pc_begin: int = 0x1000, pc_range: int = 0x100,
          signal: bool = False) -> eh.EhFrame:
    c = cie(initial=X86_INITIAL, signal=signal)
    f = fde(0, len(c), pc_begin, pc_range, program)
    return eh.EhFrame(c + f + b"\0\0\0\0", 0, None, [(0, 0, 1 << 20)])


def test_typical_prologue_rows() -> None:
    prog = (b"\x41"  # advance_loc 1
            + b"\x0e" + uleb(16)  # def_cfa_offset 16
            + b"\x86" + uleb(2)  # rbp at CFA-16
            + b"\x43"  # advance_loc 3
            + b"\x0d" + uleb(6)  # def_cfa_register rbp
            + b"\x0a"  # remember_state
            + b"\x48"  # advance_loc 8
            + b"\x0c" + uleb(7) + uleb(8)  # def_cfa rsp+8 (epilogue)
            + b"\xc6"  # restore rbp
            + b"\x41"  # advance_loc 1
            + b"\x0b")  # restore_state
    t = build(prog)
    r0 = t.row_at(0x1000)
    assert (r0.cfa_reg, r0.cfa_off) == (7, 8)
    assert (16, cfaprog.OFFSET, -8) in r0.rules
    r1 = t.row_at(0x1001)
    assert (r1.cfa_reg, r1.cfa_off) == (7, 16)
    assert (6, cfaprog.OFFSET, -16) in r1.rules
    r2 = t.row_at(0x1005)
    assert (r2.cfa_reg, r2.cfa_off) == (6, 16)
    r3 = t.row_at(0x100C)
    assert (r3.cfa_reg, r3.cfa_off) == (7, 8)
    assert all(reg != 6 for reg, _k, _a in r3.rules)  # restored to the CIE's (same value)
    r4 = t.row_at(0x100D)
    assert (r4.cfa_reg, r4.cfa_off) == (6, 16)
    assert (6, cfaprog.OFFSET, -16) in r4.rules
    assert t.row_at(0x10FF) == r4
    assert t.row_at(0x1100) is None  # past the FDE's range
    assert t.row_at(0xFFF) is None


def test_register_rules_same_undefined_val_offset_register() -> None:
    prog = (b"\x08" + uleb(3)  # rbx same value
            + b"\x07" + uleb(12)  # r12 undefined
            + b"\x14" + uleb(13) + uleb(2)  # r13 = CFA - 16 (val_offset, scaled by -8)
            + b"\x09" + uleb(14) + uleb(0)  # r14 is in rax
            + b"\x11" + uleb(15) + sleb(-3))  # r15 at CFA - 24 (offset_extended_sf)
    row = build(prog).row_at(0x1010)
    regs: list[int | None] = [None] * wk.N_DWARF
    regs[wk.RSP] = 0x7000
    regs[0] = 0xAAAA
    regs[3] = 0xBBBB
    regs[12] = 0xCCCC
    stack = bytearray(64)
    struct.pack_into("<Q", stack, 0, 0x401234)  # return address at CFA-8 = 0x7000
    struct.pack_into("<Q", stack, 0x7008 - 24 - 0x7000 + 0, 0)  # r15 slot below CFA
    mem = wk.Memory(bytes(stack), 0x7000, True)
    # CFA = rsp + 8
    row_r15_addr = 0x7008 - 24
    assert row_r15_addr < 0x7000  # below SP: the epilogue case, register kept
    new, ra = wk.step(row, regs, mem)
    assert ra == 0x401234
    assert new[wk.RSP] == 0x7008
    assert new[3] == 0xBBBB
    assert new[12] is None
    assert new[13] == 0x7008 - 16
    assert new[14] == 0xAAAA


def test_plt_cfa_expression() -> None:
    # the CFA expression binutils emits for .plt entries
    expr = bytes([0x77, 8, 0x80, 0, 0x3F, 0x1A, 0x3B, 0x2A, 0x33, 0x24, 0x22])
    regs: list[int | None] = [None] * wk.N_DWARF
    regs[wk.RSP] = 0x1000
    mem = wk.Memory(b"\0" * 64, 0x1000, True)
    regs[wk.RIP] = 0x5000 + 4  # before the push in the entry: CFA = rsp + 8
    assert wk.eval_expr(expr, regs, mem, None) == 0x1008
    regs[wk.RIP] = 0x5000 + 12  # after it: CFA = rsp + 16
    assert wk.eval_expr(expr, regs, mem, None) == 0x1010


def test_expression_ops_and_stack_bounds() -> None:
    regs: list[int | None] = [None] * wk.N_DWARF
    regs[wk.RSP] = 0x2000
    stack = struct.pack("<QQ", 0x1111, 0x2222)
    mem = wk.Memory(stack, 0x2000, True)
    # breg7(8); deref -> 0x2222 ; plus_uconst 2
    assert wk.eval_expr(bytes([0x77, 8, 0x06, 0x23, 2]), regs, mem, None) == 0x2224
    # const1u 5, const1u 3, minus, lit2, mul -> 4
    assert wk.eval_expr(bytes([0x08, 5, 0x08, 3, 0x1C, 0x32, 0x1E]), regs, mem, None) == 4
    with pytest.raises(wk._Stop) as e:
        mem.read(0x2010)
    assert e.value.reason == wk.EXHAUSTED
    with pytest.raises(wk._Stop) as e:
        wk.Memory(stack, 0x2000, False).read(0x2010)
    assert e.value.reason == wk.UNREADABLE
    with pytest.raises(wk._Stop) as e:
        mem.read(0x1FF8)
    assert e.value.reason == wk.UNREADABLE


def _walker(rows: dict[int, cfaprog.Row | None], stack_size: int = 64) -> wk.Walker:
    def resolve(pid: int, addr: int) -> tuple[cfaprog.Row | None, int, int, str | None]:
        for start, row in rows.items():
            if start <= addr < start + 0x100:
                return row, 2, addr, None if row is not None else wk.NO_FDE
        return None, 1, addr, wk.UNMAPPED

    return wk.Walker(resolve, stack_size)


def _regs(ip: int, sp: int, bp: int = 0) -> tuple[int, ...]:
    r = [0] * 17
    r[8] = ip
    r[7] = sp
    r[6] = bp
    return tuple(r)


def test_walk_to_outermost_frame_with_return_address_minus_one() -> None:
    leaf = build(b"\x41\x0e" + uleb(16), 0x1000).row_at(0x1001)  # CFA = rsp+16
    outer = build(b"\x07" + uleb(16), 0x2000).row_at(0x2000)  # RA undefined: outermost
    w = _walker({0x1000: leaf, 0x2000: outer})
    stack = struct.pack("<QQQ", 0, 0x2010, 0)  # [sp+8] = return address into 0x2000 fn
    frames = w.walk(7, _regs(0x1005, 0x8000), stack)
    assert [off for _b, off in frames] == [0x1005, 0x200F]  # the caller at RA - 1
    assert w.complete == 1 and not w.stops


def test_walk_stops_are_counted_per_reason() -> None:
    leaf = build(b"\x0e" + uleb(64), 0x1000).row_at(0x1000)  # RA at CFA-8 = sp+56
    w = _walker({0x1000: leaf}, stack_size=32)
    w.walk(7, _regs(0x1000, 0x8000), b"\0" * 32)
    assert w.stops == {(2, wk.EXHAUSTED): 1}
    w.walk(7, _regs(0x3000, 0x8000), b"\0" * 32)
    assert w.stops[(1, wk.UNMAPPED)] == 1
    # RA points at an address with no CFI, and no frame pointer to fall back on
    w2 = _walker({0x1000: build(b"", 0x1000).row_at(0x1000), 0x4000: None})
    frames = w2.walk(7, _regs(0x1000, 0x8000, bp=0), struct.pack("<Q", 0x4001) + b"\0" * 24)
    assert len(frames) == 2 and w2.stops == {(2, wk.NO_FDE): 1}


def test_signal_frame_next_pc_is_exact() -> None:
    # a sigreturn trampoline: CFA = *(rsp + 16); rip saved at rsp + 8; augmentation "S"
    prog = (b"\x0f" + uleb(3) + bytes([0x77, 16, 0x06])
            + b"\x10" + uleb(16) + uleb(2) + bytes([0x77, 8]))
    tramp = build(prog, 0x3000, signal=True).row_at(0x3000)
    assert tramp.signal
    outer = build(b"\x07" + uleb(16), 0x2000).row_at(0x2000)
    w = _walker({0x3000: tramp, 0x2000: outer})
    # sp=0x8000: [sp+8] = interrupted rip 0x2000 (exact: first instruction), [sp+16] = its sp
    stack = struct.pack("<QQQQ", 0, 0x2000, 0x8018, 0)
    frames = w.walk(7, _regs(0x3000, 0x8000), stack)
    assert [off for _b, off in frames] == [0x3000, 0x2000]
    assert w.complete == 1


def test_frame_pointer_fallback_without_cfi() -> None:
    outer = build(b"\x07" + uleb(16), 0x2000).row_at(0x2000)
    w = _walker({0x4000: None, 0x2000: outer})
    # rbp = sp + 16: [rbp] = saved rbp, [rbp+8] = return address
    stack = b"\0" * 16 + struct.pack("<QQ", 0, 0x2005)
    frames = w.walk(7, _regs(0x4000, 0x8000, bp=0x8010), stack)
    assert [off for _b, off in frames] == [0x4000, 0x2004]
    assert w.fp_frames == 1 and w.complete == 1


# --- against readelf on a real binary -------------------------------------------------------

_FDE = re.compile(r"FDE cie=\w+ pc=([0-9a-f]+)\.\.([0-9a-f]+)")


def test_rows_match_readelf(tmp_path: Path) -> None:
    readelf = shutil.which("readelf")
    gcc = shutil.which("gcc")
    if readelf is None or gcc is None:
        pytest.skip("readelf and gcc are needed")
    exe = tmp_path / "qsortcb"
    subprocess.run([gcc, "-O2", "-fomit-frame-pointer", "-o", str(exe),
                    str(ROOT / "workloads/qsortcb.c")], check=True)
    out = subprocess.run([readelf, "--debug-dump=frames-interp", str(exe)], check=True,
                         capture_output=True, text=True).stdout
    table = eh.load_image(path=str(exe))
    assert table is not None and len(table) > 3
    checked = 0
    cols: list[str] = []
    in_fde = False
    for line in out.splitlines():
        if " CIE" in line or " FDE " in line:
            in_fde = bool(_FDE.search(line))
            cols = []
            continue
        if not in_fde:
            continue
        parts = line.split()
        if parts and parts[0] == "LOC":
            cols = parts
            continue
        if not cols or len(parts) != len(cols) or not re.fullmatch(r"[0-9a-f]{8,16}", parts[0]):
            continue
        pc = int(parts[0], 16)
        row = table.row_at(pc)
        assert row is not None, hex(pc)
        cfa = parts[1]
        if cfa == "exp":
            assert row.cfa_expr is not None
        else:
            name, off = re.fullmatch(r"(\w+)\+(\d+)", cfa).groups()  # type: ignore[union-attr]
            assert row.cfa_reg == {"rsp": 7, "rbp": 6}[name] and row.cfa_off == int(off)
        rules = {reg: (kind, arg) for reg, kind, arg in row.rules}
        names = {"rbx": 3, "rbp": 6, "r12": 12, "r13": 13, "r14": 14, "r15": 15, "ra": 16}
        for col, val in zip(cols[2:], parts[2:], strict=True):
            if col in names and val.startswith("c"):
                assert rules[names[col]] == (cfaprog.OFFSET, int(val[1:])), (hex(pc), col)
        checked += 1
    assert checked > 5


def test_header_table_matches_a_scan_of_eh_frame() -> None:
    libc = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6")
                 if Path(p).exists()), None)
    if libc is None:
        pytest.skip("no x86-64 libc found")
    t = eh.load_image(path=libc)
    assert t is not None and len(t) > 1000
    scanned = eh.EhFrame(t.buf, t.vaddr, None, t.loads)
    assert scanned.starts == t.starts
    # every FDE decodes to rows, and a PC inside gets one
    for pc in t.starts[:: max(1, len(t) // 200)]:
        assert t.row_at(pc) is not None


def test_vdso_has_call_frame_information() -> None:
    from stax.binaries import read_vdso_image

    data = read_vdso_image()
    if data is None:
        pytest.skip("no vDSO in this process")
    t = eh.load_image(data=data)
    assert t is not None and len(t) > 0
    assert t.row_at(t.starts[0]) is not None


def test_unwinder_errors_are_counted_not_raised() -> None:
    from stax.profile.tables import Profile

    p = Profile(None, dwarf_unwind=True)
    assert p.unwinder is not None

    def broken(pid: int, addr: int) -> tuple[cfaprog.Row | None, int, int, str | None]:
        raise RuntimeError("boom")

    p.unwinder.walker.resolve = broken
    assert p.unwinder.walk(1, _regs(0x1000, 0x8000), b"\0" * 64) == []
    assert p.unwinder.stats()["stops"] == [
        {"binary": "[unknown]", "reason": "unwinder error", "samples": 1}]


def test_zplr_augmentation_with_personality_and_lsda() -> None:
    # a C++ CIE: personality (indirect pcrel sdata4), LSDA and FDE pointer encodings
    body = struct.pack("<I", 0) + b"\x01zPLR\0" + uleb(1) + sleb(-8) + b"\x10"
    aug = b"\x9b" + struct.pack("<i", 0x1234) + b"\x1b" + b"\x1b"
    c = entry(body + uleb(len(aug)) + aug + X86_INITIAL)
    here = len(c)
    fbody = struct.pack("<I", here + 4) + struct.pack("<i", 0x1000 - (here + 8))
    fbody += struct.pack("<i", 0x40) + uleb(4) + struct.pack("<i", 0)  # LSDA pointer
    fbody += b"\x41\x0e" + uleb(32)
    t = eh.EhFrame(c + entry(fbody) + b"\0\0\0\0", 0, None, [(0, 0, 1 << 20)])
    assert t.starts == [0x1000]
    row = t.row_at(0x1010)
    assert row is not None and (row.cfa_reg, row.cfa_off) == (7, 32)
    assert row.fast == (7, 32, -8, ())
