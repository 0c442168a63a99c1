"""The call tree (normal and inverted) and the callers/callees (butterfly, sandwich) panel of
the web UI, in Debian's Chromium against a real server and a real recording of
workloads/split.c (work_a 60%, work_b 30%, work_c 10% of on-CPU time): what a user reads
matches the CLI's ``--json``. Screenshots go to build/screenshots (see test_web_defects_e2e)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_web_browser_e2e as web
from harness import Stax
from test_web_browser_e2e import CHROMIUM, Page
from test_web_defects_e2e import SHOTS, cli_json

browser = web.browser
ui = web.ui

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")

ROWS_JS = """() => [...document.querySelectorAll('#calltree tbody tr[data-i]')].map(t => ({
  level: Number(t.getAttribute('aria-level')), expanded: t.getAttribute('aria-expanded'),
  cells: [...t.children].map(c => c.textContent)}))"""


def rows(ui: Page) -> list[dict[str, Any]]:
    return ui.page.evaluate(ROWS_JS)


def fn_of(r: dict[str, Any]) -> str:
    return r["cells"][3].lstrip("▶▼ ").strip()


def expanded(i: int, want: str) -> str:
    """JS: row ``i`` of the call tree has aria-expanded ``want``."""
    return (f"document.querySelector('#calltree tbody tr[data-i=\"{i}\"]')"
            f".getAttribute('aria-expanded') === '{want}'")


# the panel at the top of the view, below the sticky header
SCROLL_TO = ("e => { e.scrollIntoView();"
             " window.scrollBy(0, -document.querySelector('header').offsetHeight - 6); }")


def shots_of(ui: Page, panel: str, _tmp: Path, name: str) -> None:
    """shots() of test_web_defects_e2e, with ``panel`` scrolled into view at each width."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (900, 1400):
        ui.page.set_viewport_size({"width": width, "height": 700})
        for scheme in ("light", "dark"):
            ui.page.emulate_media(color_scheme=scheme)
            ui.page.eval_on_selector(panel, SCROLL_TO)
            ui.page.wait_for_timeout(150)
            ui.page.screenshot(path=str(SHOTS / f"{name}-{width}-{scheme}.png"))
    ui.page.set_viewport_size({"width": 1280, "height": 1000})
    ui.page.emulate_media(color_scheme="light")


def pct_of(text: str) -> float:
    return float(text.rstrip("%"))


@pytest.fixture
def split_run(stax: Stax, workloads: dict[str, Path]) -> dict[str, Any]:
    stax("record", "-F", "1999", "--", str(workloads["split"]), "400", check=True, timeout=120)
    return cli_json(stax, "top", "-n", "0", "--sort", "total")  # every function, self or not


def test_inverted_call_tree_matches_top_self_and_expands_to_callers(
        ui: Page, stax: Stax, split_run: dict[str, Any], tmp_path: Path) -> None:
    top = {r["func"]: r for r in split_run["rows"]}
    ui.open()
    ui.wait("document.querySelectorAll('#calltree tbody tr[aria-level]').length > 0")
    # the normal tree opens its hottest path: main is there, with work_a below it
    ui.wait("[...document.querySelectorAll('#calltree td.fn')].some(e => e.title === 'work_a')")
    normal = rows(ui)
    main = next(r for r in normal if fn_of(r) == "main")
    assert abs(pct_of(main["cells"][1]) - top["main"]["total_pct"]) < 0.5
    shots_of(ui, "#calltree-panel", tmp_path, "calltree")

    ui.page.click("#calltree-invert")
    ui.wait("window.__staxCallTree.tree && window.__staxCallTree.tree.inverted === true")
    ui.wait("document.querySelector('#calltree tbody tr[aria-level=\"1\"] td.fn')?.title"
            " === 'work_a'")
    inv = rows(ui)
    assert all(r["level"] == 1 for r in inv)  # bottom-up: only the running functions at first
    first = [fn_of(r) for r in inv[:3]]
    assert first == ["work_a", "work_b", "work_c"], first
    for r in inv[:3]:
        want = top[fn_of(r)]["self_pct"]
        assert abs(pct_of(r["cells"][1]) - want) < 0.5, (fn_of(r), r["cells"], want)
    assert 55 < pct_of(inv[0]["cells"][1]) < 65  # work_a ~60%
    assert 25 < pct_of(inv[1]["cells"][1]) < 35
    assert 6 < pct_of(inv[2]["cells"][1]) < 14
    # the same tree as the CLI's inverted flame: roots, their order and shares
    cli_inv = cli_json(stax, "flame", "--inverted", "--threshold-pct", "0.05")
    assert cli_inv["inverted"] is True
    for r, c in zip(inv, cli_inv["roots"], strict=False):
        assert fn_of(r) == c["func"] and abs(pct_of(r["cells"][1]) - c["pct"]) < 0.05, (r, c)
    text = stax("flame", "--inverted", "-d", "2", check=True).out.splitlines()
    assert "cpu, inverted" in text[0] and text[1].split()[-2] == "work_a", text[:3]
    assert text[2].split()[-2] == "main", text[:3]  # work_a's caller, one level in
    # running time = self time for a root of the inverted tree
    assert inv[0]["cells"][0] == inv[0]["cells"][2]

    # keyboard: focus work_a, → expands it to its callers (main), ↓ moves there, ← goes back up
    ui.page.focus("#calltree tbody tr[data-i='0']")
    ui.page.keyboard.press("ArrowRight")
    ui.wait(expanded(0, "true"))
    after = rows(ui)
    assert after[1]["level"] == 2 and fn_of(after[1]) == "main", after[:3]
    assert abs(pct_of(after[1]["cells"][1]) - top["work_a"]["self_pct"]) < 0.5
    ui.page.keyboard.press("ArrowDown")
    assert ui.page.evaluate("document.activeElement.dataset.i") == "1"
    ui.page.keyboard.press("ArrowLeft")
    assert ui.page.evaluate("document.activeElement.dataset.i") == "0"
    ui.page.keyboard.press("ArrowLeft")  # collapses
    ui.wait(expanded(0, "false"))
    # a click on the triangle expands too
    ui.page.click("#calltree tbody tr[data-i='1'] .twisty")
    ui.wait(expanded(1, "true"))
    assert fn_of(rows(ui)[2]) == "main"
    shots_of(ui, "#calltree-panel", tmp_path, "calltree-inverted")
    assert not ui.errors, ui.errors


