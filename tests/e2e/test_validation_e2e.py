"""Input that used to break a real stax-server (and the CLI), end to end: infinite time limits,
NaN intervals, deep nesting, null limits, huge pids and timeouts. Each gets one `error:` line or
one bad_request reply, and the server keeps answering afterwards."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import Stax

from stax.protocol import decode


def _lines(stax: Stax, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw request lines on one connection of the server's Unix socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(stax.env["STAX_SERVER_SOCKET"])
    out = []
    buf = b""
    with s:
        for line in lines:
            s.sendall(line + b"\n")
            while b"\n" not in buf:
                chunk = s.recv(1 << 20)
                assert chunk, f"server closed the connection after {line[:80]!r}"
                buf += chunk
            reply, buf = buf.split(b"\n", 1)
            out.append(decode(reply, max_depth=900))  # strict: no NaN/Infinity
    return out


def _assert_alive(stax: Stax, tmp: Path) -> None:
    st = stax("status", "--json", check=True)
    assert st.json()["active"] is None  # type: ignore[index]
    assert stax("list", check=True).code == 0
    log = (tmp / "server.log").read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


@pytest.fixture
def target(workloads: dict[str, Path]) -> Any:
    proc = subprocess.Popen([str(workloads["split"]), "100000"])
    yield proc
    proc.kill()
    proc.wait()


def test_socket_refuses_what_used_to_break_the_server(stax: Stax, tmp_path: Path,
                                                      target: subprocess.Popen[bytes],
                                                      workloads: dict[str, Path]) -> None:
    pid = target.pid
    replies = _lines(
        stax,
        b'{"id":1,"method":"start_attach","params":{"pid":%d,"time_limit_ms":1e400}}' % pid,
        b'{"id":2,"method":"start_attach","params":{"pid":%d,"time_limit_ms":1e308}}' % pid,
        b'{"id":3,"method":"start_attach","params":{"pid":%d,"time_limit_ms":Infinity}}' % pid,
        b'{"id":4,"method":"start_attach","params":{"pid":99999999999999999999}}',
        b'{"id":5,"method":"subscribe","params":{"interval_ms":NaN}}',
        b'{"id":6,"method":"subscribe","params":{"interval_ms":"fast"}}',
        b'{"id":7,"method":"status","params":' + b"[" * 200_000,
        b"[" * 5000 + b"]" * 5000,
        b'{"id":9,"method":"wait","params":{"timeout_ms":1e23}}',
        b'{"id":10,"method":"wait","params":{"for_seconds":-1}}',
    )
    for r in replies:
        assert r["error"]["code"] == "bad_request", r
    assert "nested too deeply" in replies[6]["error"]["message"]
    assert "time_limit_ms" in replies[1]["error"]["message"]
    assert "interval_ms" in replies[5]["error"]["message"]
    _assert_alive(stax, tmp_path)

    # a real run, then the `limit: null` queries that used to be internal errors
    stax("record", "-l", "0.5", "--", str(workloads["split"]), "50", check=True)
    q = [json.dumps({"id": i, "method": m, "params": {"limit": None}}).encode()
         for i, m in enumerate(("top", "threads", "intervals", "wakers"))]
    for r in _lines(stax, *q, b'{"id":9,"method":"subscribe","params":{"interval_ms":1e-9}}'):
        assert "result" in r, r
    _assert_alive(stax, tmp_path)


async def _ws(url: str, texts: list[str]) -> list[Any]:
    own = url.rstrip("/")
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "ws",
                                                          headers={"Origin": own}) as ws:
        out = []
        for t in texts:
            await ws.send_str(t)
            out.append(json.loads((await ws.receive(timeout=20)).data))
        return out


def test_websocket_refuses_deep_nesting_and_nan(stax: Stax, tmp_path: Path) -> None:
    url = stax("status", "--json", check=True).json()["web"]["url"]  # type: ignore[index]
    replies = asyncio.run(_ws(url, [
        '{"id":1,"method":"status","params":' + "[" * 100_000,
        '{"id":2,"method":"subscribe","params":{"interval_ms":NaN}}',
        '{"id":3,"method":"top","params":{"limit":null}}',
    ]))
    assert "nested too deeply" in replies[0]["error"]["message"]
    assert replies[1]["error"]["code"] == "bad_request"
    assert replies[2]["error"]["code"] == "no_run"  # validated, then: nothing recorded yet
    _assert_alive(stax, tmp_path)


BAD_ARGS = [
    ("record", "-p", "PID", "-l", "inf"),
    ("record", "-p", "PID", "-l", "nan"),
    ("record", "-p", "PID", "-l", "1e308"),
    ("record", "-p", "PID", "-l", "-1"),
    ("record", "-p", "99999999999999999999"),
    ("record", "-p", "0"),
    ("wait", "--timeout-ms", "1e23"),
    ("wait", "--timeout-ms", "100000000000000000000000"),
    ("wait", "--for-seconds", "-1"),
    ("wait", "--for-seconds", "nan"),
    ("wait", "--for-seconds", "inf"),
    ("flame", "--threshold-pct", "nan"),
    ("top", "--tid", "99999999999999999999"),
    ("top", "--run", "-3"),
    ("select-run", "1e400"),
]


def test_cli_refuses_bad_numbers(stax: Stax, tmp_path: Path,
                                 target: subprocess.Popen[bytes]) -> None:
    for args in BAD_ARGS:
        argv = [str(target.pid) if a == "PID" else a for a in args]
        r = stax(*argv)  # the runner also asserts there is no traceback
        assert r.code == 1, (argv, r)
        assert r.err.startswith("error: ") and r.err.count("\n") == 1, (argv, r.err)
    _assert_alive(stax, tmp_path)


def test_compare_with_a_deeply_nested_manifest(stax: Stax, tmp_path: Path,
                                               workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["split"]), "30", check=True)
    good = tmp_path / "good.stax"
    stax("save", str(good), check=True)
    bad = tmp_path / "bad.stax"
    bad.mkdir()
    (bad / "stax-archive.json").write_text('{"format":"stax-archive","x":' + "[" * 50_000)
    for a, b in ((str(good), str(bad)), (str(bad), str(good))):
        r = stax("compare", a, b)
        assert r.code == 1 and "nested too deeply" in r.err, r.err
    r = stax("open", str(bad))
    assert r.code == 1 and "nested too deeply" in r.err, r.err
    for cmd in (("status", "--json"), ("list", "--json"), ("diagnose", "--json"),
                ("top", "--json"), ("flame", "--json")):
        decode(stax(*cmd, check=True).out, max_depth=900)  # strict JSON on stdout
    _assert_alive(stax, tmp_path)
