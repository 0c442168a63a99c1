"""GET /export?format=F&run=N on the web endpoint: a run's export as a download.

The same path as `stax export`: the run is saved to a temporary archive through the server's own
`save` RPC, then converted by stax.archive.export (or, for format=archive, the archive itself is
sent). The request has passed the web endpoint's guard first (peer uid or token), like every other.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

FORMATS = ("pprof", "speedscope", "gecko", "folded", "archive")
SUFFIX = {"pprof": ".pb.gz", "speedscope": ".speedscope.json", "gecko": ".gecko.json",
          "folded": ".folded", "archive": ".stax"}
TYPES = {"pprof": "application/octet-stream", "speedscope": "application/json",
         "gecko": "application/json", "folded": "text/plain", "archive": "application/octet-stream"}


def _bad(text: str) -> web.Response:
    from aiohttp import web

    return web.Response(status=400, text=f"error: {text}\n",
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


def _convert(fmt: str, path: str) -> bytes:
    if fmt == "archive":
        with open(path, "rb") as f:
            return f.read()
    from stax.archive.export import converter
    from stax.archive.format import intervals_of, load

    a = load(path)
    return converter(fmt)(a.profile, None, intervals_of(a), a.run)


async def export_response(request: web.Request,
                          handle_line: Callable[[str], Awaitable[dict]]) -> web.Response:
    from aiohttp import web

    fmt = request.query.get("format", "")
    if fmt not in FORMATS:
        return _bad(f"format must be one of: {', '.join(FORMATS)}")
    params: dict[str, object] = {}
    run = request.query.get("run")
    if run is not None:
        if not run.isdigit() or len(run) > 12:
            return _bad("run must be a run id (a positive integer)")
        params["run"] = int(run)
    tmp = tempfile.mkdtemp(prefix="stax-webexport-")
    try:
        params["path"] = os.path.join(tmp, "run.stax")
        params["format"] = "file"  # the single-file form: what format=archive sends
        resp = await handle_line(json.dumps({"id": 1, "method": "save", "params": params}))
        if "error" in resp:
            err = resp["error"]
            status = 404 if err.get("code") in ("no_run", "not_found") else 400
            return web.Response(status=status, text=f"error: {err.get('message')}\n",
                                headers={"Cache-Control": "no-store"})
        run_id = resp["result"]["run"]["id"]
        try:
            data = await asyncio.to_thread(_convert, fmt, resp["result"]["path"])
        except Exception as e:  # a broken archive: a clear error line, never a traceback page
            return web.Response(status=500, text=f"error: cannot export run {run_id}: {e}\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    name = f"stax-run-{run_id}{SUFFIX[fmt]}"
    return web.Response(body=data, headers={
        "Content-Type": TYPES[fmt], "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
