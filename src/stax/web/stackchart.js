// The stack chart (time-ordered, as the Firefox Profiler's): one thread's samples in time order,
// each stack drawn as boxes from the root down, consecutive samples with the same frames at a
// depth (and the same frames above it) merged into one box. Its time axis is the timeline's
// selected range, else the zoomed view, else the whole run; the server thins the samples to
// about two per pixel. The thread: the one in scope, else the busiest one. The stack transforms
// apply: a sample they leave out is not drawn, the others with their transformed stacks.

import { rpc } from "./api.js";
import { $, S, widthOf } from "./state.js";
import { esc, ms } from "./format.js";
import { frameColor } from "./colors.js";
import { axisSpan, fmtTime, tickSvg } from "./axis.js";
import { transformParams } from "./transforms.js";

const ROW = 16, AXIS = 16, MIN_PX = 0.3;
let chart = null;  // {boxes, a, b, W, tid, name}

function busiest() {
  const rows = S.threads?.rows || [];
  const r = [...rows].sort((x, y) => y.samples - x.samples)[0];
  return r && r.samples > 0 ? r : null;
}

export async function fetchStackChart() {
  if (!S.run) return null;
  const th = S.tid !== null ? { tid: S.tid, name: S.threads?.rows?.find((r) => r.tid === S.tid)?.name } : busiest();
  if (!th) return null;
  const [a, b] = S.range || axisSpan();
  const W = Math.max(200, widthOf($("#stackchart")) || 1000);
  const res = await rpc.call("samples", { ...transformParams(), run: S.run.id, tid: th.tid,
    start_ns: Math.max(0, Math.floor(a)), end_ns: Math.ceil(b), max_samples: Math.min(20000, W * 2) });
  return { res, a, b, tid: th.tid, name: th.name || "" };
}

// merge consecutive samples into boxes: a box per (depth, run of equal paths down to it)
function boxes(res, a, b) {
  const out = [], open = [];  // open[d]: the box being extended at depth d
  const gap = Math.max(1, res.interval_ns) * 2.5;  // farther apart: the thread was off-CPU
  const smp = res.samples;
  let prev = null;
  smp.forEach(([t, k], i) => {
    const next = i + 1 < smp.length ? smp[i + 1][0] : t + res.interval_ns;
    const end = Math.min(b, next - t > gap ? t + res.interval_ns : next);
    const path = res.stacks[k];
    const contiguous = prev && t - prev.end <= 1;
    let d = 0;
    if (contiguous) while (d < path.length && d < prev.path.length && path[d] === prev.path[d]) d++;
    open.length = Math.min(open.length, d);
    for (let j = 0; j < d; j++) open[j].end = end;
    for (let j = d; j < path.length; j++) {
      const f = res.funcs[path[j]];
      const box = { depth: j, func: f.func, binary: f.binary, start: Math.max(a, t), end, samples: 0 };
      out.push(box); open[j] = box;
    }
    for (let j = 0; j < path.length; j++) open[j].samples += res.step;
    prev = { path, end };
  });
  return out;
}

export function renderStackChart(fetched) {
  if (fetched !== undefined) chart = fetched;
  const el = $("#stackchart"), info = $("#stackchart-info");
  if (!chart) { el.innerHTML = ""; info.textContent = "no thread with samples in scope"; return; }
  const { res, a, b } = chart, W = Math.max(200, widthOf(el) || 1000);
  const all = boxes(res, a, b), span = Math.max(1, b - a);
  const depth = all.reduce((m, x) => Math.max(m, x.depth + 1), 0), H = depth * ROW + AXIS;
  const x = (t) => ((t - a) / span) * W;
  const shown = all.filter((q) => x(q.end) - x(q.start) >= MIN_PX);
  chart.boxes = shown; chart.W = W;
  const rects = shown.map((q, i) => {
    const x0 = x(q.start), w = x(q.end) - x0, y = q.depth * ROW;
    const chars = Math.floor((w - 4) / 6.5);
    const label = chars >= 3 ? `<text x="${(x0 + 2).toFixed(1)}" y="${y + 12}">${esc(q.func.length > chars ? `${q.func.slice(0, chars - 1)}…` : q.func)}</text>` : "";
    return `<g class="sc-box" data-i="${i}" data-func="${esc(q.func)}" data-depth="${q.depth}"><rect x="${x0.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${ROW - 1}" fill="${frameColor(q.func, q.binary)}"></rect>${label}</g>`;
  }).join("");
  el.innerHTML = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${tickSvg(a, b, W, H)}${rects}</svg>`;
  el.dataset.tid = chart.tid; el.dataset.samples = res.total; el.dataset.start = a; el.dataset.end = b;
  const thin = res.step > 1 ? `, every ${res.step}th of ${res.total} drawn` : "";
  info.textContent = `thread ${chart.tid} (${chart.name}) · ${res.total} samples · ${fmtTime(a, span / 100)} – ${fmtTime(b, span / 100)}${thin}`;
}

export function setupStackChart() {
  const el = $("#stackchart"), tip = $("#tooltip");
  el.addEventListener("mousemove", (ev) => {
    const g = ev.target.closest(".sc-box");
    if (!g || !chart?.boxes) { tip.hidden = true; return; }
    const q = chart.boxes[Number(g.dataset.i)];
    tip.innerHTML = [q.func, q.binary, `${ms(q.end - q.start)} from ${ms(q.start)} · ${q.samples} samples`].map(esc).join("<br>");
    tip.dataset.func = q.func; tip.hidden = false;
    tip.style.left = `${Math.min(ev.clientX + 12, innerWidth - 320)}px`; tip.style.top = `${ev.clientY + 14}px`;
  });
  el.addEventListener("mouseleave", () => { tip.hidden = true; });
  // redrawn at a new width (after widthOf's observer has seen it)
  let width = null, timer = null;
  new ResizeObserver(() => {
    if (el.clientWidth === width) return;
    width = el.clientWidth;
    clearTimeout(timer); timer = setTimeout(() => renderStackChart(), 50);
  }).observe(el);
}
