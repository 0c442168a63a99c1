// stax web UI: one WebSocket to stax-server, the same JSON messages as the Unix socket.
// A subscription pushes "update" events; the page re-queries what it shows (coalesced).
"use strict";

const $ = (sel) => document.querySelector(sel);
const FRAME_H = 18;

const S = {
  runId: null,        // null: follow the server's current run
  run: null,          // run summary being shown
  tid: null,          // thread scope
  range: null,        // [start_ns, end_ns] relative to the run's first sample
  mode: "cpu",        // flamegraph mode
  sort: "self",
  zoom: [],           // path of frame keys from the root to the zoomed node
  search: "",
  selFunc: null,      // {func, binary} for the annotate pane
  flame: null, top: null, threads: null, timeline: null,
  annotateKey: null, annotateAt: 0,
};
// What tests and the benchmark read: renders so far, time of the first full render.
window.__stax = { renders: 0, firstRenderMs: null, updates: 0, errors: [] };

// --- RPC over the WebSocket --------------------------------------------------------------------

// A server bound to a non-loopback address wants its token (the URL `stax status` prints carries
// it as ?token=): kept in session storage for this tab, taken out of the address bar, and sent
// as the WebSocket's ?token= query parameter.
const TOKEN = (() => {
  const q = new URLSearchParams(location.search);
  if (q.has("token")) {
    sessionStorage.setItem("stax-token", q.get("token"));
    q.delete("token");
    const rest = q.toString();
    history.replaceState(history.state, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  return sessionStorage.getItem("stax-token");
})();

class Rpc {
  constructor(onEvent, onState) {
    this.onEvent = onEvent; this.onState = onState;
    this.next = 1; this.waiting = new Map(); this.ws = null; this.open = false;
  }
  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const auth = TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "";
    const ws = new WebSocket(`${proto}//${location.host}/ws${auth}`);
    this.ws = ws;
    ws.onopen = () => { this.open = true; this.onState(true); };
    ws.onclose = () => {
      this.open = false;
      for (const [, w] of this.waiting) w.reject(new RpcError("disconnected", "connection closed"));
      this.waiting.clear();
      this.onState(false);
      setTimeout(() => this.connect(), 1000);
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data, ev.data.includes('"addr"') ? exactAddr : undefined); } catch { return; }
      if (msg.event) { this.onEvent(msg); return; }
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.error) w.reject(new RpcError(msg.error.code, msg.error.message));
      else w.resolve(msg.result);
    };
  }
  call(method, params = {}) {
    if (!this.open) return Promise.reject(new RpcError("disconnected", "not connected"));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
}
// Kernel addresses exceed 2^53: keep `addr` fields exact (as BigInt) where the number is not.
function exactAddr(key, value, ctx) {
  if (key === "addr" && typeof value === "number" && !Number.isSafeInteger(value) && ctx?.source) {
    return BigInt(ctx.source);
  }
  return value;
}
class RpcError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

// --- formatting --------------------------------------------------------------------------------

const esc = (s) => String(s ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
function ms(ns) {
  const v = (ns || 0) / 1e6;
  if (v >= 10000) return `${(v / 1000).toFixed(1)} s`;
  return `${v.toFixed(1)} ms`;
}
const pct = (x) => `${(x || 0).toFixed(1)}%`;
const secs = (ns) => `${(ns / 1e9).toFixed(2)} s`;
function hue(name, binary) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) | 0;
  const k = Math.abs(h);
  if (String(binary).startsWith("[kernel")) return `hsl(${190 + (k % 30)}, 55%, ${62 + (k % 10)}%)`;
  return `hsl(${10 + (k % 45)}, ${70 + (k % 20)}%, ${58 + (k % 12)}%)`;
}

// --- refresh: coalesced, one at a time ---------------------------------------------------------

let refreshing = false, dirty = false;
async function refresh() {
  if (refreshing) { dirty = true; return; }
  refreshing = true;
  try {
    do { dirty = false; await refreshOnce(); } while (dirty);
  } catch (e) {
    if (!(e instanceof RpcError && e.code === "disconnected")) {
      window.__stax.errors.push(String(e));
      $("#status").textContent = `error: ${e.message}`;
    }
  } finally { refreshing = false; }
}

