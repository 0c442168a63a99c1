"""The web UI under load: first render on a 100k-sample run, live update rate, lost samples,
the longest main-thread task of every click, and stax-server's exit with a tab open.

(a) Records ``stax record -F 10000 -- spin S 2`` until the run holds 100k samples (``--quick``:
20k), then opens the page in headless Chromium (Playwright, Debian's /usr/bin/chromium) in a
fresh context several times and reads the time from navigation start to the page's first full
render (``window.__stax.firstRenderMs``: every panel filled from the server's answers).
(b) Records ``spin 4 2`` at -F 1999 twice, once with no page open and once with a page open
that re-queries every panel on each pushed update; reports the page's renders per second while
recording and the lost records (and samples) of both runs.
(c) Records ``stax record -F 10000 -- bigfunc S`` (one function of ~14,000 instructions) to
100k samples as well, and on that run clicks through the page as a user would: selecting the
largest function (annotate's biggest table, and its callers/callees), scrolling the annotation,
toggling a thread with it selected, a timeline range, the three flamegraph modes, a flamegraph
zoom, the inverted call tree, sorting the top table, a sandwich level, a transform added and
removed, a search, comparing it with the run of (a); then follows a run recording bigfunc live
with the largest function selected. For each step, from the click until the page has settled,
the renderer main thread's longest task and the most CPU time one task took, from a Chrome trace
(on a loaded machine a task's wall time also counts the time other processes held the CPU).
(d) With that page open, the time from SIGTERM to stax-server's exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, Env, bench_env, compile_c, emit, log, median, parse_args, ratio

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FIRST_RENDER_TARGET_S = 1.0
UPDATE_TARGET_PER_S = 1.0
LIVE_FREQ = 1999
LIVE_SECONDS = 4.0
LONG_TASK_TARGET_MS = 100
EXIT_TARGET_S = 2.0


def wait_js(page: Any, expr: str, timeout: float = 60.0) -> None:
    """Poll ``expr`` until truthy. Not ``wait_for_function``: it evaluates strings with ``eval``,
    which the page's Content-Security-Policy forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => !!({expr})"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {expr}")
        time.sleep(0.05)


def web_url(env: Env) -> str:
    st = env.stax_json("status")
    url = st["web"]["url"]
    if not url:
        raise SystemExit(f"error: the web UI is unavailable: {st['web']['error']}")
    return str(url)


def record_big(env: Env, target: int, argv: list[str], threads: int) -> dict[str, Any]:
    """``stax record -F 10000 -- ARGV S`` (``S``: seconds, the last argument, ``threads``
    threads busy), re-recorded longer until the run holds about ``target`` samples."""
    seconds = max(1.0, target / (10_000 * threads))
    run: dict[str, Any] = {}
    for _attempt in range(3):
        cmd = [*argv[:1], f"{seconds:g}", *argv[1:]]
        log(f"web: stax record -F 10000 -- {Path(cmd[0]).name} {' '.join(cmd[1:])}")
        out = env.stax("record", "--json", "-F", "10000", "--", *cmd).out
        run = json.loads(out[out.index("\n{") + 1 if not out.startswith("{") else 0:])
        if run["samples"] >= target or seconds >= 40:
            break
        seconds = round(min(40.0, seconds * 1.15 * target / max(1, run["samples"])), 1)
    return run


