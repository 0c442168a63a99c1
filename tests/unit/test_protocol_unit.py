"""The RPC surface: every method is handled, documented, and bad requests get error replies."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from harness import ROOT

from stax import protocol
from stax.server.daemon import Server


def test_every_protocol_method_is_handled_and_documented(tmp_path: Path) -> None:
    server = Server(str(tmp_path / "s.sock"))
    assert set(server.handlers) == set(protocol.METHODS)
    doc = (ROOT / "docs" / "protocol.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", doc, re.M))
    documented |= set(re.findall(r"^`([a-z_]+)` —", doc, re.M))
    assert set(protocol.METHODS) <= documented, set(protocol.METHODS) - documented


def test_bad_requests_get_error_replies(tmp_path: Path) -> None:
    server = Server(str(tmp_path / "s.sock"))

    async def go() -> list[dict]:
        lines = [b"{", b"[]", b'{"id": 3, "method": "nope"}',
                 b'{"id": 4, "method": "top", "params": []}',
                 b'{"id": 5, "method": "top", "params": {"tid": "x"}}',
                 b'{"id": 6, "method": "top", "params": {"sort": "up"}}',
                 b'{"id": 7, "method": "start_attach", "params": {"pid": 1, "frequency": 0}}',
                 b'{"id": 8, "method": "wait", "params": {"for_samples": 1, "for_seconds": 1}}',
                 b'{"id": 9, "method": "top"}']
        return [await server.handle_line(x) for x in lines]

    replies = asyncio.run(go())
    codes = [r["error"]["code"] for r in replies]
    assert codes == ["bad_request", "bad_request", "unknown_method", "bad_request",
                     "bad_request", "bad_request", "bad_request", "bad_request", "no_run"]
    assert replies[2]["id"] == 3
