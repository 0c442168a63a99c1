// The tables (the top functions are in toptable.js): threads, and for the scope the wakeups (who woke whom) and the
// selected thread's longest off-CPU intervals.

import { rpc } from "./api.js";
import { $, S } from "./state.js";
import { esc, ms, secs, stackBrief, stackTitle } from "./format.js";

// --- threads -----------------------------------------------------------------------------------

export function renderThreads() {
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

// a click on a thread scopes every panel to it (a second click clears); refresh re-queries
export function setupThreads(refresh) {
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

export function fetchWakers(p) {
  if (!S.run) return Promise.resolve(null);
  return throttled("wakers", { ...p, limit: 10 });
}

export function renderWakers(res) {
  const el = $("#wakers");
  if (!res) { el.innerHTML = ""; return; }
  const who = S.tid !== null ? `thread ${S.tid}` : "the run";
  if (res.error) { el.innerHTML = `<h3>Wakeups</h3><div class="note">wakers: ${esc(res.error.message)}</div>`; return; }
  // wakeups of threads outside the target (the launcher waiting for it to exit, say) end no
  // blocked time the run knows of: folded into one line instead of a "0.0 ms" row each
  const outside = (res.rows || []).filter((r) => r.wakee === "[not traced]" && !r.blocked_ns);
  const rows = (res.rows || []).filter((r) => !outside.includes(r));
  const shown = rows.reduce((a, r) => a + (r.wakeups || 0), 0);
  const nOut = outside.reduce((a, r) => a + (r.wakeups || 0), 0);
  const outNote = nOut ? `<div class="muted" id="wakers-outside">${nOut} wakeups of threads outside the target hidden ` +
    `(e.g. the launcher waiting for it to exit: no blocked time in this run)</div>` : "";
  const head = `<h3>Wakeups <small class="muted">who woke whom in ${who}: ${res.edges ?? 0} edges` +
    `${rows.length < (res.edges ?? 0) ? ` (top ${rows.length}: ${shown} wakeups)` : `, ${shown} wakeups`}` +
    ` · ${res.wakeups ?? 0} wakeups recorded in the run</small></h3>`;
  if (!rows.length) {
    el.innerHTML = `${head}<div class="muted">${esc(res.note || `no wakeups recorded for ${who}`)}</div>${outNote}`;
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
    `</tbody></table>${outNote}`;
}

// the longest off-CPU intervals of the selected thread
export function fetchIntervals(p) {
  if (!S.run || S.tid === null) return Promise.resolve(null);
  return throttled("intervals", { ...p, limit: 8 });
}

export function renderIntervals(res) {
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
