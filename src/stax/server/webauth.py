"""Who may use the browser endpoint: the peer-uid check for loopback binds, the per-server token
for other binds, and the Host and Origin rules (docs/security.md states the model).

- Loopback bind: a TCP connection is served only when the socket at the other end belongs to
  the server's own uid or to root. Linux lists every TCP socket with its owner in
  ``/proc/net/tcp`` and ``/proc/net/tcp6``; the peer's socket is the entry whose local address
  is the peer's address and whose remote address is ours.
- Any other bind: every request carries the server's secret token (``?token=``, or an
  ``Authorization: Bearer`` header), compared in constant time.
- Every request: the Host header names the bound address, a loopback literal or ``localhost``
  (or, bound to a wildcard or LAN address, an IP literal or this machine's hostname): never an
  arbitrary DNS name, which a foreign site could rebind to this address.
- WebSocket upgrades: Origin is required and must be the page's own origin (``http://`` +
  Host).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import secrets
import socket
import sys
import tempfile

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
TOKEN_PARAM = "token"
_TIME_WAIT = "06"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return _unmap(ipaddress.ip_address(host)).is_loopback
    except ValueError:
        return False


def _unmap(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it maps."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# --- the peer's uid --------------------------------------------------------------------------

def _decode_addr(text: str) -> tuple[IPAddress, int]:
    """``0100007F:1F90`` (tcp) or 32 hex digits ``:PORT`` (tcp6) into an address and a port.

    The kernel prints each 32-bit word of the address (network byte order in memory) as a
    native-endian integer; the port is printed as a number."""
    hexaddr, _, hexport = text.partition(":")
    words = [int(hexaddr[i:i + 8], 16).to_bytes(4, sys.byteorder)
             for i in range(0, len(hexaddr), 8)]
    raw = b"".join(words)
    ip: IPAddress = (ipaddress.IPv4Address(raw) if len(raw) == 4
                     else ipaddress.IPv6Address(raw))
    return _unmap(ip), int(hexport, 16)


def _endpoint(addr: object) -> tuple[IPAddress, int] | None:
    """A transport's peername/sockname tuple as a (normalised address, port) pair."""
    if not isinstance(addr, tuple) or len(addr) < 2:
        return None
    try:
        return _unmap(ipaddress.ip_address(str(addr[0]).split("%")[0])), int(addr[1])
    except ValueError:
        return None


def peer_uid(peer: object, local: object,
             tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")) -> int | None:
    """The uid owning the socket at the other end of a local TCP connection, from the kernel's
    socket tables; None when it is not found or ambiguous (the caller refuses)."""
    p, ours = _endpoint(peer), _endpoint(local)
    if p is None or ours is None:
        return None
    uids: set[int] = set()
    for table in tables:
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] == _TIME_WAIT:
                continue
            try:
                if _decode_addr(fields[1]) == p and _decode_addr(fields[2]) == ours:
                    uids.add(int(fields[7]))
            except ValueError:
                continue
    return uids.pop() if len(uids) == 1 else None


# --- Host and Origin -------------------------------------------------------------------------

def split_host(host: str) -> tuple[str, int | None] | None:
    """A Host header value into a lower-case name and an optional port; None if malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_s = rest[1:]
    elif host.count(":") == 1:
        name, _, port_s = host.partition(":")
    elif ":" in host:
        return None
    else:
        name, port_s = host, ""
    if not name:
        return None
    if port_s:
        if not port_s.isdigit() or int(port_s) > 65535:
            return None
        return name, int(port_s)
    return name, None


def host_allowed(name: str, bound: str) -> bool:
    """Whether a request's Host name may reach a server bound to ``bound``."""
    if name == "localhost" or name == bound:
        return True
    try:
        ip = _unmap(ipaddress.ip_address(name))
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return True
    if is_loopback(bound):
        return False
    # a wildcard or LAN bind, for a browser on another machine: any IP literal (a literal
    # cannot be rebound) on a wildcard bind, and this machine's own hostname
    if ip is not None and bound in ("0.0.0.0", "::"):
        return True
    return name == socket.gethostname().lower()


def origin_allowed(origin: str | None, host_header: str, port: int) -> bool:
    """A WebSocket upgrade's Origin must be a page of this server: the scheme and the Host it
    asked (so a tunnelled port works too), or a loopback name with the bound port. A browser
    always sends Origin on an upgrade; a missing one is refused."""
    if not origin:
        return False
    host = host_header.strip().lower()
    origin = origin.strip().lower()
    if origin in (f"http://{host}", f"https://{host}"):
        return True
    scheme, sep, rest = origin.partition("://")
    parsed = split_host(rest) if sep and scheme == "http" else None
    return parsed is not None and parsed[1] == port and is_loopback(parsed[0])


# --- the token -------------------------------------------------------------------------------

def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(given: str | None, token: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def write_token(path: str, token: str) -> None:
    """Write the token to ``path``, mode 0600, atomically (never through an existing link)."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".stax-token.", dir=d)  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_token(path: str, token: str) -> None:
    """Remove the token file if it still holds this server's token (never another's)."""
    with contextlib.suppress(OSError):
        with open(path) as f:
            if f.read().strip() != token:
                return
        os.unlink(path)
