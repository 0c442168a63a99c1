"""The interned profile model every view reads: binaries, funcs, frames, stacks, samples, threads,
process maps, and the off-CPU interval and wakeup columns.

Samples are columns in ``array``s and a whole call stack is one integer (a prefix tree), so a
long recording costs a few bytes per sample, not a Python object per sample. What fills the
tables is elsewhere: the record sink (stax.profile.sink), the /proc scan at attach
(stax.profile.procseed), the off-CPU classification (stax.profile.offclassify).
"""

from __future__ import annotations

import bisect
import os
import threading
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stax.binaries import Binary, Pins, display
from stax.profile import offcpu

if TYPE_CHECKING:
    from stax.profile.access import Owner
    from stax.symbols import Symbolizer

__all__ = ["ANON_PATH", "KERNEL_BINARY", "REGS_ABI_64", "TRUNCATED_NAME", "TRUNCATED_OFFSET",
           "UNKNOWN_BINARY", "Binary", "Func",
           "Mapping", "MappingLookup", "Process", "Tables", "Thread", "is_anon", "python_line"]

KERNEL_BINARY = 0  # binary id reserved for kernel addresses
UNKNOWN_BINARY = 1  # user addresses outside every known mapping
# the frame (UNKNOWN_BINARY, TRUNCATED_OFFSET) is the "[truncated]" root of a stack whose walk
# stopped before the thread's entry point (as perf marks incomplete chains)
TRUNCATED_OFFSET = (1 << 64) - 1
TRUNCATED_NAME = "[truncated]"
REGS_ABI_64 = 2  # PERF_SAMPLE_REGS_ABI_64: the sampled registers are x86-64 ones
ANON_PATH = "[anon]"  # anonymous executable memory (JIT code): one binary per process, and the
# frame offset is the absolute address, so the symbolizer can consult /tmp/perf-PID.map


def is_anon(filename: str) -> bool:
    return not filename or filename.startswith("//anon") or filename.startswith("[anon")


@dataclass(slots=True)
class Mapping:
    start: int
    end: int
    pgoff: int
    binary: int


