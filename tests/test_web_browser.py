"""The web UI in a real browser (Playwright driving Debian's Chromium) against a real server.

Each test saves a screenshot of the page under its temporary directory (``screenshot.png``).
"""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Stax

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is absent (Debian package chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A browser page on one server's web UI, collecting console errors."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self) -> None:
        self.page.goto(self.url)
        self.wait("window.__stax && window.__stax.renders > 0")

    def wait(self, js: str, arg: Any = None) -> Any:
        return self.page.wait_for_function(js, arg=arg, timeout=WAIT_MS)

    def top_funcs(self) -> list[str]:
        return self.page.eval_on_selector_all("#top tbody td.fn", "els => els.map(e => e.title)")

    def wait_top(self, js_pred: str) -> None:
        """Wait until a predicate over the top table's function names holds."""
        self.wait(f"(() => {{ const f = [...document.querySelectorAll('#top tbody td.fn')]"
                  f".map(e => e.title); return ({js_pred}); }})()")


@pytest.fixture
def ui(browser: Any, stax: Stax, tmp_path: Path) -> Iterator[Page]:
    web = stax("status", "--json", check=True).json()["web"]  # type: ignore[index]
    assert web["url"], web
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    p = Page(page, web["url"])
    try:
        yield p
    finally:
        try:
            page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
        finally:
            ctx.close()


def record_phases(stax: Stax, workloads: dict[str, Path], secs: str = "0.8") -> None:
    stax("record", "--", str(workloads["phases"]), secs, check=True, timeout=120)


def test_page_loads_without_console_errors(ui: Page, stax: Stax,
                                           workloads: dict[str, Path]) -> None:
    ui.open()
    assert "no runs yet" in ui.page.inner_text("#status")
    record_phases(stax, workloads, "0.3")
    ui.wait("document.querySelector('#status').dataset.state === 'stopped'")
    ui.wait_top("f.includes('early_work')")
    assert ui.page.locator(".frame[data-name='late_work']").count() == 1
    assert ui.errors == []


def test_cli_recording_appears_and_updates_live(ui: Page, stax: Stax,
                                                workloads: dict[str, Path]) -> None:
    ui.open()
    ui.page.evaluate("window.__notReloaded = true")
    proc = stax.record_bg("--", str(workloads["spin"]), "30", samples=10)
    try:
        ui.wait("document.querySelector('#status').dataset.state === 'recording'")
        first = int(ui.page.get_attribute("#status", "data-samples") or 0)
        renders = ui.page.evaluate("window.__stax.renders")
        ui.wait("n => Number(document.querySelector('#status').dataset.samples) > n + 100",
                first)
        ui.wait("n => window.__stax.renders >= n + 2", renders)
        ui.wait_top("f.includes('spin_hot')")
        assert ui.page.evaluate("window.__notReloaded") is True
        assert "recording" in ui.page.inner_text("#status")
    finally:
        stax("stop")
        proc.wait(30)
    ui.wait("document.querySelector('#status').dataset.state === 'stopped'")
    assert ui.errors == []


def test_flame_click_zooms_search_highlights_and_esc_unzooms(
        ui: Page, stax: Stax, workloads: dict[str, Path]) -> None:
    record_phases(stax, workloads)
    ui.open()
    page = ui.page
    flame_w = page.locator("#flame").bounding_box()["width"]
    early = page.locator(".frame[data-name='early_work']")
    assert early.bounding_box()["width"] < 0.8 * flame_w  # shares the width with late_work
    # hover shows name, binary, self and total time
    early.hover()
    tip = page.inner_text("#tooltip")
    assert "early_work" in tip and "binary: phases" in tip and "self:" in tip
    assert "total:" in tip and "%" in tip
    early.click()
    ui.wait("document.querySelector('#flame').dataset.zoom === 'early_work'")
    zoomed = page.locator(".frame[data-name='early_work']")
    assert zoomed.bounding_box()["width"] > 0.95 * flame_w
    assert page.locator(".frame[data-name='late_work']").count() == 0
    assert "zoom: early_work" in page.inner_text("#scope")
    page.keyboard.press("Escape")
    ui.wait("document.querySelector('#flame').dataset.zoom === ''")
    assert page.locator(".frame[data-name='late_work']").count() == 1
    # '/' focuses the search box; matches are highlighted, the rest dimmed
    page.locator("body").press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("LATE_w")
    ui.wait("document.querySelectorAll('.frame.match').length === 1")
    assert page.locator(".frame.match").get_attribute("data-name") == "late_work"
    assert "frames" in page.inner_text("#search-info")
    page.keyboard.press("Escape")
    ui.wait("document.querySelectorAll('.frame.match').length === 0")
    assert ui.errors == []


def _brush(ui: Page, a: float, b: float) -> None:
    box = ui.page.locator("#timeline").bounding_box()
    y = box["y"] + box["height"] / 2
    ui.page.mouse.move(box["x"] + a * box["width"], y)
    ui.page.mouse.down()
    ui.page.mouse.move(box["x"] + (a + b) / 2 * box["width"], y, steps=4)
    ui.page.mouse.move(box["x"] + b * box["width"], y, steps=4)
    ui.page.mouse.up()


def test_timeline_brush_scopes_the_top_table(ui: Page, stax: Stax,
                                             workloads: dict[str, Path]) -> None:
    record_phases(stax, workloads)
    ui.open()
    ui.wait_top("f.includes('early_work') && f.includes('late_work')")
    _brush(ui, 0.02, 0.35)  # the first phase: only "early" ran
    ui.wait_top("f[0] === 'early_work' && !f.includes('late_work')")
    assert "–" in ui.page.inner_text("#scope [data-scope='range']")
    assert ui.page.locator(".frame[data-name='late_work']").count() == 0
    _brush(ui, 0.65, 0.98)  # the second phase
    ui.wait_top("f[0] === 'late_work' && !f.includes('early_work')")
    ui.page.locator("#timeline").dblclick()
    ui.wait_top("f.includes('early_work') && f.includes('late_work')")
    assert ui.errors == []


def test_thread_selection_scopes_every_view(ui: Page, stax: Stax,
                                            workloads: dict[str, Path]) -> None:
    record_phases(stax, workloads)
    ui.open()
    page = ui.page
    assert "no off-CPU data in this run" in page.inner_text("#threads-note")
    page.locator("#threads tbody tr", has_text="late").first.click()
    ui.wait_top("f[0] === 'late_work' && !f.includes('early_work')")
    ui.wait("!document.querySelector(\".frame[data-name='early_work']\")")
    assert page.locator(".frame[data-name='late_work']").count() == 1
    assert "(late)" in page.inner_text("#scope [data-scope='tid']")
    assert page.locator("#threads tr.selected td:nth-child(2)").inner_text() == "late"
    # the timeline shows only that thread: nothing in the first phase
    heights = page.eval_on_selector_all(
        "#timeline rect.bar", "els => els.map(e => [Number(e.getAttribute('x')), "
        "Number(e.getAttribute('height'))])")
    early_part = sum(h for x, h in heights if x < 300)
    late_part = sum(h for x, h in heights if x > 700)
    assert late_part > 10 * max(early_part, 1.0), heights
    page.locator("#scope button[data-clear='tid']").click()
    ui.wait_top("f.includes('early_work') && f.includes('late_work')")
    # the off-CPU flame mode says there is no data rather than breaking
    page.locator(".modes button[data-mode='offcpu']").click()
    ui.wait("document.querySelector('#flame-note').textContent.includes('no off-CPU data')")
    # annotate: a table when the server has it, else a plain note
    page.locator("#top tbody tr").first.click()
    ui.wait("document.querySelector('#annotate').textContent.trim().length > 0 && "
            "!document.querySelector('#annotate').textContent.includes('click a function')")
    assert ui.errors == []


def test_recording_started_in_the_browser_shows_in_the_cli(
        ui: Page, stax: Stax, workloads: dict[str, Path]) -> None:
    target = subprocess.Popen([str(workloads["spin"]), "60"])
    try:
        ui.open()
        ui.page.fill("#attach-pid", "999999999")
        ui.page.click("#attach-go")
        ui.wait("document.querySelector('#attach-msg').textContent.length > 0")
        ui.page.fill("#attach-pid", str(target.pid))
        ui.page.click("#attach-go")
        ui.wait("document.querySelector('#status').dataset.state === 'recording'")
        st = stax("status", "--json", check=True).json()
        assert st["active"]["pid"] == target.pid  # type: ignore[index]
        stax("wait", "--for-samples", "50", "--timeout-ms", "20000", check=True)
        ui.wait("Number(document.querySelector('#status').dataset.samples) >= 50")
        ui.page.click("#stop")
        ui.wait("document.querySelector('#status').dataset.state === 'stopped'")
        runs = stax("list", "--json", check=True).json()["runs"]  # type: ignore[index]
        assert runs[-1]["state"] == "stopped" and runs[-1]["end_reason"] == "stopped"
        assert target.poll() is None  # attaching and stopping left the target running
    finally:
        target.kill()
        target.wait()
    assert ui.errors == []


class _OtherSite(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b"<!doctype html><title>other site</title><p>another origin</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_foreign_origin_page_cannot_open_the_websocket(ui: Page) -> None:
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherSite)
    t = threading.Thread(target=other.serve_forever, daemon=True)
    t.start()
    try:
        page = ui.page
        page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        ws_url = ui.url.replace("http://", "ws://") + "ws"
        outcome = page.evaluate("""url => new Promise(resolve => {
            const ws = new WebSocket(url);
            ws.onopen = () => { ws.send(JSON.stringify({id: 1, method: "list_runs"}));
                                ws.onmessage = () => resolve("read data"); };
            ws.onerror = () => resolve("refused");
            setTimeout(() => resolve("timeout"), 10000);
        })""", ws_url)
        assert outcome == "refused"
        # the same request from the stax page itself works
        ui.open()
        assert ui.page.get_attribute("#conn", "class") == "conn up"
    finally:
        other.shutdown()
        other.server_close()
