// The flamegraph (icicle: roots at the top) in three modes (on-CPU, off-CPU, wall): click a
// frame to zoom into it and select its function, hover for its times, search to highlight.

import { $, S, widthOf } from "./state.js";
import { esc, keyOf, ms, pct } from "./format.js";
import { matcher } from "./search.js";
import { blockedReason, frameColor, legendHtml, reasonColor, reasonLegendHtml } from "./colors.js";

// a frame's colour: its binary's hue; outside on-CPU mode a mostly-blocked frame takes the colour
// of its main off-CPU reason (class "blocked", striped)
function colorOf(n) {
  const why = S.flame?.mode && S.flame.mode !== "cpu" ? blockedReason(n) : null;
  return why ? [reasonColor(why), " blocked", why] : [frameColor(n.func, n.binary), "", ""];
}

const FRAME_H = 18;
const weightOf = (n) => n.time_ns || n.samples || 0;

export function renderFlame() {
  const f = S.flame, el = $("#flame"), note = $("#flame-note"), info = $("#flame-info");
  info.textContent = "";
  for (const b of document.querySelectorAll(".modes button")) b.classList.toggle("on", b.dataset.mode === S.mode);
  if (!f || f.error) {
    el.innerHTML = ""; el.style.height = "0px"; $("#flame-legend").innerHTML = "";
    note.textContent = f?.error ? `flamegraph unavailable: ${f.error.message}` : "";
    return;
  }
  const roots = f.roots || [];
  const total = roots.reduce((a, n) => a + weightOf(n), 0);
  if (!roots.length || !total) {
    el.innerHTML = ""; el.style.height = "0px"; $("#flame-legend").innerHTML = "";
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
  const W = widthOf(el) || 1000;
  const out = [];
  const mt = matcher(), q = !!mt;
  let matchW = 0, matches = 0;
  const sel = S.selFunc ? `${S.selFunc.func}\u0000${S.selFunc.binary}` : null;
  const frame = (n, x, w, depth, isRoot, pathIdx) => {
    const m = q && mt.test(n.func);
    const cls = ["frame"];
    if (isRoot) cls.push("root");
    if (m) cls.push("match");
    if (n.inlined) cls.push("inlined");
    if (sel && keyOf(n) === sel) cls.push("selected");
    const [bg, blocked, why] = isRoot ? ["", "", ""] : colorOf(n);
    out.push(`<div class="${cls.join(" ")}${blocked}" data-path="${pathIdx}" data-name="${esc(n.func)}"${why ? ` data-reason="${why}"` : ""} tabindex="-1" style="left:${x.toFixed(2)}px;width:${Math.max(w, 1).toFixed(2)}px;top:${depth * FRAME_H}px;${bg ? `background:${bg}` : ""}">${w > 24 ? esc(n.func) + (n.inlined ? " (inlined)" : "") : ""}</div>`);
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
  (node.children || []).forEach((c, i) => { walk(c, cx, base, nodes.some((z) => q && mt.test(z.func)), `c${i}`); cx += weightOf(c) * scale; });
  el.innerHTML = out.join("");
  const inView = node === allNode ? roots : [node];
  $("#flame-legend").innerHTML = S.flame.mode === "cpu" || !S.flame.mode ? legendHtml(inView, weightOf)
    : reasonLegendHtml(inView, S.flame.mode === "wall") + (S.flame.mode === "wall" ? legendHtml(inView, weightOf, 6) : "");
  el.style.height = `${maxDepth * FRAME_H + 2}px`;
  el.classList.toggle("searching", !!q);
  el.dataset.zoom = S.zoom.length ? S.zoom[S.zoom.length - 1].split("\u0000")[0] : "";
  $("#search-info").textContent = mt?.error ? `bad regex: ${mt.error}` : q ? `${matches} frames, ${pct((100 * matchW) / Math.max(1, total))} of the time` : "";
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

// what a frame element stands for (the transforms' context menu): its node and path from the root
export function flameTarget(div) {
  const hit = nodeForElement(div);
  return hit && { node: hit.node, path: hit.zoomPath, inverted: false };
}

// on.refresh: re-query after a mode change; on.selected: after renderFlame, when a click has
// selected a function (the other panels show it too)
export function setupFlame(on) {
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
    renderFlame(); on.selected();
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
    tip.innerHTML = `<b>${esc(n.func)}</b>${n.inlined ? " (inlined)" : ""}<br>${n.binary ? `binary: ${esc(n.binary)}<br>` : ""}` +
      `total: ${ms(weightOf(n))} (${pct((100 * weightOf(n)) / total)})<br>` +
      `self: ${ms(self)} (${pct((100 * self) / total)})<br>` +
      `${S.flame.mode === "cpu" || !S.flame.mode ? "samples" : "samples + intervals"}: ${n.samples ?? "-"}` +
      (n.reasons && n.offcpu_ns ? `<br>blocked: ${ms(n.offcpu_ns)} (${Object.entries(n.reasons).map(([k, v]) => `${esc(k)} ${ms(v)}`).join(", ")})` +
        (S.flame.mode === "wall" ? `<br>running: ${ms(Math.max(0, weightOf(n) - n.offcpu_ns))}` : "") : "");
    tip.hidden = false;
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    const y = ev.clientY + 16 + tip.offsetHeight > window.innerHeight ? ev.clientY - tip.offsetHeight - 8 : ev.clientY + 16;
    tip.style.left = `${x}px`; tip.style.top = `${y}px`;
  });
  el.addEventListener("mouseleave", () => { tip.hidden = true; });
  for (const b of document.querySelectorAll(".modes button")) {
    b.addEventListener("click", () => { S.mode = b.dataset.mode; S.zoom = []; on.refresh(); });
  }
}