function scopeParams() {
  const p = {};
  if (S.run) p.run = S.run.id;
  if (S.tid !== null) p.tid = S.tid;
  if (S.range) { p.start_ns = Math.floor(S.range[0]); p.end_ns = Math.ceil(S.range[1]); }
  return p;
}

async function refreshOnce() {
  const list = await rpc.call("list_runs");
  renderPicker(list);
  const id = S.runId ?? list.current ?? (list.runs.length ? list.runs[list.runs.length - 1].id : null);
  S.run = list.runs.find((r) => r.id === id) || null;
  if (!S.run) { renderEmpty(); return; }
  const p = scopeParams();
  const tl = { run: S.run.id, buckets: 200 };
  if (S.tid !== null) tl.tid = S.tid;
  const [flame, top, threads, timeline, wakers, intervals] = await Promise.all([
    rpc.call("flamegraph", { ...p, mode: S.mode, threshold_pct: 0.05 }).catch((e) => ({ error: e })),
    rpc.call("top", { ...p, sort: S.sort, limit: 100 }),
    rpc.call("threads", { run: S.run.id, limit: 0 }),
    rpc.call("timeline", tl),
    fetchWakers(p),
    fetchIntervals(p),
  ]);
  S.run = top.run || S.run;
  S.flame = flame; S.top = top; S.threads = threads; S.timeline = timeline;
  renderStatus(); renderScope(); renderTimeline(); renderFlame(); renderTop(); renderThreads();
  renderWakers(wakers); renderIntervals(intervals);
  await refreshAnnotate(false);
  window.__stax.renders++;
  if (window.__stax.firstRenderMs === null) window.__stax.firstRenderMs = performance.now();
  document.body.dataset.samples = String(S.run.samples);
  document.body.dataset.renders = String(window.__stax.renders);
}

