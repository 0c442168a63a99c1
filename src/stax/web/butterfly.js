// Callers / callees (a butterfly, and the sandwich view) of the selected function, from the
// server's `neighbors`: its callers with the share of its time that came through each above,
// the function in the middle, its callees (and its self time) below. Click a name to make it
// the selected function; the triangle of a caller opens that caller's own callers (of a callee,
// its callees), level by level, as the sandwich's two trees. Every level is exact: the server
// counts it over the stacks holding that very chain of callers (callees) next to the function
// (`expand`), and every row's share is of the selected function's time. The stack transforms
// and the scope apply as in the other panels.

import { rpc } from "./api.js";
import { $, S, scopeParams } from "./state.js";
import { esc, keyOf, ms, pct } from "./format.js";
import { binaryChip } from "./colors.js";
import { transformParams } from "./transforms.js";

const LIMIT = 50;                       // rows per list
const SEP = "\u0001";                   // joins the frame keys of an opened node's path
// res: the level-1 answer; open: opened node keys ("up"/"down" + path) -> the level's answer
// (null until it has come); key: what the opened levels were opened for
const B = { res: null, key: null, open: new Map() };
let onSel = () => {};
let shownKeys = [];                     // the node keys of the rendered triangles

const SIDE = { up: "callers", down: "callees" };
// an opened node's key -> {side, path: [{func, binary}]}: the request for its level
function request(k) {
  const [dir, ...path] = k.split(SEP);
  return { side: SIDE[dir], path: path.map((p) => { const [func, binary] = p.split("\u0000"); return { func, binary }; }) };
}

async function neighborsOf(func, keys) {
  return rpc.call("neighbors", { ...scopeParams(), ...transformParams(), target: func, exact: true,
    mode: S.mode, limit: LIMIT, expand: keys.map(request) });
}

// ask for the function and every opened level at once; keys: the levels to ask (default: all)
async function fetchLevels(keys = [...B.open.keys()]) {
  const res = await neighborsOf(S.selFunc.func, keys);
  keys.forEach((k, i) => B.open.set(k, res.expanded?.[i] ?? { rows: [], count: 0 }));
  return res;
}

// force: the selection changed (else a live update re-asks the same function and levels)
export async function refreshButterfly(force) {
  const sel = S.selFunc;
  const key = sel ? JSON.stringify([keyOf(sel), S.mode, transformParams()]) : null;
  if (force || key !== B.key) B.open.clear();
  B.key = key;
  if (!sel || !S.run) { B.res = null; renderButterfly(); return; }
  try {
    B.res = await fetchLevels();
  } catch (e) { B.res = { error: e }; }
  renderButterfly();
}

function row(r, dir, parent, depth) {
  const named = r.func !== "[root]" && r.func !== "(self)";
  const k = `${parent}${SEP}${keyOf(r)}`;
  const level = named ? B.open.get(k) : undefined;
  const open = level !== undefined;
  const twisty = named ? `<span class="twisty" data-open="${shownKeys.push(k) - 1}">${open ? "▼" : "▶"}</span>` : `<span class="twisty"></span>`;
  const out = [`<tr class="bf-${dir}" data-func="${named ? esc(r.func) : ""}" data-binary="${esc(r.binary)}" data-ns="${r.time_ns}" aria-level="${depth + 1}">` +
    `<td class="num">${pct(r.pct)}</td><td class="num">${ms(r.time_ns)}</td>` +
    `<td class="fn" style="--depth:${depth}" title="${esc(r.func)}">${twisty}${named ? `<a href="#" class="bf-go">${esc(r.func)}</a>` : esc(r.func)}</td>` +
    `<td class="bin">${r.binary ? binaryChip(r.binary) : ""}</td></tr>`];
  if (level) out.push(...levelRows(level, dir, k, depth + 1));
  return out;
}

