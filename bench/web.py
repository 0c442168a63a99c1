"""The web UI under load: first render on a ~100k-sample run, live update rate, lost samples.

(a) Records ``stax record -F 10000 -- spin S 2`` until the run holds ~100k samples (``--quick``:
~20k), then opens the page in headless Chromium (Playwright, Debian's /usr/bin/chromium) in a
fresh context several times and reads the time from navigation start to the page's first full
render (``window.__stax.firstRenderMs``: every panel filled from the server's answers).
(b) Records ``spin 4 2`` at -F 1999 twice, once with no page open and once with a page open
that re-queries every panel on each pushed update; reports the page's renders per second while
recording and the lost records (and samples) of both runs.
(c) On the run of (a), the longest main-thread task (PerformanceObserver "longtask") while a
page annotates the hottest function and toggles a thread twice with it selected.
(d) With that page open, the time from SIGTERM to stax-server's exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from _common import Env, bench_env, emit, log, median, parse_args, ratio

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FIRST_RENDER_TARGET_S = 1.0
UPDATE_TARGET_PER_S = 1.0
LIVE_FREQ = 1999
LIVE_SECONDS = 4.0
LONG_TASK_TARGET_MS = 100
EXIT_TARGET_S = 2.0
OBSERVE = """() => { window.__long = [];
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) window.__long.push(e.duration);
  }).observe({type: 'longtask'}); }"""


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


def record_big(env: Env, target: int) -> dict[str, Any]:
    seconds = max(1.0, target / 20_000)
    run: dict[str, Any] = {}
    for _attempt in range(3):
        log(f"web (a): stax record -F 10000 -- spin {seconds:g} 2")
        run = env.stax_json("record", "-F", "10000", "--", str(env.bin["spin"]),
                            f"{seconds:g}", "2")
        if run["samples"] >= 0.9 * target or seconds >= 40:
            break
        seconds = round(min(40.0, seconds * 1.1 * target / max(1, run["samples"])), 1)
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


def clicks(browser: Any, url: str, run_id: int) -> tuple[Any, float]:
    """Open a page, annotate the hottest function, toggle a thread twice: (page, longest task
    in ms). The page stays open for sigterm_exit."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    page.goto(url)
    wait_js(page, "window.__stax && window.__stax.renders > 0")
    page.select_option("#run-picker", str(run_id))
    wait_js(page, f"document.querySelector('#status').textContent.startsWith('run {run_id} ')")
    page.evaluate(OBSERVE)
    page.click("#top tbody tr[data-i='0'] td.fn")
    page.wait_for_selector("#annotate table.ann, #annotate .note", timeout=60_000)
    for _ in range(2):
        page.click("#threads tbody tr >> nth=0")
        page.wait_for_timeout(1000)
    return page, float(max(page.evaluate("window.__long"), default=0.0))


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
        env.start_server()
        url = web_url(env)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            run = record_big(env, target)
            log(f"web (a): first render x{reps} on {run['samples']} samples")
            times = first_render(browser, url, reps)
            log("web (b): live run without a page, then with one")
            bare = live_run(env, None, url)
            watched = live_run(env, browser, url)
            log("web (c): annotate and thread toggles on the big run; (d) SIGTERM with it open")
            _page, longest = clicks(browser, url, run["id"])
            pid = env.server_pid
            assert pid is not None
            exit_s = sigterm_exit(pid)
            env.server_pid = None
        finally:
            browser.close()
    fr = median(times)
    doc = {
        "benchmark": "web", "quick": args.quick,
        "first_render": {"run_samples": run["samples"], "median_s": fr, "times_s": times,
                         "target_s": FIRST_RENDER_TARGET_S,
                         "over_target": ratio(fr, FIRST_RENDER_TARGET_S)},
        "live": {"workload": f"spin {LIVE_SECONDS:g} 2 at -F {LIVE_FREQ}",
                 "without_page": bare, "with_page": watched,
                 "target_renders_per_s": UPDATE_TARGET_PER_S,
                 "samples_with_over_without": ratio(watched["samples"], bare["samples"])},
        "clicks": {"longest_task_ms": longest, "target_ms": LONG_TASK_TARGET_MS},
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
        f"  longest main-thread task, annotate + thread toggles: {longest:.0f} ms (target "
        f"{LONG_TASK_TARGET_MS} ms{'' if longest <= LONG_TASK_TARGET_MS else ', MISSED'})",
        f"  stax-server exit after SIGTERM with a tab open: {exit_s:.2f} s (target "
        f"{EXIT_TARGET_S:g} s{'' if exit_s <= EXIT_TARGET_S else ', MISSED'})",
    ]
    emit(args, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