function renderEmpty() {
  S.flame = S.top = S.threads = S.timeline = null;
  $("#status").textContent = "no runs yet — start one with: stax record -- COMMAND";
  $("#flame").innerHTML = ""; $("#flame").style.height = "0px";
  $("#flame-note").textContent = ""; $("#flame-info").textContent = "";
  $("#top tbody").innerHTML = ""; $("#threads tbody").innerHTML = "";
  $("#timeline").innerHTML = ""; $("#annotate").textContent = "";
  $("#threads-note").textContent = ""; $("#wakers").innerHTML = ""; $("#intervals").innerHTML = "";
  renderScope();
  window.__stax.renders++;
  if (window.__stax.firstRenderMs === null) window.__stax.firstRenderMs = performance.now();
  document.body.dataset.samples = "0";
  document.body.dataset.renders = String(window.__stax.renders);
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

// --- timeline ----------------------------------------------------------------------------------

let brushing = false;
function renderTimeline() {
  const t = S.timeline, el = $("#timeline");
  if (brushing) return;  // keep the range being dragged on screen
  if (!t || !t.counts.length) { el.innerHTML = ""; return; }
  const n = t.counts.length, max = Math.max(1, ...t.counts);
  const W = 1000, H = 90, bw = W / n;
  const bars = t.counts.map((c, i) => c ? `<rect class="bar" x="${(i * bw).toFixed(2)}" y="${(H - 14 - (c / max) * (H - 18)).toFixed(2)}" width="${Math.max(bw - 0.5, 0.5).toFixed(2)}" height="${((c / max) * (H - 18)).toFixed(2)}"></rect>` : "").join("");
  const span = t.bucket_ns * n;
  let brush = "";
  if (S.range) {
    const x0 = (S.range[0] / span) * W, x1 = (S.range[1] / span) * W;
    brush = `<rect class="brush" x="${x0}" y="0" width="${Math.max(1, x1 - x0)}" height="${H - 12}"></rect>`;
  }
  const none = t.counts.some((c) => c) ? "" : `<text class="axis" x="${W / 2}" y="${H / 2}" text-anchor="middle">no on-CPU samples in this scope</text>`;
  const axis = `${none}<text class="axis" x="2" y="${H - 2}">0 s</text><text class="axis" x="${W - 2}" y="${H - 2}" text-anchor="end">${secs(span)}</text>`;
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">${bars}${brush}${axis}</svg>`;
  el.dataset.span = span;
}

function setupBrush() {
  const el = $("#timeline");
  let start = null, rect = null;
  const frac = (ev) => {
    const b = el.getBoundingClientRect();
    return Math.min(1, Math.max(0, (ev.clientX - b.left) / b.width));
  };
  el.addEventListener("mousedown", (ev) => {
    if (!S.timeline) return;
    start = frac(ev); ev.preventDefault(); brushing = true;
    const svg = el.querySelector("svg");
    rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    rect.setAttribute("class", "brush"); rect.setAttribute("y", "0"); rect.setAttribute("height", "78");
    svg?.appendChild(rect);
  });
  window.addEventListener("mousemove", (ev) => {
    if (start === null || !rect) return;
    const f = frac(ev);
    rect.setAttribute("x", String(Math.min(start, f) * 1000));
    rect.setAttribute("width", String(Math.abs(f - start) * 1000));
  });
  window.addEventListener("mouseup", (ev) => {
    if (start === null) return;
    const f = frac(ev), a = Math.min(start, f), b = Math.max(start, f);
    start = null; rect = null; brushing = false;
    if (b - a < 0.005) return;  // a click, not a drag
    const span = S.timeline.bucket_ns * S.timeline.counts.length;
    S.range = [a * span, b * span];
    refresh();
  });
  el.addEventListener("dblclick", () => { S.range = null; refresh(); });
}

// --- flamegraph (icicle: roots at the top) -----------------------------------------------------

const keyOf = (n) => `${n.func}\u0000${n.binary}`;
const weightOf = (n) => n.time_ns || n.samples || 0;

function renderFlame() {
  const f = S.flame, el = $("#flame"), note = $("#flame-note"), info = $("#flame-info");
  info.textContent = "";
  for (const b of document.querySelectorAll(".modes button")) b.classList.toggle("on", b.dataset.mode === S.mode);
  if (!f || f.error) {
    el.innerHTML = ""; el.style.height = "0px";
    note.textContent = f?.error ? `flamegraph unavailable: ${f.error.message}` : "";
    return;
  }
  const roots = f.roots || [];
  const total = roots.reduce((a, n) => a + weightOf(n), 0);
  if (!roots.length || !total) {
    el.innerHTML = ""; el.style.height = "0px";
    if (S.mode !== "cpu") note.textContent = f.note ? `no off-CPU data in this run (${f.note})` : "no off-CPU data in this run";
    else note.textContent = f.note || "no samples in this scope";
    return;
  }
  note.textContent = f.note || "";
  info.textContent = flameSummary(f);
  // follow the zoom path as far as it still exists
  const allNode = { func: "all", binary: "", children: roots, time_ns: total, samples: f.total_samples };
  let node = allNode; const path = [];
  for (const k of S.zoom) {
    const c = (node.children || []).find((x) => keyOf(x) === k);
    if (!c) break;
    path.push(c); node = c;
  }
  if (path.length !== S.zoom.length) S.zoom = path.map(keyOf);
  const W = el.clientWidth || 1000;
  const out = [];
  const q = S.search.toLowerCase();
  let matchW = 0, matches = 0;
  const sel = S.selFunc ? `${S.selFunc.func}\u0000${S.selFunc.binary}` : null;
  const frame = (n, x, w, depth, isRoot, pathIdx) => {
    const m = q && n.func.toLowerCase().includes(q);
    const cls = ["frame"];
    if (isRoot) cls.push("root");
    if (m) cls.push("match");
    if (sel && keyOf(n) === sel) cls.push("selected");
    out.push(`<div class="${cls.join(" ")}" data-path="${pathIdx}" data-name="${esc(n.func)}" style="left:${x.toFixed(2)}px;width:${Math.max(w, 1).toFixed(2)}px;top:${depth * FRAME_H}px;${isRoot ? "" : `background:${hue(n.func, n.binary)}`}">${w > 24 ? esc(n.func) : ""}</div>`);
    return m;
  };
  // row 0: "all"; then the zoom path, each full width
  const nodes = [allNode, ...path];
  nodes.forEach((n, i) => {
    if (frame(n, 0, W, i, i === 0, `z${i}`)) { matches++; if (!matchW) matchW = weightOf(n); }
  });
  const base = nodes.length;
  const scale = W / Math.max(1, weightOf(node));
  let maxDepth = base;
  const walk = (n, x, depth, inMatch, id) => {
    const w = weightOf(n) * scale;
    if (w < 0.6) return;
    const m = frame(n, x, w, depth, false, id);
    if (m) { matches++; if (!inMatch) matchW += weightOf(n); }
    maxDepth = Math.max(maxDepth, depth + 1);
    let cx = x;
    (n.children || []).forEach((c, i) => { walk(c, cx, depth + 1, inMatch || m, `${id}.${i}`); cx += weightOf(c) * scale; });
  };
  let cx = 0;
  (node.children || []).forEach((c, i) => { walk(c, cx, base, nodes.some((z) => q && z.func.toLowerCase().includes(q)), `c${i}`); cx += weightOf(c) * scale; });
  el.innerHTML = out.join("");
  el.style.height = `${maxDepth * FRAME_H + 2}px`;
  el.classList.toggle("searching", !!q);
  el.dataset.zoom = S.zoom.length ? S.zoom[S.zoom.length - 1].split("\u0000")[0] : "";
  $("#search-info").textContent = q ? `${matches} frames, ${pct((100 * matchW) / Math.max(1, total))} of the time` : "";
  // the node objects behind each element, for hover and click
  el._nodes = { all: allNode, path, zoomed: node };
}

// What the tree in view weighs, per mode: off-CPU frames are weighted by blocked time.
function flameSummary(f) {
  const parts = [];
  if (f.mode === "offcpu") {
    parts.push(`off-CPU: ${f.intervals} intervals, ${ms(f.offcpu_ns)} blocked; widths are blocked time`);
  } else if (f.mode === "wall") {
    parts.push(`wall: ${f.samples} samples (${ms(f.oncpu_ns)} on-CPU) + ${f.intervals} intervals ` +
      `(${ms(f.offcpu_ns)} off-CPU); widths are time`);
  }
  if (f.hidden && f.hidden.nodes) parts.push(`${f.hidden.nodes} small frames hidden (${ms(f.hidden.time_ns)})`);
  return parts.join(" · ");
}

function nodeForElement(div) {
  const el = $("#flame"), id = div.dataset.path, info = el._nodes;
  if (!info) return null;
  if (id.startsWith("z")) {
    const i = Number(id.slice(1));
    return { node: i === 0 ? info.all : info.path[i - 1], zoomPath: info.path.slice(0, i) };
  }
  const idx = id.slice(1).split(".").map(Number);
  let n = info.zoomed; const chain = [...info.path];
  for (const i of idx) { n = n.children[i]; chain.push(n); }
  return { node: n, zoomPath: chain };
}

function setupFlame() {
  const el = $("#flame"), tip = $("#tooltip");
  el.addEventListener("click", (ev) => {
    const div = ev.target.closest(".frame");
    if (!div) return;
    const hit = nodeForElement(div);
    if (!hit) return;
    S.zoom = hit.zoomPath.map(keyOf);
    if (hit.node.func !== "all" || hit.zoomPath.length) {
      S.selFunc = { func: hit.node.func, binary: hit.node.binary };
    }
    renderFlame(); renderScope(); renderTop(); refreshAnnotate(true);
  });
  el.addEventListener("mousemove", (ev) => {
    const div = ev.target.closest(".frame");
    if (!div) { tip.hidden = true; return; }
    const hit = nodeForElement(div);
    if (!hit) { tip.hidden = true; return; }
    const n = hit.node;
    const total = (S.flame.roots || []).reduce((a, r) => a + weightOf(r), 0) || 1;
    const kids = (n.children || []).reduce((a, c) => a + weightOf(c), 0) + (n.hidden?.time_ns || 0);
    const self = n.func === "all" ? 0 : Math.max(0, weightOf(n) - kids);
    tip.innerHTML = `<b>${esc(n.func)}</b><br>${n.binary ? `binary: ${esc(n.binary)}<br>` : ""}` +
      `total: ${ms(weightOf(n))} (${pct((100 * weightOf(n)) / total)})<br>` +
      `self: ${ms(self)} (${pct((100 * self) / total)})<br>` +
      `${S.flame.mode === "cpu" || !S.flame.mode ? "samples" : "samples + intervals"}: ${n.samples ?? "-"}`;
    tip.hidden = false;
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    const y = ev.clientY + 16 + tip.offsetHeight > window.innerHeight ? ev.clientY - tip.offsetHeight - 8 : ev.clientY + 16;
    tip.style.left = `${x}px`; tip.style.top = `${y}px`;
  });
  el.addEventListener("mouseleave", () => { tip.hidden = true; });
  for (const b of document.querySelectorAll(".modes button")) {
    b.addEventListener("click", () => { S.mode = b.dataset.mode; S.zoom = []; refresh(); });
  }
  $("#search").addEventListener("input", (ev) => { S.search = ev.target.value; renderFlame(); });
}

// --- top table ---------------------------------------------------------------------------------

function renderTop() {
  const t = S.top, body = $("#top tbody");
  for (const th of document.querySelectorAll("#top th[data-sort]")) th.classList.toggle("sorted", th.dataset.sort === S.sort);
  $("#top-info").textContent = t ? `${t.total_samples} samples, ${ms(t.total_ns)} on-CPU, ${t.functions} functions` : "";
  if (!t) { body.innerHTML = ""; return; }
  const sel = S.selFunc ? `${S.selFunc.func}\u0000${S.selFunc.binary}` : null;
  if (!t.rows.length) {
    const off = S.run && S.run.intervals > 0 ? "; its blocked time is in the off-CPU flamegraph" : "";
    body.innerHTML = `<tr class="empty"><td colspan="7" class="muted">no on-CPU samples in this scope${off}</td></tr>`;
    return;
  }
  body.innerHTML = t.rows.map((r, i) => `<tr data-i="${i}" class="${sel === keyOf(r) ? "selected" : ""}">` +
    `<td class="num">${ms(r.self_ns)}</td><td class="num">${pct(r.self_pct)}</td>` +
    `<td class="num">${ms(r.total_ns)}</td><td class="num">${pct(r.total_pct)}</td>` +
    `<td class="num">${S.sort === "self" ? r.self_samples : r.total_samples}</td>` +
    `<td class="fn" title="${esc(r.func)}">${esc(r.func)}</td><td>${esc(r.binary)}</td></tr>`).join("");
}

function setupTop() {
  for (const th of document.querySelectorAll("#top th[data-sort]")) {
    th.addEventListener("click", () => { S.sort = th.dataset.sort; refresh(); });
  }
  $("#top tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (!tr || !S.top) return;
    const r = S.top.rows[Number(tr.dataset.i)];
    if (!r) return;
    S.selFunc = { func: r.func, binary: r.binary };
    renderTop(); renderFlame(); refreshAnnotate(true);
  });
}

