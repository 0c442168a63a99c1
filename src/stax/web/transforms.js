// Transforms of the stacks (the Firefox Profiler's): a stack of them, shown as breadcrumbs above
// the flamegraph, each removable; they scope every panel that shows stacks or functions (the
// flamegraph, the top table, the call tree, callers/callees, the stack chart, the comparison,
// and annotate's samples, for a drop or a focus).
// Added from the context menu (right-click, or the ⋯ key / Shift+F10) of a flamegraph frame or
// a call-tree row:
//   focus on subtree   only the stacks through this node, rooted at it (focus_path)
//   focus on function  only the stacks through the function, rooted at its outermost call (focus)
//   merge function     its time goes to its caller (exclude)
//   drop samples       the samples whose stack holds the function are left out (drop)
//   collapse library   the binary's frames as one node (collapse_binary)
//   merge recursion    direct recursion is one level (merge_recursion)
// The server applies them in its own order (exclude, drop, collapse, recursion, focus,
// focus_path, see docs/protocol.md); a subtree path is kept as picked and re-transformed here
// with the merges, collapses and recursion added after it, so it keeps its meaning.
// The stack is part of the view in the URL (urlstate.js): one `tf` item per transform, in order
// (transformItems / setTransformItems).

import { $ } from "./state.js";
import { esc } from "./format.js";

const SEP = "\u0001";
export const X = { list: [] };  // {type, func, binary, path: [{func, binary}]}
let onChange = () => {};

const base = (b) => String(b).split("/").pop();
const LABEL = {
  focus_path: (t) => `focus: ${t.path.map((n) => n.func).join(" → ")}`,
  focus: (t) => `focus on ${t.func}`,
  merge: (t) => `merge ${t.func}`,
  drop: (t) => `drop ${t.func}`,
  collapse: (t) => `collapse ${base(t.binary)}`,
  recursion: () => "merge recursion",
};

// a path (root first) as the server sees it once exclude, collapse and recursion are applied
// (a node's binary may be a file name only: one read back from the URL)
function transformedPath(path, exclude, collapse, recursion) {
  let out = path.filter((n) => !exclude.some((x) => n.func.includes(x)));
  if (collapse.length) {
    const res = [];
    for (const n of out) {
      const hit = n.binary && collapse.some((c) => c === n.binary || base(c) === base(n.binary));
      const m = hit ? { func: base(n.binary), binary: n.binary, lib: true } : n;
      const last = res[res.length - 1];
      if (!(m.lib && last?.lib && last.binary === m.binary)) res.push(m);
    }
    out = res;
  }
  if (recursion) out = out.filter((n, i) => i === 0 || out[i - 1].func !== n.func);
  return out;
}

// the query parameters of the stack
export function transformParams() {
  const p = {}, list = X.list;
  const of = (type) => list.filter((t) => t.type === type);
  const exclude = of("merge").map((t) => t.func), collapse = of("collapse").map((t) => t.binary);
  const recursion = of("recursion").length > 0;
  if (exclude.length) p.exclude = exclude;
  if (of("drop").length) p.drop = of("drop").map((t) => t.func);
  if (collapse.length) p.collapse_binary = collapse;
  if (recursion) p.merge_recursion = true;
  const focus = of("focus").pop();
  if (focus) p.focus = focus.func;
  // successive subtree focuses: each is rooted at the previous one's last node
  let path = [];
  for (const t of of("focus_path")) path = path.length ? path.concat(t.path.slice(1)) : t.path.slice();
  if (path.length) p.focus_path = transformedPath(path, exclude, collapse, recursion).map((n) => n.func);
  return p;
}

// two transforms that do the same (the server matches functions by name, binaries by path)
function same(a, t) {
  if (a.type !== t.type) return false;
  if (a.type === "collapse") return a.binary === t.binary;
  if (a.type === "focus_path") return a.path.map((n) => n.func).join(SEP) === t.path.map((n) => n.func).join(SEP);
  return a.type === "recursion" || a.func === t.func;
}

export function addTransform(t) {
  if (X.list.some((a) => same(a, t))) return;
  X.list.push(t);
  renderTransforms(); onChange();
}

// --- in the URL ---------------------------------------------------------------------------------
// One item per transform: `merge:NAME`, `drop:NAME`, `focus:NAME`, `collapse:BINARY` (its path),
// `recursion`, and `path:NODE/NODE/…` for a subtree focus, root first, each node `NAME@BINARY`
// (the binary's file name), or `NAME` when in the binary of the node before. In a path node
// `%`, `/` and `@` are escaped as %25, %2F, %40 (the URL escapes these `%` again).

