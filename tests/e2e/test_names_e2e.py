"""End-to-end: names printed safely. A real program names its threads with terminal escapes
(tests/workloads/names.c), is launched from a path and with arguments that carry escapes, and
saved to a directory whose name carries one: no text output of the CLI contains a raw control
character, while ``--json`` keeps every value exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from harness import Stax, tool

ESC = "\x1b"
MAIN = f"{ESC}]0;pwned\a"  # names.c's thread names
CLEAR = f"{ESC}[2J{ESC}[Hclr"
C1 = "c1\x9b31m"  # followed by a byte that is not UTF-8
ARGS = [f"{ESC}]0;title\a", f"{ESC}[2J", "tab\there", "rtl\u202eevil"]


def _run(stax: Stax, *args: str) -> tuple[int, bytes, bytes]:
    p = subprocess.run([tool("stax"), *args], env=stax.env, capture_output=True,
                       timeout=120)
    assert b"Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def _assert_safe(data: bytes, what: str) -> str:
    """``data`` is UTF-8 text whose only control character is the newline."""
    text = data.decode("utf-8")  # strict: no stray bytes either
    bad = sorted({f"U+{ord(c):04X}" for c in text
                  if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F
                  or c in "\u202e\u2028"})
    assert not bad, f"{what}: raw control characters {bad} in {text!r}"
    return text


def test_hostile_names_are_escaped_in_text_and_exact_in_json(
        stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    exe = tmp_path / f"na{ESC}[31mmes"
    shutil.copy2(workloads["names"], exe)
    argv = [str(exe), "1.5", *ARGS]
    code, out, err = _run(stax, "record", "--", *argv)
    assert code == 0, err
    _assert_safe(out + err, "record")
    assert "stax: run 1 stopped (target exited)" in err.decode()

    texts: dict[str, str] = {}
    for cmd in (["threads"], ["list"], ["status"], ["top", "-n", "0"], ["flame"],
                ["wakers"], ["diagnose"], ["annotate", "names_burn"]):
        code, out, err = _run(stax, *cmd)
        assert code == 0, (cmd, err)
        texts[cmd[0]] = _assert_safe(out + err, " ".join(cmd))
    # the escapes are visible instead
    assert "\\x1b]0;pwned\\x07" in texts["threads"], texts["threads"]
    assert "\\x1b[2J\\x1b[Hclr" in texts["threads"]
    assert "c1\\u009b31m" in texts["threads"]
    shown = f"{exe} 1.5 \\x1b]0;title\\x07 \\x1b[2J tab\\there rtl\\u202eevil".replace(
        ESC, "\\x1b")
    assert shown in texts["list"] and shown in texts["status"], texts["list"]
    assert "na\\x1b[31mmes" in texts["top"], texts["top"]

    # --json: exactly what the program set
    threads = json.loads(_run(stax, "threads", "--json")[1])
    names = {r["name"] for r in threads["rows"]}
    assert MAIN in names and CLEAR in names, names
    assert any(n.startswith(C1) for n in names), names
    runs = json.loads(_run(stax, "list", "--json")[1])["runs"]
    assert runs[0]["command"] == " ".join(argv) and runs[0]["argv"] == argv
    top = json.loads(_run(stax, "top", "--json", "-n", "0")[1])
    assert exe.name in {r["binary"] for r in top["rows"]}, top["rows"]

    # save to, and open from, a directory whose name carries an escape
    dest = tmp_path / f"saved{ESC}]0;x\a.stax"
    code, out, err = _run(stax, "save", str(dest))
    assert code == 0, err
    saved = _assert_safe(out + err, "save")
    assert "saved\\x1b]0;x\\x07.stax" in saved, saved
    assert os.path.isdir(dest)
    code, out, err = _run(stax, "open", str(dest))
    assert code == 0, err
    opened = _assert_safe(out + err, "open")
    assert shown in opened, opened
    code, out, _ = _run(stax, "threads", "--json")
    assert {r["name"] for r in json.loads(out)["rows"]} == names
    code, out, err = _run(stax, "threads")
    assert "\\x1b]0;pwned\\x07" in _assert_safe(out + err, "threads after open")

    # an error that quotes a name
    code, out, err = _run(stax, "open", str(tmp_path / f"missing{ESC}[2J"))
    assert code == 1
    msg = _assert_safe(err, "open error")
    assert msg.startswith("error: ") and "missing\\x1b[2J" in msg, msg


def test_attach_to_a_process_with_a_hostile_name(stax: Stax, workloads: dict[str, Path]) -> None:
    target = subprocess.Popen([str(workloads["names"]), "3"])
    try:
        code, out, err = _run(stax, "record", "-p", str(target.pid), "-l", "1")
        assert code == 0, err
        _assert_safe(out + err, "record -p")
        for cmd in (["list"], ["status"], ["threads"]):
            code, out, err = _run(stax, *cmd)
            text = _assert_safe(out + err, cmd[0])
            assert "\\x1b]0;pwned\\x07" in text, text
        runs = json.loads(_run(stax, "list", "--json")[1])["runs"]
        assert runs[0]["command"] == MAIN
    finally:
        target.kill()
        target.wait()
