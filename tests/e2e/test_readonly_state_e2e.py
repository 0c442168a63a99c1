"""End-to-end: a state directory that cannot be written (here: a file stands where the
directory should be, which fails even for root) loses no recording and keeps the target's exit
status, with a server and with the in-process fallback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from harness import Stax, start_server, stop_server


def _unwritable_state(stax: Stax, tmp_path: Path) -> None:
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("not a directory\n")
    stax.env["XDG_STATE_HOME"] = str(blocker)  # $XDG_STATE_HOME/stax cannot be created


def _spin_exit_3(workloads: dict[str, Path]) -> list[str]:
    return ["sh", "-c", f"{workloads['spin']} 0.5; exit 3"]


def test_server_keeps_the_run_in_memory(stax_noserver: Stax, workloads: dict[str, Path],
                                        tmp_path: Path) -> None:
    stax = stax_noserver
    _unwritable_state(stax, tmp_path)
    server = start_server(stax.env, tmp_path)
    try:
        r = stax("record", "--", *_spin_exit_3(workloads))
        assert r.code == 3, r.err  # the target's status
        top = stax("top", "--json", check=True).json()
        assert top["rows"][0]["func"] == "spin_hot"  # type: ignore[index]
        run = stax("list", "--json", check=True).json()["runs"][0]  # type: ignore[index]
        assert run["samples"] > 50 and run["archive"] is None
        notes = " ".join(run["notes"])
        assert "not journaled" in notes and "not kept on disk" in notes, notes
        diag = stax("diagnose", "--json", check=True).json()
        assert any("not kept on disk" in n for n in diag["run"]["notes"])  # type: ignore
        assert "not kept on disk" in stax("diagnose", check=True).out
    finally:
        stop_server(server)


def test_autostarted_server_logs_elsewhere(stax_noserver: Stax, workloads: dict[str, Path],
                                           tmp_path: Path) -> None:
    stax = stax_noserver
    _unwritable_state(stax, tmp_path)
    stax.env["TMPDIR"] = str(tmp_path)
    r = stax("record", "--", *_spin_exit_3(workloads))
    assert r.code == 3, r.err
    assert "unreachable" not in r.err  # a server was started, its log in $TMPDIR
    assert (tmp_path / f"stax-server-{os.getuid()}.log").exists()
    assert stax("top", "--json", check=True).json()["total_samples"] > 50  # type: ignore


def test_fallback_saves_in_tmpdir(stax_noserver: Stax, workloads: dict[str, Path],
                                  tmp_path: Path) -> None:
    stax = stax_noserver
    _unwritable_state(stax, tmp_path)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(stax.env, STAX_NO_AUTOSTART="1", TMPDIR=str(tmpdir))
    p = subprocess.run([stax.exe, "record", "--json", "--", *_spin_exit_3(workloads)],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p.stderr
    assert "Traceback" not in p.stderr
    assert f"saving the recording in {tmpdir} instead" in p.stderr, p.stderr
    run = json.loads(p.stdout)
    assert run["samples"] > 50 and run["archive"].startswith(str(tmpdir))
    assert os.stat(run["archive"]).st_mode & 0o077 == 0  # private to the user
    r = stax("compare", run["archive"], run["archive"], "--json", check=True)
    assert r.json()["base"]["samples"] == run["samples"]  # type: ignore[index]
