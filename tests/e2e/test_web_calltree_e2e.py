"""The call tree (normal and inverted) and the callers/callees (butterfly, sandwich) panel of
the web UI, in Debian's Chromium against a real server and a real recording of
workloads/split.c (work_a 60%, work_b 30%, work_c 10% of on-CPU time): what a user reads
matches the CLI's ``--json``; the sandwich's deeper levels, on tests/workloads/sandwich.c,
match hand counts over ``stax export --format folded``. Screenshots go to build/screenshots
(see test_web_defects_e2e)."""

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


LEVEL_JS = """(sel) => [...document.querySelectorAll(sel)].map(t => ({
  func: t.children[2].textContent.replace(/^[▶▼ ]+/, ''), pct: t.children[0].textContent,
  time: t.children[1].textContent, ns: Number(t.dataset.ns)}))"""


def folded_oncpu_ns(stax: Stax) -> list[tuple[list[str], int]]:
    """The run's on-CPU stacks (root first) and their time in ns, from ``stax export --format
    folded --mode wall`` (its off-CPU lines end in an ``[off-cpu:…]`` frame: left out)."""
    out = []
    for line in stax("export", "--format", "folded", "--mode", "wall", check=True).out.splitlines():
        stack, _, ns = line.rpartition(" ")
        frames = stack.split(";")
        if not frames[-1].startswith("[off-cpu:"):
            out.append((frames, int(ns)))
    return out


def test_sandwich_levels_are_counted_over_the_actual_stacks(
        ui: Page, stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    stax("record", "-F", "1999", "--", str(workloads["sandwich"]), "1", check=True, timeout=120)
    stacks = folded_oncpu_ns(stax)
    # hand counts: hub's callers chain is what precedes its outermost frame, its callees chain
    # what follows its innermost one
    hub = sum(ns for fr, ns in stacks if "hub" in fr)

    def up(*chain: str) -> int:
        k = len(chain)
        return sum(ns for fr, ns in stacks if "hub" in fr and (i := fr.index("hub")) >= k
                   and fr[i - k:i] == list(reversed(chain)))

    def down(*chain: str, ends: bool = False) -> int:
        k = len(chain)
        return sum(ns for fr, ns in stacks if "hub" in fr
                   and fr[(j := len(fr) - 1 - fr[::-1].index("hub")) + 1:j + 1 + k] == list(chain)
                   and (not ends or len(fr) == j + 1 + k))

    # over the whole run, most of mid_x's callers' time is top_2's (other() runs there); on
    # the paths through hub it is top_1's: a level counted per function would mislead
    whole = {r["func"]: r["time_ns"] for r in cli_json(stax, "callers", "mid_x", "--exact")
             ["callers"]}
    assert whole["top_2"] > whole["top_1"] and up("mid_x", "top_1") > up("mid_x", "top_2")

    ui.open()
    ui.wait_top("f.includes('hub')")
    ui.page.click("#top tbody td.fn[title='hub']")
    ui.wait("document.querySelector('#butterfly tr.bf-up[data-func=\"mid_x\"] .twisty')")
    # level 2: mid_x's callers on the paths mid_x → hub
    ui.page.click("#butterfly tr.bf-up[data-func='mid_x'] .twisty")
    ui.wait("document.querySelector('#butterfly tr.bf-up[aria-level=\"2\"][data-func=\"top_1\"]')")
    lvl2 = {r["func"]: r for r in ui.page.evaluate(LEVEL_JS, "#butterfly tr.bf-up[aria-level='2']")}
    assert set(lvl2) == {"top_1", "top_2"}, lvl2
    for f in ("top_1", "top_2"):
        want = up("mid_x", f)
        assert lvl2[f]["ns"] == want, (f, lvl2[f], want)
        assert lvl2[f]["time"] == f"{want / 1e6:.1f} ms"
        assert abs(float(lvl2[f]["pct"].rstrip("%")) - 100 * want / hub) < 0.051, (f, lvl2[f])
    # level 3: top_1's callers on the paths top_1 → mid_x → hub
    ui.page.click("#butterfly tr.bf-up[aria-level='2'][data-func='top_1'] .twisty")
    ui.wait("document.querySelector('#butterfly tr.bf-up[aria-level=\"3\"]')")
    lvl3 = ui.page.evaluate(LEVEL_JS, "#butterfly tr.bf-up[aria-level='3']")
    assert [r["func"] for r in lvl3] == ["main"], lvl3
    assert lvl3[0]["ns"] == up("mid_x", "top_1", "main") == up("mid_x", "top_1")

    # the callee side: step_p below hub calls grind only (polish is step_p's callee elsewhere)
    ui.page.click("#butterfly tr.bf-down[data-func='step_p'] .twisty")
    ui.wait("document.querySelector("
            "'#butterfly tr.bf-down[aria-level=\"2\"][data-func=\"grind\"]')")
    lvl2 = {r["func"]: r for r in ui.page.evaluate(LEVEL_JS,
                                                   "#butterfly tr.bf-down[aria-level='2']")}
    assert "polish" not in lvl2 and lvl2["grind"]["ns"] == down("step_p", "grind"), lvl2
    assert lvl2["grind"]["time"] == f"{down('step_p', 'grind') / 1e6:.1f} ms"
    # level 3 below grind: its self time (and any kernel frames of interrupts)
    ui.page.click("#butterfly tr.bf-down[aria-level='2'][data-func='grind'] .twisty")
    ui.wait("document.querySelector('#butterfly tr.bf-down[aria-level=\"3\"]')")
    lvl3 = {r["func"]: r for r in ui.page.evaluate(LEVEL_JS,
                                                   "#butterfly tr.bf-down[aria-level='3']")}
    assert lvl3["(self)"]["ns"] == down("step_p", "grind", ends=True), lvl3
    assert sum(r["ns"] for r in lvl3.values()) == down("step_p", "grind")
    shots_of(ui, "#butterfly-panel", tmp_path, "sandwich-levels")
    assert not ui.errors, ui.errors
