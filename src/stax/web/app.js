// stax web UI: one WebSocket to stax-server, the same JSON messages as the Unix socket.
// A subscription pushes "update" events; the page re-queries what it shows (coalesced).
// This module wires the panels together: the refresh loop, the header (run picker, status,
// scope chips), the keyboard and the attach form. Each panel is its own module.

import { rpc, RpcError } from "./api.js";
import { $, S, scopeParams, stats, yieldToPage } from "./state.js";
import { esc, ms, secs } from "./format.js";
import { renderTimeline, setupBrush } from "./timeline.js";
import { flameTarget, renderFlame, setupFlame } from "./flame.js";
import { fetchIntervals, fetchWakers, renderIntervals, renderThreads, renderWakers,
  setupThreads } from "./tables.js";
import { renderTop, setupTop } from "./toptable.js";
import { refreshAnnotate, setupAnnotate } from "./annotate.js";
import { setupHelp } from "./help.js";
import { setupFlameKeys } from "./flamekeys.js";
import { callTreeTarget, refreshCallTree, renderCallTree, setupCallTree } from "./calltree.js";
import { refreshButterfly, setupButterfly } from "./butterfly.js";
import { fetchTracks, renderTracks, setupTracks } from "./tracks.js";
import { fetchStackChart, renderStackChart, setupStackChart } from "./stackchart.js";
import { setupSearch } from "./search.js";
import { setupUrlState } from "./urlstate.js";
import { setupControls } from "./controls.js";
import { setupTransforms, transformParams } from "./transforms.js";
import { refreshCompare, renderCompareRuns, setupCompare } from "./compare.js";

// --- refresh: coalesced, one at a time ---------------------------------------------------------

let refreshing = false, dirty = false;
async function refresh() {
  if (refreshing) { dirty = true; return; }
  refreshing = true;
  try {
    do { dirty = false; await refreshOnce(); } while (dirty);
  } catch (e) {
    if (!(e instanceof RpcError && e.code === "disconnected")) {
      stats.errors.push(String(e));
      $("#status").textContent = `error: ${e.message}`;
    }
  } finally { refreshing = false; }
}

async function refreshOnce() {
  const list = await rpc.call("list_runs");
  renderPicker(list); renderCompareRuns(list);
  const id = S.runId ?? list.current ?? (list.runs.length ? list.runs[list.runs.length - 1].id : null);
  S.run = list.runs.find((r) => r.id === id) || null;
  if (!S.run) { renderEmpty(); return; }
  const cmp = refreshCompare();  // a shown comparison with a side still recording
  const p = scopeParams(), tp = { ...p, ...transformParams() };  // the stack transforms
  const tl = { run: S.run.id, buckets: 200 };
  if (S.tid !== null) tl.tid = S.tid;
  if (S.view) { tl.start_ns = Math.floor(S.view[0]); tl.end_ns = Math.ceil(S.view[1]); }
  const [flame, top, threads, timeline, wakers, intervals, tracks] = await Promise.all([
    rpc.call("flamegraph", { ...tp, mode: S.mode, threshold_pct: 0.05 }).catch((e) => ({ error: e })),
    rpc.call("top", { ...tp, sort: "total", limit: 0 }),  // every function: sorted on the page
    rpc.call("threads", { ...p, tid: undefined, limit: 0 }),  // the range scopes it, not the thread
    rpc.call("timeline", tl),
    fetchWakers(p),
    fetchIntervals(p),
    fetchTracks(),
  ]);
  S.run = top.run || S.run;
  S.flame = flame; S.top = top; S.threads = threads; S.timeline = timeline;
  // each group of panels in its own task: the browser lays out and paints in between
  renderStatus(); renderScope(); renderTimeline(); renderFlame();
  await yieldToPage();
  renderTop(); renderThreads(); renderWakers(wakers); renderIntervals(intervals);
  await yieldToPage();
  renderTracks(tracks);
  const chart = fetchStackChart();  // its default thread: the busiest in `threads`
  await yieldToPage();
  renderStackChart(await chart);
  await Promise.all([refreshAnnotate(false), refreshCallTree(tp), refreshButterfly(false), cmp]);
  stats.renders++;
  if (stats.firstRenderMs === null) stats.firstRenderMs = performance.now();
  document.body.dataset.samples = String(S.run.samples);
  document.body.dataset.renders = String(stats.renders);
}

