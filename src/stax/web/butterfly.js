// Callers / callees (a butterfly, and the sandwich view) of the selected function, from the
// server's `neighbors`: its callers with the share of its time that came through each above,
// the function in the middle, its callees (and its self time) below. Click a name to make it
// the selected function; the triangle of a caller opens that caller's own callers (of a callee,
// its callees), level by level, as the sandwich's two trees. Deeper levels are the neighbours
// of that function over the whole scope, not only of the paths through the selected one.

import { rpc } from "./api.js";
import { $, S, scopeParams } from "./state.js";
import { esc, keyOf, ms, pct } from "./format.js";
import { binaryChip } from "./colors.js";

const LIMIT = 50;                       // rows per list
const B = { res: null, key: null, open: new Map() };  // open: "up|down" + path -> neighbors result
let onSel = () => {};
let shownKeys = [];                     // the opened-level keys of the rendered triangles

async function neighborsOf(func) {
  return rpc.call("neighbors", { ...scopeParams(), target: func, exact: true, mode: S.mode, limit: LIMIT });
}

// force: the selection changed (else a live update re-asks the same function)
export async function refreshButterfly(force) {
  const sel = S.selFunc;
  const key = sel ? `${keyOf(sel)}\u0000${S.mode}` : null;
  if (force || key !== B.key) B.open.clear();
  B.key = key;
  if (!sel || !S.run) { B.res = null; renderButterfly(); return; }
  try {
    B.res = await neighborsOf(sel.func);
    for (const [k, v] of B.open) {   // keep opened levels, freshly counted
      if (v) B.open.set(k, await neighborsOf(k.split("\u0001").pop()));
    }
  } catch (e) { B.res = { error: e }; }
  renderButterfly();
}

function row(r, dir, path, depth, total) {
  const named = r.func !== "[root]" && r.func !== "(self)";
  const k = `${dir}\u0001${path}\u0001${r.func}`;
  const open = B.open.get(k);
  const twisty = named ? `<span class="twisty" data-open="${shownKeys.push(k) - 1}">${open ? "▼" : "▶"}</span>` : `<span class="twisty"></span>`;
  const share = total ? 100 * r.time_ns / total : r.pct;
  const out = [`<tr class="bf-${dir}" data-func="${named ? esc(r.func) : ""}" data-binary="${esc(r.binary)}" aria-level="${depth + 1}">` +
    `<td class="num">${pct(share)}</td><td class="num">${ms(r.time_ns)}</td>` +
    `<td class="fn" style="--depth:${depth}" title="${esc(r.func)}">${twisty}${named ? `<a href="#" class="bf-go">${esc(r.func)}</a>` : esc(r.func)}</td>` +
    `<td class="bin">${r.binary ? binaryChip(r.binary) : ""}</td></tr>`];
  if (open && !open.error && open.function) {
    const list = dir === "up" ? open.callers : open.callees;
    const sub = `${path}\u0001${r.func}`;
    for (const c of list) out.push(...row(c, dir, sub, depth + 1, open.function.time_ns));
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
  const up = res.callers.flatMap((r) => row(r, "up", "", 0, 0));
  const self = { func: "(self)", binary: "", time_ns: f.self_ns, pct: f.self_pct };
  const down = [...res.callees, ...(f.self_ns ? [self] : [])]
    .sort((a, b) => b.time_ns - a.time_ns).flatMap((r) => row(r, "down", "", 0, 0));
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
      if (B.open.get(k)) B.open.delete(k);
      else {
        try { B.open.set(k, await neighborsOf(k.split("\u0001").pop())); } catch (e) { B.open.set(k, { error: e }); }
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