// --- threads -----------------------------------------------------------------------------------

function renderThreads() {
  const t = S.threads, body = $("#threads tbody");
  if (!t) { body.innerHTML = ""; return; }
  const anyOff = t.rows.some((r) => r.offcpu_ns > 0) || (S.run && S.run.intervals > 0);
  $("#threads-note").textContent = anyOff ? "" : "no off-CPU data in this run";
  body.innerHTML = t.rows.map((r) => {
    const by = Object.entries(r.offcpu_by_reason || {});
    const why = by.length ? `off-CPU by reason:\n${by.map(([k, v]) => `${k}: ${ms(v)}`).join("\n")}` +
      `\n${r.intervals ?? 0} intervals` : "no off-CPU intervals";
    return `<tr data-tid="${r.tid}" data-name="${esc(r.name)}" class="${r.tid === S.tid ? "selected" : ""}">` +
      `<td class="num">${r.tid}</td><td>${esc(r.name)}</td><td class="num">${ms(r.oncpu_ns)}</td>` +
      `<td class="num">${anyOff ? ms(r.offcpu_ns) : "-"}</td><td class="num">${r.samples}</td>` +
      `<td class="blocked" title="${esc(why)}">${esc(r.blocked || "-")}${by.length > 1 ? ` <span class="muted">+${by.length - 1}</span>` : ""}</td></tr>`;
  }).join("");
}

