"""The event kinds stax opens ("sample", "switch", tracepoints) and the seam that opens them.

One builder per kind turns an EventSpec into a perf_event_attr; an Opener opens it in-process
or through staxd. staxd accepts only kinds named here and builds every attr with these builders.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from stax.capture import perf, sched
from stax.capture import records as rec
from stax.limits import DEFAULT_FREQUENCY, MAX_FREQUENCY

MAX_BUFFER_BYTES = 1 << 30
MAX_REGS_MASK = (1 << 64) - 1
MAX_STACK_USER = 65528  # the kernel's limit: below 64 KiB, a multiple of 8



@dataclass(frozen=True)
class EventSpec:
    """What to open, in words a broker can check: never a raw attr.

    ``frequency`` is for "sample"; ``launch`` opens the event disabled until the target's exec;
    ``kernel`` asks for kernel frames; ``buffer_bytes`` is the ring
    buffer's size, from which the wakeup watermark is derived. ``sample_type`` and
    ``regs_user_mask`` are the recording's SampleLayout (all events of a recording share it);
    only layouts records.SampleLayout accepts are valid.
    """

    kind: str
    frequency: int = DEFAULT_FREQUENCY
    launch: bool = False
    kernel: bool = True
    build_id: bool = True
    buffer_bytes: int = 1 << 20
    sample_type: int = rec.SAMPLE_TYPE
    regs_user_mask: int = 0
    stack_user_bytes: int = 0  # user stack copied per sample (layouts with SAMPLE_STACK_USER)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> EventSpec:
        """Validate a decoded request entry; raises ValueError with a reason."""
        if not isinstance(d, dict):
            raise ValueError("an event must be an object")
        known = {f.name for f in fields(cls)}
        extra = sorted(str(k) for k in d if k not in known)
        if extra:
            raise ValueError(f"unknown event field(s): {', '.join(extra)[:200]}")
        kind = d.get("kind")
        if not isinstance(kind, str) or kind not in BUILDERS:
            raise ValueError(f"unknown event kind {str(kind)[:40]!r} (known: "
                             f"{', '.join(sorted(BUILDERS))})")
        out: dict[str, Any] = {"kind": kind}
        for name, lo, hi in (("frequency", 1, MAX_FREQUENCY),
                             ("buffer_bytes", 1, MAX_BUFFER_BYTES),
                             ("sample_type", 0, MAX_REGS_MASK),
                             ("regs_user_mask", 0, MAX_REGS_MASK),
                             ("stack_user_bytes", 0, MAX_STACK_USER)):
            if name in d:
                v = d[name]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ValueError(f"{name} must be an integer in {lo}..{hi}")
                out[name] = v
        for name in ("launch", "kernel", "build_id"):
            if name in d:
                if not isinstance(d[name], bool):
                    raise ValueError(f"{name} must be true or false")
                out[name] = d[name]
        spec = cls(**out)
        if spec.stack_user_bytes % 8:
            raise ValueError("stack_user_bytes must be a multiple of 8")
        spec.layout()  # raises ValueError for a sample_type the decoder does not support
        return spec

    def layout(self) -> rec.SampleLayout:
        return rec.SampleLayout(self.sample_type, self.regs_user_mask)


def base_attr(frequency: int, launch: bool, kernel: bool, build_id: bool,
              buffer_bytes: int, layout: rec.SampleLayout = rec.DEFAULT_LAYOUT,
              stack_user: int = 0) -> perf.EventAttr:
    flags = ["inherit", "mmap", "mmap2", "comm", "comm_exec", "task", "freq", "sample_id_all",
             "use_clockid", "watermark"]
    if launch:
        flags += ["disabled", "enable_on_exec"]
    if not kernel:
        flags += ["exclude_kernel", "exclude_hv", "exclude_callchain_kernel"]
    if build_id:
        flags.append("build_id")
    if layout.stack:
        # the user part comes from the DWARF unwinder; the kernel need not walk frame pointers
        flags.append("exclude_callchain_user")
    return perf.EventAttr(
        type=perf.PERF_TYPE_SOFTWARE,
        config=perf.PERF_COUNT_SW_CPU_CLOCK,
        sample_period_or_freq=frequency,
        sample_type=layout.sample_type,
        sample_regs_user=layout.regs_user_mask,
        sample_stack_user=stack_user if layout.stack else 0,
        flags=tuple(flags),
        wakeup=max(4096, buffer_bytes // 4),
    )


def tracepoint_attr(config: int, launch: bool, kernel: bool, buffer_bytes: int,
                    layout: rec.SampleLayout, switches: bool,
                    stack_user: int = 0) -> perf.EventAttr:
    """A per-thread tracepoint event sampling every hit (period 1), inherited like the sampler,
    writing into the same buffers with the same clock. No side-band records (the sampler
    already reports mmap/comm/task) except context switches on the sched_switch event.

    With DWARF unwinding, sched_switch and sched_waking samples carry a small user stack copy
    (the recorder's SWITCH_STACK_SIZE and WAKING_STACK_SIZE) for the blocking and the waker's
    stack, unwound like the rest (docs/offcpu.md has the sizes and their cost)."""
    flags = ["inherit", "sample_id_all", "use_clockid", "watermark"]
    if launch:
        flags += ["disabled", "enable_on_exec"]
    if not kernel:
        flags += ["exclude_callchain_kernel"]
    if switches:
        flags.append("context_switch")
    if layout.stack and stack_user:
        flags.append("exclude_callchain_user")  # the user part comes from the stack copy
    return perf.EventAttr(type=perf.PERF_TYPE_TRACEPOINT, config=config,
                          sample_period_or_freq=1, sample_type=layout.sample_type,
                          sample_regs_user=layout.regs_user_mask,
                          sample_stack_user=stack_user if layout.stack else 0,
                          flags=tuple(flags), wakeup=max(4096, buffer_bytes // 4))


def _watermark(spec: EventSpec) -> int:
    return max(4096, spec.buffer_bytes // 4)


def sample_attr(spec: EventSpec) -> perf.EventAttr:
    """cpu-clock sampling with call chains, plus the side-band records (mmap, comm, fork)."""
    return base_attr(spec.frequency, spec.launch, spec.kernel, spec.build_id,
                     spec.buffer_bytes, spec.layout(), spec.stack_user_bytes)


def switch_attr(spec: EventSpec) -> perf.EventAttr:
    """A dummy software event that only emits PERF_RECORD_SWITCH (context switches)."""
    flags = ["inherit", "context_switch", "sample_id_all", "use_clockid", "task", "comm",
             "watermark"]
    if spec.launch:
        flags += ["disabled", "enable_on_exec"]
    if not spec.kernel:
        flags += ["exclude_kernel", "exclude_hv"]
    return perf.EventAttr(type=perf.PERF_TYPE_SOFTWARE, config=perf.PERF_COUNT_SW_DUMMY,
                          sample_period_or_freq=1, sample_type=spec.sample_type,
                          flags=tuple(flags),
                          wakeup=_watermark(spec))


def ctxsw_attr(spec: EventSpec) -> perf.EventAttr:
    """Off-CPU without the scheduler tracepoints: the context-switch software event, sampled at
    every switch-out (period 1) with the recording's layout (user registers and a stack copy
    of ``stack_user_bytes`` for the blocking stack), plus PERF_RECORD_SWITCH records for both
    directions. Opened by the owner of the target without privilege; with kernel frames
    excluded (perf_event_paranoid 2) the kernel drops the samples, since the switch happens in
    kernel mode, and only the switch records come."""
    flags = ["inherit", "context_switch", "sample_id_all", "use_clockid", "watermark"]
    if spec.launch:
        flags += ["disabled", "enable_on_exec"]
    if not spec.kernel:
        flags += ["exclude_kernel", "exclude_hv", "exclude_callchain_kernel"]
    layout = spec.layout()
    if layout.stack and spec.stack_user_bytes:
        flags.append("exclude_callchain_user")
    return perf.EventAttr(type=perf.PERF_TYPE_SOFTWARE,
                          config=perf.PERF_COUNT_SW_CONTEXT_SWITCHES, sample_period_or_freq=1,
                          sample_type=layout.sample_type, sample_regs_user=layout.regs_user_mask,
                          sample_stack_user=spec.stack_user_bytes if layout.stack else 0,
                          flags=tuple(flags), wakeup=_watermark(spec))


_TRACEPOINT_IDS: dict[tuple[str, str], int] = {}


def tracepoint_id(group: str, name: str) -> int:
    """The id of a tracepoint from tracefs (root-only on most hosts); ``$STAX_TRACEFS`` names
    the tracefs directory to use instead of the usual places (as in stax.capture.sched)."""
    key = (group, name)
    if key in _TRACEPOINT_IDS:
        return _TRACEPOINT_IDS[key]
    last: OSError | None = None
    for root in sched.tracefs_dirs():
        try:
            with open(os.path.join(root, "events", group, name, "id")) as f:
                _TRACEPOINT_IDS[key] = int(f.read().strip())
                return _TRACEPOINT_IDS[key]
        except OSError as e:
            last = e
        except ValueError:
            break
    err = last.errno if last is not None and last.errno else errno.ENOENT
    raise perf.PerfError(err, f"tracepoint {group}:{name} unavailable (is tracefs mounted at "
                              f"{sched.TRACEFS_DIRS[0]}, and readable?)")


def tracepoint_format(name: str) -> str | None:
    """The format file of a scheduler tracepoint stax knows (never a caller-given path)."""
    if name not in ("sched_switch", "sched_waking"):
        return None
    for root in sched.tracefs_dirs():
        try:
            with open(os.path.join(root, "events", "sched", name, "format")) as f:
                return f.read(65536)
        except OSError:
            continue
    return None


def _tracepoint(group: str, name: str, switches: bool) -> Callable[[EventSpec], perf.EventAttr]:
    def build(spec: EventSpec) -> perf.EventAttr:
        return tracepoint_attr(tracepoint_id(group, name), spec.launch, spec.kernel,
                               spec.buffer_bytes, spec.layout(), switches,
                               spec.stack_user_bytes)

    build.__doc__ = (f"The {group}:{name} tracepoint, one sample per hit (the layout should "
                     "include SAMPLE_RAW for the payload).")
    return build


# kind -> the one function that builds its attr. Add a kind here and staxd serves it.
BUILDERS: dict[str, Callable[[EventSpec], perf.EventAttr]] = {
    "sample": sample_attr,
    "switch": switch_attr,
    "ctxsw": ctxsw_attr,
    "sched_waking": _tracepoint("sched", "sched_waking", switches=False),
    "sched_switch": _tracepoint("sched", "sched_switch", switches=True),
}


def build_attr(spec: EventSpec) -> perf.EventAttr:
    return BUILDERS[spec.kind](spec)


class Opener(Protocol):
    """Opens one event for thread ``tid`` of process ``pid`` on ``cpu``; raises PerfError."""

    mode: str  # "in-process" or "staxd"

    def open(self, spec: EventSpec, pid: int, tid: int, cpu: int) -> int: ...

    def close(self) -> None: ...


class LocalOpener:
    """perf_event_open in this process, with this process's privileges."""

    mode = "in-process"

    def open(self, spec: EventSpec, pid: int, tid: int, cpu: int) -> int:
        return perf.perf_event_open(build_attr(spec), tid, cpu)

    def close(self) -> None:
        pass
