"""A run's accounting as one JSON-ready dict (the ``run`` part of ``diagnostics``), built live
from a Recorder or rebuilt from what an archive stored; shared by the server and the CLI.
"""

from __future__ import annotations

import time
from typing import Any

from stax.profile import views
from stax.profile.tables import Profile


def capture_fields(p: Profile, recorder: Any) -> dict[str, Any]:
    """The off-CPU and unwinding fields of a live run's summary (as Run.summary gives them)."""
    info = recorder.info
    with p.lock:
        n = len(p.intervals)
        offcpu_ns = sum(p.intervals.duration_ns[:n])
        wakeups = len(p.wakeups)
        unwind = p.unwinder.stats() if p.unwinder is not None else None
    return {
        "intervals": n, "offcpu_ns": offcpu_ns, "wakeups": wakeups,
        "offcpu": {"intervals_recorded": info.offcpu, "wakeups_recorded": info.wakeups,
                   "problem": info.offcpu_problem, "wakeups_problem": info.wakeups_problem,
                   "tracefs": info.tracefs, "source": getattr(info, "offcpu_source", None)},
        "unwinding": "dwarf" if info.dwarf_unwind else "frame pointers",
        "unwind": (None if unwind is None else {
            k: unwind[k] for k in ("walks", "complete", "cut_short", "cut_short_pct")}),
        # load the capture loop shed to keep up (stax.capture.loop), None when it shed none
        "shedding": (recorder.shedding.to_dict() if getattr(recorder, "shedding", None)
                     is not None and recorder.shedding.active else None),
    }


def _offcpu_section(p: Profile, summary: dict[str, Any], recorder: Any | None,
                    stored: dict[str, Any]) -> dict[str, Any]:
    """The ``offcpu`` part of diagnostics: how intervals and wakeups were recorded (live from
    the interval builder, or as the archive stored it) plus counts from the tables."""
    with p.lock:
        n = len(p.intervals)
        table = {"wakeups": len(p.wakeups),
                 "linked_wakeups": sum(1 for w in p.intervals.wakeup[:n] if w >= 0)}
        builder = {**p.offcpu.counts, "open_intervals": p.offcpu.open_intervals}
    if recorder is not None:
        return {**(summary.get("offcpu") or {}), **builder,
                "switch_out_records_dropped": recorder.layout.skipped_switch_out, **table}
    old = stored.get("offcpu")
    if isinstance(old, dict):
        return {**old, **table}
    # an archive whose diagnostics lack the section: what its summary and tables say
    off = summary.get("offcpu") if isinstance(summary.get("offcpu"), dict) else {}
    return {"intervals_recorded": bool(off.get("intervals_recorded", n > 0)),
            "wakeups_recorded": bool(off.get("wakeups_recorded", table["wakeups"] > 0)),
            "problem": off.get("problem") or "not recorded in this archive",
            "wakeups_problem": off.get("wakeups_problem") or "not recorded in this archive",
            "tracefs": off.get("tracefs"), "switch_out": n, "switch_in": n,
            "unmatched_switch_in": 0, "open_intervals": 0, **table}


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
                   "mode": info.mode, "daemon_socket": info.daemon_socket,
                   "unwinding": (f"DWARF (.eh_frame, {info.stack_copy_bytes}-byte stack "
                                 "copies)" if info.dwarf_unwind else
                                 "frame pointers (kernel call chain)")}
        unread = recorder.unread_bytes()
        unwind: Any = (p.unwinder.stats() if p.unwinder is not None
                       else {"method": "frame pointers"})
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
        unwind = stored.get("unwind")
        if not isinstance(unwind, dict):
            unwind = {"method": "not stored in this archive"}
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
                   "unread_ring_bytes": unread,
                   # the furthest decoding fell behind the ring-buffer reader (live runs)
                   "max_lag_ms": (round(recorder.shedding.max_lag_ms, 1)
                                  if getattr(recorder, "shedding", None) is not None
                                  else None)},
        "capture": capture,
        "unwind": unwind,
        "offcpu": _offcpu_section(p, summary, recorder, stored),
        "binary_files": _binary_files(p, recorder, stored),
        **_python_section(p, counts, stored),
    }


def _python_section(p: Profile, counts: dict[str, Any],
                    stored: dict[str, Any]) -> dict[str, Any]:
    """``python``: the CPython interpreter found and how its stacks merged (stax.profile
    .pymerge); absent for a run that read no Python stacks."""
    py = p.python
    if py is None or not py.watch.relevant():
        old = stored.get("python")
        return {"python": old} if isinstance(old, dict) else {}
    from stax.profile.pymerge import COUNTS

    return {"python": {**py.watch.info(), **{k: counts.get(k, 0) for k in COUNTS}}}


def _binary_files(p: Profile, recorder: Any | None,
                  stored: dict[str, Any]) -> dict[str, Any] | None:
    """Where a live run's binaries are read from (stax.binaries); an archive: as stored."""
    if recorder is None:
        old = stored.get("binary_files")
        return old if isinstance(old, dict) else None
    from stax.binaries import files_report

    with p.lock:
        binaries = list(p.binaries[2:])
    return files_report(binaries, p.pins)
