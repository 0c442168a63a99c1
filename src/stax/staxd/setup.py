"""``stax setup``: install staxd as a systemd service (unit file, socket directory) and start it,
or say exactly how to start it by hand; as non-root, explain what it would do. Idempotent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from stax import sysctl
from stax.limits import STAXD_SOCKET as DEFAULT_SOCKET

UNIT_NAME = "staxd.service"
UNIT_DIR = "/etc/systemd/system"
LOG_FILE = "/var/log/staxd.log"


def root_prefix() -> str:
    """``STAX_SETUP_ROOT`` redirects every file setup writes or checks (tests use a temp dir);
    the paths written *into* the unit stay the real ones."""
    return os.environ.get("STAX_SETUP_ROOT", "")


def _in_root(path: str) -> Path:
    return Path(root_prefix() + path)


def staxd_command(sock: str) -> list[str]:
    """How to run this installation's staxd: the console script next to this interpreter, else
    the one on PATH, else ``python -m stax.staxd``."""
    here = Path(sys.executable).parent / "staxd"
    if os.access(here, os.X_OK):
        exe = [str(here)]
    elif (found := shutil.which("staxd")) is not None:
        exe = [found]
    else:
        exe = [sys.executable, "-m", "stax.staxd"]
    return [*exe, "--socket", sock]


def unit_text(sock: str) -> str:
    cmd = " ".join(staxd_command(sock))
    sock_dir = os.path.dirname(sock) or "/"
    return f"""# Written by `stax setup`; rewritten when it runs again.
[Unit]
Description=staxd, the perf_event descriptor broker for stax
After=local-fs.target

[Service]
Type=simple
ExecStart={cmd}
Restart=on-failure
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={sock_dir}

[Install]
WantedBy=multi-user.target
"""


def _systemd_running() -> bool:
    """sd_booted(): systemd is PID 1 when /run/systemd/system exists."""
    return _in_root("/run/systemd/system").is_dir()


def _listening(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def plan(sock: str) -> list[str]:
    unit = f"{UNIT_DIR}/{UNIT_NAME}"
    return [
        f"write {unit}, a service that runs as root: {' '.join(staxd_command(sock))}",
        f"create the socket directory {os.path.dirname(sock) or '/'} (staxd makes {sock}, "
        "mode 0666: staxd checks each request's sender, not the file mode)",
        "if systemd is running: systemctl daemon-reload, then systemctl enable --now "
        f"{UNIT_NAME}; otherwise print the command that starts staxd by hand",
    ]


def explain_non_root(sock: str) -> None:
    level = sysctl.read_int("kernel.perf_event_paranoid", 2)
    print("stax setup installs staxd, a small root daemon that opens perf events for stax-server "
          "on behalf of users who may trace the target themselves. As root it would:")
    for step in plan(sock):
        print(f"  - {step}")
    print(f"It needs root to write system files and because staxd itself must run as root: "
          f"with kernel.perf_event_paranoid={level} an ordinary user may sample only the user "
          "space of its own processes, without kernel call chains or scheduler tracepoints.")


def run_setup(sock: str = DEFAULT_SOCKET) -> int:
    """The root path. Returns the exit status; prints what it did."""
    if not os.path.isabs(sock):
        print(f"error: --socket must be an absolute path (got {sock})", file=sys.stderr)
        return 1
    unit_path = _in_root(f"{UNIT_DIR}/{UNIT_NAME}")
    text = unit_text(sock)
    try:
        unit_path.parent.mkdir(parents=True, exist_ok=True)
        old = unit_path.read_text() if unit_path.exists() else None
        if old == text:
            print(f"unit {unit_path} is already up to date")
        else:
            tmp = unit_path.with_name(f".{UNIT_NAME}.tmp")
            tmp.write_text(text)
            tmp.chmod(0o644)
            os.replace(tmp, unit_path)
            print(f"{'updated' if old is not None else 'wrote'} unit {unit_path}")
        sock_dir = _in_root(os.path.dirname(sock) or "/")
        if sock_dir.is_dir():
            print(f"socket directory {sock_dir} exists")
        else:
            sock_dir.mkdir(mode=0o755, parents=True)
            print(f"created socket directory {sock_dir}")
    except OSError as e:
        print(f"error: cannot write {e.filename or unit_path}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    changed = old != text
    if _systemd_running():
        steps = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", UNIT_NAME]]
        if changed and old is not None:
            steps.append(["systemctl", "restart", UNIT_NAME])
        for cmd in steps:
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"error: {' '.join(cmd)} failed: {p.stderr.strip() or p.returncode}",
                      file=sys.stderr)
                return 1
            print(f"ran: {' '.join(cmd)}")
        print(f"staxd is enabled and running; stax record uses it through {sock}")
        return 0
    if _listening(_in_root(sock)):
        print(f"staxd is already running on {sock}")
        return 0
    cmd = " ".join(staxd_command(sock))
    print("systemd is not running on this host, so staxd was not started; start it by hand "
          "(as root):")
    print(f"  nohup {cmd} >>{LOG_FILE} 2>&1 &")
    return 0


def cmd_setup(sock: str = DEFAULT_SOCKET) -> int:
    if os.geteuid() != 0:
        explain_non_root(sock)
        print("error: stax setup needs root; run: sudo stax setup", file=sys.stderr)
        return 1
    return run_setup(sock)