def first_render(browser: Any, url: str, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = ctx.new_page()
        page.goto(url)
        wait_js(page, "window.__stax && window.__stax.firstRenderMs !== null")
        out.append(page.evaluate("window.__stax.firstRenderMs") / 1000.0)
        ctx.close()
    return out


def live_run(env: Env, browser: Any | None, url: str) -> dict[str, Any]:
    """One recording of spin; with a browser, a page watches it. Renders/s and lost records."""
    page = ctx = None
    if browser is not None:
        ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = ctx.new_page()
        page.goto(url)
        wait_js(page, "window.__stax && window.__stax.renders > 0")
    proc = subprocess.Popen([env.stax_exe, "record", "--json", "-F", str(LIVE_FREQ), "--",
                             str(env.bin["spin"]), f"{LIVE_SECONDS:g}", "2"], env=env.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    renders: list[tuple[float, int]] = []
    if page is not None:
        wait_js(page, "document.querySelector('#status').dataset.state === 'recording'")
        t_end = time.monotonic() + LIVE_SECONDS - 1.0
        while time.monotonic() < t_end and proc.poll() is None:
            renders.append((time.monotonic(), page.evaluate("window.__stax.renders")))
            page.wait_for_timeout(250)
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"stax record failed: {err[-2000:]}")
    run = json.loads(out)
    if ctx is not None:
        ctx.close()
    rate = None
    if len(renders) >= 2:
        (t0, r0), (t1, r1) = renders[0], renders[-1]
        rate = (r1 - r0) / (t1 - t0) if t1 > t0 else None
    return {"samples": run["samples"], "lost_records": run["lost_records"],
            "renders_per_s": rate, "watched_s": (renders[-1][0] - renders[0][0])
            if len(renders) >= 2 else 0.0}


def settle(page: Any, before: int | None, quiet_ms: int = 600) -> None:
    """After a click: wait for the page's next full render (when ``before`` is its render
    count), then until it has been quiet for ``quiet_ms`` (no new render)."""
    if before is not None:
        wait_js(page, f"window.__stax.renders > {before}")
    last = page.evaluate("window.__stax.renders")
    while True:
        page.wait_for_timeout(quiet_ms)
        now = page.evaluate("window.__stax.renders")
        if now == last:
            return
        last = now


def drag(page: Any, selector: str, a: float, b: float) -> None:
    # below the sticky header
    page.eval_on_selector(selector, "e => { e.scrollIntoView(); window.scrollBy(0, "
                                    "-document.querySelector('header').offsetHeight - 6); }")
    box = page.locator(selector).bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + a * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + b * box["width"], y, steps=6)
    page.mouse.up()


def click_steps(page: Any, run_id: int, other_id: int) -> list[tuple[str, Any]]:
    """(name, action) of every step of (c); an action returns the render count to wait past
    (None: the step renders no new refresh)."""
    renders = lambda: page.evaluate("window.__stax.renders")  # noqa: E731

    def act(fn: Any, rerenders: bool = True) -> Any:
        def run() -> int | None:
            n = renders() if rerenders else None
            fn()
            return n
        return run

    def select_run() -> None:
        page.select_option("#run-picker", str(run_id))
        wait_js(page, f"document.querySelector('#status').textContent.startsWith('run {run_id} ')")

    def select_largest() -> None:
        page.click("#top tbody tr[data-i='0'] td.fn")
        wait_js(page, "document.querySelector('#annotate table.ann')", 120)
        wait_js(page, "document.querySelector('#butterfly #bf-table')", 120)

    def scroll_annotate() -> None:
        page.hover("#annotate")
        for _ in range(12):
            page.mouse.wheel(0, 2400)
            page.wait_for_timeout(60)

    def menu(selector: str, item: str) -> None:
        page.click(selector, button="right")
        wait_js(page, "!document.querySelector('#ctxmenu').hidden")
        page.click(f"#ctxmenu button[data-type='{item}']")

    def compare() -> None:
        page.select_option("#cmp-base", str(other_id))
        page.select_option("#cmp-cand", str(run_id))
        page.click("#cmp-go")
        wait_js(page, "document.querySelector('#cmp-table tbody tr')", 120)

    return [
        ("select the run", act(select_run)),
        ("select the largest function (annotate, callers/callees)", act(select_largest, False)),
        ("scroll the annotation", act(scroll_annotate, False)),
        ("thread on, the function selected", act(lambda: page.click("#threads tbody tr >> nth=0"))),
        ("thread off", act(lambda: page.click("#threads tbody tr >> nth=0"))),
        ("timeline range", act(lambda: drag(page, "#timeline", 0.3, 0.6))),
        ("off-CPU flamegraph", act(lambda: page.click(".modes button[data-mode='offcpu']"))),
        ("wall flamegraph", act(lambda: page.click(".modes button[data-mode='wall']"))),
        ("on-CPU flamegraph", act(lambda: page.click(".modes button[data-mode='cpu']"))),
        ("range cleared (Esc)", act(lambda: page.keyboard.press("Escape"))),
        ("flamegraph zoom", act(lambda: page.click("#flame .frame[data-name='main']"), False)),
        ("unzoom (Esc)", act(lambda: page.keyboard.press("Escape"), False)),
        ("invert the call tree", act(lambda: page.check("#calltree-invert"))),
        ("call tree back", act(lambda: page.uncheck("#calltree-invert"))),
        ("sort the top table by name", act(lambda: page.click("#top th[data-sort='func']"),
                                           False)),
        ("open a sandwich level", act(lambda: page.click(
            "#butterfly .bf-callers .twisty[data-open]"), False)),
        ("merge a function (transform)", act(lambda: menu("#flame .frame[data-name='main']",
                                                          "merge"))),
        ("remove the transform", act(lambda: page.click("#transforms button[data-remove='0']"))),
        ("search", act(lambda: page.fill("#search", "big"), False)),
        ("compare with another run", act(compare, False)),
    ]


