"""``stax diagnose`` (the server's own accounting for a run) and ``stax dump`` (a debug
snapshot in the server's log).
"""

from __future__ import annotations

import argparse
import os

from stax.cli.command import Command, json_flag, run_arg
from stax.cli.common import call, die, esc, marks_line, out, print_json, run_line


def _diagnose_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=run_arg, metavar="ID")
    json_flag(p)


def cmd_diagnose(args: argparse.Namespace) -> int:
    res = call("diagnostics", run=args.run)
    if args.json:
        print_json(res)
        return 0
    s = res["server"]
    out(f"server: pid {s['pid']}, version {s['version']}, up {s['uptime_s']:.0f} s, "
        f"{s['requests']} requests, rss {s['rss_bytes'] / 2**20:.1f} MiB, {s['runs']} runs")
    sym = res["symbols"]
    out("symbols: " + ", ".join(f"{esc(k)} {esc(v)}" for k, v in sym.items()))
    run = res["run"]
    if run is None:
        out("run: none")
        return 0
    out(f"run: {run_line(run)}")
    out(f"  state {run['state']}, end reason {run['end_reason'] or '-'}, "
        f"elapsed {run['elapsed_ms'] / 1000:.2f} s, {run['samples_per_s']} samples/s")
    if marks := marks_line(run):
        out(f"  {marks}")
    cap = run["capture"]
    mode = esc(cap["mode"]) + (f" ({esc(cap['daemon_socket'])})" if cap.get("daemon_socket")
                                else "")
    out(f"  capture: {mode}, unwinding by {cap['unwinding']}, kernel frames "
        f"{'yes' if cap['kernel_frames'] else 'no'}, build-ids from kernel "
        f"{'yes' if cap['build_ids'] else 'no'}, {cap['event_fds']} event fds on cpus "
        f"{cap['cpus']}, ring buffers {cap['ring_buffer_bytes'] // 1024} KiB, "
        f"{cap['bytes_read']} bytes read")
    rec = run["records"]
    out("  records: " + ", ".join(f"{esc(k)} {esc(v)}" for k, v in rec.items()))
    out(f"  lost records: {rec['lost']}   throttle events: {rec['throttled']}")
    out(f"  tables: {run['stacks']} stacks, {run['frames']} frames, {run['funcs']} functions "
        f"({run['unresolved_funcs']} unresolved), {run['binaries']} binaries, "
        f"{run['table_bytes'] / 1024:.0f} KiB of columns")
    h = run["stacks_health"]
    out(f"  stacks: {h['reaching_root']} of {h['samples']} samples "
        f"({h['reaching_root_pct']:.1f}%) reach a thread entry point (_start, start_thread, "
        f"clone…); {rec['truncated_chains']} cut at the kernel's depth limit; "
        f"{rec['empty_stacks']} empty; {rec['unmapped_frames']} frames outside any mapping; "
        f"{h['samples_with_unresolved_frames']} samples with unresolved frames")
    for s in h["stopped_at"]:
        out(f"    walk stopped at {esc(s['frame'])}: {s['samples']} samples")
    uw = run.get("unwind") or {}
    if uw.get("method") == "dwarf":
        out(f"  unwind: DWARF, {uw['stack_copy_bytes']}-byte stack copies; {uw['walks']} "
            f"walks, {uw['complete']} reached the outermost frame, {uw['cut_short']} cut "
            f"short ({uw['cut_short_pct']:.1f}%); {uw['frames']} frames "
            f"({uw['frame_pointer_frames']} by frame pointer where no CFI), deepest "
            f"complete walk used {uw['max_stack_used_bytes']} bytes of stack, "
            f"{uw['tables_cached']} unwind tables cached")
        for st in uw["stops"]:
            out(f"    stopped early in {esc(st['binary'])}: {esc(st['reason'])}: "
                f"{st['samples']} walks")
        for key, what in (("blocking_stacks", "blocking"), ("waker_stacks", "waker")):
            side = uw.get(key) or {}
            if side.get("walks"):
                why = ", ".join(f"{esc(r)} {n}" for r, n in
                                (side.get("truncated_by_reason") or {}).items())
                out(f"  {what} stacks: {side['walks']} walks of {side.get('stack_copy_bytes')}"
                    f"-byte copies, {side['complete']} complete, {side['cut_short']} marked "
                    f"[truncated]" + (f" ({why})" if why else ""))
    elif uw.get("method", "frame pointers") != "frame pointers":
        out(f"  unwind: {esc(uw['method'])}")
    else:
        out("  unwind: frame pointers only (kernel call chain)")
    bf = run.get("binary_files")
    if bf:
        out(f"  binary files: {bf['found']} readable, {bf['missing']} not, "
            f"{bf['kept_open']} kept open (deleted or replaced while running)")
        for m in bf["missing_listed"]:
            out(f"    {esc(m['reason'])}")
    ing = run["ingest"]
    lag = "-" if ing["last_sample_age_ms"] is None else f"{ing['last_sample_age_ms']} ms"
    out(f"  ingest: {ing['pending_records']} records waiting for time order, "
        f"{ing['unread_ring_bytes']} bytes unread in ring buffers, last sample age {lag}"
        + (f", decoding at most {ing['max_lag_ms']:.0f} ms behind"
           if ing.get("max_lag_ms") is not None else ""))
    sh = run.get("shedding")
    if sh:
        rate = (f"rate lowered to {sh['rate_lowered_to_hz']} Hz"
                if sh.get("rate_lowered_to_hz") else "rate kept")
        out(f"  overload: shed load for {sh['overloaded_s']:.1f} s (decoding up to "
            f"{sh['max_lag_ms']:.0f} ms behind): -F {sh['requested_hz']}, {rate}; "
            f"{sh['shed_samples']} samples skipped (one kept in up to "
            f"{sh['max_keep_every'] or 'none'}), {sh['stripped_stacks']} stacks truncated, "
            f"{sh['dropped_records']} records and {sh['dropped_bytes']} bytes dropped at "
            "the end")
    off = run.get("offcpu")
    if off:
        if off["intervals_recorded"]:
            out(f"  off-CPU: {run['intervals']} intervals from {off['switch_out']} switch-outs "
                f"and {off['switch_in']} switch-ins ({off['unmatched_switch_in']} switch-ins "
                f"without a recorded switch-out, {off['open_intervals']} threads off CPU "
                f"now, {off.get('seeded', 0)} already blocked at attach, "
                f"{off.get('closed_at_end', 0)} closed when the recording ended); "
                + (f"tracefs {esc(off['tracefs'])}" if off.get("tracefs") else
                   f"from {esc(off.get('source') or 'context-switch records')}"))
            if off["wakeups_recorded"]:
                out(f"  wakeups: {off['wakeups']} recorded, {off['linked_wakeups']} ended an "
                    "interval (wakers inside the target, and interrupts on its CPUs)")
            else:
                out(f"  wakeups: unavailable ({esc(off['wakeups_problem'])})")
        else:
            out(f"  off-CPU: unavailable ({esc(off['problem'])})")
    py = run.get("python")
    if isinstance(py, dict):
        _python_line(py)
    for note in run.get("notes") or []:
        out(f"  note: {esc(note)}")
    return 0


