"""The archive commands: save, open, compare, export.

``save``/``open`` ask the server; ``compare`` reads two archives itself (for a ``--run`` side,
the archive the server keeps that run in: cli/compare_sides.py) and exits 2 when a ``--fail-…``
limit is exceeded; ``export`` has the server save the run to a temporary archive and converts
that here.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from stax.cli.command import (
    Command,
    count_arg,
    inline_flag,
    json_flag,
    run_arg,
    tid_arg,
    window_flag,
)
from stax.cli.common import call, die, esc, out, print_json, run_line
from stax.cli.compare_sides import side_arguments, threshold_arguments


def _save_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH")
    p.add_argument("--run", type=run_arg, metavar="ID")
    p.add_argument("--format", choices=("dir", "file"), default=None,
                   help="dir: a directory; file: one file (a tar); default: the form of the "
                        "archive already at PATH, else a directory")
    p.add_argument("--with-code", action="store_true",
                   help="also keep the hot functions' code, line table and source lines, so "
                        "annotate works where the binary is missing")
    json_flag(p)


def _open_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="the archive directory or its main file")
    json_flag(p)


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    side_arguments(p)
    p.add_argument("-n", type=count_arg, default=20,
                   help="rows per table (0 = all; default 20)")
    window_flag(p, help="compare only this time window of each run (A..B, A.., ..B: seconds "
                        "from the run's start or mark labels)")
    window_flag(p, "--base-window", help="the window of BASE (instead of --window)")
    window_flag(p, "--cand-window", help="the window of CAND (instead of --window)")
    json_flag(p)
    threshold_arguments(p)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=("folded", "speedscope", "pprof", "gecko"))
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    p.add_argument("--run", type=run_arg, metavar="ID")
    p.add_argument("--tid", type=tid_arg)
    p.add_argument("--mode", choices=("cpu", "offcpu", "wall"),
                   help="folded only: which stacks and weight: cpu = on-CPU samples (default), "
                        "offcpu = blocked time in ns, wall = both in ns")
    p.add_argument("--per-thread", action="store_true",
                   help="folded only: start each stack with a 'NAME (TID)' frame")
    window_flag(p)
    inline_flag(p)


def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def cmd_save(args: argparse.Namespace) -> int:
    res = call("save", timeout=600, path=_abs(args.path), run=args.run,
               with_code=args.with_code or None, format=args.format)
    if args.json:
        print_json(res)
        return 0
    code = (f", code of {res['code_functions']} functions" if res.get("code_functions")
            else "")
    out(f"saved run {res['run']['id']} to {esc(res['path'])} ({res['samples']} samples, "
        f"{res['bytes'] / 1024:.0f} KiB{code})")
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    from stax.archive.format import ArchiveError, locate

    path = _abs(args.path)
    try:
        locate(path)  # a quick local check gives the clearest message for a wrong path
    except ArchiveError as e:
        die(str(e))
    res = call("open", timeout=600, path=path)
    if args.json:
        print_json(res)
        return 0
    out(f"opened: {run_line(res)}")
    out("stax: explore it with: stax top | stax flame | stax threads")
    return 0


def _fmt_delta_ms(ns: int) -> str:
    return f"{ns / 1e6:+10.1f} ms"


def cmd_compare(args: argparse.Namespace) -> int:
    from stax.archive.compare import compare
    from stax.archive.format import ArchiveError
    from stax.archive.thresholds import describe
    from stax.cli.compare_sides import resolved, thresholds
    from stax.profile.window import WindowError

    fail = thresholds(args)
    with resolved(args) as (base, cand):
        try:
            res = compare(base["path"], cand["path"], args.n, args.base_window or args.window,
                          args.cand_window or args.window, fail=fail)
        except (ArchiveError, WindowError) as e:
            die(str(e))
    res["base"]["run"], res["cand"]["run"] = base["run"], cand["run"]
    status = 2 if res["threshold_failures"] else 0
    if args.json:
        print_json(res)
        return status
    b, c, d = res["base"], res["cand"], res["delta"]
    for side, s in (("base", b), ("cand", c)):
        run = f"run {s['run']}  " if s["run"] is not None else ""
        out(f"{side}: {run}{esc(s['path'])}  ({esc(s['command'])})")
    if b["window"] or c["window"]:
        out(f"windows: base {esc(b['window'] or 'all')}, cand {esc(c['window'] or 'all')}")
    pct = f" ({d['oncpu_pct']:+.1f}%)" if d["oncpu_pct"] is not None else ""
    out(f"{'':10}{'base':>14}{'cand':>14}{'delta':>16}")
    out(f"{'samples':10}{b['samples']:>14}{c['samples']:>14}{d['samples']:>+16}")
    out(f"{'on-CPU':10}{b['oncpu_ns'] / 1e6:>11.1f} ms{c['oncpu_ns'] / 1e6:>11.1f} ms"
        f"{_fmt_delta_ms(d['oncpu_ns']):>16}{pct}")
    opct = f" ({d['offcpu_pct']:+.1f}%)" if d.get("offcpu_pct") is not None else ""
    out(f"{'off-CPU':10}{b['offcpu_ns'] / 1e6:>11.1f} ms{c['offcpu_ns'] / 1e6:>11.1f} ms"
        f"{_fmt_delta_ms(d['offcpu_ns']):>16}{opct}")
    out(f"{'intervals':10}{b['intervals']:>14}{c['intervals']:>14}{d['intervals']:>+16}")
    for reason, dr in d.get("offcpu_by_reason", {}).items():
        bn, cn = b["offcpu_by_reason"][reason], c["offcpu_by_reason"][reason]
        if bn or cn:
            out(f"{'  ' + esc(reason):10}{bn / 1e6:>11.1f} ms{cn / 1e6:>11.1f} ms"
                f"{_fmt_delta_ms(dr):>16}")

    def table(title: str, rows: list[dict[str, Any]]) -> None:
        out(f"\n{title}")
        if not rows:
            out("  (none)")
            return
        out(f"{'delta self':>14} {'base':>10} {'cand':>10}  {'share':>13}  function  (binary)")
        for r in rows:
            tag = f"  [{esc(r['status'])}]" if r["status"] != "changed" else ""
            out(f"{_fmt_delta_ms(r['delta_self_ns'])} {r['base_self_ns'] / 1e6:7.1f} ms "
                f"{r['cand_self_ns'] / 1e6:7.1f} ms  {r['base_self_pct']:5.1f}→"
                f"{r['cand_self_pct']:5.1f}%  {esc(r['func'])}  ({esc(r['binary'])}){tag}")

    table("regressions (self time grew, biggest first):", res["regressions"])
    table("improvements (self time shrank, biggest first):", res["improvements"])
    if fail.any():
        out()
        for f in res["threshold_failures"]:
            out(esc(describe(f)))
        if not status:
            out("thresholds: all passed")
    return status


def cmd_export(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from stax.archive.export import converter
    from stax.archive.format import ArchiveError, intervals_of, load

    convert = converter(args.format)
    opts: dict[str, Any] = {}
    if args.format == "folded":
        opts = {"mode": args.mode or "cpu", "per_thread": args.per_thread}
    elif args.mode is not None or args.per_thread:
        flag = "--mode" if args.mode is not None else "--per-thread"
        kept = ("on- and off-CPU time as separate sample types, the thread as a label"
                if args.format == "pprof" else "on- and off-CPU as separate profiles per thread")
        die(f"{flag} applies to --format folded only ({args.format} keeps {kept})")
    out_path = _abs(args.output) if args.output and args.output != "-" else None
    if out_path is not None:
        parent = os.path.dirname(out_path)
        if not os.path.isdir(parent):
            die(f"cannot write {args.output}: directory {parent} does not exist")
        if os.path.isdir(out_path):
            die(f"cannot write {args.output}: is a directory")
    tmp = tempfile.mkdtemp(prefix="stax-export-")
    try:
        res = call("save", timeout=600, path=os.path.join(tmp, "run.stax"), run=args.run)
        try:
            a = load(res["path"])
        except ArchiveError as e:
            die(str(e))
        if args.tid is not None and args.tid not in a.profile.threads:
            die(f"no thread {args.tid} in run {res['run']['id']}")
        iv = intervals_of(a)
        if args.window is not None:
            from stax.archive.export.common import clip
            from stax.profile.window import WindowError, relative, resolve

            try:
                start, end = resolve(args.window, relative(a.profile))
            except WindowError as e:
                die(str(e))
            iv = clip(a.profile, iv, start, end)
        if args.no_inline:
            a.profile.frame_inline = {}  # each frame its function alone
        data = convert(a.profile, args.tid, iv, a.run, **opts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if out_path is None:
        if args.format == "pprof" and sys.stdout.isatty():
            die("pprof output is binary; use -o FILE (or redirect stdout)")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    try:
        part = out_path + ".part"
        with open(part, "wb") as f:
            f.write(data)
        os.replace(part, out_path)
    except OSError as e:
        die(f"cannot write {args.output}: {e.strerror or e}")
    out(f"wrote {args.format} export of run {res['run']['id']} to {esc(out_path)} "
        f"({len(data)} bytes)", err=True)
    return 0


SAVE = Command("save", "write the current run (or --run ID) to a directory archive", cmd_save,
               _save_arguments)
OPEN = Command("open", "load an archive as the current query state", cmd_open, _open_arguments)
COMPARE = Command("compare", "compare two archives or kept runs; exit 2 past a --fail-… limit",
                  cmd_compare, _compare_arguments)
EXPORT = Command("export", "write a run in another tool's format", cmd_export, _export_arguments)