function setupThreads() {
  $("#threads tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (!tr) return;
    const tid = Number(tr.dataset.tid);
    S.tid = S.tid === tid ? null : tid;
    S.zoom = [];
    refresh();
  });
}

// --- wakers and off-CPU intervals ----------------------------------------------------------
// Older servers lack these methods: the panels then stay empty instead of failing the page.

const absent = new Set();
async function optional(method, params) {
  if (absent.has(method)) return null;
  try {
    return await rpc.call(method, params);
  } catch (e) {
    if (e.code === "unknown_method") absent.add(method);
    if (e.code === "disconnected") throw e;
    return { error: e };
  }
}
// Wakers and intervals walk every wakeup in the server: while a run records they are re-asked
// at most every SLOW_MS (sooner when the scope changes), so a watching page costs ingest little.
const SLOW_MS = 2000;
const slowCache = new Map();
async function throttled(method, params) {
  const key = JSON.stringify([params, S.run.state]);
  const hit = slowCache.get(method), now = performance.now();
  if (hit && hit.key === key && (S.run.state !== "recording" || now - hit.at < SLOW_MS)) return hit.res;
  const res = await optional(method, params);
  slowCache.set(method, { key, at: now, res });
  return res;
}
const isKernel = (b) => String(b).startsWith("[kernel");
// the user-space part of a stack (leaf first), else its outermost kernel frames
function stackBrief(stack, n = 3) {
  const user = (stack || []).filter((f) => !isKernel(f.binary));
  const pick = (user.length ? user : (stack || [])).slice(0, n).map((f) => f.func);
  return pick.join(" ← ");
}
const stackTitle = (stack) => (stack || []).map((f) => `${f.func} (${f.binary})`).join("\n");

