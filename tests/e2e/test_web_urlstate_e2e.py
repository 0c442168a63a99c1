"""The view in the URL (reload, back/forward; the stack transforms too), pause/resume of live
updates, the export downloads and regex / case-sensitive search, in Debian's Chromium against a
real server and real recordings of workloads/split.c (work_a, work_b, work_c) and
workloads/spin.c. What a user sees is checked against the CLI's ``--json``. Screenshots go to
build/screenshots."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import test_web_browser_e2e as web
from archive_helpers import pb_decode, pb_packed
from harness import Stax
from test_web_browser_e2e import CHROMIUM, Page
from test_web_calltree_e2e import shots_of
from test_web_defects_e2e import cli_json
from test_web_transforms_e2e import CRUMBS_JS, menu, top_rows

browser = web.browser
ui = web.ui

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")

STATE_JS = """() => ({hash: location.hash, search: location.search,
  scope: document.querySelector('#scope').textContent,
  mode: document.querySelector('.modes button.on').dataset.mode,
  info: document.querySelector('#top-info').textContent,
  renders: window.__stax.renders})"""


def state(ui: Page) -> dict[str, Any]:
    return ui.page.evaluate(STATE_JS)


@pytest.fixture
def split_top(stax: Stax, workloads: dict[str, Path]) -> dict[str, Any]:
    stax("record", "-F", "1999", "--", str(workloads["split"]), "400", check=True, timeout=120)
    return cli_json(stax, "top", "-n", "0", "--sort", "total")


def renders(ui: Page) -> int:
    return int(ui.page.evaluate("window.__stax.renders"))


def test_reload_and_back_forward_keep_the_view(ui: Page, stax: Stax,
                                               split_top: dict[str, Any]) -> None:
    ui.open()
    ui.wait("document.querySelectorAll('#threads tbody tr').length > 0")
    tid = split_top["run"]["pid"]
    # pick the thread: one history entry; the Top panel shows the thread's numbers
    ui.page.click(f"#threads tbody tr[data-tid='{tid}']")
    ui.wait(f"document.querySelector('#scope').textContent.includes('thread {tid}')")
    ui.wait(f"location.hash.includes('tid={tid}')")
    thread_top = cli_json(stax, "top", "--tid", str(tid))
    ui.wait(f"document.querySelector('#top-info').textContent.startsWith("
            f"'{thread_top['total_samples']} samples')")
    # a range dragged on the timeline, then the wall-clock mode: two more entries
    box = ui.page.locator("#timeline").bounding_box()
    assert box
    y = box["y"] + box["height"] / 2
    ui.page.mouse.move(box["x"] + box["width"] * 0.2, y)
    ui.page.mouse.down()
    ui.page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    ui.page.mouse.up()
    ui.wait("location.hash.includes('range=')")
    ui.page.click(".modes button[data-mode='wall']")
    ui.wait("location.hash.includes('mode=wall')")
    ui.wait("document.querySelector('#flame-info').textContent.startsWith('wall')")
    ranged = state(ui)
    assert f"thread {tid}" in ranged["scope"] and "–" in ranged["scope"]
    rng = parse_qs(ranged["hash"].lstrip("#"))["range"][0]
    start, end = (int(x) for x in rng.split(","))
    # what the range shows matches the CLI over the same window
    win = cli_json(stax, "top", "--tid", str(tid), "--window",
                   f"{start / 1e9:.9f}..{end / 1e9:.9f}")
    ui.wait(f"document.querySelector('#top-info').textContent.startsWith("
            f"'{win['total_samples']} samples')")
    ranged = state(ui)
    # reload: the same thread, range, mode and numbers
    ui.page.reload()
    ui.wait("window.__stax && window.__stax.renders > 0")
    ui.wait(f"document.querySelector('#top-info').textContent === {json.dumps(ranged['info'])}")
    again = state(ui)
    assert again["hash"] == ranged["hash"]
    assert again["scope"] == ranged["scope"] and again["mode"] == "wall"
    assert ui.page.input_value("#run-picker") == str(split_top["run"]["id"])
    # back: on-CPU mode again, the range kept; back again: no range; forward: the range again
    ui.page.go_back()
    ui.wait("document.querySelector('.modes button.on').dataset.mode === 'cpu'")
    ui.wait(f"document.querySelector('#top-info').textContent.startsWith("
            f"'{win['total_samples']} samples')")
    assert "–" in state(ui)["scope"]
    ui.page.go_back()
    ui.wait(f"document.querySelector('#top-info').textContent.startsWith("
            f"'{thread_top['total_samples']} samples')")
    s = state(ui)
    assert "–" not in s["scope"] and f"thread {tid}" in s["scope"] and "range" not in s["hash"]
    ui.page.go_forward()
    ui.wait(f"document.querySelector('#top-info').textContent.startsWith("
            f"'{win['total_samples']} samples')")
    assert ui.errors == []


VIEW_JS = """() => ({crumbs: [...document.querySelectorAll('#transforms .chip .crumb')]
  .map(b => b.textContent), info: document.querySelector('#top-info').textContent,
  flame: document.querySelector('#flame-info').textContent,
  tree: window.__staxCallTree.tree && window.__staxCallTree.tree.total_samples,
  roots: (window.__staxCallTree.tree?.roots || []).map(r => r.func),
  funcs: [...document.querySelectorAll('#top tbody td.fn')].map(e => e.title).sort()})"""


def view(ui: Page) -> dict[str, Any]:
    """What the transforms change: breadcrumbs, the top table's rows and count, the flamegraph's
    summary and the call tree's total and roots."""
    return {**ui.page.evaluate(VIEW_JS), "top": top_rows(ui)}


