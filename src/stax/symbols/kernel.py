"""Kernel symbol table from /proc/kallsyms: text symbols only, parsed once into a sorted
array of starts with parallel name/module lists; handles kptr_restrict (all-zero addresses)."""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from collections.abc import Iterable

__all__ = ["KernelSymbols", "KALLSYMS"]

KALLSYMS = "/proc/kallsyms"
# "<hex addr> <type> <name>[\t[<module>]]" restricted to text types t/T/w/W.
_TEXT_LINE = re.compile(rb"^([0-9a-fA-F]+) [tTwW] (\S+)(?:\t\[([^\]\n]+)\])?[ \t]*$", re.M)
_ANY_NONZERO = re.compile(rb"^0*[1-9a-fA-F]", re.M)


def _leading(name: bytes | str) -> int:
    return len(name) - len(name.lstrip(b"_" if isinstance(name, bytes) else "_"))


class KernelSymbols:
    """Sorted kernel text symbols; `lookup` is a bisect."""

    __slots__ = ("starts", "names", "modules", "restricted", "error")

    def __init__(self) -> None:
        self.starts: array[int] = array("Q")
        self.names: list[str] = []
        self.modules: list[str | None] = []
        self.restricted = False
        self.error: str | None = None

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def load(cls, path: str = KALLSYMS) -> KernelSymbols:
        ks = cls()
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            ks.error = f"{path}: {exc.strerror or exc}"
            return ks
        ks._parse(data)
        return ks

    @classmethod
    def from_bytes(cls, data: bytes) -> KernelSymbols:
        ks = cls()
        ks._parse(data)
        return ks

    def _parse(self, data: bytes) -> None:
        matches = _TEXT_LINE.findall(data)
        if not matches:
            self.error = "no text symbols"
            return
        if _ANY_NONZERO.search(data) is None:
            self.restricted = True  # kptr_restrict / no CAP_SYSLOG: every address reads as 0
            return
        addrs = [int(m[0], 16) for m in matches]
        order: Iterable[int] = range(len(addrs))
        if any(addrs[i] > addrs[i + 1] for i in range(len(addrs) - 1)):
            order = sorted(order, key=addrs.__getitem__)  # stable: keeps file order of aliases
        mod_names: dict[bytes, str] = {}
        starts: list[int] = []
        names: list[str] = []
        modules: list[str | None] = []
        prev = 0
        for i in order:
            addr = addrs[i]
            if addr == prev:
                if addr == 0:
                    continue
                # alias at the same address: prefer the name with fewer leading underscores
                raw = matches[i][1]
                if _leading(raw) < _leading(names[-1]):
                    names[-1] = raw.decode("utf-8", "replace")
                    modules[-1] = self._module(matches[i][2], mod_names)
                continue
            prev = addr
            starts.append(addr)
            names.append(matches[i][1].decode("utf-8", "replace"))
            mod = matches[i][2]
            modules.append(self._module(mod, mod_names) if mod else None)
        self.starts = array("Q", starts)
        self.names = names
        self.modules = modules

    @staticmethod
    def _module(raw: bytes, interned: dict[bytes, str]) -> str | None:
        if not raw:
            return None
        mod = interned.get(raw)
        if mod is None:
            mod = interned[raw] = raw.decode("utf-8", "replace")
        return mod

    def lookup(self, addr: int) -> int:
        """Index of the symbol at or before `addr`, or -1."""
        starts = self.starts
        if not starts or addr < starts[0]:
            return -1
        return bisect_right(starts, addr) - 1
