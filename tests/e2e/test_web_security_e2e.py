"""The browser endpoint serves only its owner, proved with a real second user.

A root stax-server (the tests' own) and a real unprivileged user (created with useradd, removed
afterwards) making its connections through ``setpriv``: on a loopback bind the user's HTTP GETs
and WebSocket upgrades are refused (403) while the owner's work; on a 0.0.0.0 bind the token
decides; Host and Origin rules; the page's headers; and annotate's source rule on a program the
user runs whose line table names a root-only file.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import Stax, stop_server, throwaway_user

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None
    or not os.path.exists("/usr/bin/python3"),
    reason="needs root (to create a second user), useradd, setpriv and /usr/bin/python3")

# stdlib only, run by the second user: one raw HTTP request, prints the status code
PROBE = r'''
import socket, sys
host, port, path, *headers = sys.argv[1:]
s = socket.create_connection((host, int(port)), timeout=10)
lines = [f"GET {path} HTTP/1.1", *headers, "Connection: close", "", ""]
req = "\r\n".join(lines)
s.sendall(req.encode())
data = b""
while b"\r\n" not in data:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n")[0].split()[1].decode() if data else "closed")
'''

SECRET_PROGRAM = r'''
#line 1 "{source}"
volatile unsigned long sink;
int main(int argc, char **argv) {{
    unsigned long acc = 1;
    for (;;) {{
        for (unsigned long i = 0; i < 100000000UL; i++)
            acc = acc * 6364136223846793005UL + i;
        sink = acc;
    }}
    return 0;
}}
'''

WS_HEADERS = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]


@dataclass
class User:
    name: str
    uid: int
    gid: int
    dir: Path  # a directory it can read, holding the probe

    def argv(self, *cmd: str) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--", *cmd]


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    d = Path(f"/tmp/stax-webtest-{secrets.token_hex(4)}")
    with throwaway_user("staxweb") as pw:
        try:
            d.mkdir(mode=0o755)
            (d / "probe.py").write_text(PROBE)
            (d / "probe.py").chmod(0o644)
            yield User(pw.pw_name, pw.pw_uid, pw.pw_gid, d)
        finally:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def stax_env(stax_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    bind = getattr(request, "param", None)
    if bind:
        stax_env["STAX_SERVER_WS_BIND"] = bind
    return stax_env


def probe(url: str, path: str, *headers: str, user: User | None = None,
          host: str | None = None) -> str:
    """The status code of one GET, made by ``user`` (or by root, the server's owner)."""
    u = urllib.parse.urlsplit(url)
    hostname = u.hostname or ""
    connect = "127.0.0.1" if hostname == "0.0.0.0" else hostname
    hdrs = [f"Host: {host or u.netloc}", *headers]
    args = [connect, str(u.port), path, *hdrs]
    if user is None:
        cmd = [sys.executable, "-c", PROBE, *args]
    else:
        cmd = user.argv("/usr/bin/python3", str(user.dir / "probe.py"), *args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/")
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def web_of(stax: Stax) -> dict[str, Any]:
    web = stax("status", "--json", check=True).json()["web"]  # type: ignore[index]
    assert web["url"], web
    return web


async def _ws_hello(url: str, origin: str) -> dict[str, Any]:
    u = urllib.parse.urlsplit(url)
    ws_url = f"http://127.0.0.1:{u.port}/ws" + (f"?{u.query}" if u.query else "")
    async with aiohttp.ClientSession() as s, s.ws_connect(
            ws_url, headers={"Origin": origin}) as ws:
        await ws.send_str(json.dumps({"id": 1, "method": "hello"}))
        msg = await ws.receive(timeout=10)
        return json.loads(msg.data)


# --- loopback: the peer's uid ----------------------------------------------------------------

@pytest.mark.parametrize("stax_env", ["127.0.0.1:0", "[::1]:0"], indirect=True)
def test_loopback_endpoint_refuses_another_user(stax: Stax, user: User) -> None:
    web = web_of(stax)
    url = web["url"]
    assert "token" not in url and not web["token_required"]
    u = urllib.parse.urlsplit(url)
    origin = f"http://{u.netloc}"
    # the owner (root here) gets the page, its files and the WebSocket
    assert probe(url, "/") == "200"
    assert probe(url, "/static/app.js") == "200"
    assert probe(url, "/ws", *WS_HEADERS, f"Origin: {origin}") == "101"
    # the second user gets nothing: no page, no static file, no unknown path, no WebSocket
    for path in ("/", "/static/app.js", "/static/style.css", "/nope", "/export?format=folded"):
        assert probe(url, path, user=user) == "403", path
    assert probe(url, "/ws", *WS_HEADERS, f"Origin: {origin}", user=user) == "403"
    log = (stax.tmp / "server.log").read_text()
    assert f"peer uid {user.uid} is not the server's owner" in log


def test_websocket_needs_origin_and_host_must_be_this_server(stax: Stax) -> None:
    url = web_of(stax)["url"]
    u = urllib.parse.urlsplit(url)
    origin = f"http://{u.netloc}"
    assert probe(url, "/ws", *WS_HEADERS) == "403"  # no Origin
    assert probe(url, "/ws", *WS_HEADERS, "Origin: http://evil.example") == "403"
    # DNS rebinding: a foreign name resolving to 127.0.0.1 is refused on every request
    for path in ("/", "/static/app.js"):
        assert probe(url, path, host=f"evil.example:{u.port}") == "403"
    assert probe(url, "/ws", *WS_HEADERS, f"Origin: http://evil.example:{u.port}",
                 host=f"evil.example:{u.port}") == "403"
    # localhost and the loopback literals are this server
    assert probe(url, "/", host=f"localhost:{u.port}") == "200"
    assert probe(url, "/ws", *WS_HEADERS, f"Origin: http://localhost:{u.port}",
                 host=f"localhost:{u.port}") == "101"
    assert asyncio.run(_ws_hello(url, origin))["result"]["server"] == "stax-server"


def test_page_headers(stax: Stax) -> None:
    import urllib.request

    url = web_of(stax)["url"]
    with urllib.request.urlopen(url, timeout=10) as r:
        h = r.headers
    assert h["X-Frame-Options"] == "DENY"
    csp = h["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert f"connect-src 'self' ws://{urllib.parse.urlsplit(url).netloc}" in csp
    assert h["X-Content-Type-Options"] == "nosniff"


# --- a non-loopback bind: the token ----------------------------------------------------------

@pytest.mark.parametrize("stax_env", ["0.0.0.0:0"], indirect=True)
def test_wildcard_bind_needs_the_token(stax: Stax, user: User) -> None:
    web = web_of(stax)
    url = web["url"]
    m = re.fullmatch(r"http://0\.0\.0\.0:(\d+)/\?token=([A-Za-z0-9_-]{40,})", url)
    assert m, url
    port, token = m.group(1), m.group(2)
    assert web["token_required"]
    # stax status prints the URL with the token; the token file is 0600 beside the socket
    assert f"web UI: {url}" in stax("status", check=True).out
    tf = Path(stax.env["STAX_SERVER_SOCKET"] + ".token")
    assert tf.read_text().strip() == token and web["token_file"] == str(tf)
    assert stat.S_IMODE(tf.stat().st_mode) == 0o600
    origin = f"http://127.0.0.1:{port}"
    # no token or a wrong one: 403 for everyone, the owner included, on every route
    for path in ("/", "/static/app.js", "/static/api.js", "/nope", "/export?format=folded"):
        assert probe(url, path) == "403", path
        assert probe(url, path, host=f"127.0.0.1:{port}") == "403", path
    assert probe(url, "/?token=" + "x" * len(token)) == "403"
    assert probe(url, "/ws", *WS_HEADERS, f"Origin: {origin}") == "403"
    # the right token: the page (whose own files carry it), its files and the WebSocket
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={token}", timeout=10) as r:
        page = r.read().decode()
        assert r.headers["Cache-Control"] == "no-store"
    assert f'src="/static/app.js?token={token}"' in page
    assert probe(url, f"/static/app.js?token={token}") == "200"
    assert probe(url, f"/export?format=folded&token={token}") == "404"  # past the guard: no run
    assert probe(url, "/static/app.js", f"Authorization: Bearer {token}") == "200"
    # the page's script imports its sibling modules by relative URL: each import carries it too
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/app.js?token={token}",
                                timeout=10) as r:
        script = r.read().decode()
        assert r.headers["Cache-Control"] == "no-store"
    assert f'from "./api.js?token={token}";' in script
    assert 'from "./api.js";' not in script
    assert asyncio.run(_ws_hello(url, origin))["result"]["server"] == "stax-server"
    assert probe(url, f"/ws?token={token}", *WS_HEADERS) == "403"  # still needs an Origin
    # the token is the credential here: whoever holds it gets in, whoever lacks it does not
    assert probe(url, "/", user=user) == "403"
    assert probe(url, f"/ws?token={token}", *WS_HEADERS, f"Origin: {origin}",
                 user=user) == "101"
    # the token file goes with the server
    stop_server(stax.server)  # type: ignore[attr-defined]
    assert not tf.exists()


# --- annotate: sources the program's owner could read ----------------------------------------

def _secret_program(tmp: Path, user: User) -> tuple[Path, Path]:
    """A root-only source file and a program (readable by the user) whose line table names
    it."""
    secret_dir = tmp / "secret"
    secret_dir.mkdir(mode=0o700)
    secret = secret_dir / "secret.c"
    secret.write_text("".join(f"TOPSECRET line {i}\n" for i in range(1, 40)))
    secret.chmod(0o600)
    src = tmp / "prog.c"
    src.write_text(SECRET_PROGRAM.format(source=secret))
    exe = user.dir / f"prog-{secrets.token_hex(3)}"
    subprocess.run(["cc", "-g", "-O1", "-fno-omit-frame-pointer", "-o", str(exe), str(src)],
                   check=True)
    exe.chmod(0o755)
    return secret, exe


def _record(stax: Stax, argv: list[str]) -> None:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        exe = argv[-1]
        deadline = time.monotonic() + 10  # until setpriv has become the program
        while os.readlink(f"/proc/{proc.pid}/exe") != exe:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stax("record", "-p", str(proc.pid), "-l", "1", check=True, timeout=60)
    finally:
        proc.kill()
        proc.wait()


def test_annotate_hides_a_source_the_programs_owner_cannot_read(
        stax: Stax, user: User, tmp_path: Path) -> None:
    secret, exe = _secret_program(tmp_path, user)
    # the user's program: its line table names a root-only file; the root server hides it
    _record(stax, user.argv(str(exe)))
    res = stax("annotate", "main", "--json", check=True).json()
    assert res["has_line_info"] and res["sources"], res  # type: ignore[index]
    why = f"source {secret} not shown: not readable by uid {user.uid}"
    assert all(s["text"] is None and s["hidden"] == why for s in res["sources"])  # type: ignore[index]
    assert why in res["note"]  # type: ignore[index]
    text = stax("annotate", "main", check=True).out
    assert why in text and "TOPSECRET" not in text
    assert "TOPSECRET" not in json.dumps(res)
    # kept with the run: the archive names the program's owner, and opening it keeps hiding
    saved = tmp_path / "user-run.stax"
    stax("save", str(saved), check=True)
    manifest = json.loads((saved / "stax-archive.json").read_text())
    assert manifest["owner"]["uid"] == user.uid
    stax("open", str(saved), check=True)
    again = stax("annotate", "main", "--json", check=True).json()
    assert all(s["text"] is None for s in again["sources"])  # type: ignore[index]
    # the same program run by root (who can read the file) shows it
    _record(stax, [str(exe)])
    mine = stax("annotate", "main", "--json", check=True).json()
    assert any(s["text"] and s["text"].startswith("TOPSECRET") for s in mine["sources"])  # type: ignore[index]


# --- units: the socket tables and the permission rule ----------------------------------------

def test_peer_uid_reads_both_tables(tmp_path: Path) -> None:
    from stax.server.webauth import peer_uid

    le = sys.byteorder == "little"
    v4 = "0100007F" if le else "7F000001"
    mapped = ("0000000000000000FFFF00000100007F" if le
              else "00000000000000000000FFFF7F000001")
    v6 = "00000000000000000000000001000000" if le else "00000000000000000000000000000001"
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
    tcp = tmp_path / "tcp"
    tcp6 = tmp_path / "tcp6"
    tcp.write_text(head +
                   f"   0: {v4}:1F90 00000000:0000 0A 0:0 00:0 0 1000 0 1\n"      # listener
                   f"   1: {v4}:1F90 {v4}:D431 01 0:0 00:0 0 1000 0 2\n"          # ours
                   f"   2: {v4}:D431 {v4}:1F90 01 0:0 00:0 0 1001 0 3\n"          # the peer
                   f"   3: {v4}:D432 {v4}:1F90 06 0:0 00:0 0 0 0 0\n")            # TIME_WAIT
    tcp6.write_text(head + f"   0: {mapped}:D433 {mapped}:1F90 01 0:0 00:0 0 1002 0 4\n"
                    f"   1: {v6}:D434 {v6}:1F90 01 0:0 00:0 0 1003 0 5\n")
    tables = (str(tcp), str(tcp6))
    assert peer_uid(("127.0.0.1", 0xD431), ("127.0.0.1", 8080), tables) == 1001
    # a dual-stack server sees an IPv4 peer as ::ffff:127.0.0.1; an IPv6 socket connecting
    # to a mapped address is listed in tcp6 with mapped addresses
    assert peer_uid(("::ffff:127.0.0.1", 0xD431, 0, 0), ("::ffff:127.0.0.1", 8080, 0, 0),
                    tables) == 1001
    assert peer_uid(("127.0.0.1", 0xD433), ("127.0.0.1", 8080), tables) == 1002
    assert peer_uid(("::1", 0xD434, 0, 0), ("::1", 8080, 0, 0), tables) == 1003
    assert peer_uid(("127.0.0.1", 0xD432), ("127.0.0.1", 8080), tables) is None  # TIME_WAIT
    assert peer_uid(("127.0.0.1", 1), ("127.0.0.1", 8080), tables) is None


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory under /tmp every user can search (pytest's temp root is root-only)."""
    d = Path(f"/tmp/stax-webtest-{secrets.token_hex(4)}")
    d.mkdir(mode=0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_source_permission_rule(public_dir: Path) -> None:
    from stax.profile.access import NOBODY, Owner, hidden_reason

    d = public_dir / "d"
    d.mkdir()
    f = d / "x.c"
    f.write_text("x\n")
    u = Owner(4242, 4242, 4242, 4242, ())

    def why(owner: Owner | None, mode: int, dmode: int = 0o755, uid: int = 0,
            gid: int = 0) -> str | None:
        os.chown(f, uid, gid)
        f.chmod(mode)
        d.chmod(dmode)
        return hidden_reason(str(f), str(f), f.stat(), owner)

    assert why(u, 0o644) is None
    assert why(u, 0o640) == f"source {f} not shown: not readable by uid 4242"
    assert why(u, 0o640, gid=4242) is None
    assert why(Owner(4242, 1, 4242, 1, (4242,)), 0o640, gid=4242) is None  # a group member
    assert why(u, 0o600, uid=4242) is None
    assert why(u, 0o644, dmode=0o700) is not None  # cannot search the directory
    assert why(u, 0o644, dmode=0o711) is None
    assert why(Owner(4242, 4242, 0, 0, ()), 0o600) is not None  # setuid: both ids must read
    assert why(Owner(0, 0, 0, 0, ()), 0o000) is None  # root reads everything
    assert why(NOBODY, 0o644) is None and why(None, 0o640) is not None
    assert why(NOBODY, 0o604, uid=4242, gid=4242) is None


def test_host_and_origin_rules() -> None:
    from stax.server.webauth import host_allowed, origin_allowed, split_host

    assert split_host("[::1]:8080") == ("::1", 8080)
    assert split_host("LocalHost") == ("localhost", None)
    assert split_host("a:b:c") is None and split_host("x:99999") is None
    assert split_host("[::1]x") is None and split_host(":80") is None
    for name in ("localhost", "127.0.0.1", "127.1.2.3", "::1"):
        assert host_allowed(name, "127.0.0.1") and host_allowed(name, "0.0.0.0")
    assert not host_allowed("evil.example", "127.0.0.1")
    assert not host_allowed("localhost.", "127.0.0.1")
    assert not host_allowed("10.0.0.5", "127.0.0.1")
    assert host_allowed("10.0.0.5", "0.0.0.0") and host_allowed("10.0.0.5", "10.0.0.5")
    assert not host_allowed("10.0.0.6", "10.0.0.5")
    assert not host_allowed("evil.example", "0.0.0.0")
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", 8080)
    assert origin_allowed("http://localhost:8080", "127.0.0.1:8080", 8080)
    assert origin_allowed("http://localhost:9000", "localhost:9000", 8080)  # a tunnel
    assert not origin_allowed(None, "127.0.0.1:8080", 8080)
    assert not origin_allowed("", "127.0.0.1:8080", 8080)
    assert not origin_allowed("null", "127.0.0.1:8080", 8080)
    assert not origin_allowed("http://localhost:9000", "127.0.0.1:8080", 8080)
    assert not origin_allowed("http://evil.example:8080", "127.0.0.1:8080", 8080)
