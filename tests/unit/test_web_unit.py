"""The web endpoint's pieces without a server: parsing STAX_SERVER_WS_BIND. The endpoint itself
(static files, WebSocket, Origin check, subscriptions) is tested in e2e/test_web_server_e2e.py."""

from __future__ import annotations

import pytest


def test_bind_parsing() -> None:
    from stax.server.web import parse_bind

    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind("[::1]:0") == ("::1", 0)
    assert parse_bind("localhost:9000") == ("localhost", 9000)
    for bad in ("8080", ":8080", "host:", "host:http", "host:70000"):
        with pytest.raises(ValueError):
            parse_bind(bad)
