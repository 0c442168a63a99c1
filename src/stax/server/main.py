"""Entry point of ``stax-server``: arguments, logging, then the asyncio daemon.

Runs in the foreground; ``stax record`` starts it detached when none is running.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from stax import __version__, paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stax-server",
                                 description="Host stax recordings and answer queries.")
    ap.add_argument("--socket", help="Unix socket path (default: SPEC §2 resolution: "
                    "$STAX_SERVER_SOCKET, $XDG_RUNTIME_DIR/stax-server.sock, "
                    "/tmp/stax-server-$UID.sock)")
    ap.add_argument("--log-file", help="append logs to this file instead of stderr")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ap.add_argument("--version", action="version", version=f"stax-server {__version__}")
    args = ap.parse_args(argv)
    level = logging.DEBUG if (args.verbose or os.environ.get("STAX_LOG")) else logging.INFO
    handler: logging.Handler
    handler = logging.StreamHandler(sys.stderr)
    if args.log_file:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.log_file)), exist_ok=True)
            handler = logging.FileHandler(args.log_file)
        except OSError as e:  # a read-only or full disk: keep serving, log to stderr
            print(f"warning: cannot write the log {args.log_file}: {e.strerror or e}",
                  file=sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    from stax.server.daemon import run_server

    return run_server(args.socket or paths.server_socket())


if __name__ == "__main__":
    sys.exit(main())
