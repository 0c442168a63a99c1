"""``stax status``: the active run (or the current query state) and the server."""

from __future__ import annotations

import argparse
from typing import Any

from stax.cli.command import Command, json_flag
from stax.cli.common import call, esc, fmt_time, marks_line, out, print_json, run_line


def cmd_status(args: argparse.Namespace) -> int:
    res = call("status")
    if args.json:
        print_json(res)
        return 0
    if res["active"]:
        out("active run:")
        out(f"  {run_line(res['active'])}")
        out(f"  {capture_line(res['active'])}")
        if marks := marks_line(res["active"]):
            out(f"  {marks}")
    else:
        out("no active run")
        if res["current"]:
            out(f"current query state: {run_line(res['current'])}")
            out(f"  {capture_line(res['current'])}")
            if marks := marks_line(res["current"]):
                out(f"  {marks}")
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


STATUS = Command("status", "the active run and the server", cmd_status, json_flag)
