"""A run's accounting as one JSON-ready dict (the ``run`` part of ``diagnostics``), built live
from a Recorder or rebuilt from what an archive stored; shared by the server and the CLI.
"""

from __future__ import annotations

import time
from typing import Any

from stax.profile import views
from stax.profile.tables import Profile


def run_diagnostics(p: Profile, summary: dict[str, Any], recorder: Any | None,
                    elapsed_s: float, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    stored = stored or {}
    with p.lock:
        counts = dict(p.counts)
        if recorder is not None:
            counts["records"] = recorder.orderer.records
            counts["decode_errors"] = recorder.orderer.malformed
        if recorder is None and isinstance(stored.get("records"), dict):
            counts.update({k: v for k, v in stored["records"].items() if isinstance(v, int)})
        samples = len(p.s_stack)
        mem = sum(a.itemsize * len(a) for a in (
            p.s_time, p.s_tid, p.s_stack, p.s_weight, p.s_cpu, p.stack_parent,
            p.stack_frame, p.frame_binary, p.frame_offset, p.frame_func))
        unresolved = sum(1 for f in p.funcs if not f.resolved)
        last_sample = p.last_time
        pending = len(recorder.orderer.pending) if recorder is not None else 0
    health = views.stack_health(p)
    lag_ms = None
    if summary.get("state") == "recording" and last_sample:
        lag_ms = round((time.monotonic_ns() - last_sample) / 1e6, 1)
    if recorder is not None:
        info = recorder.info
        capture = {"kernel_frames": info.kernel_frames, "build_ids": info.build_ids,
                   "cpus": info.cpus, "event_fds": info.event_fds,
                   "ring_buffer_bytes": info.buffer_bytes, "bytes_read": recorder.bytes_read,
                   "mode": "in-process", "unwinding": "frame pointers (kernel call chain)"}
        unread = recorder.unread_bytes()
    else:
        capture = {"kernel_frames": summary.get("kernel_frames", False), "build_ids": False,
                   "cpus": [], "event_fds": 0, "ring_buffer_bytes": 0, "bytes_read": 0,
                   "mode": "archive", "unwinding": "-"}
        old = stored.get("capture")
        if isinstance(old, dict):
            capture.update({k: v for k, v in old.items()
                            if k in capture and type(v) is type(capture[k])})
            capture["mode"] = f"archive (recorded {old.get('mode', '?')})"
        unread = 0
    return {
        **summary,
        "records": counts,
        "samples_per_s": round(samples / max(elapsed_s, 1e-9), 1),
        "stacks": len(p.stack_parent),
        "frames": len(p.frame_binary),
        "funcs": len(p.funcs),
        "unresolved_funcs": unresolved,
        "binaries": max(0, len(p.binaries) - 2),
        "table_bytes": mem,
        "stacks_health": health,
        "ingest": {"pending_records": pending, "last_sample_age_ms": lag_ms,
                   "unread_ring_bytes": unread},
        "capture": capture,
    }
