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

// the legend: binaries by the time they weigh in the tree, largest first
export function legendHtml(roots, weightOf, limit = 12) {
  const by = new Map();
  const walk = (n) => {
    const kids = (n.children || []).reduce((a, c) => a + weightOf(c), 0);
    by.set(n.binary, (by.get(n.binary) || 0) + Math.max(0, weightOf(n) - kids));
    for (const c of n.children || []) walk(c);
  };
  for (const r of roots) walk(r);
  const list = [...by.entries()].filter(([, w]) => w > 0).sort((a, b) => b[1] - a[1]);
  const shown = list.slice(0, limit).map(([b]) => `<span class="legend-item" data-binary="${esc(b)}" title="${esc(b)}">${binaryChip(b)}</span>`);
  if (list.length > limit) shown.push(`<span class="muted">+${list.length - limit} more</span>`);
  return shown.join("");
}
