"""Symbolization for stax: user ELF (incl. vDSO, separate debug files, JIT perf maps) and kernel
addresses to names. Public: Resolved, Symbolizer, find_debug_file, read_build_id, demangle."""

from stax.elfread import read_build_id

from .debuginfo import find_debug_file
from .demangle import demangle
from .symbolizer import Resolved, Symbolizer

__all__ = ["Resolved", "Symbolizer", "demangle", "find_debug_file", "read_build_id"]