function fetchWakers(p) {
  if (!S.run) return Promise.resolve(null);
  return throttled("wakers", { ...p, limit: 10 });
}

function renderWakers(res) {
  const el = $("#wakers");
  if (!res) { el.innerHTML = ""; return; }
  const who = S.tid !== null ? `thread ${S.tid}` : "the run";
  if (res.error) { el.innerHTML = `<h3>Wakeups</h3><div class="note">wakers: ${esc(res.error.message)}</div>`; return; }
  const rows = res.rows || [];
  const shown = rows.reduce((a, r) => a + (r.wakeups || 0), 0);
  const head = `<h3>Wakeups <small class="muted">who woke whom in ${who}: ${res.edges ?? 0} edges` +
    `${rows.length < (res.edges ?? 0) ? ` (top ${rows.length}: ${shown} wakeups)` : `, ${shown} wakeups`}` +
    ` · ${res.wakeups ?? 0} wakeups recorded in the run</small></h3>`;
  if (!rows.length) {
    el.innerHTML = `${head}<div class="muted">${esc(res.note || `no wakeups recorded for ${who}`)}</div>`;
    return;
  }
  el.innerHTML = `${head}${res.note ? `<div class="note">${esc(res.note)}</div>` : ""}` +
    `<table class="wakers"><thead><tr><th>waker</th><th>woke</th><th class="num">wakeups</th>` +
    `<th class="num">blocked time ended</th><th>waker stack</th></tr></thead><tbody>` +
    rows.map((r) => `<tr data-waker="${esc(r.waker)}" data-wakee="${esc(r.wakee)}">` +
      `<td>${esc(r.waker)}${r.waker_tid ? ` <span class="muted">${r.waker_tid}</span>` : ""}</td>` +
      `<td>→ ${esc(r.wakee)} <span class="muted">${r.wakee_tid}</span></td>` +
      `<td class="num">${r.wakeups}</td><td class="num">${ms(r.blocked_ns)}</td>` +
      `<td class="fn" title="${esc(stackTitle(r.stack))}">${esc(stackBrief(r.stack))}</td></tr>`).join("") +
    `</tbody></table>`;
}

// the longest off-CPU intervals of the selected thread
function fetchIntervals(p) {
  if (!S.run || S.tid === null) return Promise.resolve(null);
  return throttled("intervals", { ...p, limit: 8 });
}

function renderIntervals(res) {
  const el = $("#intervals");
  if (!res || S.tid === null) { el.innerHTML = ""; return; }
  if (res.error) { el.innerHTML = `<div class="note">intervals: ${esc(res.error.message)}</div>`; return; }
  const rows = res.rows || [];
  const by = Object.entries(res.by_reason || {}).map(([k, v]) => `${k} ${ms(v)}`).join(", ");
  const head = `<h3>Longest off-CPU intervals <small class="muted">thread ${S.tid}: ${res.intervals} intervals, ${ms(res.offcpu_ns)}${by ? ` (${esc(by)})` : ""}</small></h3>`;
  if (!rows.length) { el.innerHTML = `${head}<div class="muted">${esc(res.note || "no off-CPU intervals in this scope")}</div>`; return; }
  el.innerHTML = `${head}<table class="intervals"><thead><tr><th class="num">at</th><th class="num">blocked</th>` +
    `<th>reason</th><th>state</th><th>woken by</th><th>blocked in</th></tr></thead><tbody>` +
    rows.map((r) => {
      const w = r.wakeup;
      const woke = w ? `${esc(w.waker)}${w.runnable_ns >= 50000 ? ` <span class="muted">+${ms(w.runnable_ns)} runnable</span>` : ""}` : `<span class="muted">-</span>`;
      return `<tr><td class="num">${secs(r.start_ns)}</td><td class="num">${ms(r.duration_ns)}</td>` +
        `<td>${esc(r.reason)}</td><td>${esc(r.state)}</td><td>${woke}</td>` +
        `<td class="fn" title="${esc(stackTitle(r.stack))}">${esc(stackBrief(r.stack))}</td></tr>`;
    }).join("") + `</tbody></table>`;
}

