"""The browser endpoint without a browser: static files, the WebSocket protocol, the Origin check,
subscriptions (WebSocket and Unix socket), and a taken port that must not stop the server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import Stax, isolated_env, start_server, stop_server


def web_url(stax: Stax) -> str:
    web = stax("status", "--json", check=True).json()["web"]  # type: ignore[index]
    assert web["error"] is None, web
    assert web["url"].startswith("http://127.0.0.1:")
    return web["url"]


def test_status_names_the_web_ui_and_the_page_is_served(stax: Stax) -> None:
    url = web_url(stax)
    text = stax("status", check=True).out
    assert f"web UI: {url}" in text
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert "text/html" in r.headers["Content-Type"]
        page = r.read().decode()
    assert '<script type="module" src="/static/app.js">' in page
    # app.js imports the other modules (as ./NAME.js): every file the package ships is served
    shipped = [f.name for f in resources.files("stax.web").iterdir()
               if f.name.endswith((".js", ".css"))]
    assert {"app.js", "api.js", "flame.js", "style.css"} <= set(shipped)
    for name in shipped:
        with urllib.request.urlopen(url + "static/" + name, timeout=10) as r:
            assert r.status == 200
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            assert r.headers["Content-Type"].startswith(kind), name
            body = r.read().decode()
        for imported in re.findall(r'from "\./([\w.-]+)";', body):
            assert imported in shipped, (name, imported)
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(url + "static/..%2Fdaemon.py", timeout=10)
    assert ei.value.code == 404


async def _ws_calls(url: str, origin: str | None, reqs: list[dict[str, Any]]) -> list[Any]:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "ws", headers=headers) as ws:
        out = []
        for req in reqs:
            await ws.send_str(json.dumps(req))
            out.append(json.loads((await ws.receive(timeout=20)).data))
        return out


def test_websocket_speaks_the_same_protocol(stax: Stax) -> None:
    url = web_url(stax)
    own = url.rstrip("/")
    replies = asyncio.run(_ws_calls(url, own, [
        {"id": 1, "method": "hello"},
        {"id": "x", "method": "top"},
        {"id": 3, "method": "nope"},
    ]))
    assert replies[0]["id"] == 1 and replies[0]["result"]["server"] == "stax-server"
    assert replies[0]["result"]["web"]["url"] == url
    assert replies[1] == {"id": "x", "error": {"code": "no_run", "message": replies[1]["error"][
        "message"]}}
    assert replies[2]["error"]["code"] == "unknown_method"
    # an upgrade must name its Origin (browsers always do; scripts must too);
    # localhost is the same loopback origin
    port = url.rsplit(":", 1)[1].rstrip("/")
    with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
        asyncio.run(_ws_calls(url, None, [{"id": 1, "method": "hello"}]))
    assert ei.value.status == 403
    assert asyncio.run(_ws_calls(url, f"http://localhost:{port}",
                                 [{"id": 1, "method": "hello"}]))[0]["result"]


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1",
                                    "https://127.0.0.1", "null"])
def test_foreign_origin_websocket_upgrade_is_refused(stax: Stax, origin: str) -> None:
    url = web_url(stax)
    with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
        asyncio.run(_ws_calls(url, origin, [{"id": 1, "method": "status"}]))
    assert ei.value.status == 403


async def _subscribe_ws(url: str, n_updates: int) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.ws_connect(
            url + "ws", headers={"Origin": url.rstrip("/")}) as ws:
        await ws.send_str(json.dumps({"id": 1, "method": "subscribe",
                                      "params": {"interval_ms": 200}}))
        events = []
        while len(events) < n_updates:
            msg = json.loads((await ws.receive(timeout=20)).data)
            if msg.get("event") == "update":
                events.append(msg)
            else:
                assert msg["id"] == 1 and msg["result"]["subscription"] >= 1, msg
        return events


def test_subscription_pushes_updates_while_a_run_records(stax: Stax,
                                                         workloads: dict[str, Path]) -> None:
    url = web_url(stax)
    proc = stax.record_bg("--", str(workloads["spin"]), "20", samples=20)
    try:
        events = asyncio.run(_subscribe_ws(url, 4))
    finally:
        stax("stop")
        proc.wait(30)
    samples = [e["active"]["samples"] for e in events if e["active"]]
    assert len(samples) >= 3, events
    assert samples[-1] > samples[0], samples  # live: the counts moved between pushes
    assert all(e["current"]["state"] == "recording" for e in events if e["active"])


def test_subscription_over_the_unix_socket(stax: Stax, workloads: dict[str, Path]) -> None:
    proc = stax.record_bg("--", str(workloads["spin"]), "20", samples=20)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(stax.env["STAX_SERVER_SOCKET"])
        s.sendall(b'{"id":7,"method":"subscribe","params":{"interval_ms":100}}\n')
        f = s.makefile("rb")
        first = json.loads(f.readline())
        assert first["id"] == 7 and first["result"]["active"]["state"] == "recording"
        sid = first["result"]["subscription"]
        ev = json.loads(f.readline())
        assert ev["event"] == "update" and ev["subscription"] == sid
        s.sendall(json.dumps({"id": 8, "method": "unsubscribe",
                              "params": {"subscription": sid}}).encode() + b"\n")
        while (msg := json.loads(f.readline())).get("event"):
            pass
        assert msg == {"id": 8, "result": {"subscription": sid}}
        s.close()
    finally:
        stax("stop")
        proc.wait(30)


def test_taken_port_leaves_the_unix_socket_working(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    env = isolated_env(tmp_path)
    env["STAX_SERVER_WS_BIND"] = f"127.0.0.1:{port}"
    proc = start_server(env, tmp_path)
    try:
        runner = Stax(env, tmp_path)
        st = runner("status", "--json", check=True).json()
        assert st["web"]["url"] is None  # type: ignore[index]
        assert f"127.0.0.1:{port}" in st["web"]["error"]  # type: ignore[index]
        assert "web UI unavailable" in runner("status", check=True).out
        assert proc.poll() is None
    finally:
        stop_server(proc)
        blocker.close()
    assert "web UI unavailable" in (tmp_path / "server.log").read_text()


def test_bad_bind_is_reported_not_fatal(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["STAX_SERVER_WS_BIND"] = "no-port-here"
    proc = start_server(env, tmp_path)
    try:
        st = Stax(env, tmp_path)("status", "--json", check=True).json()
        assert "STAX_SERVER_WS_BIND" in st["web"]["error"]  # type: ignore[index]
    finally:
        stop_server(proc)