def test_butterfly_shows_callers_and_callees_and_navigates(
        ui: Page, stax: Stax, split_run: dict[str, Any], tmp_path: Path) -> None:
    cli = cli_json(stax, "neighbors", "work_a")
    ui.open()
    ui.wait("document.querySelector('#butterfly').textContent.includes('select a function')")
    ui.wait_top("f.includes('work_a')")
    ui.page.click("#top tbody td.fn[title='work_a']")
    ui.wait("document.querySelector('#butterfly .bf-callers a.bf-go')")
    callers = ui.page.eval_on_selector_all(
        "#butterfly tr.bf-up", "trs => trs.map(t => [...t.children].map(c => c.textContent))")
    assert callers[0][2].lstrip("▶▼ ") == "main" and callers[0][0] == "100.0%", callers
    assert cli["callers"][0]["func"] == "main" and abs(cli["callers"][0]["pct"] - 100) < 0.05
    title = ui.page.inner_text("#butterfly-title")
    assert title.startswith("work_a") and f"{cli['function']['pct']:.1f}%" in title, (title, cli)
    below = ui.page.eval_on_selector_all(
        "#butterfly tr.bf-down", "trs => trs.map(t => [...t.children].map(c => c.textContent))")
    assert below and below[0][2].strip() == "(self)", below  # work_a is a leaf: its time is self
    shots_of(ui, "#butterfly-panel", tmp_path, "butterfly")

    # clicking the caller navigates: main selected, its callees are the three work functions
    cli_main = cli_json(stax, "neighbors", "main")
    ui.page.click("#butterfly .bf-callers a.bf-go")
    ui.wait("document.querySelector('#butterfly-title').textContent.startsWith('main')")
    ui.wait("document.querySelectorAll('#butterfly tr.bf-down').length >= 3")
    down = ui.page.eval_on_selector_all(
        "#butterfly tr.bf-down", "trs => trs.map(t => [...t.children].map(c => c.textContent))")
    got = {d[2].lstrip("▶▼ "): pct_of(d[0]) for d in down}
    for c in cli_main["callees"]:
        if c["func"] in ("work_a", "work_b", "work_c"):
            assert abs(got[c["func"]] - c["pct"]) < 0.5, (c, got)
    # the top table follows the selection
    assert ui.page.inner_text("#top tbody tr.selected td.fn") == "main"

    # sandwich: a caller's triangle opens its own callers below it, level by level
    ui.page.click("#butterfly .bf-callers .twisty[data-open]")
    ui.wait("document.querySelector('#butterfly tr.bf-up[aria-level=\"2\"]')")
    lvl2 = ui.page.eval_on_selector_all(
        "#butterfly tr.bf-up[aria-level='2']", "trs => trs.map(t => t.children[2].textContent)")
    up1 = cli_json(stax, "neighbors", "--exact", cli_main["callers"][0]["func"])
    assert [x.lstrip("▶▼ ") for x in lvl2] == [c["func"] for c in up1["callers"]], (lvl2, up1)
    shots_of(ui, "#butterfly-panel", tmp_path, "sandwich")
    assert not ui.errors, ui.errors