// --- annotate ----------------------------------------------------------------------------------

async function refreshAnnotate(force) {
  const el = $("#annotate"), title = $("#annotate-title");
  if (!S.selFunc || !S.run) {
    title.textContent = "";
    el.innerHTML = `<span class="muted">click a function in the top table or the flamegraph to annotate it</span>`;
    S.annotateKey = null;
    return;
  }
  const key = JSON.stringify([S.run.id, S.selFunc.func, S.tid, S.range]);
  const now = performance.now();
  // while recording, re-annotate at most every 3 s; otherwise only when the selection changes
  if (!force && key === S.annotateKey && (S.run.state !== "recording" || now - S.annotateAt < 3000)) return;
  S.annotateKey = key; S.annotateAt = now;
  title.textContent = `${S.selFunc.func} (${S.selFunc.binary})`;
  const p = { ...scopeParams(), target: S.selFunc.func, exact: true };
  let res;
  try {
    res = await rpc.call("annotate", p);
  } catch (e) {
    if (e.code === "disconnected") return;
    el.innerHTML = e.code === "unknown_method"
      ? `<div class="note">annotate not available in this stax-server</div>`
      : `<div class="note">annotate: ${esc(e.message)}</div>`;
    return;
  }
  el.innerHTML = renderAnnotation(res);
}

const hex = (n) => (typeof n === "number" || typeof n === "bigint" ? `0x${n.toString(16)}` : esc(n ?? "?"));
const baseName = (f) => String(f).split("/").pop();
const UNPLACED = { mid_instruction: "inside an instruction", outside_disassembly: "outside the disassembly",
  not_disassembled: "not disassembled", no_address: "no address" };

