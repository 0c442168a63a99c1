// Text and colour for what the panels show. Every server string goes through esc().

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
export function ms(ns) {
  const v = (ns || 0) / 1e6;
  if (v >= 10000) return `${(v / 1000).toFixed(1)} s`;
  return `${v.toFixed(1)} ms`;
}
export const pct = (x) => `${(x || 0).toFixed(1)}%`;
export const secs = (ns) => `${(ns / 1e9).toFixed(2)} s`;
export function hue(name, binary) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) | 0;
  const k = Math.abs(h);
  if (String(binary).startsWith("[kernel")) return `hsl(${190 + (k % 30)}, 55%, ${62 + (k % 10)}%)`;
  return `hsl(${10 + (k % 45)}, ${70 + (k % 20)}%, ${58 + (k % 12)}%)`;
}
// a function's identity in the flamegraph, the top table and the selection
export const keyOf = (n) => `${n.func}\u0000${n.binary}`;

const isKernel = (b) => String(b).startsWith("[kernel");
// the user-space part of a stack (leaf first), else its outermost kernel frames
export function stackBrief(stack, n = 3) {
  const user = (stack || []).filter((f) => !isKernel(f.binary));
  const pick = (user.length ? user : (stack || [])).slice(0, n).map((f) => f.func);
  return pick.join(" ← ");
}
export const stackTitle = (stack) => (stack || []).map((f) => `${f.func} (${f.binary})`).join("\n");
