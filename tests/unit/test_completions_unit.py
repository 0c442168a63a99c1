"""`stax completions SHELL`: scripts generated from the parser, valid for their shell, and
completing what the parser knows (bash driven through COMP_WORDS/COMP_CWORD and compgen)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stax.cli.completions import script, walk
from stax.cli.main import build_parser, main


def _script(shell: str, tmp_path: Path) -> Path:
    path = tmp_path / f"stax.{shell}"
    path.write_text(script(build_parser(), shell))
    return path


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_script_is_valid_for_its_shell(shell: str, tmp_path: Path) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    path = _script(shell, tmp_path)
    p = subprocess.run([exe, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def _bash_complete(path: Path, *words: str) -> list[str]:
    """What the bash completion offers for the command line ``words`` (the last one being
    completed, empty for a new word)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    prog = (f"source {path}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
            "_stax_complete; printf '%s\\n' \"${COMPREPLY[@]}\"")
    p = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, timeout=30,
                       cwd=path.parent)
    assert p.returncode == 0, p.stderr
    return [x for x in p.stdout.splitlines() if x]


def test_bash_completes_commands_options_and_choices(tmp_path: Path) -> None:
    path = _script("bash", tmp_path)
    assert _bash_complete(path, "stax", "to") == ["top"]
    assert set(_bash_complete(path, "stax", "")) >= {"record", "wait", "top", "completions"}
    assert _bash_complete(path, "stax", "top", "--li") == ["--limit"]
    assert _bash_complete(path, "stax", "flame", "--max") == ["--max-depth"]
    assert _bash_complete(path, "stax", "flame", "--mode", "") == ["cpu", "offcpu", "wall"]
    assert _bash_complete(path, "stax", "completions", "") == ["bash", "zsh", "fish"]
    assert _bash_complete(path, "stax", "-", ) == ["-h", "--help", "-V", "--version"]
    (tmp_path / "before.stax").mkdir()
    assert "before.stax" in _bash_complete(path, "stax", "open", "bef")
    assert _bash_complete(path, "stax", "top", "-n", "") == []  # a number: nothing to guess


def test_fish_completes_commands(tmp_path: Path) -> None:
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed")
    path = _script("fish", tmp_path)
    p = subprocess.run([fish, "-c", f"source {path}; complete -C 'stax to'; "
                        "complete -C 'stax flame --mode '"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    got = [line.split("\t")[0] for line in p.stdout.splitlines()]
    assert got == ["top", "cpu", "offcpu", "wall"], got


def test_walk_sees_every_command_and_spelling() -> None:
    root, cmds = walk(build_parser())
    assert ["-V", "--version"] in [o.flags for o in root]
    by_name = {c.name: c for c in cmds}
    for name in ("top", "threads", "wakers"):
        assert ["-n", "--limit"] in [o.flags for o in by_name[name].options]
    assert ["-d", "--max-depth", "--depth"] in [o.flags for o in by_name["flame"].options]
    assert by_name["record"].positionals[0].rest
    assert by_name["save"].positionals[0].path


def test_completions_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completions", "bash"]) == 0
    assert "complete -o filenames -F _stax_complete stax" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["completions", "tcsh"])
    assert e.value.code == 1
    assert "invalid choice: 'tcsh'" in capsys.readouterr().err


def test_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    ap = build_parser()
    assert ap.parse_args(["top", "--limit", "5"]).n == 5
    assert ap.parse_args(["threads", "-n", "3"]).n == 3
    assert ap.parse_args(["wakers", "--limit", "0"]).n == 0
    assert ap.parse_args(["flame", "--max-depth", "4"]).depth == 4
    assert ap.parse_args(["flame", "--depth", "6"]).depth == 6
    assert ap.parse_args(["flame", "-d", "7"]).depth == 7
    with pytest.raises(SystemExit) as e:
        main(["-V"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("stax ")


def test_zsh_script_registers_after_compinit(tmp_path: Path) -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed")
    path = _script("zsh", tmp_path)
    prog = (f"autoload -Uz compinit; compinit -u -d {tmp_path}/zcompdump; source {path}; "
            "print -r -- ${_comps[stax]}")
    p = subprocess.run([zsh, "-f", "-c", prog], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == "_stax_complete\n", (p.stdout, p.stderr)
