// The call tree (the Firefox Profiler's Call Tree): the flamegraph's tree as an expandable table
// with running time (ms, %), self time, function and binary. "invert call stack" asks the server
// for the bottom-up tree (flamegraph with inverted: true): the roots are the functions that were
// running, by self time, and a node's children are its callers.
// Mouse: click the triangle to expand or collapse, a row to select its function. Keys (the
// focused row): ↑/↓ move, → expands (or goes to the first child), ← collapses (or goes to the
// parent), * expands everything below, Enter selects.

import { rpc } from "./api.js";
import { $, S } from "./state.js";
import { esc, keyOf, ms, pct } from "./format.js";
import { binaryChip } from "./colors.js";
import { matcher } from "./search.js";

const SEP = "\u0001";          // joins the frame keys of a row's path
const AUTO_DEPTH = 12;         // how deep the hottest path opens on first show
const MAX_ROWS = 3000;         // rows drawn at most (the rest: a "more" note)
const T = { inverted: false, tree: null, expanded: new Set(), touched: false, rows: [], focus: null };
let onSel = () => {};

// the tree the table shows: the flamegraph's (already fetched) or the inverted one
export async function refreshCallTree(params) {
  if (!T.inverted) {
    T.tree = S.flame && !S.flame.error ? S.flame : null;
  } else {
    try {
      T.tree = await rpc.call("flamegraph", { ...params, mode: S.mode, threshold_pct: 0.05, inverted: true });
    } catch (e) { T.tree = { error: e }; }
  }
  renderCallTree();
}

const pathKey = (parent, node) => (parent ? parent + SEP : "") + keyOf(node);

function sumKids(node) {
  let s = node.hidden ? node.hidden.time_ns : 0;
  for (const c of node.children || []) s += c.time_ns;
  return s;
}
// self time: what the node ran itself (normal tree); an inverted root's time is its self time
function selfNs(node, depth) {
  if (T.inverted) return depth === 0 ? node.time_ns : null;
  if (node.collapsed_frames) return null;
  return Math.max(0, node.time_ns - sumKids(node));
}

// open the hottest path once, until the user expands or collapses something
function autoExpand(roots) {
  if (T.touched || !roots.length) return;
  T.expanded.clear();
  if (T.inverted) return;  // bottom-up: the list of running functions is the point
  let node = roots[0], key = pathKey("", node);
  for (let d = 0; d < AUTO_DEPTH && node.children?.length; d++) {
    T.expanded.add(key);
    node = node.children[0];
    key = pathKey(key, node);
  }
}

// with a search: the rows that match, and (opened) the rows on the way to them
function pruned(nodes, mt) {
  const out = [];
  for (const n of nodes) {
    if (mt.test(n.func)) { out.push(n); continue; }
    const kids = pruned(n.children || [], mt);
    if (kids.length) out.push({ ...n, children: kids, hidden: null, onPath: true });
  }
  return out;
}

export const isInverted = () => T.inverted;
export function setInverted(v) {
  if (T.inverted === !!v) return;
  T.inverted = !!v; T.touched = false; T.focus = null; T.tree = null;
}

function flatten(roots) {
  const rows = [];
  const walk = (nodes, parent, depth, hidden) => {
    for (const n of nodes) {
      if (rows.length >= MAX_ROWS) return;
      const key = pathKey(parent, n);
      const kids = n.children?.length > 0 || !!n.hidden;
      rows.push({ node: n, key, parent, depth, kids });
      if (kids && (n.onPath || T.expanded.has(key))) walk(n.children || [], key, depth + 1, n.hidden);
    }
    if (hidden?.nodes && rows.length < MAX_ROWS) {
      rows.push({ hidden, key: `${parent}${SEP}[hidden]`, parent, depth, kids: false });
    }
  };
  walk(roots, "", 0, null);
  return rows;
}

