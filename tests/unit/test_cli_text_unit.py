"""Unit tests of the CLI's text safety (``esc``/``out`` and the subcommands' printing with
hostile names) and of the messages that say why nothing could be recorded: tracefs closed to
the user, setuid programs, other users' processes."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stax.capture import sched
from stax.cli import common
from stax.cli.commands import flame, runs, status, threads, top, wakers
from stax.cli.common import esc, no_samples_hint, out, run_line
from stax.cli.setid import attach_obstacle, launch_obstacle

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\x7f\udcff\u202e\u2028\r\n\t\x00"


def _unsafe(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F
            or 0xD800 <= ord(c) <= 0xDFFF or c in "\u202e\u2028\u2029"]


# --- esc and out ------------------------------------------------------------------------------


def test_esc_shows_every_control_character_visibly() -> None:
    assert esc(HOSTILE) == ("\\x1b]0;pwned\\x07\\x1b[2J\\u009b31m\\x7f\\xff\\u202e\\u2028\\r\\n"
                            "\\t\\x00")
    assert esc("\ud800") == "\\ud800"  # a surrogate that is not an escaped byte
    plain = "main (/usr/lib/libc.so.6) é ✓ 漢字 C:\\path \\x1b"
    assert esc(plain) == plain  # printable text, backslashes included, unchanged
    assert esc(3) == "3" and esc(None) == "None"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_esc_leaves_nothing_unsafe_and_is_idempotent(s: str) -> None:
    e = esc(s)
    assert not _unsafe(e)
    assert esc(e) == e
    e.encode("utf-8")  # printable on any UTF-8 terminal: no lone surrogate left


def test_out_keeps_only_newlines(capsys: pytest.CaptureFixture[str]) -> None:
    out("a\x1b[2Jb\nc\td")
    out("to stderr \x07", err=True)
    got = capsys.readouterr()
    assert got.out == "a\\x1b[2Jb\nc\\td\n"
    assert got.err == "to stderr \\x07\n"


def test_run_line_and_hint_escape_the_command() -> None:
    r = {"id": 1, "state": "stopped", "pid": 5, "samples": 0, "command": HOSTILE,
         "unwinding": "dwarf\x1b", "end_reason": "exited", "mode": "attach", "argv": []}
    assert not _unsafe(run_line(r))
    assert no_samples_hint(r) == ("(run 1 has no samples: the target exited before it used "
                                  "measurable CPU)")


# --- the subcommands print hostile server answers safely -------------------------------------


def _run(hostile: dict[str, Any]) -> dict[str, Any]:
    return {"id": 1, "state": "stopped", "pid": 5, "samples": 10, "intervals": 0,
            "command": HOSTILE, **hostile}


ANSWERS: dict[str, Any] = {
    "threads": {"run": _run({}), "threads": 2, "rows": [
        {"oncpu_ns": 1e6, "offcpu_ns": 0, "samples": 1, "blocked": None, "pid": 5, "tid": 5,
         "name": HOSTILE}]},
    "top": {"run": _run({}), "total_samples": 1, "total_ns": 1e6, "functions": 1, "rows": [
        {"self_ns": 1e6, "self_samples": 1, "self_pct": 100.0, "func": HOSTILE,
         "binary": HOSTILE}]},
    "wakers": {"run": _run({}), "wakeups": 1, "edges": 1, "note": HOSTILE, "rows": [
        {"blocked_ns": 1e6, "wakeups": 1, "ended_intervals": 1, "waker": HOSTILE,
         "waker_tid": 1, "wakee": HOSTILE, "wakee_tid": 2, "stack": [{"func": HOSTILE}]}]},
    "flamegraph": {"run": _run({}), "total_samples": 1, "oncpu_ns": 1e6, "offcpu_ns": 0,
                   "note": HOSTILE, "hidden": {"nodes": 0}, "roots": [
                       {"time_ns": 1e6, "samples": 1, "pct": 100.0, "func": HOSTILE,
                        "binary": HOSTILE, "children": []}]},
    "list_runs": {"current": 1, "runs": [_run({"unwinding": HOSTILE})]},
    "status": {"active": _run({"capture_mode": "staxd", "daemon_socket": HOSTILE}),
               "current": None, "server_started_unix_ms": 0, "server_pid": 1,
               "web": {"url": HOSTILE}},
}


@pytest.mark.parametrize("cmd", ["threads", "top", "wakers", "flame", "list", "status"])
def test_query_commands_escape_what_the_server_sends(
        cmd: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def answer(method: str, *a: Any, **kw: Any) -> Any:
        return ANSWERS[method]

    for module in (flame, runs, status, threads, top, wakers):
        for name in ("query", "call"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, answer)
    monkeypatch.setattr(common, "query", answer)  # what query_text asks
    args = argparse.Namespace(json=False, run=None, tid=None, n=20, sort="self", depth=12,
                              threshold_pct=1.0, mode="cpu", window=None,
                              no_inline=False, inverted=False)
    handler = {"threads": threads.cmd_threads, "top": top.cmd_top, "wakers": wakers.cmd_wakers,
               "flame": flame.cmd_flame, "list": runs.cmd_list, "status": status.cmd_status}
    assert handler[cmd](args) == 0
    got = capsys.readouterr()
    assert not _unsafe(got.out + got.err), got.out
    assert "\\x1b]0;pwned\\x07" in got.out
    args.json = True  # and --json keeps the values exactly
    handler[cmd](args)
    method = {"flame": "flamegraph", "list": "list_runs"}.get(cmd, cmd)
    assert json.loads(capsys.readouterr().out) == ANSWERS[method]


def test_an_error_quoting_a_name_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from stax.cli.main import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(common, "call", lambda *a, **k: common.die(f"no run named {HOSTILE}"))
        mp.setattr(runs, "call", common.call)
        assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no run named \\x1b]0;pwned") and err.count("\n") == 1


# --- setuid programs and other users' processes -----------------------------------------------


def test_launch_obstacle_names_setuid_setgid_and_capabilities(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    shutil.copy2("/bin/true", prog)
    st = prog.stat()
    os.chmod(prog, 0o755)
    assert launch_obstacle(str(prog), uid=st.st_uid + 1, gid=st.st_gid + 1) is None
    os.chmod(prog, 0o4755)
    why = launch_obstacle(str(prog), uid=st.st_uid + 1, gid=st.st_gid)
    assert why is not None
    assert why.startswith(f"{prog} is setuid (it runs as uid {st.st_uid}): the kernel stops "
                          "perf sampling when a program gains privileges at exec"), why
    assert "sudo stax record -p PID" in why
    assert launch_obstacle(str(prog), uid=st.st_uid, gid=st.st_gid) is None  # its owner
    os.chmod(prog, 0o2755)
    why = launch_obstacle(str(prog), uid=st.st_uid, gid=st.st_gid + 1)
    assert why is not None and f"setgid (it runs with gid {st.st_gid})" in why
    assert launch_obstacle(str(tmp_path / "absent")) is None


def _proc(root: Path, pid: int, uids: tuple[int, int, int], gids: tuple[int, int, int],
          owner: int) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "status").write_bytes(b"Name:\tx\xff\x1b\nUid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\n"
                               % (*uids, uids[1], *gids, gids[1]))
    os.chown(d, owner, owner)


@pytest.mark.skipif(os.geteuid() != 0, reason="builds a fake /proc owned by other uids (root)")
def test_attach_obstacle_follows_the_kernels_rule(tmp_path: Path) -> None:
    _proc(tmp_path, 10, (1000, 1000, 1000), (1000, 1000, 1000), 1000)
    _proc(tmp_path, 20, (0, 0, 0), (0, 0, 0), 0)
    _proc(tmp_path, 30, (1000, 0, 0), (1000, 1000, 1000), 0)
    _proc(tmp_path, 40, (1000, 1000, 1000), (1000, 5, 5), 0)
    _proc(tmp_path, 50, (1000, 1000, 1000), (1000, 1000, 1000), 0)

    def why(pid: int, uid: int = 1000) -> str | None:
        return attach_obstacle(pid, uid, 1000, proc=str(tmp_path))

    assert why(10) is None and why(20, uid=0) is None and why(99) is None
    assert why(20) == ("pid 20 cannot be sampled by uid 1000: it belongs to uid 0, and the "
                       "kernel lets only root sample such a process; record it as root "
                       "(sudo stax record -p 20)")
    assert "it runs setuid (real/effective/saved uids 1000/0/0)" in (why(30) or "")
    assert "it runs setgid (real/effective/saved gids 1000/5/5)" in (why(40) or "")
    assert "it is not dumpable" in (why(50) or "")


def test_no_samples_hint_names_a_setuid_program(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    shutil.copy2("/bin/true", prog)
    os.chown(prog, os.getuid() + 1, os.getgid())
    os.chmod(prog, 0o4755)
    run = {"id": 2, "state": "stopped", "samples": 0, "end_reason": "exited",
           "mode": "launch", "argv": [str(prog), "x"]}
    hint = no_samples_hint(run)
    assert hint.startswith(f"(run 2 has no samples: {prog} is setuid (it runs as uid "
                           f"{os.getuid() + 1})"), hint
    assert "measurable CPU" not in hint


# --- tracefs closed to the user ----------------------------------------------------------------


def test_unreadable_tracefs_problem_says_mounted_and_how_to_fix(tmp_path: Path) -> None:
    d = tmp_path / "tracing"
    d.mkdir(mode=0o700)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"45 23 0:13 / {d} rw,relatime - tracefs nodev rw\n"
                         "46 23 0:14 / /sys rw - sysfs sysfs rw\n")
    msg = sched.unreadable_problem(str(d), uid=1000, mountinfo=str(mountinfo))
    assert msg == (f"tracefs is mounted at {d} but not readable by uid 1000 (mode 0700, owner "
                   f"uid {os.getuid()}); use staxd (sudo stax setup), run as root, or let this "
                   f"user read it (sudo chmod 0755 {d}) with kernel.perf_event_paranoid=-1")
    mountinfo.write_text("")
    assert sched.unreadable_problem(str(d), uid=1000, mountinfo=str(mountinfo)).startswith(
        f"{d} is not readable by uid 1000 (mode 0700")


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to another uid in a child (root)")
def test_probe_as_another_user_reports_a_closed_tracefs_not_a_missing_one() -> None:
    """A real permission check: a child that is uid 65534 probes a 0700 directory of root."""
    top = Path(tempfile.mkdtemp(prefix="stax-tracefs-", dir="/tmp"))
    try:
        top.chmod(0o755)
        d = top / "tracing"
        (d / "events" / "sched").mkdir(parents=True)
        d.chmod(0o700)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                os.environ["STAX_TRACEFS"] = str(d)
                os.write(w, (sched.probe().problem or "").encode())
            finally:
                os._exit(0)
        os.close(w)
        with open(r, "rb") as f:
            problem = f.read().decode()
        os.waitpid(pid, 0)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert problem.startswith(f"{d} is not readable by uid 65534 (mode 0700, owner uid 0); "
                              "use staxd (sudo stax setup)"), problem
    assert "not mounted" not in problem and "not found" not in problem
