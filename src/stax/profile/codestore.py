"""What an archive keeps of a run's code, so annotate answers without the recording's process
or symbolizer: each binary's loadable segments (file offset -> ELF address) and, when saved
with ``--with-code``, the bytes of the hot functions, the line-table rows covering them and the
source lines those rows name (only sources the run's owner could read).

The reader (stax.archive.reader) builds a ``CodeStore`` and sets it as ``profile.code_store``;
annotate asks it when the profile has no symbolizer, and for code when the recorded binary
cannot be found (or is another build).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from stax.profile.linetable import LineTable

PAGE = 4096


def segment_vaddr(segments: list[tuple[int, int, int]], file_offset: int) -> int | None:
    """The ELF address of a file offset through ``segments`` ``(offset, filesz, vaddr)``, with
    the kernel's page-granular slack (the rule of ``ElfImage.offset_to_vaddr``)."""
    for off, filesz, vaddr in segments:
        if off <= file_offset < off + filesz:
            return file_offset - off + vaddr
    for off, filesz, vaddr in segments:
        lo = off & ~(PAGE - 1)
        hi = (off + filesz + PAGE - 1) & ~(PAGE - 1)
        if lo <= file_offset < hi:
            return file_offset - off + vaddr
    return None


@dataclass
class EmbeddedCode:
    """One function's code as saved: binary index, ELF address, bytes, architecture, and the
    line-table rows ``(addr, file, line)`` covering it (file None: end of a sequence)."""

    binary: int
    addr: int
    code: bytes
    arch: str
    rows: list[tuple[int, str | None, int]] = field(default_factory=list)

    def line_table(self) -> LineTable | None:
        if not self.rows:
            return None
        names: list[str] = []
        index: dict[str, int] = {}
        files: list[int] = []
        for _a, f, _l in self.rows:
            if f is None:
                files.append(-1)
                continue
            if f not in index:
                index[f] = len(names)
                names.append(f)
            files.append(index[f])
        return LineTable([a for a, _f, _l in self.rows], files, [ln for _a, _f, ln in self.rows],
                         names)


@dataclass
class CodeStore:
    segments: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    code: list[EmbeddedCode] = field(default_factory=list)
    sources: dict[str, dict[int, str]] = field(default_factory=dict)  # file -> line -> text

    def to_vaddr(self, binary: int, file_offset: int) -> int | None:
        segs = self.segments.get(binary)
        return segment_vaddr(segs, file_offset) if segs else None

    def code_at(self, binary: int, vaddr: int) -> EmbeddedCode | None:
        """The embedded function of ``binary`` that starts at ``vaddr`` (or holds it)."""
        best = None
        for c in self.code:
            if c.binary == binary and c.addr <= vaddr < c.addr + max(len(c.code), 1):
                if c.addr == vaddr:
                    return c
                best = best or c
        return best

    def source_line(self, file: str, line: int) -> str | None:
        return self.sources.get(file, {}).get(line)


def rows_covering(table: LineTable, lo: int, hi: int) -> list[tuple[int, str | None, int]]:
    """The rows of ``table`` that give the lines of [lo, hi): the one in force at ``lo`` and
    every row starting inside."""
    i = max(bisect_right(table.addrs, lo) - 1, 0)
    out: list[tuple[int, str | None, int]] = []
    for j in range(i, len(table.addrs)):
        a = table.addrs[j]
        if a >= hi:
            break
        f = table.files[j]
        out.append((a, table.names[f] if f >= 0 else None, table.lines[j]))
    return out


def store_of(p: Any) -> CodeStore | None:
    return getattr(p, "code_store", None)
