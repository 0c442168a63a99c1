"""End-to-end: a real unprivileged user records a CPython program of its own with its own
stax-server (no root, no staxd). Where the kernel lets a process read the memory of another of
the same user (no Yama, or ptrace_scope 0) the samples get the Python functions, in about the
shares the program measures itself; where it does not (ptrace_scope 1: the server is not the
target's parent; 2, 3), ``diagnose`` says why and the native profile is whole."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from python_helpers import measured, total_shares, workload
from test_staxd_e2e import User, user, user_server  # noqa: F401 (fixtures)

PYTHON = "/usr/bin/python3.11"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None
    or not os.access(PYTHON, os.X_OK),
    reason=f"needs root, useradd, setpriv (util-linux) and {PYTHON}")


def _sysctl(path: str) -> int | None:
    try:
        return int(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _user_file(u: User, src: Path) -> Path:
    dst = u.home / src.name
    shutil.copy(src, dst)
    os.chmod(dst, 0o644)
    return dst


def test_unprivileged_user_records_its_own_python_program(
        user_server: User) -> None:  # noqa: F811
    paranoid = _sysctl("/proc/sys/kernel/perf_event_paranoid")
    if paranoid is not None and paranoid > 2:
        pytest.skip("perf_event_paranoid > 2: no perf events for unprivileged users")
    scope = _sysctl("/proc/sys/kernel/yama/ptrace_scope")  # None: no Yama
    u = user_server
    prog = _user_file(u, workload("pysplit.py"))
    p = u.stax("record", "--daemon-socket", str(u.home / "no-staxd.sock"), "--", PYTHON,
               str(prog), "3", timeout=120)
    assert p.returncode == 0, p.stderr
    want = measured(p.stderr)
    diag = json.loads(u.stax("diagnose", "--json").stdout)["run"]
    info = diag["python"]
    text = u.stax("diagnose").stdout
    top = json.loads(u.stax("top", "--json", "-n", "0", "--sort", "total").stdout)
    rows = top["rows"]
    if scope is None or scope == 0:
        # the server reads the stacks itself, with the user's rights only
        assert info["problem"] is None and info["stack_reader"] in ("process", "server"), info
        assert info["version"].startswith("3.11."), info
        assert info["python_samples"] >= 0.6 * info["python_running"] > 500, info
        assert f"python: CPython {info['version']} ({PYTHON})" in text, text
        shares = total_shares(rows, "pysplit.py", ("heavy", "medium", "light"))
        print("measured", want, "stax", shares)
        for f, s in shares.items():
            assert abs(s - want[f]) <= 6, (shares, want)
        # its own source file, read for it: annotate lists heavy's lines with their text
        ann = json.loads(u.stax("annotate", "heavy", "--json").stdout)
        src = prog.read_text().splitlines()
        first = ann["function"]["first_line"]
        assert src[first - 1] == "def heavy(n):" and ann["note"] is None, ann
        assert [x["text"] for x in ann["lines"]] == src[first - 1:first + 4], ann["lines"]
        assert ann["python_self_samples"] > 0.4 * top["total_samples"], ann
        return
    # the kernel keeps the user's server out of the target's memory: diagnose says so, and
    # the native stacks are all there
    assert info["version"] is None, info
    why = str(info["problem"])
    assert why.startswith(f"cannot read process {diag['pid']}'s memory: ") and why.endswith(
        "(staxd, which could, is not in use)"), info
    assert f"python: no CPython interpreter read ({info['problem']})" in text, text
    assert not [r for r in rows if r["binary"] == "pysplit.py"], rows
    funcs = {r["func"]: r["total_samples"] for r in rows}
    assert funcs.get("_PyEval_EvalFrameDefault", 0) >= 0.8 * top["total_samples"], funcs
    assert funcs.get("Py_BytesMain", 0) >= 0.95 * top["total_samples"], funcs
