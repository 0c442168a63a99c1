"""Reading the kernel's perf-related sysctls from /proc/sys; stdlib only (the CLI uses it).

Each reader returns the default when the file is missing or unreadable.
"""

from __future__ import annotations


def read_int(name: str, default: int) -> int:
    """``read_int("kernel.perf_event_paranoid", 2)`` reads /proc/sys/kernel/perf_event_paranoid."""
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default
