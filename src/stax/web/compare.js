// Compare two runs (the `compare` RPC): pick a base and a candidate among the server's runs; the
// differential flamegraph is the candidate's tree, each frame coloured by its change against
// the base (red: slower, blue: faster, grey: unchanged or new), and the delta table lists each
// function's self time in both runs (the rows of `stax compare --json`). Hover a frame for its
// numbers. Fetched on demand (the compare button, or a change of either run); after that, the
// page's refresh re-asks it when a side is a run still recording (as the other panels follow a
// live run, and not while live updates are paused), when a side's state changes, and when the
// transforms change.

import { rpc } from "./api.js";
import { $, widthOf } from "./state.js";
import { esc, ms, pct } from "./format.js";
import { transformParams } from "./transforms.js";

const FRAME_H = 18;
// last result, colour basis, runs listed ("id:state"), what the result was asked for
const C = { res: null, by: "time", runs: [], key: null, busy: false };

const signed = (v, f) => (v > 0 ? "+" : v < 0 ? "−" : "±") + f(Math.abs(v));
export const deltaMs = (ns) => signed(ns, ms);
const deltaPts = (p) => signed(p, (x) => `${x.toFixed(1)} pts`);

// the change of a node in [-1, 1]: of its time (what each run spent there) or of its share
function change(n) {
  if (n.new) return null;
  if (C.by === "share") return n.delta_pct / Math.max(n.pct, n.base_pct, 1e-9);
  return n.delta_ns / Math.max(n.time_ns, n.base_ns, 1);
}
function colorOf(r) {
  if (r === null) return "hsl(45, 10%, 70%)";
  const k = Math.min(1, Math.abs(r));
  if (k < 0.02) return "hsl(0, 0%, 78%)";
  return r > 0 ? `hsl(0, ${45 + 45 * k}%, ${82 - 30 * k}%)` : `hsl(215, ${45 + 45 * k}%, ${82 - 30 * k}%)`;
}

// the runs to choose from (list_runs, each refresh); keeps the choices made
export function renderCompareRuns(list) {
  const runs = list.runs || [];
  const sig = runs.map((r) => `${r.id}:${r.state}`).join(",");
  if (sig === C.runs.join(",")) return;
  C.runs = runs.map((r) => `${r.id}:${r.state}`);
  for (const [sel, pick] of [[$("#cmp-base"), runs.length - 2], [$("#cmp-cand"), runs.length - 1]]) {
    const was = sel.value;
    sel.innerHTML = runs.map((r) => `<option value="${r.id}">run ${r.id} [${esc(r.state)}] ${esc(r.command)}</option>`).join("");
    if (was && runs.some((r) => String(r.id) === was)) sel.value = was;
    else if (runs.length) sel.value = String(runs[Math.max(0, pick)].id);
  }
  $("#cmp-go").disabled = runs.length < 2;
  if (runs.length < 2) $("#cmp-info").textContent = "two runs are needed: record another";
  else if (!C.res) $("#cmp-info").textContent = "";
}

const picked = () => [Number($("#cmp-base").value), Number($("#cmp-cand").value)];
const stateOf = (id) => (C.runs.find((r) => r.startsWith(`${id}:`)) || "").split(":")[1] || "";
const liveSides = () => picked().filter((id) => stateOf(id) === "recording");
// what a result depends on: the two runs, their states, the transforms
const keyNow = () => JSON.stringify([picked(), picked().map(stateOf), transformParams()]);

// live: a refresh re-asks it (the previous numbers stay shown meanwhile)
async function fetchCompare(live = false) {
  const [base, cand] = picked();
  const info = $("#cmp-info");
  if (!base || !cand) return;
  if (!live) info.textContent = "comparing…";
  const key = keyNow();
  C.busy = true;
  try {
    C.res = await rpc.call("compare", { base, cand, limit: 0, threshold_pct: 0.05, ...transformParams() });
    C.key = key;
  } catch (e) {
    if (live && e.code === "disconnected") return;
    C.res = null; C.key = null; info.textContent = `error: ${e.message}`;
    $("#cmp-flame").innerHTML = ""; $("#cmp-table tbody").innerHTML = "";
    return;
  } finally { C.busy = false; }
  renderCompare();
}

// from the page's refresh (after renderCompareRuns): re-ask a shown comparison when a side
// records, or what it was asked for has changed
export async function refreshCompare() {
  if (!C.res || C.busy) return;
  if (!liveSides().length && keyNow() === C.key) return;
  await fetchCompare(true);
}