export function renderCallTree() {
  const body = $("#calltree tbody"), info = $("#calltree-info");
  const t = T.tree;
  $("#calltree-invert").checked = T.inverted;
  if (!t || t.error) {
    T.rows = [];
    body.innerHTML = t?.error ? `<tr class="empty"><td colspan="5" class="error">${esc(t.error.message)}</td></tr>` : "";
    info.textContent = "";
    return;
  }
  const mt = matcher();
  const roots = mt ? pruned(t.roots || [], mt) : t.roots || [];
  if (!mt) autoExpand(roots);
  T.rows = flatten(roots);
  info.textContent = `${T.inverted ? "inverted: roots are the running functions, children their callers" : "roots are the outermost frames"} · ${ms(t.total_ns)}`;
  if (!T.rows.length) {
    body.innerHTML = `<tr class="empty"><td colspan="5" class="muted">nothing in this scope</td></tr>`;
    return;
  }
  const sel = S.selFunc ? keyOf(S.selFunc) : null;
  const focusAt = Math.max(0, T.rows.findIndex((r) => r.key === T.focus));
  body.innerHTML = T.rows.map((r, i) => {
    const tab = i === focusAt ? 0 : -1, pad = `style="--depth:${r.depth}"`;
    if (r.hidden) {
      return `<tr data-i="${i}" tabindex="${tab}" class="hidden-row" aria-level="${r.depth + 1}">` +
        `<td class="num muted">${ms(r.hidden.time_ns)}</td><td class="num"></td><td class="num"></td>` +
        `<td class="fn muted" ${pad}><span class="twisty"></span>… ${r.hidden.nodes} smaller</td><td></td></tr>`;
    }
    const n = r.node, open = r.kids && T.expanded.has(r.key), self = selfNs(n, r.depth);
    const exp = r.kids ? ` aria-expanded="${open}"` : "";
    return `<tr data-i="${i}" tabindex="${tab}" aria-level="${r.depth + 1}"${exp} class="${sel === keyOf(n) ? "selected" : ""}">` +
      `<td class="num">${ms(n.time_ns)}</td><td class="num">${pct(n.pct)}</td>` +
      `<td class="num">${self === null ? "—" : ms(self)}</td>` +
      `<td class="fn" ${pad} title="${esc(n.func)}"><span class="twisty">${r.kids ? (open ? "▼" : "▶") : ""}</span>${esc(n.func)}</td>` +
      `<td class="bin" title="${esc(n.binary)}">${binaryChip(n.binary)}</td></tr>`;
  }).join("") + (T.rows.length >= MAX_ROWS
    ? `<tr class="empty"><td colspan="5" class="muted">first ${MAX_ROWS} rows shown; collapse some</td></tr>` : "");
}

function focusRow(i) {
  const r = T.rows[i];
  if (!r) return;
  T.focus = r.key;
  for (const tr of document.querySelectorAll("#calltree tbody tr[tabindex='0']")) tr.tabIndex = -1;
  const tr = $(`#calltree tbody tr[data-i="${i}"]`);
  if (tr) { tr.tabIndex = 0; tr.focus(); }
}

function toggle(i, open, all = false) {
  const r = T.rows[i];
  if (!r || !r.kids) return;
  T.touched = true;
  const want = open ?? !T.expanded.has(r.key);
  if (want) {
    T.expanded.add(r.key);
    if (all) {  // every descendant too
      const walk = (n, key) => { for (const c of n.children || []) { const k = pathKey(key, c); T.expanded.add(k); walk(c, k); } };
      walk(r.node, r.key);
    }
  } else {
    for (const k of [...T.expanded]) if (k === r.key || k.startsWith(r.key + SEP)) T.expanded.delete(k);
  }
  T.focus = r.key;
  renderCallTree();
  focusRow(T.rows.findIndex((x) => x.key === r.key));
}

function select(i) {
  const r = T.rows[i];
  if (!r || r.hidden) return;
  T.focus = r.key;
  S.selFunc = { func: r.node.func, binary: r.node.binary };
  renderCallTree();
  focusRow(i);
  onSel();
}

// what a row stands for (the transforms' context menu): its node and path from the root
export function callTreeTarget(tr) {
  const r = T.rows[Number(tr.dataset.i)];
  if (!r || r.hidden) return null;
  const path = r.key.split(SEP).map((k) => { const [func, binary] = k.split("\u0000"); return { func, binary }; });
  return { node: r.node, path, inverted: T.inverted };
}

// on.selected: after a row has selected a function; on.refresh: re-query (the invert toggle)
export function setupCallTree(on) {
  onSel = on.selected;
  $("#calltree-invert").addEventListener("change", (ev) => {
    setInverted(ev.target.checked);
    renderCallTree();
    on.refresh();
  });
  const body = $("#calltree tbody");
  body.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-i]");
    if (!tr) return;
    const i = Number(tr.dataset.i);
    if (ev.target.closest(".twisty")) toggle(i);
    else select(i);
  });
  body.addEventListener("dblclick", (ev) => {
    const tr = ev.target.closest("tr[data-i]");
    if (tr && !ev.target.closest(".twisty")) toggle(Number(tr.dataset.i));
  });
  body.addEventListener("keydown", (ev) => {
    const tr = ev.target.closest("tr[data-i]");
    if (!tr) return;
    const i = Number(tr.dataset.i), r = T.rows[i];
    const k = ev.key;
    if (k === "ArrowDown") focusRow(Math.min(T.rows.length - 1, i + 1));
    else if (k === "ArrowUp") focusRow(Math.max(0, i - 1));
    else if (k === "ArrowRight") {
      if (r.kids && !T.expanded.has(r.key)) toggle(i, true);
      else if (r.kids) focusRow(i + 1);
    } else if (k === "ArrowLeft") {
      if (r.kids && T.expanded.has(r.key)) toggle(i, false);
      else focusRow(T.rows.findIndex((x) => x.key === r.parent));
    } else if (k === "*") toggle(i, true, true);
    else if (k === "Enter") select(i);
    else return;
    ev.preventDefault();
  });
}

// what tests read: the rows as shown
window.__staxCallTree = T;