function renderEmpty() {
  S.flame = S.top = S.threads = S.timeline = null;
  $("#status").textContent = "no runs yet — start one with: stax record -- COMMAND";
  $("#flame").innerHTML = ""; $("#flame").style.height = "0px";
  $("#flame-note").textContent = ""; $("#flame-info").textContent = "";
  $("#top tbody").innerHTML = ""; $("#threads tbody").innerHTML = "";
  $("#timeline").innerHTML = ""; $("#annotate").textContent = "";
  $("#threads-note").textContent = ""; $("#wakers").innerHTML = ""; $("#intervals").innerHTML = "";
  $("#calltree tbody").innerHTML = ""; $("#butterfly").innerHTML = "";
  renderScope();
  stats.renders++;
  if (stats.firstRenderMs === null) stats.firstRenderMs = performance.now();
  document.body.dataset.samples = "0";
  document.body.dataset.renders = String(stats.renders);
}

// --- header: run picker and status -------------------------------------------------------------

function renderPicker(list) {
  const sel = $("#run-picker");
  const want = [`<option value="">follow current${list.current ? ` (run ${list.current})` : ""}</option>`];
  for (const r of [...list.runs].reverse()) {
    want.push(`<option value="${r.id}">run ${r.id} [${r.state}] ${esc(r.command)}</option>`);
  }
  const html = want.join("");
  if (sel.dataset.html !== html) {
    sel.innerHTML = html; sel.dataset.html = html;
  }
  sel.value = S.runId === null ? "" : String(S.runId);
}

function renderStatus() {
  const r = S.run;
  const off = r.offcpu || {};
  const offText = off.intervals_recorded === false ? "no off-CPU intervals"
    : `${r.intervals ?? 0} intervals (${ms(r.offcpu_ns)} off-CPU, ${r.wakeups ?? 0} wakeups)`;
  const parts = [`run ${r.id}`, `[${r.state}]`, `pid ${r.pid}`, r.command,
    `${r.samples} samples`, offText, `${r.lost_records} lost`,
    `${(r.elapsed_ms / 1000).toFixed(1)} s`];
  if (r.end_reason) parts.push(`(${r.end_reason})`);
  const st = $("#status");
  $("#stop").hidden = r.state !== "recording";
  st.textContent = parts.join("  ·  ");
  st.dataset.state = r.state;
  st.dataset.samples = r.samples;
  st.dataset.intervals = r.intervals ?? 0;
  st.classList.toggle("error", !!r.error || r.lost_records > 0);
  const offNotes = [off.problem && `off-CPU intervals unavailable: ${off.problem}`,
    off.wakeups_problem && `wakeups unavailable: ${off.wakeups_problem}`];
  st.title = [r.error, ...(r.notes || []), ...offNotes].filter(Boolean).join("\n");
}

function renderScope() {
  const chips = [];
  if (S.tid !== null) {
    const th = S.threads?.rows?.find((t) => t.tid === S.tid);
    chips.push(`<span class="chip" data-scope="tid">thread ${S.tid}${th ? ` (${esc(th.name)})` : ""}<button data-clear="tid" title="clear">×</button></span>`);
  }
  if (S.range) {
    chips.push(`<span class="chip" data-scope="range">${secs(S.range[0])} – ${secs(S.range[1])}<button data-clear="range" title="clear">×</button></span>`);
  }
  if (S.zoom.length) {
    const last = S.zoom[S.zoom.length - 1].split("\u0000")[0];
    chips.push(`<span class="chip" data-scope="zoom">zoom: ${esc(last)}<button data-clear="zoom" title="unzoom (Esc)">×</button></span>`);
  }
  $("#scope").innerHTML = chips.length ? chips.join("") : `<span class="muted">scope: whole run, all threads</span>`;
}
// --- keyboard, scope chips, picker -------------------------------------------------------------

