"""Symbolization for stax: user-space ELF (incl. vDSO) and kernel (kallsyms) address -> name.
Public surface: Resolved, Symbolizer, read_build_id, demangle."""

from .demangle import demangle
from .elf import read_build_id
from .symbolizer import Resolved, Symbolizer

__all__ = ["Resolved", "Symbolizer", "demangle", "read_build_id"]