def settled(ui: Page, crumbs: list[str], top_pred: str,
            like: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wait for a view with these breadcrumbs whose top table satisfies ``top_pred`` and whose
    call tree (drawn last in a refresh) has the same total as the top table; with ``like``
    (a view seen before), until the top table lists its functions and counts its samples too.
    Return the view."""
    want = json.dumps(crumbs, separators=(",", ":"), ensure_ascii=False)
    ui.wait(f"JSON.stringify(({CRUMBS_JS})()) === {json.dumps(want)}")
    if like is not None:
        funcs = json.dumps(like["funcs"], separators=(",", ":"), ensure_ascii=False)
        top_pred = (f"({top_pred}) && JSON.stringify(f.slice().sort()) === {json.dumps(funcs)}"
                    f" && document.querySelector('#top-info').textContent === "
                    f"{json.dumps(like['info'])}")
    ui.wait_top(top_pred)
    ui.wait("window.__staxCallTree.tree && document.querySelector('#top-info').textContent"
            ".startsWith(window.__staxCallTree.tree.total_samples + ' samples')")
    return view(ui)


def test_transforms_live_in_the_url(ui: Page, stax: Stax, split_top: dict[str, Any],
                                    tmp_path: Path) -> None:
    cli = {r["func"]: r for r in split_top["rows"]}
    total = split_top["total_samples"]
    ui.open()
    ui.wait("document.querySelector(\"#flame .frame[data-name='work_c']\")")
    whole = settled(ui, [], "f.includes('work_a') && f.includes('work_c')")
    # two transforms, each a history entry, readable in the address bar
    menu(ui, "#flame .frame[data-name='work_a']", "merge")
    ui.wait("location.hash.includes('tf=merge:work_a')")
    merged = settled(ui, ["merge work_a"], "!f.includes('work_a') && f.includes('work_c')")
    assert merged["top"]["main"][0] != whole["top"]["main"][0]  # work_a's self time is main's
    menu(ui, "#flame .frame[data-name='work_c']", "drop")
    ui.wait("location.hash.endsWith('tf=merge:work_a&tf=drop:work_c')")
    two = settled(ui, ["merge work_a", "drop work_c"], "!f.includes('work_c')")
    left = total - cli["work_c"]["total_samples"]
    assert two["info"].startswith(f"{left} samples") and two["tree"] == left, two
    # reload: the same transforms, the same numbers in the top table, flamegraph and call tree
    ui.page.reload()
    ui.wait("window.__stax && window.__stax.renders > 0")
    assert settled(ui, two["crumbs"], "true", two) == two
    # a subtree focus (a path of frames, with their binaries) survives a reload too
    menu(ui, "#flame .frame[data-name='main']", "focus_path")
    ui.wait("location.hash.includes('tf=path:')")
    focused = settled(ui, two["crumbs"] + [ui.page.evaluate(CRUMBS_JS)[-1]],
                      "!f.includes('work_c') && !f.includes('_start')")
    assert focused["roots"] == ["main"] and focused["crumbs"][-1].endswith("→ main")
    path = [p for p in ui.page.evaluate("location.hash").split("&") if p.startswith("tf=path:")]
    # NAME@BINARY nodes (a node in the binary of the one before: NAME alone), as in the crumb
    nodes = [n.split("@") for n in path[0].removeprefix("tf=path:").split("/")]
    assert [n[0] for n in nodes] == focused["crumbs"][-1].removeprefix("focus: ").split(" → ")
    assert nodes[-1] in (["main"], ["main", "split"]) and len(nodes[0]) == 2, path
    ui.page.reload()
    ui.wait("window.__stax && window.__stax.renders > 0")
    assert settled(ui, focused["crumbs"], "true", focused) == focused
    shots_of(ui, "#flame-panel", tmp_path, "transforms-url")
    # back undoes one transform at a time, forward redoes it
    for before in (two, merged, whole):
        ui.page.go_back()
        assert settled(ui, before["crumbs"], "true", before) == before
    assert ui.page.is_hidden("#transforms")
    ui.page.go_forward()
    assert settled(ui, merged["crumbs"], "true", merged) == merged
    assert ui.errors == []


def test_regex_and_case_search_filter_the_top_table_and_call_tree(
        ui: Page, split_top: dict[str, Any], tmp_path: Path) -> None:
    want = sorted(r["func"] for r in split_top["rows"] if r["func"] in ("work_a", "work_b"))
    assert want == ["work_a", "work_b"]
    ui.open()
    ui.wait_top("f.includes('work_c')")
    ui.page.check("#search-regex")
    ui.page.fill("#search", "work_[ab]")
    ui.wait_top("f.length === 2")
    assert sorted(ui.top_funcs()) == want
    ui.wait("location.hash.includes('regex=1')")
    # the flamegraph highlights the same two functions; the call tree keeps their rows (and
    # the path to them)
    marked = ui.page.eval_on_selector_all("#flame .frame.match",
                                          "es => es.map(e => e.dataset.name)")
    assert sorted(set(marked)) == want
    tree = ui.page.eval_on_selector_all("#calltree td.fn", "es => es.map(e => e.title)")
    assert set(want) <= set(tree) and "work_c" not in tree
    # case-sensitive: WORK_ matches nothing; case-insensitive it matches again
    ui.page.fill("#search", "WORK_[ab]")
    ui.wait_top("f.length === 2")
    ui.page.check("#search-case")
    ui.wait("document.querySelector('#top').dataset.filtered === '0'")
    shots_of(ui, "#flame-panel", tmp_path, "search-regex")
    # a bad regex says so and matches nothing
    ui.page.fill("#search", "work_[")
    ui.wait("document.querySelector('#search-info').textContent.startsWith('bad regex')")
    # the search survives a reload
    ui.page.fill("#search", "work_[ab]")
    ui.page.uncheck("#search-case")
    ui.wait_top("f.length === 2")
    ui.page.reload()
    ui.wait("window.__stax && window.__stax.renders > 0")
    ui.wait_top("f.length === 2")
    assert ui.page.input_value("#search") == "work_[ab]" and ui.page.is_checked("#search-regex")
    assert ui.errors == []


def test_paused_page_stops_refreshing_while_a_run_records(
        ui: Page, stax: Stax, workloads: dict[str, Path], tmp_path: Path) -> None:
    target = subprocess.Popen([str(workloads["spin"]), "60"])
    try:
        ui.open()
        ui.page.fill("#attach-pid", str(target.pid))
        ui.page.click("#attach-go")
        ui.wait("document.querySelector('#status').dataset.state === 'recording'")
        n = renders(ui)
        ui.wait(f"window.__stax.renders > {n + 2}")  # live: it re-renders on its own
        ui.page.click("#pause")
        assert ui.page.text_content("#pause") == "resume"
        time.sleep(0.3)  # a refresh already under way ends
        frozen, samples = renders(ui), ui.page.get_attribute("#status", "data-samples")
        updates = int(ui.page.evaluate("window.__stax.updates"))
        ui.wait(f"window.__stax.updates >= {updates + 4}")  # the server keeps pushing
        assert renders(ui) == frozen
        assert ui.page.get_attribute("#status", "data-samples") == samples
        st = cli_json(stax, "status")
        assert st["active"]["state"] == "recording" and st["active"]["samples"] > int(samples or 0)
        shots_of(ui, "header", tmp_path, "paused")
        ui.page.click("#pause")
        assert ui.page.text_content("#pause") == "pause"
        ui.wait(f"window.__stax.renders > {frozen}")
        ui.wait(f"Number(document.querySelector('#status').dataset.samples) > {samples}")
        ui.page.click("#stop")
        ui.wait("document.querySelector('#status').dataset.state === 'stopped'")
    finally:
        target.kill()
        target.wait()
    assert ui.errors == []


def _pprof_totals(data: bytes) -> list[int]:
    msg = pb_decode(gzip.decompress(data))
    totals: list[int] = []
    for raw in msg.get(2, []):  # Sample: value (field 2) is packed
        vals = [v for part in pb_decode(raw).get(2, []) for v in pb_packed(part)]
        totals = [a + b for a, b in zip(totals, vals, strict=True)] if totals else vals
    return totals


def test_export_buttons_download_the_run_with_tops_totals(
        ui: Page, stax: Stax, split_top: dict[str, Any], tmp_path: Path) -> None:
    ui.open()
    ui.wait("document.querySelectorAll('#exports button').length === 5")
    got: dict[str, bytes] = {}
    for fmt in ("pprof", "speedscope", "gecko", "folded", "archive"):
        with ui.page.expect_download() as dl:
            ui.page.click(f"#exports button[data-format='{fmt}']")
        path = tmp_path / dl.value.suggested_filename
        dl.value.save_as(path)
        assert path.name.startswith(f"stax-run-{split_top['run']['id']}")
        got[fmt] = path.read_bytes()
    total, ns = split_top["total_samples"], split_top["total_ns"]
    assert _pprof_totals(got["pprof"])[:2] == [total, ns]
    sp = json.loads(got["speedscope"])
    assert sum(sum(p["weights"]) for p in sp["profiles"] if p["name"].endswith(" on-CPU")) == ns
    gk = json.loads(got["gecko"])
    assert sum(t["samples"]["length"] for t in gk["threads"]
               if not t["name"].endswith(" (off-CPU)")) == total
    folded = [ln.rsplit(" ", 1) for ln in got["folded"].decode().splitlines()]
    assert sum(int(n) for st, n in folded if "[off-cpu:" not in st) == total
    (tmp_path / "run.stax").write_bytes(got["archive"])
    stax("open", str(tmp_path / "run.stax"), check=True)
    again = cli_json(stax, "top", "-n", "0", "--sort", "total")
    assert again["run"]["id"] != split_top["run"]["id"]
    assert again["total_samples"] == total and again["total_ns"] == ns
    # a bad format or run: an error line, not a traceback
    url = ui.page.evaluate("location.origin")
    for query, code in (("format=zip", 400), ("format=folded&run=99", 404),
                        ("format=folded&run=x", 400)):
        r = ui.page.request.get(f"{url}/export?{query}")
        assert r.status == code and r.text().startswith("error: "), (query, r.text())
    assert ui.errors == []
