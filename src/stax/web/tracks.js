// Thread tracks under the timeline: one row per thread over the same time axis, showing when it
// ran (on-CPU sample density, as bars) and when it was blocked (its off-CPU intervals, coloured
// by reason as in the flamegraph's legend), wakeups as arrows from the waker's row to the woken
// thread's at the wake time, and the run's marks across every row. Hovering reads out the time,
// thread, state or reason and duration; dragging selects a range like the timeline; clicking a
// thread's name scopes the panels to it. Zoom/reset narrow the shared axis (S.view).

import { rpc } from "./api.js";
import { $, S, widthOf } from "./state.js";
import { esc, ms } from "./format.js";
import { reasonColor } from "./colors.js";
import { fmtTime, tickSvg } from "./axis.js";

const ROW = 20, TOP = 4, AXIS = 16, BUCKETS = 200;
let data = null;  // {tl (per-thread timeline), iv (intervals), rows, a, b, W}

// the per-thread buckets over the axis and the off-CPU intervals ending after its start
export async function fetchTracks() {
  if (!S.run) return null;
  const [a, b] = S.view || [null, null];
  const p = { run: S.run.id, buckets: BUCKETS, per_thread: true };
  if (S.view) { p.start_ns = Math.floor(a); p.end_ns = Math.ceil(b); }
  const ivp = { run: S.run.id, limit: 5000, stacks: false };
  if (S.view) ivp.end_ns = Math.ceil(b);
  const [tl, iv] = await Promise.all([
    rpc.call("timeline", p),
    S.run.offcpu?.intervals_recorded === false ? { rows: [] }
      : rpc.call("intervals", ivp).catch(() => ({ rows: [] })),
  ]);
  return { tl, iv };
}

const xOf = (t) => ((t - data.a) / (data.b - data.a)) * data.W;

