"""The web UI's defects of the first user trial, in Debian's Chromium against a real server:
shutdown with a tab open, the page's disconnected state and back-off, the flamegraph's height
cap, the sortable and uncapped top table, colours by binary with a legend, the range-scoped
threads panel, the off-CPU hint, hidden launcher wakeups, keyboard use, the header's height,
and no long main-thread task when annotating.

Screenshots (light and dark, 900 and 1400 px wide) are kept as artifacts in
``build/screenshots/`` of the source tree (ignored by git; STAX_SCREENSHOTS names another
directory): pytest's temporary directories are rotated away by later sessions.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import test_web_browser_e2e as web
from harness import ROOT, Stax
from test_web_browser_e2e import CHROMIUM, Page

browser = web.browser  # the fixtures of the browser tests, shared
ui = web.ui

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")


SHOTS = Path(os.environ.get("STAX_SCREENSHOTS") or ROOT / "build" / "screenshots")


def shots(ui: Page, _tmp: Path, name: str) -> None:
    """Screenshots of the page as it is, light and dark, at 900 and 1400 px wide."""
    dest = SHOTS
    dest.mkdir(parents=True, exist_ok=True)
    for width in (900, 1400):
        ui.page.set_viewport_size({"width": width, "height": 700})
        for scheme in ("light", "dark"):
            ui.page.emulate_media(color_scheme=scheme)
            ui.page.wait_for_timeout(150)
            ui.page.screenshot(path=str(dest / f"{name}-{width}-{scheme}.png"))
    ui.page.set_viewport_size({"width": 1280, "height": 1000})
    ui.page.emulate_media(color_scheme="light")


def cli_json(stax: Stax, *args: str) -> Any:
    return stax(*args, "--json", check=True).json()


def test_sigterm_with_a_tab_open_exits_fast_and_the_page_says_disconnected(
        ui: Page, stax: Stax, tmp_path: Path) -> None:
    ui.open()
    ui.wait("document.querySelector('#conn').dataset.state === 'connected'")
    proc = stax.server  # type: ignore[attr-defined]
    t0 = time.monotonic()
    proc.terminate()
    proc.wait(10)
    took = time.monotonic() - t0
    assert took < 2.0, f"stax-server took {took:.2f} s to exit with a tab open"
    assert proc.returncode == 0
    ui.wait("document.querySelector('#conn').dataset.state === 'disconnected'")
    assert ui.page.inner_text("#conn") == "disconnected"
    # back-off: the wait between attempts doubles (0.5, 1, 2, 4 s, ...), never every second
    ui.wait("document.querySelector('#status').textContent.includes('retrying in 4.0 s')")
    assert "retrying in 4.0 s" in ui.page.inner_text("#status")
    shots(ui, tmp_path / "screenshots", "disconnected")


def test_deep_stack_flamegraph_is_capped_and_scrolls(ui: Page, stax: Stax, tmp_path: Path,
                                                     workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["unwindcases"]), "recurse", "400", "109", check=True,
         timeout=120)
    ui.open()
    ui.wait("document.querySelectorAll('.frame[data-name=\"recurse\"]').length > 100")
    box = ui.page.evaluate("""() => { const f = document.querySelector('#flame');
        return {client: f.clientHeight, scroll: f.scrollHeight,
                panel: document.querySelector('#flame-panel').getBoundingClientRect().height,
                top: document.querySelector('#top-panel').getBoundingClientRect().top}; }""")
    assert box["scroll"] > 109 * 18, box  # the whole stack is there ...
    assert box["client"] <= 480, box  # ... in a capped, scrolling box
    assert box["panel"] < 620, box
    assert box["top"] < 1000, box  # the top table is still above the fold at 1000 px
    # colours by binary: the executable's frames share one hue, libc's another; a legend
    legend = ui.page.eval_on_selector_all("#flame-legend .legend-item",
                                          "els => els.map(e => e.textContent)")
    assert "unwindcases" in legend, legend
    hues = ui.page.evaluate("""() => { const h = {};
        for (const d of document.querySelectorAll('.frame:not(.root)')) {
          const m = d.style.background.match(/rgb\\((\\d+), (\\d+), (\\d+)/); if (!m) continue;
          h[d.dataset.name] = m.slice(1).map(Number); }
        return h; }""")
    assert hues["recurse"] and hues["main"], hues
    # keyboard: into the flamegraph, down the stack, Enter zooms into the focused frame
    ui.page.focus("#flame")
    ui.page.keyboard.press("ArrowDown")
    assert ui.page.evaluate("document.activeElement.dataset.name") == "all"
    names = []
    for _ in range(4):
        ui.page.keyboard.press("ArrowDown")
        names.append(ui.page.evaluate("document.activeElement.dataset.name"))
    ui.page.keyboard.press("ArrowUp")
    assert ui.page.evaluate("document.activeElement.dataset.name") == names[-2]
    ui.page.keyboard.press("Enter")
    ui.wait("n => document.querySelector('#flame').dataset.zoom === n", names[-2])
    assert ui.page.inner_text("#scope [data-scope='zoom']").startswith(f"zoom: {names[-2]}")
    shots(ui, tmp_path / "screenshots", "deep-flame")


def test_top_table_sorts_every_column_both_ways_uncapped(ui: Page, stax: Stax, tmp_path: Path,
                                                         workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["phases"]), "0.4", check=True, timeout=120)
    cli = cli_json(stax, "top", "-n", "0")
    ui.open()
    ui.wait_top("f.includes('early_work')")
    info = ui.page.inner_text("#top-info")
    n = int(info.split(" functions")[0].rsplit(" ", 1)[1])
    names = {r["func"] for r in cli["rows"]}
    assert n >= len(names) > 0, (info, len(names))
    for col in ("self", "self_pct", "total", "total_pct", "samples", "func", "binary"):
        for _ in range(2):
            ui.page.click(f"#top th[data-sort='{col}']")
            assert ui.page.inner_text("#top-info") == info  # the count does not follow the sort
            d = ui.page.get_attribute(f"#top th[data-sort='{col}']", "data-dir")
            cells = ui.page.eval_on_selector_all(
                "#top tbody tr", "trs => trs.map(t => [...t.children].map(c => c.textContent))")
            idx = ["self", "self_pct", "total", "total_pct", "samples", "func", "binary"].index(col)
            vals: list[Any] = [c[idx] for c in cells]
            if idx < 5:
                vals = [float(v.split()[0].rstrip("%")) * (1000 if v.endswith(" s") else 1)
                        for v in vals]
                want = sorted(vals, reverse=d == "desc")
            else:
                want = sorted(vals, key=lambda s: s.lower(), reverse=d == "desc")
                vals = [v.lower() for v in vals]
                want = [v.lower() for v in want]
            assert vals == want, (col, d, vals[:10])
            assert len(cells) == min(n, 200)
    # the top rows match the CLI's --json, self descending
    ui.page.click("#top th[data-sort='self']")
    if ui.page.get_attribute("#top th[data-sort='self']", "data-dir") != "desc":
        ui.page.click("#top th[data-sort='self']")
    assert ui.top_funcs()[0] == cli["rows"][0]["func"]
    shots(ui, tmp_path / "screenshots", "top")


def test_range_scopes_threads_and_a_sleeping_thread_gets_a_hint(
        ui: Page, stax: Stax, tmp_path: Path, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["phases"]), "0.5", check=True, timeout=120)
    ui.open()
    ui.wait("document.querySelectorAll('#threads tbody tr[data-name=\"late\"]').length === 1")
    # select the first 40% of the timeline: the "late" thread had not started yet
    box = ui.page.locator("#timeline").bounding_box()
    assert box
    y = box["y"] + box["height"] / 2
    ui.page.mouse.move(box["x"] + 2, y)
    ui.page.mouse.down()
    ui.page.mouse.move(box["x"] + box["width"] * 0.4, y, steps=5)
    ui.page.mouse.up()
    ui.wait("document.querySelector('#scope [data-scope=\"range\"]') !== null")
    ui.wait("document.querySelectorAll('#threads tbody tr[data-name=\"late\"]').length === 0")
    assert ui.page.locator("#threads tbody tr[data-name='early']").count() == 1
    ui.page.keyboard.press("Escape")
    ui.wait("document.querySelectorAll('#threads tbody tr[data-name=\"late\"]').length === 1")
    # the main thread only waits (pthread_join): selecting it explains the empty panels
    threads = cli_json(stax, "threads")["rows"]
    main = next(t for t in threads if t["name"] not in ("early", "late"))
    ui.page.click(f"#threads tbody tr[data-tid='{main['tid']}']")
    ui.wait(f"document.querySelector('#scope [data-scope=\"tid\"]') && "
            f"document.querySelector('#threads tr.selected').dataset.tid === '{main['tid']}'")
    if main["samples"] == 0 and main["offcpu_ns"] > 0:
        ui.wait("document.querySelector('#timeline-note').textContent.includes('was off-CPU')")
        note = ui.page.inner_text("#timeline-note")
        assert note.startswith(f"thread {main['tid']} ({main['name']}) was off-CPU: "), note
    else:  # it ran a little (a loaded machine): no hint
        assert ui.page.inner_text("#timeline-note") == ""
    shots(ui, tmp_path / "screenshots", "threads")


def test_header_fits_at_900_and_launcher_wakeups_are_folded(
        ui: Page, stax: Stax, tmp_path: Path, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["phases"]), "0.2", check=True, timeout=120)
    ui.open()
    ui.wait("document.querySelector('#status').dataset.state === 'stopped'")
    ui.page.set_viewport_size({"width": 900, "height": 700})
    ui.page.wait_for_timeout(200)
    h = ui.page.evaluate("document.querySelector('header').getBoundingClientRect().height")
    assert h <= 80, h
    ui.page.set_viewport_size({"width": 1400, "height": 900})
    # the flamegraph is redrawn to the new width
    ui.wait("Math.abs(parseFloat(document.querySelector('.frame.root').style.width) - "
            "document.querySelector('#flame').clientWidth) < 2")
    legend = ui.page.eval_on_selector_all("#flame-legend .legend-item",
                                          "els => els.map(e => e.textContent)")
    assert "phases" in legend and any(b.startswith("libc") for b in legend), legend
    clip = ui.page.evaluate("""() => { const s = document.querySelector('#top-panel .scroll');
        return [s.scrollWidth, s.clientWidth]; }""")
    assert clip[0] <= clip[1] + 1, clip  # nothing clipped sideways: the binary column shows
    wakers = ui.page.eval_on_selector_all("#wakers tbody tr",
                                          "els => els.map(e => e.dataset.wakee)")
    assert "[not traced]" not in wakers, wakers
    outside = [r for r in cli_json(stax, "wakers")["rows"]
               if r["wakee"] == "[not traced]" and not r["blocked_ns"]]
    if outside:  # folded into one explaining line
        n = sum(r["wakeups"] for r in outside)
        assert ui.page.inner_text("#wakers-outside").startswith(f"{n} wakeups of threads outside")
    # keyboard: ? opens the help, Esc closes it
    ui.page.keyboard.press("?")
    ui.wait("!document.querySelector('#help').hidden")
    ui.page.keyboard.press("Escape")
    ui.wait("document.querySelector('#help').hidden")
    shots(ui, tmp_path / "screenshots", "overview")


LONG_TASK_MS = 100  # bench/web.py's target: no main-thread task over 100 ms for any click

OBSERVE = """() => { window.__long = [];
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) window.__long.push(Math.round(e.duration));
    }).observe({type: 'longtask'}); }"""


def test_annotate_is_virtual_and_clicks_make_no_long_task(
        ui: Page, stax: Stax, tmp_path: Path, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["bigfunc"]), "0.6", check=True, timeout=120)
    target = "big_function"
    cli = cli_json(stax, "annotate", target)
    assert len(cli["instructions"]) > 10_000
    ui.open()
    ui.wait_top(f"f.includes({json.dumps(target)})")
    ui.page.evaluate(OBSERVE)
    ui.page.click(f"#top tbody td.fn[title={json.dumps(target)}]")
    ui.wait("document.querySelector('#annotate table.ann') !== null")
    n = int(ui.page.get_attribute("#annotate table.ann", "data-rows") or 0)
    assert ui.page.get_attribute("#annotate table.ann", "data-instructions") == str(
        len(cli["instructions"]))
    assert f"self {cli['self_samples']} samples" in ui.page.inner_text("#annotate-func")
    drawn = ui.page.locator("#annotate table.ann tbody tr:not(.pad)").count()
    assert 0 < drawn <= 120 < n, (drawn, n)  # only the rows in view are in the DOM
    # scrolling to the end draws the last instruction
    ui.page.evaluate("document.querySelector('#annotate').scrollTop = 1e9")
    last = hex(cli["instructions"][-1]["addr"])
    ui.wait(f"[...document.querySelectorAll('#annotate td.addr')]"
            f".some(e => e.textContent === '{last}')")
    # with it selected, thread toggles and Enter on a top row: no main-thread task over the
    # target (on a loaded machine other processes can stall one round: the best of 3 counts)
    rounds = []
    for _ in range(3):
        ui.page.evaluate(OBSERVE)
        for _ in range(2):
            ui.page.click("#threads tbody tr >> nth=0")
            ui.wait("document.querySelector('#annotate table.ann') !== null")
            ui.page.wait_for_timeout(300)
        ui.page.focus("#top tbody tr[data-i='0']")
        ui.page.keyboard.press("Enter")
        ui.page.wait_for_timeout(300)
        rounds.append(max(ui.page.evaluate("window.__long"), default=0))
        if rounds[-1] <= LONG_TASK_MS:
            break
    assert min(rounds) <= LONG_TASK_MS, f"longest main-thread task per round: {rounds} ms"
    # asked again in another scope, the server sent the counts only (the page holds the code),
    # and the page shows the same numbers as the CLI
    asked = ui.page.evaluate("window.__staxAnnotate")
    assert asked["countsOnly"] >= 2 and asked["whole"] == 1, asked
    ui.wait(f"document.querySelector('#annotate-counts').textContent.startsWith("
            f"'{cli['placed_samples']} samples placed')")
    # arrow keys move between the top table's rows
    ui.page.focus("#top tbody tr[data-i='0']")
    ui.page.keyboard.press("ArrowDown")
    assert ui.page.evaluate("document.activeElement.dataset.i") == "1" or n == 0
    assert ui.errors == []
    shots(ui, tmp_path / "screenshots", "annotate")


def test_offcpu_reasons_colour_the_flamegraph_with_a_legend_and_tooltip(
        ui: Page, stax: Stax, tmp_path: Path, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["threads"]), check=True, timeout=120)
    rows = {t["name"]: t for t in cli_json(stax, "threads")["rows"]}
    if not rows["sleeper"]["offcpu_ns"]:
        pytest.skip("no off-CPU intervals recorded (tracefs unavailable)")
    ui.open()
    ui.page.locator(".modes button[data-mode='offcpu']").click()
    ui.wait("document.querySelector(\".frame[data-name*='nanosleep'][data-reason='sleep']\")")
    legend = ui.page.eval_on_selector_all("#flame-legend [data-reason]",
                                          "els => els.map(e => e.dataset.reason)")
    assert "sleep" in legend and "lock" in legend, legend
    ui.page.hover(".frame[data-name='sleeper']")
    tip = ui.page.inner_text("#tooltip")
    assert "blocked:" in tip and "sleep" in tip, tip
    # the sleeper's blocked time in the tooltip is the CLI's (to the 0.1 ms shown)
    want = rows["sleeper"]["offcpu_by_reason"]["sleep"] / 1e6
    shown = tip.split("sleep ")[1].split(")")[0].split(",")[0]
    got = float(shown.split()[0]) * (1000 if shown.endswith(" s") else 1)
    assert abs(got - want) <= max(0.15, want * 0.01), (tip, want)
    # wall mode: blocked frames striped in their reason's colour, the rest in their binary's;
    # the tooltip splits running from blocked time
    ui.page.locator(".modes button[data-mode='wall']").click()
    ui.wait("document.querySelector('#flame-info').textContent.startsWith('wall:')")
    ui.wait("document.querySelector(\".frame.blocked[data-name='sleeper'][data-reason='sleep']\")")
    # (a loaded machine can keep the cruncher mostly runnable-but-waiting: "ready", blocked)
    ui.page.hover(".frame[data-name^='burn_cpu']")
    tip = ui.page.inner_text("#tooltip")
    assert "running: " in tip, tip
    assert ui.page.locator("#flame-legend [data-reason='running']").count() == 1
    shots(ui, tmp_path / "screenshots", "offcpu")