def _python_line(py: dict) -> None:
    if not py.get("version"):
        out(f"  python: no CPython interpreter read ({esc(py.get('problem') or 'none found')})")
        return
    running = py.get("python_running", 0)
    merged = py.get("python_samples", 0)
    pct = f"{100 * merged / running:.1f}%" if running else "-"
    out(f"  python: CPython {esc(py['version'])} ({esc(py.get('interpreter'))}); "
        f"{merged} of {running} samples running Python code have Python frames ({pct}), "
        f"{py.get('python_mismatches', 0)} mismatched, {py.get('python_misses', 0)} without "
        f"a stack read close enough; {py.get('stack_reads', 0)} stack reads at "
        f"{py.get('stack_reads_hz')} Hz, {py.get('mean_read_us')} us each"
        + {"process": " (by stax's stack-reading process)",
           "staxd": " (by a stack-reading process staxd runs)",
           "server": " (by the server itself)"}.get(py.get("stack_reader") or "", ""))


def cmd_dump(args: argparse.Namespace) -> int:
    import signal

    res = call("hello")
    pid = res["pid"]
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as e:
        die(f"could not signal stax-server (pid {pid}): {e.strerror}")
    from stax import paths

    out(f"asked stax-server (pid {pid}) to write a debug snapshot to its log "
        f"({esc(paths.server_log())} when started by stax record)")
    return 0


DIAGNOSE = Command("diagnose", "the server's own accounting for the current run", cmd_diagnose,
                   _diagnose_arguments)
DUMP = Command("dump", "ask stax-server to write a debug snapshot to its log", cmd_dump)
