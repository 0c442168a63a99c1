"""The web UI in a real browser (Playwright driving Debian's Chromium) against a real server.

Each test saves a screenshot of the page under its temporary directory (``screenshot.png``).
"""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Stax
from python_helpers import PYTHONS, workload

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
        """Poll ``js`` until it is truthy. Not ``wait_for_function``: that evaluates strings
        with ``eval``, which the page's Content-Security-Policy (rightly) forbids."""
        deadline = time.monotonic() + WAIT_MS / 1000
        fn = (f"a => !!(({js})(a))" if js.lstrip().split("=>")[0].strip().isidentifier()
              else f"() => !!({js})")
        while True:
            try:
                if self.page.evaluate(fn, arg):
                    return True
            except Exception as e:  # a navigation replaced the page: ask the new one
                if "context was destroyed" not in str(e) and "navigat" not in str(e):
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {js}")
            time.sleep(0.05)

    def top_funcs(self) -> list[str]:
        return self.page.eval_on_selector_all("#top tbody td.fn", "els => els.map(e => e.title)")

    def wait_top(self, js_pred: str) -> None:
        """Wait until a predicate over the top table's function names holds."""
        self.wait(f"(() => {{ const f = [...document.querySelectorAll('#top tbody td.fn')]"
                  f".map(e => e.title); return ({js_pred}); }})()")


@pytest.fixture
def without_tracefs() -> None:
    """Requested by a test whose server must record on-CPU samples only (no off-CPU data)."""


@pytest.fixture
def stax_env(stax_env: dict[str, str], request: pytest.FixtureRequest,
             tmp_path: Path) -> dict[str, str]:
    if "without_tracefs" in request.fixturenames:
        stax_env["STAX_TRACEFS"] = str(tmp_path / "no-tracefs")
        stax_env["STAX_SWITCH_RECORDS"] = "0"
    if "token_bind" in request.fixturenames:
        stax_env["STAX_SERVER_WS_BIND"] = "0.0.0.0:0"
    return stax_env


@pytest.fixture
def token_bind() -> None:
    """Requested by a test whose server binds 0.0.0.0, so that it requires its token."""


@pytest.fixture
def ui(browser: Any, stax: Stax, tmp_path: Path) -> Iterator[Page]:
    web = stax("status", "--json", check=True).json()["web"]  # type: ignore[index]
    assert web["url"], web
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    p = Page(page, web["url"].replace("//0.0.0.0:", "//127.0.0.1:"))
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
    # the flamegraph renders in the same refresh, after the top table: wait for it too
    ui.wait("document.querySelectorAll(\".frame[data-name='late_work']\").length === 1")
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


def test_timeline_draws_the_runs_marks(ui: Page, stax: Stax,
                                      workloads: dict[str, Path]) -> None:
    proc = stax.record_bg("--", str(workloads["phases"]), "0.8", samples=20)
    try:
        stax("mark", "<mid & late>", check=True)  # escaped by the page, not markup
    finally:
        assert proc.wait(60) == 0
    at = stax("status", "--json", check=True).json()["current"]["marks"][0]["time_ns"]
    ui.open()
    ui.wait("document.querySelector('#timeline g.mark')")
    mark = ui.page.locator("#timeline g.mark")
    assert mark.count() == 1 and mark.get_attribute("data-label") == "<mid & late>"
    assert mark.locator("text").text_content() == "<mid & late>"
    # drawn where the mark was put: its share of the timeline's span
    span = float(ui.page.get_attribute("#timeline", "data-span") or 0)
    x = float(mark.locator("line").get_attribute("x1") or 0)
    assert span > 0 and abs(x - at / span * 1000) < 2, (x, at, span)
    assert ui.errors == []


def test_thread_selection_scopes_every_view(ui: Page, stax: Stax, workloads: dict[str, Path],
                                            without_tracefs: None) -> None:
    # on-CPU samples only: every panel must cope with a run that has no off-CPU data
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


OFFCPU = (os.path.exists("/sys/kernel/tracing/events/sched/sched_switch")
          or os.geteuid() == 0)


def _ms(text: str) -> float:
    """A duration as the page prints it (``12.3 ms`` or ``12.3 s``) in milliseconds."""
    value, unit = text.split()[:2]
    return float(value) * (1000.0 if unit == "s" else 1.0)


