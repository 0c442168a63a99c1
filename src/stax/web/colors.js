// Colours by binary: every binary (executable, library, the kernel) gets one stable hue from
// its name, functions vary only in lightness within it; the legend lists the binaries in view.

import { esc } from "./format.js";

const baseName = (b) => String(b || "?").split("/").pop();
function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
// a binary's hue: the kernel stays blue-grey, others spread round the wheel (golden angle)
export function binaryHue(binary) {
  if (String(binary).startsWith("[kernel")) return 205;
  return Math.round((hash(baseName(binary)) * 137.508) % 360);
}
export function frameColor(func, binary) {
  const h = binaryHue(binary), k = hash(String(func));
  return `hsl(${h}, ${String(binary).startsWith("[kernel") ? 30 : 62}%, ${62 + (k % 14)}%)`;
}
export const binaryChip = (binary) =>
  `<span class="swatch" style="background:hsl(${binaryHue(binary)}, 62%, 66%)"></span>${esc(baseName(binary))}`;

// the legend: every binary with a frame in the tree, by the self time it weighs, largest first
export function legendHtml(roots, weightOf, limit = 12) {
  const by = new Map();
  const walk = (n) => {
    const kids = (n.children || []).reduce((a, c) => a + weightOf(c), 0);
    by.set(n.binary, (by.get(n.binary) || 0) + Math.max(0, weightOf(n) - kids) + 1e-9);
    for (const c of n.children || []) walk(c);
  };
  for (const r of roots) walk(r);
  const list = [...by.entries()].filter(([, w]) => w > 0).sort((a, b) => b[1] - a[1]);
  const shown = list.slice(0, limit).map(([b]) => `<span class="legend-item" data-binary="${esc(b)}" title="${esc(b)}">${binaryChip(b)}</span>`);
  if (list.length > limit) shown.push(`<span class="muted">+${list.length - limit} more</span>`);
  return shown.join("");
}

// off-CPU reasons (stax.profile.offcpu.REASONS): one fixed colour each, for frames and legend
export const REASON_COLORS = {
  sleep: "#7aa6e0", lock: "#e0787a", sem: "#d98fd0", ipc: "#9a8fe0", ioR: "#6cc6a4",
  ioW: "#4fae8a", conn: "#e0b25a", ready: "#c9c9c9", idle: "#b0b8c0", other: "#a8a08a",
};
export const reasonColor = (r) => REASON_COLORS[r] || REASON_COLORS.other;
// a node's largest reason, if most of its time was blocked (wall mode: else it ran)
export function blockedReason(n) {
  if (!n.reasons || !n.offcpu_ns || n.offcpu_ns * 2 < (n.time_ns || 0)) return null;
  return Object.keys(n.reasons)[0] || null;
}
export function reasonLegendHtml(roots, wall) {
  const by = {};
  for (const r of roots) for (const [k, v] of Object.entries(r.reasons || {})) by[k] = (by[k] || 0) + v;
  const items = Object.entries(by).sort((a, b) => b[1] - a[1]).map(([k]) =>
    `<span class="legend-item" data-reason="${esc(k)}"><span class="swatch" style="background:${reasonColor(k)}"></span>${esc(k)}</span>`);
  if (wall) items.push(`<span class="legend-item" data-reason="running"><span class="swatch running"></span>running (colour of its binary)</span>`);
  return items.length ? `<span class="muted">blocked:</span>${items.join("")}` : "";
}
