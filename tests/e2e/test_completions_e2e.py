"""The installed `stax completions bash` script, loaded into a real bash, completes `stax to`."""

from __future__ import annotations

import subprocess

from harness import Stax


def test_installed_bash_completion(stax_noserver: Stax) -> None:
    r = stax_noserver("completions", "bash", check=True)
    prog = (f'eval "$(cat)"; COMP_WORDS=({stax_noserver.exe} to); COMP_CWORD=1; '
            '_stax_complete; echo "${COMPREPLY[@]}"')
    p = subprocess.run(["bash", "-c", prog], input=r.out, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0 and p.stdout == "top\n", (p.stdout, p.stderr)