// the rows of one level: callers (with [root]), or callees and the self time of the level's node
function levelRows(level, dir, parent, depth) {
  let list = level.rows || [];
  if (dir === "down" && level.self_ns) {
    const self = { func: "(self)", binary: "", time_ns: level.self_ns, samples: level.self_samples,
      pct: level.pct * level.self_ns / Math.max(1, level.time_ns) };
    list = [...list, self].sort((a, b) => b.time_ns - a.time_ns);
  }
  const out = list.flatMap((r) => row(r, dir, parent, depth));
  if (level.count > (level.rows || []).length) {
    out.push(`<tr aria-level="${depth + 1}"><td colspan="4" class="muted fn" style="--depth:${depth}">${level.count - level.rows.length} more</td></tr>`);
  }
  return out;
}

export function renderButterfly() {
  const box = $("#butterfly"), title = $("#butterfly-title");
  const res = B.res;
  shownKeys = [];
  if (!S.selFunc) {
    title.textContent = "";
    box.innerHTML = `<p class="muted">select a function (top table, call tree or flamegraph) to see who calls it and what it calls</p>`;
    return;
  }
  if (!res) { box.innerHTML = ""; return; }
  if (res.error) { box.innerHTML = `<p class="error">${esc(res.error.message)}</p>`; return; }
  const f = res.function;
  if (!f) {
    title.textContent = S.selFunc.func;
    box.innerHTML = `<p class="muted">${esc(S.selFunc.func)} has no ${S.mode === "cpu" ? "samples" : "time"} in this scope</p>`;
    return;
  }
  title.textContent = `${f.func} — ${ms(f.time_ns)} (${pct(f.pct)}), self ${ms(f.self_ns)}`;
  const up = res.callers.flatMap((r) => row(r, "up", "up", 0));
  const self = { func: "(self)", binary: "", time_ns: f.self_ns, pct: f.self_pct };
  const down = [...res.callees, ...(f.self_ns ? [self] : [])]
    .sort((a, b) => b.time_ns - a.time_ns).flatMap((r) => row(r, "down", "down", 0));
  const more = (n, shown, what) => (n > shown ? `<tr><td colspan="4" class="muted">${n - shown} more ${what}</td></tr>` : "");
  box.innerHTML = `<table id="bf-table"><thead><tr><th class="num">%</th><th class="num">time</th><th>function</th><th>binary</th></tr></thead>` +
    `<tbody class="bf-callers"><tr class="bf-head"><td colspan="4">callers (${res.caller_count}) — share of ${esc(f.func)}'s time through each</td></tr>${up.join("")}${more(res.caller_count, res.callers.length, "callers")}</tbody>` +
    `<tbody class="bf-self"><tr class="selected"><td class="num">${pct(f.pct)}</td><td class="num">${ms(f.time_ns)}</td><td class="fn">${esc(f.func)}</td><td class="bin">${f.binaries.map(binaryChip).join(" ")}</td></tr></tbody>` +
    `<tbody class="bf-callees"><tr class="bf-head"><td colspan="4">callees (${res.callee_count}) and self time</td></tr>${down.join("")}${more(res.callee_count, res.callees.length, "callees")}</tbody></table>`;
}

// on.selected: after a click has made another function the selected one
export function setupButterfly(on) {
  onSel = on.selected;
  $("#butterfly").addEventListener("click", async (ev) => {
    const tw = ev.target.closest(".twisty[data-open]");
    if (tw) {
      const k = shownKeys[Number(tw.dataset.open)];
      if (B.open.has(k)) {  // close it and everything opened below it
        for (const o of [...B.open.keys()]) if (o === k || o.startsWith(k + SEP)) B.open.delete(o);
      } else {
        B.open.set(k, null);
        try { B.res = await fetchLevels([k]); } catch (e) { B.open.delete(k); B.res = { error: e }; }
      }
      renderButterfly();
      return;
    }
    const a = ev.target.closest("a.bf-go");
    if (!a) return;
    ev.preventDefault();
    const tr = a.closest("tr");
    S.selFunc = { func: tr.dataset.func, binary: tr.dataset.binary };
    onSel();
  });
}

// what tests read
window.__staxButterfly = B;