// The annotate result (docs/protocol.md): the matched function, then its instructions in
// address order under a `file:line` header wherever the source line changes.
function renderAnnotation(res) {
  if (!res || typeof res !== "object") return `<div class="note">annotate not available for this function</div>`;
  const fn = res.function;
  if (!fn) {
    const hot = (res.hottest || []).map((h) => `<tr><td class="fn">${esc(h.func)}</td><td>${esc(h.binary)}</td>` +
      `<td class="num">${h.self_samples}</td><td class="num">${h.total_samples}</td></tr>`).join("");
    return `<div class="note">no sampled function matches “${esc(res.target)}” in this scope</div>` +
      (hot ? `<h3>Hottest functions</h3><table><thead><tr><th>function</th><th>binary</th><th class="num">self</th>` +
        `<th class="num">total</th></tr></thead><tbody>${hot}</tbody></table>` : "");
  }
  const where = [`${hex(fn.addr)}`, fn.size ? `${fn.size} bytes` : null, res.arch].filter(Boolean).join(", ");
  const func = `<div class="ann-func" id="annotate-func"><b>${esc(fn.func)}</b> in ${esc(fn.binary)} ` +
    `<span class="muted">(${esc(where)}; matched by ${esc(res.matched_by)})</span>` +
    ` · self ${res.self_samples ?? 0} samples, ${ms(res.self_ns)}, ${pct(res.self_pct)} of ${res.total_samples} in scope` +
    ` · on the stack in ${res.total_samples_in_function ?? 0}</div>`;
  const un = res.unplaced || {};
  const unParts = Object.entries(un).filter(([, v]) => v > 0).map(([k, v]) => `${v} ${UNPLACED[k] || k}`);
  const unTitle = (res.unplaced_addrs || []).map((u) => `${hex(u.addr)}: ${u.samples} (${u.reason})`).join("\n");
  const counts = `<div class="ann-counts" id="annotate-counts">${res.placed_samples ?? 0} samples placed on instructions · ` +
    `<span class="${res.unplaced_samples ? "warn" : ""}" title="${esc(unTitle)}">${res.unplaced_samples ?? 0} unplaced` +
    `${unParts.length ? ` (${esc(unParts.join(", "))})` : ""}</span>` +
    (res.has_line_info === false ? ` · <span class="muted">no line table${res.debug_file ? "" : " (no debug file)"}</span>` : "") +
    `</div>`;
  const note = res.note ? `<div class="note">${esc(res.note)}</div>` : "";
  const ins = res.instructions || [];
  if (!ins.length) return func + counts + (note || `<div class="note">no instructions to show for this function</div>`);
  const src = new Map((res.sources || []).map((x) => [`${x.file}:${x.line}`, x]));
  const maxS = Math.max(1, ...ins.map((r) => r.samples || 0));
  const rows = [];
  let prev = null;
  for (const r of ins) {
    const key = r.file ? `${r.file}:${r.line}` : null;
    if (key && key !== prev) {
      const x = src.get(key);
      const text = x && x.text != null ? esc(x.text) : `<span class="muted">(${esc((x && x.hidden) || "source not readable")})</span>`;
      rows.push(`<tr class="src${x && x.samples ? " hot-src" : ""}"><td class="loc" colspan="3" title="${esc(r.file)}:${r.line}">${esc(baseName(r.file))}:${r.line}</td>` +
        `<td class="code">${text}</td><td class="num muted">${x && x.samples ? `${x.samples} samples` : ""}</td></tr>`);
    }
    prev = key;
    const heat = (r.samples || 0) / maxS;
    const style = r.samples ? ` style="--heat:${Math.round(15 + 55 * heat)}%"` : "";
    rows.push(`<tr class="ins${r.samples ? " hot" : ""}"${style} data-samples="${r.samples || 0}">` +
      `<td class="addr">${hex(r.addr)}</td><td class="num">${r.samples || ""}</td>` +
      `<td class="num">${r.samples ? pct(r.pct) : ""}</td><td class="text">${esc(r.text)}</td>` +
      `<td class="barcell">${r.samples ? `<span class="hbar" style="width:${(100 * heat).toFixed(1)}%"></span>` : ""}</td></tr>`);
  }
  return func + counts + note +
    `<table class="ann"><thead><tr><th>address</th><th class="num">samples</th><th class="num">%</th>` +
    `<th>instruction</th><th></th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

// --- keyboard, scope chips, picker -------------------------------------------------------------

function setupKeys() {
  document.addEventListener("keydown", (ev) => {
    const inInput = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement;
    if (ev.key === "/" && !inInput) { ev.preventDefault(); $("#search").focus(); $("#search").select(); return; }
    if (ev.key !== "Escape") return;
    if (ev.target === $("#search") && S.search) {
      $("#search").value = ""; S.search = ""; $("#search").blur(); renderFlame(); return;
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
      S.runId = null; S.tid = null; S.range = null; S.zoom = []; S.selFunc = null;
      refresh();
    } catch (e) { msg.textContent = e.message; }
  });
  $("#stop").addEventListener("click", async () => {
    try { await rpc.call("stop", S.run ? { run: S.run.id } : {}); } catch (e) { $("#attach-msg").textContent = e.message; }
    refresh();
  });
  $("#run-picker").addEventListener("change", (ev) => {
    S.runId = ev.target.value === "" ? null : Number(ev.target.value);
    S.tid = null; S.range = null; S.zoom = []; S.selFunc = null;
    refresh();
  });
}

// --- start -------------------------------------------------------------------------------------

const rpc = new Rpc(
  (msg) => { if (msg.event === "update") { window.__stax.updates++; refresh(); } },
  async (up) => {
    $("#conn").className = `conn ${up ? "up" : "down"}`;
    $("#conn").title = up ? "connected to stax-server" : "disconnected; retrying";
    if (!up) { $("#status").textContent = "disconnected from stax-server; retrying…"; return; }
    try { await rpc.call("subscribe", { interval_ms: 500 }); } catch (e) { window.__stax.errors.push(String(e)); }
    refresh();
  },
);
setupBrush(); setupFlame(); setupTop(); setupThreads(); setupKeys();
rpc.connect();
