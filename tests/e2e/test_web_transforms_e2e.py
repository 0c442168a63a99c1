"""Transforms of the stacks in the web UI (merge, drop, focus on a function or a subtree), in
Debian's Chromium against a real server and a real recording of workloads/split.c (work_a 60%,
work_b 30%, work_c 10% of on-CPU time): the breadcrumbs, and the numbers the top table, the
flamegraph, the call tree, the callers/callees panel, the stack chart and annotate show against
the CLI's ``--json``. Screenshots go to
build/screenshots (see test_web_defects_e2e)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_web_browser_e2e as web
from harness import Stax
from test_web_browser_e2e import CHROMIUM, Page
from test_web_calltree_e2e import rows, shots_of
from test_web_defects_e2e import cli_json

browser = web.browser
ui = web.ui

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")

TOP_JS = """() => Object.fromEntries([...document.querySelectorAll('#top tbody tr[data-i]')].map(
  t => [t.querySelector('td.fn').title, [...t.children].map(c => c.textContent)]))"""
CRUMBS_JS = """() => [...document.querySelectorAll('#transforms .chip .crumb')]
  .map(b => b.textContent)"""


def top_rows(ui: Page) -> dict[str, list[str]]:
    return ui.page.evaluate(TOP_JS)


def pct(text: str) -> float:
    return float(text.rstrip("%"))


def menu(ui: Page, selector: str, item: str) -> None:
    """Right-click ``selector`` and pick the context-menu item of type ``item``."""
    ui.page.click(selector, button="right")
    ui.wait("!document.querySelector('#ctxmenu').hidden")
    ui.page.click(f"#ctxmenu button[data-type='{item}']")


def wait_renders(ui: Page, before: int) -> None:
    ui.wait(f"window.__stax.renders > {before}")


@pytest.fixture
def split_top(stax: Stax, workloads: dict[str, Path]) -> dict[str, Any]:
    stax("record", "-F", "1999", "--", str(workloads["split"]), "400", check=True, timeout=120)
    return cli_json(stax, "top", "-n", "0", "--sort", "total")


def test_merge_drop_and_focus_match_the_cli(ui: Page, stax: Stax, split_top: dict[str, Any],
                                            tmp_path: Path) -> None:
    cli = {r["func"]: r for r in split_top["rows"]}
    total = split_top["total_samples"]
    ui.open()
    ui.wait_top("f.includes('work_a') && f.includes('main')")
    assert ui.page.is_hidden("#transforms")

    # merge work_a (right-click its flamegraph frame): its time becomes main's self time
    n = ui.page.evaluate("window.__stax.renders")
    menu(ui, "#flame .frame[data-name='work_a']", "merge")
    ui.wait("document.querySelector('#transforms').textContent.includes('merge work_a')")
    wait_renders(ui, n)
    ui.wait_top("!f.includes('work_a')")
    top = top_rows(ui)
    want = cli["main"]["self_pct"] + cli["work_a"]["self_pct"]
    assert abs(pct(top["main"][1]) - want) < 0.05, (top["main"], want)
    assert ui.page.evaluate(CRUMBS_JS) == ["merge work_a"]
    shots_of(ui, "#flame-panel", tmp_path, "transforms-merge")

    # drop work_a instead: its samples leave, the others' shares grow
    n = ui.page.evaluate("window.__stax.renders")
    ui.page.click("#transforms button[data-remove='0']")
    ui.wait("document.querySelector('#transforms').hidden")
    wait_renders(ui, n)  # every panel redrawn (the call tree last)
    ui.wait_top("f.includes('work_a')")
    n = ui.page.evaluate("window.__stax.renders")
    menu(ui, "#flame .frame[data-name='work_a']", "drop")
    wait_renders(ui, n)
    ui.wait_top("!f.includes('work_a')")
    top = top_rows(ui)
    left = total - cli["work_a"]["total_samples"]
    want_b = 100.0 * cli["work_b"]["self_samples"] / left
    assert abs(pct(top["work_b"][1]) - want_b) < 0.05, (top["work_b"], want_b)
    assert int(top["work_b"][4]) == cli["work_b"]["total_samples"]
    assert ui.page.evaluate("window.__stax.renders") > n
    flame_total = ui.page.evaluate("window.__staxCallTree.tree.total_samples")
    assert flame_total == left

    # "complete profile" clears the stack; then focus on work_b from the call tree
    n = ui.page.evaluate("window.__stax.renders")
    ui.page.click("#transforms button[data-upto='0']")
    ui.wait("document.querySelector('#transforms').hidden")
    wait_renders(ui, n)  # the call tree too: its rows are those of the whole profile again
    ui.wait_top("f.includes('work_a')")
    ui.wait("[...document.querySelectorAll('#calltree td.fn')].some(e => e.title === 'work_b')")
    n = ui.page.evaluate("window.__stax.renders")
    row = ui.page.evaluate("""() => [...document.querySelectorAll('#calltree tbody tr[data-i]')]
      .find(t => t.querySelector('td.fn')?.title === 'work_b').dataset.i""")
    menu(ui, f"#calltree tbody tr[data-i='{row}']", "focus")
    wait_renders(ui, n)
    ui.wait_top("f[0] === 'work_b' && !f.includes('main') && !f.includes('work_a')")
    ui.wait("window.__staxCallTree.tree && window.__staxCallTree.tree.roots.length === 1 &&"
            " window.__staxCallTree.tree.roots[0].func === 'work_b'")
    tree = rows(ui)
    assert tree[0]["cells"][3].lstrip("▶▼ ").strip() == "work_b"
    assert tree[0]["cells"][1] == "100.0%", tree[0]
    assert ui.page.evaluate("window.__staxCallTree.tree.total_samples") == \
        cli["work_b"]["total_samples"]
    names = ui.page.eval_on_selector_all("#flame .frame:not(.root)",
                                         "es => es.map(e => e.dataset.name)")
    assert names[0] == "work_b" and "main" not in names and "work_a" not in names, names
    assert top_rows(ui)["work_b"][3] == "100.0%"  # total % (self: less any kernel frames)
    assert ui.page.evaluate(CRUMBS_JS) == ["focus on work_b"]
    # a second focus on a function is offered no more
    ui.page.click("#flame .frame[data-name='work_b']", button="right")
    ui.wait("!document.querySelector('#ctxmenu').hidden")
    assert ui.page.is_disabled("#ctxmenu button[data-type='focus']")
    ui.page.keyboard.press("Escape")
    ui.wait("document.querySelector('#ctxmenu').hidden")
    shots_of(ui, "#calltree-panel", tmp_path, "transforms-focus")
    assert not ui.errors, ui.errors


def test_focus_on_a_subtree_roots_the_views_at_it(ui: Page, stax: Stax,
                                                  split_top: dict[str, Any]) -> None:
    cli = {r["func"]: r for r in split_top["rows"]}
    ui.open()
    ui.wait("document.querySelector(\"#flame .frame[data-name='work_c']\")")
    n = ui.page.evaluate("window.__stax.renders")
    menu(ui, "#flame .frame[data-name='main']", "focus_path")
    wait_renders(ui, n)
    crumbs = ui.page.evaluate(CRUMBS_JS)
    assert len(crumbs) == 1 and crumbs[0].startswith("focus: ") and crumbs[0].endswith("main")
    ui.wait("window.__staxCallTree.tree?.roots?.[0]?.func === 'main'")
    assert ui.page.evaluate("window.__staxCallTree.tree.total_samples") == \
        cli["main"]["total_samples"]
    # then a subtree below it: the path is composed, the views rooted at work_c
    n = ui.page.evaluate("window.__stax.renders")
    menu(ui, "#flame .frame[data-name='work_c']", "focus_path")
    wait_renders(ui, n)
    ui.wait("window.__staxCallTree.tree?.roots?.[0]?.func === 'work_c'")
    assert ui.page.evaluate("window.__staxCallTree.tree.total_samples") == \
        cli["work_c"]["total_samples"]
    assert ui.page.evaluate(CRUMBS_JS)[1].endswith("main → work_c")
    # only work_c and what it calls (kernel frames of interrupts, say)
    ui.wait_top("f[0] === 'work_c' && !f.includes('main') && !f.includes('work_a')")
    # removing the first step keeps the second as picked (main → work_c from the root)
    ui.page.click("#transforms button[data-remove='0']")
    ui.wait("document.querySelectorAll('#transforms .chip').length === 1")
    assert ui.page.evaluate("window.__staxTransforms.list.length") == 1
    assert not ui.errors, ui.errors


def test_collapse_a_library_makes_its_frames_one_node(ui: Page, stax: Stax,
                                                      split_top: dict[str, Any]) -> None:
    cli = {r["func"]: r for r in split_top["rows"]}
    libc = [f for f, r in cli.items() if r["binary"].split("/")[-1].startswith("libc.so")]
    if "__libc_start_call_main" not in libc:
        pytest.skip("no libc frames in the stacks (the unwinder stopped in main)")
    ui.open()
    ui.wait("document.querySelector(\"#flame .frame[data-name='__libc_start_call_main']\")")
    n = ui.page.evaluate("window.__stax.renders")
    menu(ui, "#flame .frame[data-name='__libc_start_call_main']", "collapse")
    wait_renders(ui, n)
    binary = cli["__libc_start_call_main"]["binary"]
    name = binary.split("/")[-1]
    ui.wait_top(f"f.includes('{name}') && !f.includes('__libc_start_call_main')")
    assert ui.page.evaluate(CRUMBS_JS) == [f"collapse {name}"]
    names = ui.page.eval_on_selector_all("#flame .frame:not(.root)",
                                         "es => es.map(e => e.dataset.name)")
    assert name in names and "__libc_start_main" not in names, names
    top = top_rows(ui)
    # one node for the library's frames: its samples are those with any frame of it, counted
    # from the CLI's whole tree (outermost libc nodes)
    tree = cli_json(stax, "flame", "--threshold-pct", "0")

    def with_libc(nodes: list[dict[str, Any]]) -> int:
        return sum(n["samples"] if n["binary"] == binary else with_libc(n["children"])
                   for n in nodes)

    assert int(top[name][4]) == with_libc(tree["roots"]), top[name]
    # merge recursion: split has none, the numbers stay
    n = ui.page.evaluate("window.__stax.renders")
    menu(ui, "#flame .frame[data-name='main']", "recursion")
    wait_renders(ui, n)
    assert ui.page.evaluate(CRUMBS_JS) == [f"collapse {name}", "merge recursion"]
    assert int(top_rows(ui)["main"][4]) == cli["main"]["total_samples"]
    assert not ui.errors, ui.errors


BF_ROWS_JS = """(sel) => Object.fromEntries([...document.querySelectorAll(sel)].map(t => [
  t.children[2].textContent.replace(/^[▶▼ ]+/, ''),
  {pct: t.children[0].textContent, time: t.children[1].textContent, ns: Number(t.dataset.ns)}]))"""


def ms_text(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms"


def test_a_dropped_function_leaves_callers_callees_stack_chart_and_annotate(
        ui: Page, stax: Stax, split_top: dict[str, Any], tmp_path: Path) -> None:
    cli = {r["func"]: r for r in split_top["rows"]}
    left = split_top["total_samples"] - cli["work_a"]["total_samples"]
    main_nb = cli_json(stax, "neighbors", "main", "--exact", "-n", "0")
    callees = {r["func"]: r for r in main_nb["callees"]}
    thread = cli_json(stax, "threads")["rows"][0]  # split has one thread: the stack chart's
    ui.open()
    ui.wait("document.querySelector('#stackchart .sc-box[data-func=\"work_a\"]')")
    ui.page.click("#top tbody td.fn[title='main']")
    ui.wait("document.querySelector('#butterfly tr.bf-down[data-func=\"work_a\"]')")
    n = ui.page.evaluate("window.__stax.renders")
    menu(ui, "#flame .frame[data-name='work_a']", "drop")
    wait_renders(ui, n)
    ui.wait("document.querySelector('#butterfly tr.bf-down[data-func=\"work_b\"]') && "
            "!document.querySelector('#butterfly tr.bf-down[data-func=\"work_a\"]')")
    # callers/callees of main: work_a is gone; work_b and work_c keep their time (the CLI's),
    # their shares are of what main has left
    main_left = main_nb["function"]["time_ns"] - callees["work_a"]["time_ns"]
    down = ui.page.evaluate(BF_ROWS_JS, "#butterfly tr.bf-down")
    for f in ("work_b", "work_c"):
        assert down[f]["ns"] == callees[f]["time_ns"], (f, down[f], callees[f])
        assert down[f]["time"] == ms_text(callees[f]["time_ns"])
        assert abs(float(down[f]["pct"].rstrip("%")) - 100 * callees[f]["time_ns"] / main_left) \
            < 0.051, (f, down[f])
    assert ui.page.inner_text("#butterfly-title").startswith(f"main — {ms_text(main_left)}")
    shots_of(ui, "#butterfly-panel", tmp_path, "transforms-butterfly")
    # the stack chart: no work_a box, and only the samples left
    ui.wait("!document.querySelector('#stackchart .sc-box[data-func=\"work_a\"]')")
    assert ui.page.locator("#stackchart .sc-box[data-func='work_b']").count() > 0
    info = ui.page.inner_text("#stackchart-info")
    assert f" {thread['samples'] - cli['work_a']['total_samples']} samples" in info, info
    shots_of(ui, "#stackchart-panel", tmp_path, "transforms-stackchart")
    # annotate work_b: its own samples, out of those left
    ui.page.click("#top tbody td.fn[title='work_b']")
    ui.wait(f"(document.querySelector('#annotate-func')?.textContent || '')"
            f".includes('of {left} in scope')")
    text = ui.page.inner_text("#annotate-func")
    assert f"self {cli['work_b']['self_samples']} samples" in text, text
    # a drop undone: the panels have work_a again
    ui.page.click("#transforms button[data-remove='0']")
    ui.wait("document.querySelector('#stackchart .sc-box[data-func=\"work_a\"]')")
    ui.wait(f"(document.querySelector('#annotate-func')?.textContent || '')"
            f".includes('of {split_top['total_samples']} in scope')")
    assert not ui.errors, ui.errors