@dataclass(slots=True)
class Process:
    pid: int
    starts: list[int] = field(default_factory=list)
    maps: list[Mapping] = field(default_factory=list)

    def add(self, m: Mapping) -> None:
        # a new mapping replaces whatever it overlaps (mmap over an existing range)
        keep = [x for x in self.maps if x.end <= m.start or x.start >= m.end]
        keep.append(m)
        keep.sort(key=lambda x: x.start)
        self.maps = keep
        self.starts = [x.start for x in keep]

    def find(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0:
            m = self.maps[i]
            if addr < m.end:
                return m
        return None

    def copy(self, pid: int) -> Process:
        return Process(pid, list(self.starts), list(self.maps))


@dataclass(slots=True)
class Thread:
    pid: int
    tid: int
    names: list[tuple[int, str]] = field(default_factory=list)  # (time_ns, name)
    start_ns: int = 0
    end_ns: int = 0

    @property
    def name(self) -> str:
        return self.names[-1][1] if self.names else ""


@dataclass(slots=True)
class Func:
    name: str
    binary: str
    path: str
    addr: int  # function start (ELF vaddr for user code, absolute for kernel); 0 if unknown
    size: int
    resolved: bool  # named by a symbol (False: by address; with a size, the extent of its FDE)
    inlined: bool = False  # an inlined subroutine: a level of a frame's inline chain
    # a Python function (stax.profile.pymerge): ``path`` is its .py file, ``addr`` its first
    # line, and its frames' offsets are (function id << 32 | line), see python_line()
    python: bool = False

    @property
    def has_extent(self) -> bool:
        """Its start and size are known: a symbol, or the unwind info of stripped code (never a
        Python function: its ``addr`` is a line)."""
        return not self.python and (self.resolved or self.size > 0)


def python_line(offset: int) -> int:
    """The source line of a Python frame, from its offset in the .py pseudo-binary."""
    return offset & 0xFFFFFFFF


class Tables:
    """The interned tables of one run. The capture thread appends; query threads read.

    Appends happen under ``lock``; readers take a consistent sample count under the lock and then
    read the append-only columns without it.
    """

    def __init__(self, symbolizer: Symbolizer | None = None) -> None:
        self.lock = threading.RLock()
        self.sym_lock = threading.Lock()
        self.symbolizer = symbolizer
        self.binaries: list[Binary] = [Binary("[kernel.kallsyms]", None, 0),
                                       Binary("[unknown]", None, 0)]
        self._binary_ids: dict[tuple[bytes, str | None, int], int] = {}
        self.pins = Pins()  # deleted / replaced binaries kept open (stax.binaries)
        self.frame_binary = array("i")
        self.frame_offset = array("Q")
        self.frame_func = array("i")  # -1 until symbolised
        # frame -> the funcs inlined at it, outermost first (stax.profile.inline); set before
        # frame_func, so a symbolised frame's chain is final. Absent: no inlining there
        self.frame_inline: dict[int, tuple[int, ...]] = {}
        self._inline_dbg: dict[int, str | None] = {}  # binary -> file with its DWARF
        self._frame_ids: dict[tuple[int, int], int] = {}
        self.funcs: list[Func] = []
        self._func_ids: dict[tuple[str, str, int], int] = {}
        self.stack_parent = array("i")
        self.stack_frame = array("i")
        self._stack_ids: dict[tuple[int, int], int] = {}
        self.s_time = array("q")
        self.s_tid = array("i")
        self.s_stack = array("i")
        self.s_weight = array("q")
        self.s_cpu = array("h")
        self.threads: dict[int, Thread] = {}
        self.processes: dict[int, Process] = {}
        self.path_cache: dict[int, tuple[int, ...]] = {-1: ()}  # stack -> func ids (views)
        self.path_cache_outer: dict[int, tuple[int, ...]] = {-1: ()}  # the same, no inlining
        self.counts: dict[str, int] = {
            "records": 0, "samples": 0, "lost": 0, "throttled": 0, "mmap": 0, "comm": 0,
            "fork": 0, "exit": 0, "other": 0, "empty_stacks": 0, "unmapped_frames": 0,
            "decode_errors": 0, "truncated_chains": 0,
        }
        # off-CPU: intervals and wakeup edges (profile/offcpu.py builds them)
        self.intervals = offcpu.Intervals()
        self.wakeups = offcpu.Wakeups()
        # the recorded program's ids: annotate shows only sources this owner could read
        self.owner: Owner | None = None
        self.first_time = 0
        self.marks: list[tuple[int, str]] = []  # (monotonic ns, label): stax mark
        self.last_time = 0

    # --- interning --------------------------------------------------------------------------

    def binary_id(self, path: str | bytes, build_id: str | None, pid: int, start: int = 0,
                  end: int = 0) -> int:
        """The id of a mapped file, by its name exactly as recorded (bytes, or a str from
        ``os.fsdecode``), its build-id and, for anonymous memory, its process. A new binary
        remembers the mapping it was seen in, and is kept open when its file is only reachable
        through that process (deleted or replaced: ``stax.binaries.Pins``)."""
        raw = path if isinstance(path, bytes) else os.fsencode(path)
        key = (raw, build_id, pid if raw == b"[anon]" else 0)
        bid = self._binary_ids.get(key)
        if bid is None:
            bid = len(self.binaries)
            b = Binary(display(raw), build_id, pid, raw, start, end)
            self.binaries.append(b)
            self._binary_ids[key] = bid
            if raw.startswith(b"/"):
                self.pins.consider(b)
        return bid

    def frame_id(self, binary: int, offset: int) -> int:
        key = (binary, offset)
        fid = self._frame_ids.get(key)
        if fid is None:
            fid = len(self.frame_binary)
            self.frame_binary.append(binary)
            self.frame_offset.append(offset)
            self.frame_func.append(-1)
            self._frame_ids[key] = fid
        return fid

    def stack_id(self, parent: int, frame: int) -> int:
        key = (parent, frame)
        sid = self._stack_ids.get(key)
        if sid is None:
            sid = len(self.stack_parent)
            self.stack_parent.append(parent)
            self.stack_frame.append(frame)
            self._stack_ids[key] = sid
        return sid

    def ensure_thread(self, pid: int, tid: int, time: int) -> Thread:
        """Thread ``tid`` of process ``pid``; a thread not seen before starts at ``time``."""
        th = self.threads.get(tid)
        if th is None:
            th = self.threads[tid] = Thread(pid, tid, start_ns=time)
        return th

    def collapsed_func(self, binary: str) -> int:
        """The func standing for all of ``binary``'s frames (the collapse_binary transform),
        named after its file."""
        with self.lock:
            f = Func(binary.rsplit("/", 1)[-1], binary, binary, 0, 0, False)
            return self._intern(f, (f.name, binary, -1))

    # --- symbolisation --------------------------------------------------------------------

    def func_of_frame(self, fid: int) -> int:
        func = self.frame_func[fid]
        if func >= 0:
            return func
        with self.sym_lock:
            return self._resolve_frame(fid)

    def _resolve_frame(self, fid: int) -> int:
        func = self.frame_func[fid]
        if func >= 0:
            return func
        binary = self.binaries[self.frame_binary[fid]]
        offset = self.frame_offset[fid]
        bin_id = self.frame_binary[fid]
        if bin_id == UNKNOWN_BINARY and offset == TRUNCATED_OFFSET:
            f = Func(TRUNCATED_NAME, "[unknown]", "", 0, 0, False)
        elif self.symbolizer is None:
            f = Func(f"{binary.name}+0x{offset:x}", binary.name, binary.path, 0, 0, False)
        elif bin_id == KERNEL_BINARY:
            r = self.symbolizer.resolve_kernel(offset)
            f = Func(r.name, r.binary, r.path, r.func_addr, r.func_size, r.resolved)
        elif bin_id == UNKNOWN_BINARY:
            f = Func(f"[unknown]+0x{offset:x}", "[unknown]", "", 0, 0, False)
        else:
            r = self.symbolizer.resolve_binary(binary, offset)
            f = Func(r.name, r.binary, r.path, r.func_addr, r.func_size, r.resolved)
        if bin_id > UNKNOWN_BINARY and self.symbolizer is not None:
            chain = self._inline_chain(bin_id, binary, offset)
            if chain:
                self.frame_inline[fid] = tuple(self._intern(x, (x.name, x.binary, -2))
                                               for x in chain)
        func = self._intern(f, (f.name, f.binary, f.addr if f.has_extent else offset))
        self.frame_func[fid] = func
        return func

    def _intern(self, f: Func, key: tuple[str, str, int]) -> int:
        func = self._func_ids.get(key)
        if func is None:
            func = len(self.funcs)
            self.funcs.append(f)
            self._func_ids[key] = func
        return func

    def _inline_chain(self, bin_id: int, binary: Binary, offset: int) -> list[Func]:
        """The funcs inlined at ``offset`` of a user binary, outermost first, from its DWARF
        (stax.profile.inline; the file holding it is looked for once per binary)."""
        from stax.profile import inline

        assert self.symbolizer is not None
        if bin_id not in self._inline_dbg:
            dbg = None
            if binary.path.startswith("/"):
                from stax.binaries import locate

                loc = locate(binary)
                if loc.path is not None:
                    dbg = inline.debug_file(loc.path, loc.build_id or binary.build_id)
            self._inline_dbg[bin_id] = dbg
        dbg = self._inline_dbg[bin_id]
        if dbg is None:
            return []
        vaddr = self.symbolizer.offset_to_vaddr(binary, offset)
        if vaddr is None:
            return []
        return [Func(x.name, binary.name, binary.path, 0, 0, True, True)
                for x in reversed(inline.chain_in(dbg, vaddr))]


class MappingLookup:
    """The process maps of some tables as the DWARF unwinder asks for them
    (stax.unwind.Mappings): the profile pushes this into its Unwinder."""

    __slots__ = ("tables",)

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def find(self, pid: int, addr: int) -> Mapping | None:
        proc = self.tables.processes.get(pid)
        return proc.find(addr) if proc is not None else None

    def binary(self, binary_id: int) -> Binary | None:
        binaries = self.tables.binaries
        return binaries[binary_id] if 0 <= binary_id < len(binaries) else None