class Tracer:
    """The renderer's main-thread tasks while an action runs, from a Chrome trace (DevTools
    protocol): the longest task's wall time, and the CPU time of the most CPU-hungry one (on a
    loaded machine a task's wall time also counts the time other processes had the CPU)."""

    CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline"]

    def __init__(self, page: Any) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)
        self.events: list[dict[str, Any]] = []
        self.done = False
        self.cdp.on("Tracing.dataCollected", lambda p: self.events.extend(p["value"]))
        self.cdp.on("Tracing.tracingComplete", lambda _p: setattr(self, "done", True))

    def run(self, action: Any) -> tuple[float, float]:
        self.events, self.done = [], False
        self.cdp.send("Tracing.start", {"traceConfig": {"includedCategories": self.CATEGORIES},
                                        "transferMode": "ReportEvents"})
        try:
            action()
        finally:
            self.cdp.send("Tracing.end")
            while not self.done:
                self.page.wait_for_timeout(50)
        main = {(e["pid"], e["tid"]) for e in self.events if e.get("name") == "thread_name"
                and e.get("args", {}).get("name") == "CrRendererMain"}
        tasks = [e for e in self.events if e.get("name") == "RunTask" and e.get("ph") == "X"
                 and (e["pid"], e["tid"]) in main]
        return (max((e.get("dur", 0) for e in tasks), default=0) / 1000,
                max((e.get("tdur", 0) for e in tasks), default=0) / 1000)


