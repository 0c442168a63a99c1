"""What ``stax record`` and its in-process fallback (``stax.cli.offline``) share: the target
forked paused until its exec is released, its exit status as a shell reports it, the DWARF
unwinding switch, and the summary printed when a recording ends.
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from stax.cli.common import esc


def spawn_paused(exe: str, command: list[str]) -> tuple[int, int, int]:
    """Fork the target, which waits for the go-ahead (``release``) before it execs ``exe``.
    Returns (pid, go-ahead pipe, exec-failure pipe)."""
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the target: wait for the go-ahead, then exec
        try:
            os.close(go_w)
            os.close(err_r)
            if os.read(go_r, 1) != b"g":
                os._exit(127)
            os.close(go_r)
            # Python ignores SIGPIPE and SIGXFSZ; an ignored signal survives exec, so give the
            # target the default dispositions it would get from a shell
            for sig in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.execv(exe, command)
        except OSError as e:
            os.write(err_w, f"{e.errno}:{e.strerror}".encode())
        finally:
            os._exit(127)
    os.close(go_r)
    os.close(err_w)
    return pid, go_w, err_r


def release(go_w: int, err_r: int) -> str | None:
    """Let a ``spawn_paused`` target exec; the reason its exec failed, or None."""
    # Ctrl-C belongs to the target (it is in our process group); we outlive it to report.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.write(go_w, b"g")
    os.close(go_w)
    failure = os.read(err_r, 4096)
    os.close(err_r)
    return failure.decode(errors="replace").split(":", 1)[-1] if failure else None


def exit_status(wstatus: int) -> int:
    """A target's exit status as a shell reports it (128 + N when killed by signal N)."""
    status = os.waitstatus_to_exitcode(wstatus)
    return 128 - status if status < 0 else status


def dwarf_unwind(args: argparse.Namespace) -> bool:
    """DWARF unwinding unless --no-dwarf-unwind / STAX_DWARF_UNWIND=0 (x86-64 only)."""
    return not args.no_dwarf_unwind and os.uname().machine == "x86_64"


def summary_text(run: dict[str, Any]) -> list[str]:
    reason = {"exited": "target exited", "time-limit": "time limit reached",
              "stopped": "stopped", "error": "capture error"}.get(run.get("end_reason") or "",
                                                                   run.get("state", ""))
    secs = run["elapsed_ms"] / 1000
    rate = run["samples"] / secs if secs > 0 else 0.0
    # run 0: recorded in-process (no server hosts it; the caller says where it was saved)
    who = f"run {run['id']}" if run["id"] else "in-process recording"
    lines = [f"stax: {who} {run['state']} ({reason}): {run['samples']} samples in "
             f"{secs:.2f} s ({rate:.0f}/s at -F {run['frequency_hz']}), "
             f"{run['threads']} thread{'s' if run['threads'] != 1 else ''}, "
             f"{run['lost_records']} lost records"]
    if run.get("offcpu", {}).get("intervals_recorded"):
        lines[0] += (f", {run.get('intervals', 0)} off-CPU intervals "
                     f"({run.get('offcpu_ns', 0) / 1e6:.1f} ms), {run.get('wakeups', 0)} wakeups")
    if run.get("exit_status") is not None:
        lines[0] += f", exit status {run['exit_status']}"
    for note in run.get("notes") or []:
        lines.append(f"stax: note: {esc(note)}")
    if run.get("error"):
        lines.append(f"stax: {esc(run['error'])}")
    if run["lost_records"]:
        lines.append(f"warning: the kernel dropped {run['lost_records']} records (ring buffer "
                     "full); see stax diagnose")
    uw = run.get("unwind")
    if uw and uw.get("walks") and uw["cut_short"] * 100 > uw["walks"]:
        lines.append(f"warning: {uw['cut_short']} of {uw['walks']} stacks "
                     f"({uw['cut_short_pct']:.1f}%) were cut short by the DWARF unwinder; "
                     "see stax diagnose")
    if run["samples"] and run["id"]:
        lines.append("stax: explore it with: stax top | stax flame | stax threads")
    return lines
