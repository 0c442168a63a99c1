"""Query and lifecycle subcommands: status, list, wait, stop, select-run, top, flame, threads,
diagnose, dump. Thin: parse, call the server, print (or ``--json``).
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from stax.cli.common import (
    NO_RUNS,
    call,
    die,
    esc,
    fmt_ms,
    fmt_time,
    no_samples_hint,
    none_line,
    out,
    print_json,
    query,
    run_line,
)


def cmd_status(args: argparse.Namespace) -> int:
    res = call("status")
    if args.json:
        print_json(res)
        return 0
    if res["active"]:
        out("active run:")
        out(f"  {run_line(res['active'])}")
        out(f"  {capture_line(res['active'])}")
    else:
        out("no active run")
        if res["current"]:
            out(f"current query state: {run_line(res['current'])}")
            out(f"  {capture_line(res['current'])}")
    since = fmt_time(res["server_started_unix_ms"] / 1000)
    out(f"server up since {since} (pid {res['server_pid']})")
    web = res.get("web") or {}
    if web.get("url"):
        out(f"web UI: {esc(web['url'])}")
        if web.get("token_required"):
            out("  (its token lets anyone drive this server: keep the URL private)")
    elif web.get("error"):
        out(f"web UI unavailable: {esc(web['error'])}")
    return 0


def capture_line(run: dict[str, Any]) -> str:
    """How a run's events were opened: by the server itself or through staxd."""
    if run.get("capture_mode") == "staxd":
        how = f"events opened by staxd ({esc(run.get('daemon_socket'))})"
    else:
        how = "events opened in-process"
    return f"capture: {how}, kernel frames {'yes' if run.get('kernel_frames') else 'no'}"


def cmd_list(args: argparse.Namespace) -> int:
    res = call("list_runs")
    if args.json:
        print_json(res)
        return 0
    if not res["runs"]:
        out(NO_RUNS)
    for r in res["runs"]:
        mark = "*" if r["id"] == res["current"] else " "
        out(f"{mark} {run_line(r)}")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    conds = [c for c in (args.for_samples, args.for_seconds, args.until_symbol) if c is not None]
    if len(conds) > 1:
        die("--for-samples, --for-seconds and --until-symbol are mutually exclusive")
    if args.timeout_ms is not None and args.timeout_ms < 0:
        die("--timeout-ms must be >= 0")
    if args.for_samples is not None and args.for_samples < 0:
        die("--for-samples must be >= 0")
    timeout = None if args.timeout_ms is None else args.timeout_ms / 1000 + 30
    res = call("wait", timeout=timeout, for_samples=args.for_samples,
               for_seconds=args.for_seconds, until_symbol=args.until_symbol,
               timeout_ms=args.timeout_ms)
    if args.json:
        print_json(res)
    elif res["status"] == "met":
        out(f"condition met: {run_line(res['run'])}")
    elif res["status"] == "stopped":
        prefix = "run stopped" if conds else "condition met"
        out(f"{prefix}: {run_line(res['run'])}")
    else:
        out(f"timed out: {run_line(res['run'])}")
    return 1 if res["status"] == "timeout" else 0


def cmd_stop(args: argparse.Namespace) -> int:
    res = call("stop", timeout=60)
    if args.json:
        print_json(res)
    else:
        out(f"stopped: {run_line(res)}")
    return 0


def cmd_select_run(args: argparse.Namespace) -> int:
    res = call("select_run", run=args.id)
    if args.json:
        print_json(res)
    else:
        out(f"selected: {run_line(res)}")
    return 0


def _header(res: dict[str, Any], what: str) -> str:
    run = res["run"]
    return f"run {run['id']} [{run['state']}] {esc(run['command'])}: {what}"


def cmd_top(args: argparse.Namespace) -> int:
    res = query("top", args.json, run=args.run, tid=args.tid, sort=args.sort, limit=args.n)
    if res is None:
        return 0
    if args.json:
        print_json(res)
        return 0
    if not res["total_samples"]:
        out(no_samples_hint(res["run"], args.tid))
        return 0
    key = args.sort
    out(_header(res, f"{res['total_samples']} samples, {res['total_ns'] / 1e6:.1f} ms "
                     f"on-CPU, by {key} time"))
    out(f"{'on-CPU':>12} {'samples':>7} {'%':>6}  function  (binary)")
    for r in res["rows"]:
        out(f"{fmt_ms(r[key + '_ns'])}  {r[key + '_samples']:6d} {r[key + '_pct']:5.1f}%  "
            f"{esc(r['func'])}  ({esc(r['binary'])})")
    shown = len(res["rows"])
    if res["functions"] > shown:
        out(f"({res['functions'] - shown} more functions; -n 0 shows all)")
    return 0


