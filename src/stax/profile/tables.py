"""The profile of one run: the interned tables every view reads, and what fills them.

``Profile`` is one object assembled from one module per job:

- stax.profile.model: the interned tables (binaries, funcs, frames, stacks, sample columns,
  threads, process maps, off-CPU columns), interning and lazy symbolisation of frames;
- stax.profile.offclassify: the off-CPU reason of each interval, off the capture path;
- stax.profile.sink: the record sink (chain -> stack, DWARF-unwound stacks, the on_* calls);
- stax.profile.procseed: reading /proc when a recording attaches.

The names below are re-exported so ``from stax.profile.tables import Profile, Thread, ...``
stays the one import of the model.
"""

from __future__ import annotations

from stax.binaries import Binary
from stax.profile.model import (
    ANON_PATH,
    KERNEL_BINARY,
    REGS_ABI_64,
    UNKNOWN_BINARY,
    Func,
    Mapping,
    MappingLookup,
    Process,
    Tables,
    Thread,
)
from stax.profile.procseed import ProcSeeding

__all__ = ["ANON_PATH", "KERNEL_BINARY", "REGS_ABI_64", "UNKNOWN_BINARY", "Binary", "Func",
           "Mapping", "MappingLookup", "Process", "Profile", "Tables", "Thread"]


class Profile(ProcSeeding):
    """All tables of one run. The capture thread appends; query threads read.

    Appends happen under ``lock``; readers take a consistent sample count under the lock and then
    read the append-only columns without it.
    """