function setupKeys() {
  document.addEventListener("keydown", (ev) => {
    const inInput = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement;
    if (ev.key === "/" && !inInput) { ev.preventDefault(); $("#search").focus(); $("#search").select(); return; }
    if (ev.key !== "Escape") return;
    if (ev.target === $("#search") && S.search) {
      $("#search").value = ""; S.search = ""; $("#search").blur(); renderFlame(); renderTop(); renderCallTree(); return;
    }
    if (S.zoom.length) { S.zoom = []; renderFlame(); renderScope(); return; }
    if (S.range) { S.range = null; refresh(); }
  });
  $("#scope").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-clear]");
    if (!b) return;
    const what = b.dataset.clear;
    if (what === "tid") S.tid = null;
    if (what === "range") S.range = null;
    if (what === "zoom") S.zoom = [];
    refresh();
  });
  $("#attach").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("#attach-msg"), pid = Number($("#attach-pid").value);
    const secs = $("#attach-secs").value === "" ? null : Number($("#attach-secs").value);
    msg.textContent = "";
    if (!Number.isInteger(pid) || pid < 1) { msg.textContent = "enter a pid"; return; }
    const params = { pid };
    if (secs) params.time_limit_ms = Math.round(secs * 1000);
    try {
      await rpc.call("start_attach", params);
      S.runId = null; S.tid = null; S.range = null; S.view = null; S.zoom = []; S.selFunc = null;
      refresh();
    } catch (e) { msg.textContent = e.message; }
  });
  $("#stop").addEventListener("click", async () => {
    try { await rpc.call("stop", S.run ? { run: S.run.id } : {}); } catch (e) { $("#attach-msg").textContent = e.message; }
    refresh();
  });
  $("#run-picker").addEventListener("change", (ev) => {
    S.runId = ev.target.value === "" ? null : Number(ev.target.value);
    S.tid = null; S.range = null; S.view = null; S.zoom = []; S.selFunc = null;
    refresh();
  });
}

// --- start -------------------------------------------------------------------------------------

rpc.onEvent = (msg) => {
  if (msg.event !== "update") return;
  stats.updates++;
  if (S.paused) stats.skipped = (stats.skipped || 0) + 1; else refresh();
};
rpc.onState = async (up, retryMs) => {
  $("#conn").className = `conn ${up ? "up" : "down"}`;
  $("#conn").dataset.state = up ? "connected" : "disconnected";
  const again = up ? "" : `retrying in ${(retryMs / 1000).toFixed(1)} s`;
  $("#conn").title = up ? "connected to stax-server" : `disconnected; ${again}`;
  $("#conn").textContent = up ? "" : "disconnected";
  if (!up) { $("#status").textContent = `disconnected from stax-server; ${again}`; $("#status").dataset.state = "disconnected"; return; }
  try { await rpc.call("subscribe", { interval_ms: 500 }); } catch (e) { stats.errors.push(String(e)); }
  refresh();
};
setupBrush(refresh);
setupTracks(refresh);
setupStackChart();
// a function selected in one panel: the others show it (annotate, callers/callees)
const selected = () => { renderScope(); renderTop(); renderFlame(); renderCallTree(); refreshAnnotate(true); refreshButterfly(true); };
setupFlame({ refresh, selected });
setupTop({ selected });
setupCallTree({ refresh, selected });
setupButterfly({ selected });
setupThreads(refresh);
setupAnnotate();
setupHelp();
setupFlameKeys(renderFlame);
setupTransforms({ changed: () => { S.zoom = []; refresh(); } },
  [[$("#flame"), ".frame", flameTarget], [$("#calltree tbody"), "tr[data-i]", callTreeTarget]]);
setupCompare();
setupKeys();
setupSearch(() => { renderFlame(); renderTop(); renderCallTree(); });
setupControls({ refresh });
setupUrlState({ refresh });
rpc.connect();
