"""The web UI's thread tracks and stack chart, in Debian's Chromium against a real server and
real recordings: blocked intervals by reason and wakeup arrows matching `stax threads --json`,
hover read-outs, zoom/reset of the time axis, and a stack chart whose boxes share time as
`stax top --json` does. Screenshots as in test_web_defects_e2e.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_web_browser_e2e as web
from harness import Stax
from test_web_browser_e2e import CHROMIUM, Page
from test_web_defects_e2e import cli_json, shots

browser = web.browser  # the fixtures of the browser tests, shared
ui = web.ui

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")

BLOCKED = """tid => [...document.querySelectorAll(`#tracks .blocked[data-tid="${tid}"]`)]
  .map(r => ({
  reason: r.dataset.reason, start: +r.dataset.start, dur: +r.dataset.dur,
  box: r.getBoundingClientRect().toJSON()}))"""


def test_thread_tracks_show_blocked_reasons_wakeups_and_zoom(
        ui: Page, stax: Stax, tmp_path: Path, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["threads"]), check=True, timeout=120)
    threads = {t["name"]: t for t in cli_json(stax, "threads", "-n", "0")["rows"]}
    holder, sleeper, waiter = threads["holder"], threads["sleeper"], threads["waiter"]
    ui.open()
    page = ui.page
    ui.wait("document.querySelectorAll('#tracks .track-name').length >= 5")
    names = page.eval_on_selector_all("#tracks .track-name", "els => els.map(e => e.textContent)")
    for n in ("holder", "sleeper", "waiter", "cruncher"):
        assert f"{n} {threads[n]['tid']}" in names, names
    # the holder sleeps 1.5 s holding the mutex: one blocked interval, reason sleep, as the CLI
    ui.wait(f"document.querySelector('#tracks .blocked[data-tid=\"{holder['tid']}\"]')")
    longest = max(page.evaluate(BLOCKED, holder["tid"]), key=lambda r: r["dur"])
    assert longest["reason"] == "sleep"
    assert abs(longest["dur"] - holder["offcpu_by_reason"]["sleep"]) < 0.03 * longest["dur"]
    assert 1400e6 < longest["dur"] < 1700e6, longest
    # its width on screen is its share of the axis
    tracks = page.evaluate("""() => { const t = document.querySelector('#tracks');
        return {start: +t.dataset.start, end: +t.dataset.end,
                w: t.querySelector('svg').getBoundingClientRect().width}; }""")
    want = longest["dur"] / (tracks["end"] - tracks["start"]) * tracks["w"]
    assert abs(longest["box"]["width"] - want) < 2 + 0.02 * want, (longest, tracks)
    # the sleeper's track: its sleeps add up to what `stax threads` reports
    sl = page.evaluate(BLOCKED, sleeper["tid"])
    total = sum(r["dur"] for r in sl if r["reason"] == "sleep")
    assert abs(total - sleeper["offcpu_by_reason"]["sleep"]) <= 0.02 * total, (total, sleeper)
    # hover read-out on the holder's sleep: time, thread, reason, duration
    b = longest["box"]
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
    ui.wait("!document.querySelector('#tooltip').hidden")
    tip = page.inner_text("#tooltip")
    assert f"holder (tid {holder['tid']})" in tip and "blocked: sleep" in tip, tip
    assert f"{longest['dur'] / 1e6:.1f} ms" in tip, tip
    # the holder's unlock woke the waiter: an arrow from holder's row to waiter's
    wakes = page.eval_on_selector_all("#tracks .wake",
                                      "els => els.map(e => [e.dataset.waker, e.dataset.wakee])")
    assert [str(holder["tid"]), str(waiter["tid"])] in wakes, wakes
    shots(ui, tmp_path, "tracks")
    # drag a range over the tracks, zoom into it: the axis narrows to it, ticks follow; reset
    page.mouse.move(0, 0)
    box = page.locator("#tracks svg").bounding_box()
    y = box["y"] + 10
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()
    ui.wait("document.querySelector('#scope [data-scope=\"range\"]')")
    page.click("#tl-zoom")
    span = tracks["end"] - tracks["start"]
    ui.wait(f"Math.abs(+document.querySelector('#tracks').dataset.start - {span * 0.2}) < "
            f"{span * 0.02}")
    z = page.evaluate("() => [+document.querySelector('#tracks').dataset.start, "
                      "+document.querySelector('#tracks').dataset.end]")
    assert abs((z[1] - z[0]) - 0.3 * span) < 0.03 * span, (z, span)
    ticks = page.eval_on_selector_all("#tracks text.axis", "els => els.map(e => e.textContent)")
    assert len(ticks) >= 3, ticks
    shots(ui, tmp_path, "tracks-zoomed")
    page.click("#tl-reset")
    ui.wait("+document.querySelector('#tracks').dataset.start === 0")
    assert ui.errors == []


def _widths(page: Any) -> dict[str, float]:
    return page.evaluate("""() => { const w = {};
        for (const g of document.querySelectorAll('#stackchart .sc-box')) {
          const f = g.dataset.func;
          w[f] = (w[f] || 0) + g.querySelector('rect').getBoundingClientRect().width; }
        return w; }""")


def test_stack_chart_boxes_share_time_as_top_does(
        ui: Page, stax: Stax, tmp_path: Path, workloads: dict[str, Path]) -> None:
    stax("record", "--", str(workloads["split"]), "300", check=True, timeout=120)
    rows = {r["func"]: r for r in cli_json(stax, "top", "-n", "0")["rows"]}
    ui.open()
    ui.wait("document.querySelector('#stackchart .sc-box[data-func=\"work_c\"]')")
    w = _widths(ui.page)
    cli = {f: rows[f]["self_samples"] for f in ("work_a", "work_b", "work_c")}
    ui_sum, cli_sum = sum(w[f] for f in cli), sum(cli.values())
    for f, n in cli.items():
        assert abs(100 * w[f] / ui_sum - 100 * n / cli_sum) < 4, (f, w, cli)
    # main spans (nearly) every sample: its boxes cover the work_* boxes below them
    assert w["main"] >= 0.97 * ui_sum, w
    info = ui.page.inner_text("#stackchart-info")
    total = cli_json(stax, "threads")["rows"][0]["samples"]
    assert f"{total} samples" in info, (info, total)
    # hover a box: its function and duration
    ui.page.hover("#stackchart .sc-box[data-func='work_a'] rect")
    ui.wait("document.querySelector('#tooltip').dataset.func === 'work_a'")
    assert ui.page.inner_text("#tooltip").startswith("work_a")
    shots(ui, tmp_path, "stackchart")
    assert ui.errors == []