def clicks(browser: Any, url: str, run_id: int, other_id: int
           ) -> tuple[Any, Tracer, dict[str, tuple[float, float]]]:
    """Open a page and click through click_steps on run ``run_id``: (page, its tracer, {step:
    (longest task, most CPU in one task) in ms}). The page stays open for the live step and
    sigterm_exit."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    page.goto(url)
    wait_js(page, "window.__stax && window.__stax.renders > 0")
    tracer = Tracer(page)
    out: dict[str, tuple[float, float]] = {}
    for name, action in click_steps(page, run_id, other_id):
        out[name] = tracer.run(lambda a=action: settle(page, a()))
        log(f"web (c): {name}: longest task {out[name][0]:.0f} ms ({out[name][1]:.0f} ms CPU)")
    return page, tracer, out


def watch_live(env: Env, page: Any, tracer: Tracer, seconds: float) -> tuple[float, float]:
    """Record bigfunc live while the page follows the current run with the largest function
    selected: the longest main-thread task over the recording, and the most CPU in one (ms)."""
    proc = subprocess.Popen([env.stax_exe, "record", "-F", "1999", "--", str(env.bin["bigfunc"]),
                             f"{seconds + 3:g}"], env=env.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        page.select_option("#run-picker", "")
        wait_js(page, "document.querySelector('#status').dataset.state === 'recording'")
        wait_js(page, "document.querySelector('#top tbody tr[data-i=\"0\"]')")
        page.fill("#search", "")
        page.click("#top tbody td.fn[title='big_function']")
        wait_js(page, "document.querySelector('#annotate table.ann')", 120)
        longest = tracer.run(lambda: page.wait_for_timeout(int(seconds * 1000)))
        renders = page.evaluate("window.__stax.renders")
    finally:
        proc.wait(timeout=120)
    log(f"web (c): watching a live run, the largest function annotated: longest task "
        f"{longest[0]:.0f} ms ({longest[1]:.0f} ms CPU; {renders} renders so far)")
    return longest


def sigterm_exit(pid: int) -> float:
    """SIGTERM the server (a tab is open) and time its exit."""
    import signal

    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while time.monotonic() - t0 < 60:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                break
        time.sleep(0.01)
    return time.monotonic() - t0


def main() -> int:
    args = parse_args(__doc__ or "")
    if not os.path.exists(CHROMIUM):
        print(f"web: skipped, {CHROMIUM} is absent (apt-get install chromium)")
        return 0
    from playwright.sync_api import sync_playwright

    target = 20_000 if args.quick else 100_000
    reps = 2 if args.quick else 5
    with bench_env("web") as env, sync_playwright() as pw:
        env.bin["bigfunc"] = compile_c(ROOT / "tests" / "workloads" / "bigfunc.c",
                                       env.tmp / "bigfunc", "-fno-omit-frame-pointer")
        env.start_server()
        url = web_url(env)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            run = record_big(env, target, [str(env.bin["spin"]), "2"], 2)
            log(f"web (a): first render x{reps} on {run['samples']} samples")
            times = first_render(browser, url, reps)
            log("web (b): live run without a page, then with one")
            bare = live_run(env, None, url)
            watched = live_run(env, browser, url)
            big = record_big(env, target, [str(env.bin["bigfunc"])], 1)
            log(f"web (c): clicks on a {big['samples']}-sample run of bigfunc; (d) SIGTERM with "
                "the page open")
            page, tracer, steps = clicks(browser, url, big["id"], run["id"])
            steps["watching a live run, the largest function annotated"] = watch_live(
                env, page, tracer, 3.0 if args.quick else 6.0)
            pid = env.server_pid
            assert pid is not None
            exit_s = sigterm_exit(pid)
            env.server_pid = None
        finally:
            browser.close()
    fr = median(times)
    worst = max(steps, key=lambda k: steps[k][0])
    longest, cpu = steps[worst][0], max(v[1] for v in steps.values())
    doc = {
        "benchmark": "web", "quick": args.quick,
        "first_render": {"run_samples": run["samples"], "median_s": fr, "times_s": times,
                         "target_s": FIRST_RENDER_TARGET_S,
                         "over_target": ratio(fr, FIRST_RENDER_TARGET_S)},
        "live": {"workload": f"spin {LIVE_SECONDS:g} 2 at -F {LIVE_FREQ}",
                 "without_page": bare, "with_page": watched,
                 "target_renders_per_s": UPDATE_TARGET_PER_S,
                 "samples_with_over_without": ratio(watched["samples"], bare["samples"])},
        "clicks": {"run_samples": big["samples"], "longest_task_ms": longest,
                   "most_cpu_in_a_task_ms": cpu,
                   "steps": {k: {"longest_task_ms": v[0], "task_cpu_ms": v[1]}
                             for k, v in steps.items()},
                   "target_ms": LONG_TASK_TARGET_MS,
                   "over_target": [k for k, v in steps.items() if v[0] > LONG_TASK_TARGET_MS]},
        "sigterm": {"exit_s": exit_s, "target_s": EXIT_TARGET_S},
    }
    rate = watched["renders_per_s"]
    lines = [
        f"web UI: first render on a {run['samples']}-sample run: median {fr * 1000:.0f} ms of "
        f"{reps} (target {FIRST_RENDER_TARGET_S * 1000:.0f} ms, ratio "
        f"{ratio(fr, FIRST_RENDER_TARGET_S):.2f}"
        f"{'' if fr <= FIRST_RENDER_TARGET_S else ', MISSED'})",
        f"  live updates while recording: {rate if rate is not None else float('nan'):.2f} "
        f"renders/s over {watched['watched_s']:.1f} s (target >= {UPDATE_TARGET_PER_S:g}/s"
        f"{'' if rate is not None and rate >= UPDATE_TARGET_PER_S else ', MISSED'})",
        f"  lost records: {bare['lost_records']} without a page, {watched['lost_records']} with "
        f"one (target: no more with a page"
        f"{'' if watched['lost_records'] <= bare['lost_records'] else ', MISSED'})",
        f"  samples: {bare['samples']} without a page, {watched['samples']} with one "
        f"(ratio {ratio(watched['samples'], bare['samples']):.3f})",
        f"  longest main-thread task of {len(steps)} clicks on a {big['samples']}-sample run: "
        f"{longest:.0f} ms, {worst} (target {LONG_TASK_TARGET_MS} ms, ratio "
        f"{ratio(longest, LONG_TASK_TARGET_MS):.2f}"
        f"{'' if longest <= LONG_TASK_TARGET_MS else ', MISSED'}); the most CPU one task took: "
        f"{cpu:.0f} ms",
        "    longest task / its CPU time, per click:",
        *(f"    {v[0]:6.0f} / {v[1]:4.0f} ms  {k}{'  MISSED' if v[0] > LONG_TASK_TARGET_MS else ''}"
          for k, v in steps.items()),
        f"  stax-server exit after SIGTERM with a tab open: {exit_s:.2f} s (target "
        f"{EXIT_TARGET_S:g} s{'' if exit_s <= EXIT_TARGET_S else ', MISSED'})",
    ]
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
