// The time axis the timeline, the thread tracks and the stack chart share: the span shown
// (the whole run, or the zoomed view) and round tick times within it.

import { S } from "./state.js";

// [start_ns, end_ns] the time axis shows: the zoomed view, else the whole run as the timeline
// last reported it
export function axisSpan() {
  if (S.view) return S.view;
  const t = S.timeline;
  return t ? [t.start_ns, t.start_ns + t.bucket_ns * t.counts.length] : [0, 1];
}

// a time as the axis labels it, with as many decimals as the step between ticks needs
export function fmtTime(ns, step = ns) {
  const s = ns / 1e9, st = Math.max(step / 1e9, 1e-9);
  if (st >= 1) return `${s.toFixed(0)} s`;
  if (st >= 1e-3) return `${(s * 1e3).toFixed(st >= 0.01 ? 0 : 1)} ms`;
  return `${(s * 1e6).toFixed(0)} µs`;
}

// tick times (1, 2 or 5 × a power of ten apart) for about `want` ticks over [a, b]
export function ticks(a, b, want = 8) {
  const span = Math.max(1, b - a), raw = span / want;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || 10 * p;
  const out = [];
  for (let t = Math.ceil(a / step) * step; t <= b; t += step) out.push(t);
  return { step, ticks: out };
}

// SVG of tick lines and labels along the bottom of a W×H drawing spanning [a, b]
export function tickSvg(a, b, W, H, want = 8) {
  const { step, ticks: ts } = ticks(a, b, want);
  return ts.map((t) => {
    const x = ((t - a) / (b - a)) * W;
    return `<line class="tick" x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="0" y2="${H - 12}"></line>` +
      `<text class="axis" x="${(x + 2).toFixed(1)}" y="${H - 2}">${fmtTime(t, step)}</text>`;
  }).join("");
}
