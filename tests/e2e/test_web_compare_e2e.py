"""Compare two runs in the web UI (the ``compare`` RPC), in Debian's Chromium against a real
server and two real recordings of workloads/split.c (300 and 600 rounds): the delta table
matches ``stax compare --run A --run B --json`` and the differential flamegraph colours the
slower frames red; a comparison with a run still recording (workloads/spin.c, attached) follows
it as the other panels do, and stops following while live updates are paused. Screenshots go
to build/screenshots (see test_web_defects_e2e)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import test_web_browser_e2e as web
from harness import Stax
from test_web_browser_e2e import CHROMIUM, Page
from test_web_calltree_e2e import shots_of
from test_web_defects_e2e import cli_json

browser = web.browser
ui = web.ui

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")

ROWS_JS = """() => Object.fromEntries(
  [...document.querySelectorAll('#cmp-table tbody tr[data-func]')].map(t => [t.dataset.func,
    {ns: Number(t.dataset.deltaNs), cls: t.className,
     cells: [...t.children].map(c => c.textContent)}]))"""


def ms(ns: int) -> str:
    v = abs(ns) / 1e6
    text = f"{v / 1000:.1f} s" if v >= 10000 else f"{v:.1f} ms"
    return ("+" if ns > 0 else "−" if ns < 0 else "±") + text


def test_delta_table_matches_the_cli_and_the_diff_flame_is_red_where_slower(
        ui: Page, stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    for rounds in ("300", "600"):
        stax("record", "-F", "1999", "--", str(workloads["split"]), rounds, check=True,
             timeout=120)
    runs = [r["id"] for r in cli_json(stax, "list")["runs"]]
    base, cand = runs[-2], runs[-1]
    cli = cli_json(stax, "compare", "--run", str(base), "--run", str(cand), "-n", "0")
    rows = {r["func"]: r for r in cli["regressions"] + cli["improvements"]}
    assert rows["work_a"]["delta_self_ns"] > 0  # twice the rounds: slower

    ui.open()
    ui.wait("!document.querySelector('#cmp-go').disabled")
    assert ui.page.input_value("#cmp-base") == str(base)
    assert ui.page.input_value("#cmp-cand") == str(cand)
    ui.page.click("#cmp-go")
    ui.wait("document.querySelector('#cmp-table tbody tr[data-func=\"work_a\"]')")
    got = ui.page.evaluate(ROWS_JS)
    for func in ("work_a", "work_b", "main"):
        if func not in rows:
            continue
        want = rows[func]
        assert got[func]["ns"] == want["delta_self_ns"], (func, got[func], want)
        assert got[func]["cells"][2] == ms(want["delta_self_ns"]), (func, got[func])
        sign = "+" if want["delta_self_pct"] > 0 else "−" if want["delta_self_pct"] < 0 else "±"
        assert got[func]["cells"][4] == f"{sign}{abs(want['delta_self_pct']):.1f} pts"
    assert "slower" in got["work_a"]["cls"]
    assert set(got) == set(rows)  # every changed function, nothing else
    info = ui.page.inner_text("#cmp-info")
    assert f"run {base} → run {cand}" in info, info
    # the differential flamegraph: the candidate's tree, work_a red (slower)
    ui.wait("document.querySelector(\"#cmp-flame .frame[data-name='work_a']\")")
    cls = ui.page.get_attribute("#cmp-flame .frame[data-name='work_a']", "class")
    assert "slower" in cls, cls
    bg = ui.page.eval_on_selector("#cmp-flame .frame[data-name='work_a']",
                                  "e => getComputedStyle(e).backgroundColor")
    r, g, b = (int(x) for x in bg[bg.index("(") + 1:bg.index(")")].split(",")[:3])
    assert r > b and r > g, bg
    tree = ui.page.evaluate("window.__staxCompare.res.roots")
    node = tree[0]
    while node["func"] != "main" and node["children"]:
        node = node["children"][0]
    assert node["func"] == "main" and node["delta_ns"] == node["time_ns"] - node["base_ns"] > 0
    # hover: the read-out names both runs' times
    ui.page.hover("#cmp-flame .frame[data-name='work_a']")
    ui.wait("!document.querySelector('#tooltip').hidden")
    assert "base:" in ui.page.inner_text("#tooltip")
    # by share: split's shares hardly move, so work_a is no longer strongly red
    ui.page.select_option("#cmp-by", "share")
    ui.wait("window.__staxCompare.by === 'share'")
    shots_of(ui, "#compare-panel", tmp_path, "compare")
    assert not ui.errors, ui.errors



def test_compare_follows_a_run_while_it_records_and_respects_pause(
        ui: Page, stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    stax("record", "-F", "1999", "--", str(workloads["split"]), "100", check=True, timeout=120)
    base = cli_json(stax, "list")["runs"][-1]["id"]
    target = subprocess.Popen([str(workloads["spin"]), "60"])
    proc = stax.record_bg("--pid", str(target.pid), samples=10)
    try:
        ui.open()
        ui.wait("document.querySelector('#status').dataset.state === 'recording'")
        live = cli_json(stax, "status")["active"]["id"]
        ui.wait("!document.querySelector('#cmp-go').disabled")
        ui.page.select_option("#cmp-base", str(base))
        ui.page.select_option("#cmp-cand", str(live))
        ui.page.click("#cmp-go")
        ui.wait("document.querySelector('#cmp-info').dataset.live === '1'")
        assert f"following run {live} while it records" in ui.page.inner_text("#cmp-info")
        # no click: the candidate's numbers grow with the run, the delta table follows
        first = int(ui.page.get_attribute("#cmp-info", "data-cand-samples") or 0)
        ui.wait(f"Number(document.querySelector('#cmp-info').dataset.candSamples) > {first + 200}")
        ui.wait("document.querySelector('#cmp-table tbody tr[data-func=\"spin_hot\"]')")
        shots_of(ui, "#compare-panel", tmp_path, "compare-live")
        # paused: the page stops re-asking, the run goes on
        ui.page.click("#pause")
        ui.page.wait_for_timeout(300)  # a refresh already under way ends
        frozen = ui.page.get_attribute("#cmp-info", "data-cand-samples")
        updates = int(ui.page.evaluate("window.__stax.updates"))
        ui.wait(f"window.__stax.updates >= {updates + 4}")
        assert ui.page.get_attribute("#cmp-info", "data-cand-samples") == frozen
        assert cli_json(stax, "status")["active"]["samples"] > int(frozen or 0)
        ui.page.click("#pause")
        ui.wait(f"Number(document.querySelector('#cmp-info').dataset.candSamples) > {frozen}")
        # stopped: one last comparison of the whole run, then it stays
        stax("stop", check=True)
        ui.wait("document.querySelector('#cmp-info').dataset.live === ''")
        run = next(r for r in cli_json(stax, "list")["runs"] if r["id"] == live)
        ui.wait(f"document.querySelector('#cmp-info').dataset.candSamples === '{run['samples']}'")
        cli = cli_json(stax, "compare", "--run", str(base), "--run", str(live), "-n", "0")
        rows = ui.page.evaluate(ROWS_JS)
        assert rows["spin_hot"]["ns"] == next(r for r in cli["regressions"]
                                              if r["func"] == "spin_hot")["delta_self_ns"]
    finally:
        target.kill()
        target.wait()
        proc.wait(30)
    assert not ui.errors, ui.errors