@pytest.mark.skipif(not OFFCPU, reason="no tracefs and not root: off-CPU capture unavailable")
def test_offcpu_threads_reasons_blocked_stack_and_wakers(
        ui: Page, stax: Stax, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["threads"]), check=True, timeout=120)
    ui.open()
    page = ui.page
    assert "intervals (" in page.inner_text("#status")
    assert page.inner_text("#threads-note") == ""
    assert int(page.get_attribute("#status", "data-intervals") or 0) > 10
    row = "#threads tr[data-name='{}']"
    blocked = {n: page.inner_text(row.format(n) + " td.blocked").split()[0]
               for n in ("sleeper", "waiter", "holder", "cruncher")}
    assert blocked["sleeper"] == "sleep" and blocked["waiter"] == "lock", blocked
    # sleeper: 15 x 100 ms asleep, next to nothing on the CPU; cruncher the reverse
    assert _ms(page.inner_text(row.format("sleeper") + " td:nth-child(4)")) >= 1400
    assert _ms(page.inner_text(row.format("sleeper") + " td:nth-child(3)")) < 100
    assert _ms(page.inner_text(row.format("cruncher") + " td:nth-child(3)")) >= 500
    assert "sleep:" in (page.get_attribute(row.format("sleeper") + " td.blocked", "title") or "")
    # off-CPU flamegraph of the sleeper: its blocked stack, weighted by blocked time
    page.locator(".modes button[data-mode='offcpu']").click()
    page.locator(row.format("sleeper")).click()
    ui.wait("document.querySelector(\".frame[data-name*='nanosleep']\") && "
            "!document.querySelector(\".frame[data-name='waiter']\")")
    assert "off-CPU:" in page.inner_text("#flame-info")
    # all of its blocked time is in sleep (asked of the flamegraph as it finally renders: an
    # earlier render may still be replaced while the thread's data arrives)
    ui.wait("(() => { const n = document.querySelector(\".frame[data-name*='nanosleep']\");"
            " const w = document.querySelector('#flame').getBoundingClientRect().width;"
            " return n && n.getBoundingClientRect().width > 0.9 * w; })()")
    assert page.locator(".frame[data-name^='burn_cpu']").count() == 0
    assert "sleep" in page.inner_text("#intervals")
    # the waiter was woken by holder releasing the mutex; its intervals say lock
    page.locator(row.format("waiter")).click()
    ui.wait("document.querySelector(\"#wakers tr[data-waker='holder'][data-wakee='waiter']\")")
    ui.wait("document.querySelector('#intervals').textContent.includes('lock')")
    ui.wait("document.querySelector(\".frame[data-name*='futex']\") && "
            "!document.querySelector(\".frame[data-name='sleeper']\")")
    # wall mode holds both the cruncher's CPU time and the blocked threads
    page.locator("#scope button[data-clear='tid']").click()
    page.locator(".modes button[data-mode='wall']").click()
    ui.wait("document.querySelector('#flame-info').textContent.startsWith('wall:')")
    ui.wait("document.querySelector(\".frame[data-name^='burn_cpu']\") && "
            "document.querySelector(\".frame[data-name='sleeper']\")")
    assert ui.errors == []