const ITEM_TYPES = { merge: "merge", drop: "drop", focus: "focus", collapse: "collapse" };
const escNode = (s) => String(s).replace(/[%/@]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export function transformItems() {
  return X.list.map((t) => {
    if (t.type === "recursion") return "recursion";
    if (t.type === "collapse") return `collapse:${t.binary}`;
    if (t.type !== "focus_path") return `${t.type}:${t.func}`;
    let prev = null;
    return "path:" + t.path.map((n) => {
      const b = base(n.binary || "");
      const node = escNode(n.func) + (b !== prev ? `@${escNode(b)}` : "");
      prev = b;
      return node;
    }).join("/");
  });
}

// one item back to a transform (null: not one)
function parseItem(item) {
  if (item === "recursion") return { type: "recursion", func: "", binary: "" };
  const at = item.indexOf(":");
  if (at < 1) return null;
  const kind = item.slice(0, at), rest = item.slice(at + 1);
  if (!rest) return null;
  if (kind === "collapse") return { type: "collapse", func: base(rest), binary: rest };
  if (ITEM_TYPES[kind]) return { type: ITEM_TYPES[kind], func: rest, binary: "" };
  if (kind !== "path") return null;
  let prev = "";
  const path = [];
  for (const part of rest.split("/")) {
    const [f, b, extra] = part.split("@");
    if (!f || extra !== undefined) return null;
    try {
      const func = decodeURIComponent(f);
      if (b !== undefined) prev = decodeURIComponent(b);
      path.push({ func, binary: prev });
    } catch { return null; }
  }
  const last = path[path.length - 1];
  return { type: "focus_path", func: last.func, binary: last.binary, path };
}

// the stack from URL items (those that do not parse are left out); the caller re-queries
export function setTransformItems(items) {
  X.list = [];
  for (const it of items) {
    const t = parseItem(it);
    if (t && !X.list.some((a) => same(a, t))) X.list.push(t);
  }
  renderTransforms();
}

export function renderTransforms() {
  const el = $("#transforms");
  if (!X.list.length) { el.innerHTML = ""; el.hidden = true; return; }
  el.hidden = false;
  el.innerHTML = `<button type="button" class="crumb" data-upto="0" title="remove every transform">complete profile</button>` +
    X.list.map((t, i) => `<span class="sep">›</span><span class="chip" data-type="${t.type}">` +
      `<button type="button" class="crumb" data-upto="${i + 1}" title="back to this step">${esc(LABEL[t.type](t))}</button>` +
      `<button type="button" data-remove="${i}" title="remove this transform" aria-label="remove ${esc(LABEL[t.type](t))}">×</button></span>`).join("");
}

// --- context menu ------------------------------------------------------------------------------

let target = null;  // {node, path, inverted}

function items(tg) {
  const n = tg.node, hasFocus = X.list.some((t) => t.type === "focus" || t.type === "focus_path");
  const lib = n.binary && !String(n.binary).startsWith("[");
  return [
    ["focus_path", "Focus on subtree only", !tg.inverted && tg.path.length > 0, "the inverted tree's paths run leaf first"],
    ["focus", "Focus on function", !hasFocus, "remove the other focus first"],
    ["merge", "Merge function (its time goes to its caller)", true],
    ["drop", "Drop samples with this function", true],
    ["collapse", `Collapse ${esc(base(n.binary || ""))} (one node)`, lib && !X.list.some((t) => t.type === "collapse" && t.binary === n.binary), "already collapsed or not a library"],
    ["recursion", "Merge recursion", !X.list.some((t) => t.type === "recursion"), "already merged"],
  ];
}

function openMenu(tg, x, y) {
  target = tg;
  const m = $("#ctxmenu");
  m.innerHTML = `<div class="ctx-title">${esc(tg.node.func)}</div>` + items(tg).map(([type, label, ok, why]) =>
    `<button type="button" role="menuitem" data-type="${type}"${ok ? "" : ` disabled title="${esc(why)}"`}>${label}</button>`).join("");
  m.hidden = false;
  m.style.left = `${Math.min(x, window.innerWidth - m.offsetWidth - 8)}px`;
  m.style.top = `${Math.min(y, window.innerHeight - m.offsetHeight - 8)}px`;
  m.querySelector("button:not([disabled])")?.focus();
}

function closeMenu() { $("#ctxmenu").hidden = true; target = null; }

function apply(type) {
  const n = target.node, t = { type, func: n.func, binary: n.binary };
  if (type === "focus_path") t.path = target.path.map((p) => ({ func: p.func, binary: p.binary }));
  closeMenu();
  addTransform(t);
}

// hit(el) -> {node, path, inverted} | null: what an element of a panel stands for
function bindPanel(panel, selector, hit) {
  const show = (ev, el) => {
    const tg = hit(el);
    if (!tg || tg.node.func === "all") return;
    ev.preventDefault();
    const r = el.getBoundingClientRect();
    openMenu(tg, ev.clientX || r.left + 10, ev.clientY || r.bottom);
  };
  panel.addEventListener("contextmenu", (ev) => {
    const el = ev.target.closest(selector);
    if (el) show(ev, el);
  });
  panel.addEventListener("keydown", (ev) => {
    const el = ev.target.closest(selector);
    if (el && (ev.key === "ContextMenu" || (ev.key === "F10" && ev.shiftKey))) show(ev, el);
  });
}

// on.changed: the stack changed (re-query); panels: [[element, selector, hit]]
export function setupTransforms(on, panels) {
  onChange = on.changed;
  for (const [el, sel, hit] of panels) bindPanel(el, sel, hit);
  const m = $("#ctxmenu");
  m.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-type]");
    if (b && !b.disabled && target) apply(b.dataset.type);
  });
  m.addEventListener("keydown", (ev) => {
    const bs = [...m.querySelectorAll("button:not([disabled])")], i = bs.indexOf(document.activeElement);
    if (ev.key === "Escape") closeMenu();
    else if (ev.key === "ArrowDown") bs[(i + 1) % bs.length]?.focus();
    else if (ev.key === "ArrowUp") bs[(i - 1 + bs.length) % bs.length]?.focus();
    else return;
    ev.preventDefault(); ev.stopPropagation();
  });
  document.addEventListener("click", (ev) => { if (!m.hidden && !m.contains(ev.target)) closeMenu(); });
  $("#transforms").addEventListener("click", (ev) => {
    const rm = ev.target.closest("button[data-remove]"), up = ev.target.closest("button[data-upto]");
    if (rm) X.list.splice(Number(rm.dataset.remove), 1);
    else if (up) X.list.length = Number(up.dataset.upto);
    else return;
    renderTransforms(); onChange();
  });
  renderTransforms();
}

// what tests read
window.__staxTransforms = X;
