"""The real consumers of stax's exports, as the tests find them: the npm packages `make npmdeps`
installs into build/npm (speedscope's schema, pprof-format, the Firefox Profiler's CLI), node,
and Debian's `go tool pprof`. Each finder returns None or a reason the consumer is missing, so a
test can skip saying exactly what is absent."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import ROOT

NPM_DIR = Path(os.environ.get("STAX_NPM_DIR") or ROOT / "build" / "npm") / "node_modules"
NODE_SCRIPTS = ROOT / "tests" / "consumers"
MISSING = "not installed: run `make npmdeps` (installs scripts/npm-packages.txt into build/npm)"


def npm_package(name: str) -> Path | None:
    d = NPM_DIR / name
    return d if (d / "package.json").exists() else None


def speedscope_schema() -> dict[str, Any] | None:
    """speedscope's file-format-schema.json, from build/npm, SPEEDSCOPE_SCHEMA or a global npm."""
    cands = [os.environ.get("SPEEDSCOPE_SCHEMA", "")]
    pkg = npm_package("speedscope")
    if pkg is not None:
        cands.append(str(pkg / "dist/release/file-format-schema.json"))
    for c in cands:
        if c and os.path.exists(c):
            return json.loads(Path(c).read_text())
    return None


def node() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


def pprof_format_totals(path: Path) -> dict[str, Any]:
    """The pprof file decoded by the pprof-format npm package (tests/consumers/pprof_totals.mjs):
    sample types, each column's total, and its total per leaf function."""
    pkg = npm_package("pprof-format")
    exe = node()
    assert pkg is not None and exe is not None
    p = subprocess.run([exe, str(NODE_SCRIPTS / "pprof_totals.mjs"), str(pkg), str(path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    res: dict[str, Any] = json.loads(p.stdout)
    return res


def go_pprof(path: Path, tmp: Path, *args: str, timeout: float = 180) -> str:
    """What Debian's `go tool pprof ARGS PATH` prints (its caches under ``tmp``); the caller
    has checked that `go` is installed."""
    go = shutil.which("go")
    assert go is not None
    env = dict(os.environ, HOME=str(tmp), GOCACHE=str(tmp / "gocache"), PPROF_TMPDIR=str(tmp))
    p = subprocess.run([go, "tool", "pprof", *args, str(path)], env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout


def go_pprof_top(path: Path, index: str, tmp: Path) -> tuple[int, dict[str, int]]:
    """`go tool pprof -top` of one sample type, every node: (total, flat per function)."""
    out = go_pprof(path, tmp, "-top", f"-sample_index={index}", "-unit=ns", "-nodecount=0",
                   "-nodefraction=0", "-edgefraction=0")
    m = re.search(r"of (\d+)(?:ns)? total", out)
    assert m, out
    flat: dict[str, int] = {}
    row = re.compile(r"^\s*(\d+)(?:ns)?\s+[\d.]+%\s+[\d.]+%\s+\d+(?:ns)?\s+[\d.]+%\s+(.+)$")
    for line in out.splitlines():
        r = row.match(line)
        if r and int(r.group(1)):
            name = r.group(2).strip()
            flat[name] = flat.get(name, 0) + int(r.group(1))
    return int(m.group(1)), flat


class ProfilerCli:
    """The Firefox Profiler's command-line loader (@firefox-devtools/profiler-cli): one daemon
    session holding a loaded profile, its state under ``home``; stopped by ``close``."""

    def __init__(self, home: Path) -> None:
        pkg = npm_package("@firefox-devtools/profiler-cli")
        exe = node()
        assert pkg is not None and exe is not None
        self.argv = [exe, str(pkg / "dist" / "profiler-cli.js")]
        self.env = dict(os.environ, HOME=str(home))
        self.session = "stax-test"
        self.loaded = False

    def run(self, *args: str) -> str:
        p = subprocess.run([*self.argv, *args, "--session", self.session], env=self.env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))

    def load(self, path: Path) -> None:
        """Start the daemon on ``path``; on a busy machine it can take longer to answer than
        the CLI waits (it says so and keeps starting): then wait for it to answer ``status``."""
        p = subprocess.run([*self.argv, "load", str(path), "--session", self.session],
                           env=self.env, capture_output=True, text=True, timeout=120)
        self.loaded = True
        if p.returncode == 0:
            return
        assert "did not become ready" in p.stderr, (p.stdout, p.stderr)
        deadline = time.monotonic() + 90
        while True:
            q = subprocess.run([*self.argv, "status", "--session", self.session], env=self.env,
                               capture_output=True, text=True, timeout=120)
            if q.returncode == 0:
                return
            assert time.monotonic() < deadline, (p.stderr, q.stderr)
            time.sleep(0.5)

    def close(self) -> None:
        """Stop the session's daemon; kill it (the pid it recorded) if it does not answer."""
        if not self.loaded:
            return
        self.loaded = False
        meta = Path(self.env["HOME"]) / ".profiler-cli" / f"{self.session}.json"
        pid = json.loads(meta.read_text()).get("pid") if meta.exists() else None
        p = subprocess.run([*self.argv, "stop", self.session], env=self.env,
                           capture_output=True, timeout=60)
        if p.returncode != 0 and isinstance(pid, int) and pid > 1:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def profiler_cli_problem(home: Path) -> str | None:
    """Why the Firefox Profiler's CLI cannot run here, or None when it can."""
    if node() is None:
        return "node is not installed (Debian nodejs): no Firefox Profiler loader to check with"
    pkg = npm_package("@firefox-devtools/profiler-cli")
    if pkg is None:
        return f"@firefox-devtools/profiler-cli {MISSING}"
    p = subprocess.run([node() or "node", str(pkg / "dist" / "profiler-cli.js"), "--version"],
                       env=dict(os.environ, HOME=str(home)), capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        v = subprocess.run([node() or "node", "--version"], capture_output=True, text=True)
        return (f"@firefox-devtools/profiler-cli does not run on node {v.stdout.strip()}: "
                f"{(p.stderr.strip().splitlines() or ['?'])[-1]}")
    return None


CHROMIUM = "/usr/bin/chromium"
_UNITS_NS = {"ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9, "min": 60e9, "hr": 3600e9}


def speedscope_sandwich(release: Path,
                        doc_path: Path) -> tuple[str, list[tuple[float, float, str]]]:
    """The speedscope app (the npm package's dist/release, served on loopback) opened on an
    export in headless Chromium: the active profile's name and its Sandwich table, rows of
    (total ns, self ns, symbol) as the app prints them (two decimals of its unit)."""
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    root = doc_path.parent / "speedscope-app"
    shutil.copytree(release, root)
    shutil.copy(doc_path, root / "profile.json")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM,
                                   args=["--headless", "--no-sandbox", "--disable-gpu"])
            try:
                page = b.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{base}/index.html#profileURL={base}/profile.json")
                page.wait_for_function("document.title !== 'speedscope'", timeout=60_000)
                page.get_by_text("Sandwich").click()
                page.wait_for_selector("text=Symbol Name", timeout=30_000)
                text = page.inner_text("body")
                assert not errors, errors
            finally:
                b.close()
    finally:
        srv.shutdown()
    lines = [x.strip() for x in re.split(r"[\n\t]", text) if x.strip()]
    head = lines.index("Total")
    name = next(x for x in lines[:head] if x.endswith(")") and "(" in x and "/" in x)
    rows = []
    body = lines[head + 3:]
    for i in range(0, len(body) - 2, 3):
        rows.append((_ns(body[i]), _ns(body[i + 1]), body[i + 2]))
    return name, rows


def _ns(cell: str) -> float:
    m = re.match(r"([\d.]+)\s*([a-zµ]+)", cell)
    assert m, cell
    return float(m.group(1)) * _UNITS_NS[m.group(2)]