_CONTRAST = """el => {
    // [r, g, b, a] in 0..1 from rgb()/rgba() or color(srgb ...)
    const parse = (c) => {
        const n = (c.match(/[\\d.]+/g) || []).map(Number);
        const srgb = c.startsWith('color(');
        const v = srgb ? n.slice(0, 3) : n.slice(0, 3).map(x => x / 255);
        return [...v, n.length > 3 ? n[3] : 1];
    };
    // the element's background composited over its ancestors' down to an opaque one
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c[3] > 0) layers.push(c);
        if (c[3] >= 1) break;
    }
    let bg = [1, 1, 1];
    for (const c of layers.reverse()) bg = bg.map((x, i) => c[i] * c[3] + x * (1 - c[3]));
    const lum = (v) => {
        const l = v.map(x => x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4);
        return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
    };
    const a = lum(parse(getComputedStyle(el).color).slice(0, 3)), b = lum(bg);
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def test_annotate_pane_shows_instructions_samples_and_source(
        ui: Page, stax: Stax, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["split"]), "300", check=True, timeout=120)
    ui.open()
    page = ui.page
    page.locator("#top tbody tr", has_text="work_a").first.click()
    ui.wait("document.querySelector('#annotate tr.ins.hot')")
    head = page.inner_text("#annotate-func")
    assert "work_a" in head and "split" in head and "matched by exact" in head, head
    counts = page.inner_text("#annotate-counts")
    assert "unplaced" in counts, counts
    placed = int(counts.split()[0])
    rows = page.eval_on_selector_all(
        "#annotate tr.ins", "els => els.map(e => [Number(e.dataset.samples), "
        "e.querySelector('td.addr').textContent, e.querySelector('td.text').textContent])")
    assert len(rows) > 5 and all(addr.startswith("0x") and text for _, addr, text in rows)
    assert sum(s for s, _, _ in rows) == placed > 0
    hot = [r for r in rows if r[0] > 0]
    assert page.locator("#annotate tr.ins.hot").count() == len(hot)
    # source headers: split.c lines with their text; the loop of spin() holds the samples
    src = page.eval_on_selector_all(
        "#annotate tr.src", "els => els.map(e => [e.querySelector('td.loc').textContent, "
        "e.querySelector('td.code').textContent])")
    assert src and all(loc.startswith("split.c:") for loc, _ in src), src
    assert any("acc" in code for _, code in src), src
    # readable in both colour schemes
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for sel in ("#annotate tr.src td.code", "#annotate tr.ins.hot td.text", "#status"):
            ratio = page.eval_on_selector_all(sel, f"els => Math.min(...els.map({_CONTRAST}))")
            assert ratio >= 4.5, (scheme, sel, ratio)
    assert ui.errors == []


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.11-3.13 here")
def test_annotate_pane_shows_a_python_functions_lines(ui: Page, stax: Stax) -> None:
    prog = workload("pysplit.py")
    src = prog.read_text().splitlines()
    first = next(i for i, x in enumerate(src, 1) if x.startswith("def heavy("))
    stax("record", "--", PYTHONS[0].path, str(prog), "1.5", check=True, timeout=120)
    want = stax("annotate", "heavy", "--json", check=True).json()
    ui.open()
    page = ui.page
    page.locator("#top tbody tr", has_text="heavy").first.click()
    ui.wait("document.querySelector('#annotate tr.pyline.hot')")
    head = page.inner_text("#annotate-func")
    assert "heavy" in head and f"pysplit.py:{first}, Python" in head, head
    assert f"{want['python_self_samples']} samples as the innermost Python function" in head
    rows = page.eval_on_selector_all(
        "#annotate tr.pyline", "els => els.map(e => [Number(e.dataset.line), "
        "Number(e.dataset.samples), e.querySelector('td.text').textContent])")
    # the function's lines with their text and samples, as the CLI gives them
    assert [r[0] for r in rows] == list(range(first, first + 5)), rows
    assert [r[2] for r in rows] == src[first - 1:first + 4], rows
    assert [r[1] for r in rows] == [x["samples"] for x in want["lines"]], rows
    hottest = max(rows, key=lambda r: r[1])
    assert "x += i * i % 7" in hottest[2], rows
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        ratio = page.eval_on_selector_all("#annotate tr.pyline.hot td.text",
                                          f"els => Math.min(...els.map({_CONTRAST}))")
        assert ratio >= 4.5, (scheme, ratio)
    assert ui.errors == []


def test_token_bind_page_keeps_its_token_out_of_the_address_bar(
        token_bind: None, ui: Page, stax: Stax) -> None:
    token = ui.url.split("?token=", 1)[1]
    ui.open()  # rendered: its files and the WebSocket got the token
    page = ui.page
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('stax-token')") == token
    assert ui.errors == []
    # a reload asks without the token: the 403 page reopens it with the one the tab kept
    page.evaluate("window.__stax.renders = 0")
    page.reload()
    ui.wait("window.__stax && window.__stax.renders > 0")
    assert "token" not in page.url
    assert all("403" in e for e in ui.errors), ui.errors
    # a page on a tab without the token gets the 403 page, not the UI
    other = page.context.new_page()
    r = other.goto(ui.url.split("?", 1)[0])
    assert r is not None and r.status == 403
    assert "stax status" in other.inner_text("body")
    other.close()
