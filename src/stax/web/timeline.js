// The timeline: on-CPU samples over time as bars, the run's marks (stax mark) as labelled
// vertical lines; dragging selects the time range every panel is scoped to, a double-click
// clears it.

import { $, S } from "./state.js";
import { esc, ms, secs } from "./format.js";
import { tickSvg } from "./axis.js";

// the selected thread ran not at all in the scope: say where its time went instead of empty bars
function renderNote() {
  const note = $("#timeline-note");
  const th = S.tid !== null ? S.threads?.rows?.find((r) => r.tid === S.tid) : null;
  if (S.tid === null || (th && th.samples > 0)) { note.textContent = ""; return; }
  const who = `thread ${S.tid}${th ? ` (${th.name})` : ""}`;
  const by = th ? Object.entries(th.offcpu_by_reason || {}).map(([k, v]) => `${ms(v)} ${k}`).join(", ") : "";
  note.textContent = th && th.offcpu_ns > 0
    ? `${who} was off-CPU: ${ms(th.offcpu_ns)} blocked (${by || th.blocked}), no on-CPU samples; see the off-CPU flamegraph`
    : `${who} has no samples in this scope`;
}

// a vertical line and its label for each mark inside the drawn span
function markLines(marks, t0, span, W, H) {
  return (marks || []).filter((m) => m.time_ns >= t0 && m.time_ns <= t0 + span).map((m) => {
    const x = (((m.time_ns - t0) / span) * W).toFixed(2), end = x > W * 0.85;
    return `<g class="mark" data-label="${esc(m.label)}"><title>${esc(m.label)} at ${secs(m.time_ns)}</title>` +
      `<line x1="${x}" x2="${x}" y1="0" y2="${H - 12}"></line>` +
      `<text x="${end ? x - 3 : Number(x) + 3}" y="10"${end ? ' text-anchor="end"' : ""}>${esc(m.label)}</text></g>`;
  }).join("");
}

let brushing = false;
export function renderTimeline() {
  const t = S.timeline, el = $("#timeline");
  renderNote();
  if (brushing) return;  // keep the range being dragged on screen
  if (!t || !t.counts.length) { el.innerHTML = ""; return; }
  const n = t.counts.length, max = Math.max(1, ...t.counts);
  const W = 1000, H = 90, bw = W / n;
  const bars = t.counts.map((c, i) => c ? `<rect class="bar" x="${(i * bw).toFixed(2)}" y="${(H - 14 - (c / max) * (H - 18)).toFixed(2)}" width="${Math.max(bw - 0.5, 0.5).toFixed(2)}" height="${((c / max) * (H - 18)).toFixed(2)}"></rect>` : "").join("");
  const span = t.bucket_ns * n, t0 = t.start_ns || 0;
  let brush = "";
  if (S.range) {
    const x0 = Math.max(0, ((S.range[0] - t0) / span) * W), x1 = Math.min(W, ((S.range[1] - t0) / span) * W);
    if (x1 > x0) brush = `<rect class="brush" x="${x0}" y="0" width="${Math.max(1, x1 - x0)}" height="${H - 12}"></rect>`;
  }
  const none = t.counts.some((c) => c) ? "" : `<text class="axis" x="${W / 2}" y="${H / 2}" text-anchor="middle">no on-CPU samples in this scope</text>`;
  const axis = `${none}${tickSvg(t0, t0 + span, W, H)}<text class="axis" x="${W - 2}" y="${H - 2}" text-anchor="end">${secs(t0 + span)}</text>`;
  const marks = markLines(t.marks, t0, span, W, H);
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">${bars}${brush}${marks}${axis}</svg>`;
  el.dataset.span = span;
}

// refresh: what the page runs when the scope changes
export function setupBrush(refresh) {
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
    const span = S.timeline.bucket_ns * S.timeline.counts.length, t0 = S.timeline.start_ns || 0;
    S.range = [t0 + a * span, t0 + b * span];
    refresh();
  });
  el.addEventListener("dblclick", () => { S.range = null; refresh(); });
}
