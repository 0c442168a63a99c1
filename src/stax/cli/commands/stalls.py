"""``stax stalls``: where threads stopped making progress (long off-CPU intervals, and sample
gaps of busy threads), longest first, optionally histogrammed over time."""

from __future__ import annotations

import argparse
from typing import Any

from stax.cli.command import Command, count_arg, float_in, json_flag, run_arg, tid_arg, window_flag
from stax.cli.common import esc, header, none_line, out, query_text
from stax.limits import MAX_SECONDS

REASONS = ("idle", "lock", "sem", "ipc", "ioR", "ioW", "ready", "sleep", "conn", "other", "gap")
KERNEL = "[kernel.kallsyms]"
BAR = 40  # histogram bar width at the fullest bucket


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--limit", dest="n", type=count_arg, default=20,
                   help="rows (0 = all; default 20)")
    p.add_argument("--min-ms", type=float_in(0, MAX_SECONDS * 1000), default=10.0,
                   help="shortest stall shown, in ms (default 10)")
    p.add_argument("--bucket-ms", type=float_in(0, MAX_SECONDS * 1000, lo_open=True),
                   metavar="MS", help="also histogram the stalls over time in MS buckets")
    p.add_argument("--reason", choices=REASONS,
                   help="only this off-CPU reason, or only the sample gaps (gap)")
    p.add_argument("--tid", type=tid_arg)
    window_flag(p)
    p.add_argument("--run", type=run_arg, metavar="ID")
    json_flag(p)


def stack_line(frames: list[dict[str, Any]], depth: int = 6) -> str:
    """A stack on one line, leaf first, without its kernel frames when it has user frames."""
    user = [f for f in frames if f["binary"] != KERNEL]
    shown = user or frames
    parts = [esc(f["func"]) for f in shown[:depth]]
    more = len(shown) - depth
    return " <- ".join(parts) + (f" <- … {more} more" if more > 0 else "")


def _histogram(h: dict[str, Any]) -> list[str]:
    buckets = h["buckets"]
    top = max((b["stalled_ns"] for b in buckets), default=0)
    lines = [f"stalls over time ({h['bucket_ns'] / 1e6:g} ms buckets; stalled ms = thread-time "
             "stalled in the bucket):",
             f"{'start s':>9} {'stalls':>7} {'stalled ms':>11}"]
    for b in buckets:
        bar = "#" * round(BAR * b["stalled_ns"] / top) if top else ""
        lines.append(f"{b['start_ns'] / 1e9:9.3f} {b['started']:7d} "
                     f"{b['stalled_ns'] / 1e6:11.1f}  {bar}".rstrip())
    return lines


def cmd_stalls(args: argparse.Namespace) -> int:
    bucket_ns = round(args.bucket_ms * 1e6) if args.bucket_ms is not None else None
    res = query_text("stalls", args.json, run=args.run, tid=args.tid, window=args.window,
                     limit=args.n, min_duration_ns=round(args.min_ms * 1e6),
                     bucket_ns=bucket_ns or None, reason=args.reason)
    if res is None:
        return 0
    if not res["stalls"]:
        out(none_line(f"stalls of {args.min_ms:g} ms or more", args.tid))
    else:
        parts = ", ".join(f"{esc(k)} {v['stalls']}: {v['stalled_ns'] / 1e6:.1f} ms"
                          for k, v in res["by_reason"].items())
        out(header(res, f"{res['stalls']} stalls of {args.min_ms:g} ms or more, "
                         f"{res['stalled_ns'] / 1e6:.1f} ms in all ({parts})"))
        out(f"{'ms':>9} {'start s':>9}  {'reason':<6}  thread (tid)  [woken by]")
        for r in res["rows"]:
            waker = ""
            if r["waker"]:
                w = r["waker"]
                waker = f"  [woken by {esc(w['name'])} ({w['tid']})]"
            out(f"{r['duration_ns'] / 1e6:9.1f} {r['start_ns'] / 1e9:9.3f}  {r['reason']:<6}  "
                f"{esc(r['thread'])} ({r['tid']}){waker}")
            if r.get("stack"):
                where = "last ran at" if r["kind"] == "gap" else "at"
                out(f"{'':21}{where} {stack_line(r['stack'])}")
        if res["stalls"] > len(res["rows"]):
            out(f"({res['stalls'] - len(res['rows'])} more stalls; -n 0 shows all)")
    if res.get("histogram"):
        out("\n".join(_histogram(res["histogram"])))
    return 0


STALLS = Command("stalls", "where threads stopped making progress: long off-CPU intervals and "
                           "sample gaps of busy threads, longest first", cmd_stalls, arguments)
