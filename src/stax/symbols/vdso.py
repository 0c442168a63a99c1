"""The vDSO image: copied out of this process's own memory, since the kernel maps the same
image into every (same-ABI) process; parsed like any other ELF for its .dynsym."""

from __future__ import annotations

import os

__all__ = ["read_vdso_image", "VDSO_NAME"]

VDSO_NAME = "[vdso]"
_MAX_VDSO = 1 << 20


def _vdso_range(maps_path: str) -> tuple[int, int] | None:
    with open(maps_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.rstrip().endswith(VDSO_NAME):
                lo, _, hi = line.split(None, 1)[0].partition("-")
                return int(lo, 16), int(hi, 16)
    return None


def read_vdso_image(
    maps_path: str = "/proc/self/maps", mem_path: str = "/proc/self/mem"
) -> bytes | None:
    """Bytes of this process's vDSO mapping, or None when there is none or it is unreadable."""
    try:
        rng = _vdso_range(maps_path)
        if rng is None:
            return None
        lo, hi = rng
        size = hi - lo
        if size <= 0 or size > _MAX_VDSO:
            return None
        fd = os.open(mem_path, os.O_RDONLY)
        try:
            data = os.pread(fd, size, lo)
        finally:
            os.close(fd)
    except (OSError, ValueError, OverflowError):
        return None
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return None
    return data