export function renderTracks(fetched) {
  if (fetched !== undefined) data = fetched ? { ...fetched } : null;
  const el = $("#tracks");
  if (!data || !data.tl?.threads?.length) { el.innerHTML = ""; return; }
  const tl = data.tl, W = Math.max(200, widthOf(el) || 1000);
  const a = tl.start_ns, b = tl.start_ns + tl.bucket_ns * tl.counts.length;
  Object.assign(data, { a, b, W });
  const rows = tl.threads, rowOf = new Map(rows.map((r, i) => [r.tid, i]));
  data.rows = rows;
  const H = TOP + rows.length * ROW + AXIS, bw = W / tl.counts.length;
  // samples a fully busy thread has in a bucket: what "running all the time" looks like
  const full = Math.max(1, ((S.run.frequency_hz || 0) * tl.bucket_ns) / 1e9);
  const ivs = (data.iv.rows || []).filter((r) => rowOf.has(r.tid) && r.start_ns < b && r.start_ns + r.duration_ns > a);
  data.ivs = ivs;
  const parts = [];
  rows.forEach((r, i) => {
    const y = TOP + i * ROW;
    parts.push(`<rect class="track-bg${r.tid === S.tid ? " selected" : ""}" x="0" y="${y}" width="${W}" height="${ROW - 2}"></rect>`);
    for (const v of ivs) {
      if (v.tid !== r.tid) continue;
      const x0 = Math.max(0, xOf(v.start_ns)), x1 = Math.min(W, xOf(v.start_ns + v.duration_ns));
      parts.push(`<rect class="blocked" data-tid="${r.tid}" data-reason="${esc(v.reason)}" data-start="${v.start_ns}" data-dur="${v.duration_ns}" x="${x0.toFixed(1)}" y="${y + 3}" width="${Math.max(0.5, x1 - x0).toFixed(1)}" height="${ROW - 8}" fill="${reasonColor(v.reason)}"></rect>`);
    }
    r.counts.forEach((c, k) => {
      if (!c) return;
      const h = Math.min(1, c / full) * (ROW - 4);
      parts.push(`<rect class="running" x="${(k * bw).toFixed(1)}" y="${(y + ROW - 2 - h).toFixed(1)}" width="${Math.max(0.5, bw - 0.3).toFixed(1)}" height="${h.toFixed(1)}"></rect>`);
    });
    parts.push(`<text class="track-name" data-tid="${r.tid}" x="3" y="${y + 13}">${esc(r.name)} ${r.tid}</text>`);
  });
  for (const v of ivs) {  // wakeups: waker's row → woken thread's row, at the wake time
    const w = v.wakeup;
    if (!w || !rowOf.has(w.waker_tid) || w.waker_tid === v.tid || w.time_ns < a || w.time_ns > b) continue;
    const x = xOf(w.time_ns).toFixed(1), y0 = TOP + rowOf.get(w.waker_tid) * ROW + ROW / 2;
    const y1 = TOP + rowOf.get(v.tid) * ROW + ROW / 2;
    parts.push(`<line class="wake" data-waker="${w.waker_tid}" data-wakee="${v.tid}" x1="${x}" x2="${x}" y1="${y0}" y2="${y1 + (y1 > y0 ? -3 : 3)}" marker-end="url(#wake-arrow)"></line>`);
  }
  for (const m of tl.marks || S.timeline?.marks || []) {
    if (m.time_ns < a || m.time_ns > b) continue;
    const x = xOf(m.time_ns).toFixed(1);
    parts.push(`<line class="mark" data-label="${esc(m.label)}" x1="${x}" x2="${x}" y1="0" y2="${H - AXIS}"></line>`);
  }
  if (S.range) {
    const x0 = Math.max(0, xOf(S.range[0])), x1 = Math.min(W, xOf(S.range[1]));
    if (x1 > x0) parts.push(`<rect class="brush" x="${x0}" y="0" width="${x1 - x0}" height="${H - AXIS}"></rect>`);
  }
  const defs = `<defs><marker id="wake-arrow" viewBox="0 0 6 6" refX="5" refY="3" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L6,3 L0,6 z" class="wake-head"></path></marker></defs>`;
  el.innerHTML = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${defs}${parts.join("")}${tickSvg(a, b, W, H)}</svg>`;
  el.dataset.start = a; el.dataset.end = b; el.dataset.rows = rows.length;
}

// what is under the pointer: the thread's row, the time, and its state then
function readout(ev) {
  const box = $("#tracks svg")?.getBoundingClientRect();
  if (!box || !data?.rows) return null;
  const x = ev.clientX - box.left, i = Math.floor((ev.clientY - box.top - TOP) / ROW);
  const r = data.rows[i];
  if (!r || x < 0 || x > data.W) return null;
  const t = data.a + (x / data.W) * (data.b - data.a);
  const v = data.ivs.find((q) => q.tid === r.tid && q.start_ns <= t && t < q.start_ns + q.duration_ns);
  const k = Math.min(r.counts.length - 1, Math.floor((x / data.W) * r.counts.length));
  const lines = [`${fmtTime(t, (data.b - data.a) / 1000)} · ${r.name} (tid ${r.tid})`];
  if (v) {
    lines.push(`blocked: ${v.reason} (${v.state}) for ${ms(v.duration_ns)} from ${ms(v.start_ns)}`);
    if (v.wakeup) lines.push(`woken by ${v.wakeup.waker} (${v.wakeup.waker_tid}) at ${ms(v.wakeup.time_ns)}`);
  } else lines.push(r.counts[k] ? `running: ${r.counts[k]} samples in ${ms(data.tl.bucket_ns)}` : "no samples");
  return { r, t, v, text: lines.join("\n") };
}

// refresh: what the page runs when the scope or the view changes
export function setupTracks(refresh) {
  const el = $("#tracks"), tip = $("#tooltip");
  let start = null;
  const timeAt = (ev) => {
    const b = el.querySelector("svg")?.getBoundingClientRect();
    const f = b ? Math.min(1, Math.max(0, (ev.clientX - b.left) / b.width)) : 0;
    return data.a + f * (data.b - data.a);
  };
  el.addEventListener("mousemove", (ev) => {
    const h = start === null ? readout(ev) : null;
    if (!h) { tip.hidden = true; return; }
    tip.innerHTML = h.text.split("\n").map(esc).join("<br>"); tip.hidden = false;
    tip.dataset.tid = h.r.tid; tip.dataset.reason = h.v ? h.v.reason : "running";
    tip.style.left = `${Math.min(ev.clientX + 12, innerWidth - 320)}px`; tip.style.top = `${ev.clientY + 14}px`;
  });
  el.addEventListener("mouseleave", () => { tip.hidden = true; });
  el.addEventListener("mousedown", (ev) => {
    if (!data?.rows) return;
    const name = ev.target.closest(".track-name");
    if (name) { S.tid = Number(name.dataset.tid) === S.tid ? null : Number(name.dataset.tid); refresh(); return; }
    start = timeAt(ev); ev.preventDefault();
  });
  window.addEventListener("mouseup", (ev) => {
    if (start === null) return;
    const t = timeAt(ev), lo = Math.min(start, t), hi = Math.max(start, t);
    start = null;
    if (hi - lo < (data.b - data.a) * 0.005) return;  // a click, not a drag
    S.range = [lo, hi]; refresh();
  });
  $("#tl-zoom").addEventListener("click", () => { if (S.range) { S.view = [...S.range]; refresh(); } });
  $("#tl-reset").addEventListener("click", () => { S.view = null; refresh(); });
  addEventListener("resize", () => renderTracks());
}