def _print_tree(node: dict[str, Any], indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    lines.append(f"{fmt_ms(node['time_ns'])} {node['samples']:6d} {node['pct']:5.1f}%  {pad}"
                 f"{esc(node['func'])}  ({esc(node['binary'])})")
    if node.get("collapsed_frames"):
        lines.append(f"{'':30}{pad}  … {node['collapsed_frames']} more frames")
    for child in node.get("children", []):
        _print_tree(child, indent + 1, lines)
    hidden = node.get("hidden")
    if hidden:
        lines.append(f"{'':30}{pad}  … {hidden['nodes']} more below the threshold "
                     f"({hidden['time_ns'] / 1e6:.1f} ms)")


def cmd_flame(args: argparse.Namespace) -> int:
    if args.depth < 1:
        die("-d/--depth must be >= 1")
    if args.threshold_pct < 0 or args.threshold_pct > 100:
        die("--threshold-pct must be between 0 and 100")
    res = query("flamegraph", args.json, run=args.run, tid=args.tid, max_depth=args.depth,
                threshold_pct=args.threshold_pct, mode=args.mode)
    if res is None:
        return 0
    if args.json:
        print_json(res)
        return 0
    if res.get("note"):
        out(f"({esc(res['note'])})")
    if not res["total_samples"]:
        if args.mode == "offcpu":
            if not res.get("note"):
                out(none_line("off-CPU intervals", args.tid))
        else:
            out(no_samples_hint(res["run"], args.tid))
        return 0
    out(_header(res, f"{args.mode}: on-CPU {res['oncpu_ns'] / 1e6:.1f} ms "
                     f"({res.get('samples', res['total_samples'])} samples), off-CPU "
                     f"{res['offcpu_ns'] / 1e6:.1f} ms ({res.get('intervals', 0)} intervals)"))
    lines: list[str] = []
    for root in res["roots"]:
        _print_tree(root, 0, lines)
    if res["hidden"]["nodes"]:
        lines.append(f"… {res['hidden']['nodes']} smaller roots below the threshold")
    out("\n".join(lines))
    return 0


def cmd_threads(args: argparse.Namespace) -> int:
    res = query("threads", args.json, run=args.run, limit=args.n)
    if res is None:
        return 0
    if args.json:
        print_json(res)
        return 0
    if not res["rows"]:
        out(no_samples_hint(res["run"]))
        return 0
    out(f"{'on-CPU ms':>10} {'off-CPU ms':>10} {'samples':>8} {'blocked':>8} {'pid':>7} "
        f"{'tid':>7}  name")
    for r in res["rows"]:
        out(f"{r['oncpu_ns'] / 1e6:10.1f} {r['offcpu_ns'] / 1e6:10.1f} {r['samples']:8d} "
            f"{r['blocked'] or '-':>8} {r['pid']:7d} {r['tid']:7d}  {esc(r['name'])}")
    if res["threads"] > len(res["rows"]):
        out(f"({res['threads'] - len(res['rows'])} more threads; -n 0 shows all)")
    return 0


def _stack_line(frames: list[dict[str, Any]], depth: int = 6) -> str:
    """A stack, leaf first, on one line: ``f (bin) <- g (bin) <- …``."""
    parts = [esc(f["func"]) for f in frames[:depth]]
    more = len(frames) - depth
    return " <- ".join(parts) + (f" <- … {more} more" if more > 0 else "")


def cmd_wakers(args: argparse.Namespace) -> int:
    res = query("wakers", args.json, run=args.run, tid=args.tid, limit=args.n)
    if res is None:
        return 0
    if args.json:
        print_json(res)
        return 0
    if res.get("note"):
        out(f"({esc(res['note'])})")
    if not res["rows"]:
        if not res.get("note"):
            out(none_line("wakeups recorded", args.tid))
        return 0
    out(_header(res, f"{res['wakeups']} wakeups, {res['edges']} waker → wakee edges, by "
                     "blocked time ended"))
    out(f"{'blocked ms':>10} {'wakeups':>8} {'ended':>6}  waker (tid) → woken (tid)")
    for r in res["rows"]:
        out(f"{r['blocked_ns'] / 1e6:10.1f} {r['wakeups']:8d} {r['ended_intervals']:6d}  "
            f"{esc(r['waker'])} ({r['waker_tid']}) → {esc(r['wakee'])} ({r['wakee_tid']})")
        if r["stack"]:
            out(f"{'':28}at {_stack_line(r['stack'])}")
    if res["edges"] > len(res["rows"]):
        out(f"({res['edges'] - len(res['rows'])} more edges; -n 0 shows all)")
    return 0


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
                f"{off.get('closed_at_end', 0)} closed when the recording ended); tracefs "
                f"{esc(off['tracefs'])}")
            if off["wakeups_recorded"]:
                out(f"  wakeups: {off['wakeups']} recorded, {off['linked_wakeups']} ended an "
                    "interval (wakers inside the target, and interrupts on its CPUs)")
            else:
                out(f"  wakeups: unavailable ({esc(off['wakeups_problem'])})")
        else:
            out(f"  off-CPU: unavailable ({esc(off['problem'])})")
    for note in run.get("notes") or []:
        out(f"  note: {esc(note)}")
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
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