export function renderCompare() {
  const r = C.res;
  if (!r) return;
  $("#cmp-info").textContent = `run ${r.base.id} → run ${r.cand.id}: on-CPU ${ms(r.base_ns)} → ${ms(r.cand_ns)} ` +
    `(${deltaMs(r.delta_ns)}${r.base_ns ? `, ${signed(100 * r.delta_ns / r.base_ns, (x) => `${x.toFixed(1)}%`)}` : ""}); ` +
    `${r.functions} functions, ${r.unchanged} unchanged` +
    (liveSides().length ? ` · following run ${liveSides().join(" and run ")} while it records` : "");
  $("#cmp-info").dataset.candSamples = r.cand_samples;
  $("#cmp-info").dataset.live = liveSides().length ? "1" : "";
  renderDiffFlame(r);
  renderDeltaTable(r);
}

function renderDiffFlame(r) {
  const el = $("#cmp-flame"), W = widthOf(el) || 1000;
  const roots = r.roots || [];
  const total = roots.reduce((a, n) => a + n.time_ns, 0);
  const out = [], nodes = [];
  let maxDepth = 0;
  const walk = (n, x, depth) => {
    const w = (n.time_ns / Math.max(1, total)) * W;
    if (w < 0.6) return;
    const ch = change(n), cls = ch === null ? "new" : ch > 0.02 ? "slower" : ch < -0.02 ? "faster" : "same";
    out.push(`<div class="frame ${cls}" data-i="${nodes.length}" data-name="${esc(n.func)}" style="left:${x.toFixed(2)}px;width:${Math.max(w, 1).toFixed(2)}px;top:${depth * FRAME_H}px;background:${colorOf(ch)}">${w > 24 ? esc(n.func) : ""}</div>`);
    nodes.push(n);
    maxDepth = Math.max(maxDepth, depth + 1);
    let cx = x;
    for (const c of n.children || []) { walk(c, cx, depth + 1); cx += (c.time_ns / Math.max(1, total)) * W; }
  };
  let cx = 0;
  for (const n of roots) { walk(n, cx, 0); cx += (n.time_ns / Math.max(1, total)) * W; }
  el.innerHTML = out.join("");
  el.style.height = `${maxDepth * FRAME_H + 2}px`;
  el._nodes = nodes;
}

function renderDeltaTable(r) {
  const rows = [...r.regressions, ...r.improvements];
  $("#cmp-table tbody").innerHTML = rows.length ? rows.map((x) =>
    `<tr class="${x.delta_self_ns > 0 ? "slower" : "faster"}" data-func="${esc(x.func)}" data-delta-ns="${x.delta_self_ns}">` +
    `<td class="num">${ms(x.base_self_ns)}</td><td class="num">${ms(x.cand_self_ns)}</td>` +
    `<td class="num delta">${deltaMs(x.delta_self_ns)}</td>` +
    `<td class="num">${pct(x.base_self_pct)} → ${pct(x.cand_self_pct)}</td>` +
    `<td class="num">${deltaPts(x.delta_self_pct)}</td>` +
    `<td class="fn" title="${esc(x.func)}">${esc(x.func)}</td><td>${esc(x.status)}</td></tr>`).join("")
    : `<tr class="empty"><td colspan="7" class="muted">no function changed</td></tr>`;
}

export function setupCompare() {
  $("#cmp-go").addEventListener("click", () => fetchCompare());
  for (const id of ["#cmp-base", "#cmp-cand"]) $(id).addEventListener("change", () => { if (C.res) fetchCompare(); });
  $("#cmp-by").addEventListener("change", (ev) => { C.by = ev.target.value; if (C.res) renderDiffFlame(C.res); });
  const el = $("#cmp-flame"), tip = $("#tooltip");
  el.addEventListener("mousemove", (ev) => {
    const div = ev.target.closest(".frame");
    const n = div && el._nodes?.[Number(div.dataset.i)];
    if (!n) { tip.hidden = true; return; }
    tip.innerHTML = `<b>${esc(n.func)}</b><br>candidate: ${ms(n.time_ns)} (${pct(n.pct)})<br>` +
      (n.new ? "not in the base run" : `base: ${ms(n.base_ns)} (${pct(n.base_pct)})<br>` +
        `change: ${deltaMs(n.delta_ns)}, ${deltaPts(n.delta_pct)}`);
    tip.hidden = false;
    tip.style.left = `${Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8)}px`;
    tip.style.top = `${ev.clientY + 16}px`;
  });
  el.addEventListener("mouseleave", () => { tip.hidden = true; });
}

// what tests read
window.__staxCompare = C;
