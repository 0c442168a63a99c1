// The annotate panel: the selected function's instructions with their samples, under the source
// lines they come from (docs/protocol.md describes the annotate result). The table is virtual:
// only the rows in view (and OVERSCAN either side) are in the DOM, every row ROW_H tall, so a
// 10,000-instruction function costs no more to show or scroll than a small one. The transforms
// that choose samples (drop, focus) apply: the server counts only the samples they keep.
// Asked again for the same function (another scope, a live run), the page sends the `code_id`
// of the disassembly it holds, and the server answers with the changed counts only.

import { rpc } from "./api.js";
import { $, S, scopeParams } from "./state.js";
import { esc, ms, pct } from "./format.js";
import { transformParams } from "./transforms.js";

const ROW_H = 18, OVERSCAN = 40;
let rowsHtml = [];   // every row of the shown annotation: [instruction] or [instruction, source]
let rowHtml = () => "";  // a row's HTML, made only when it is drawn
let lastSig = null;  // what the shown annotation was made from: an identical answer is not redrawn
// the disassembly held: {fkey, code_id, instructions, sources}, their counts zeroed
let held = null;
const asked = { whole: 0, countsOnly: 0 };  // answers of each kind (what tests read)
window.__staxAnnotate = asked;

// a counts-only answer completed from the held disassembly (null: it cannot be)
function complete(res, fkey) {
  if (!res || res.instructions !== null || !res.instruction_counts) {
    if (res?.instructions) asked.whole++;
    if (res?.code_id && res.instructions?.length) {
      const zero = (r) => ({ ...r, samples: 0, self_ns: 0, ...("pct" in r ? { pct: 0 } : {}) });
      held = { fkey, code_id: res.code_id, instructions: res.instructions.map(zero),
        sources: (res.sources || []).map(zero) };
    }
    return res;
  }
  if (!held || held.fkey !== fkey || held.code_id !== res.code_id) return null;
  asked.countsOnly++;
  const denom = res.self_samples || 1;
  const fill = (base, counts, pctOf) => {
    const out = base.slice();
    for (const [i, n, w] of counts) out[i] = { ...base[i], samples: n, self_ns: w, ...pctOf(n) };
    return out;
  };
  res.instructions = fill(held.instructions, res.instruction_counts, (n) => ({ pct: 100 * n / denom }));
  res.sources = fill(held.sources, res.source_counts || [], () => ({}));
  return res;
}

// force: annotate now, even if the selection has not changed
export async function refreshAnnotate(force) {
  const el = $("#annotate"), title = $("#annotate-title");
  if (!S.selFunc || !S.run) {
    title.textContent = "";
    el.innerHTML = `<span class="muted">click a function in the top table or the flamegraph to annotate it</span>`;
    S.annotateKey = null; lastSig = null; rowsHtml = [];
    return;
  }
  const tp = transformParams();
  const key = JSON.stringify([S.run.id, S.selFunc.func, S.tid, S.range, tp]);
  const now = performance.now();
  // while recording, re-annotate at most every 3 s; otherwise only when the selection changes
  if (!force && key === S.annotateKey && (S.run.state !== "recording" || now - S.annotateAt < 3000)) return;
  S.annotateKey = key; S.annotateAt = now;
  title.textContent = `${S.selFunc.func} (${S.selFunc.binary})`;
  const p = { ...scopeParams(), ...tp, target: S.selFunc.func, exact: true };
  const fkey = JSON.stringify([S.run.id, S.selFunc.func]);
  let res;
  try {
    if (held?.fkey === fkey) p.code_id = held.code_id;
    res = complete(await rpc.call("annotate", p), fkey);
    if (res === null) {  // not the code held after all: the whole answer
      delete p.code_id; held = null;
      res = complete(await rpc.call("annotate", p), fkey);
    }
  } catch (e) {
    if (e.code === "disconnected") return;
    el.innerHTML = e.code === "unknown_method"
      ? `<div class="note">annotate not available in this stax-server</div>`
      : `<div class="note">annotate: ${esc(e.message)}</div>`;
    return;
  }
  const sig = JSON.stringify([key, res?.self_samples, res?.total_samples, res?.placed_samples,
    res?.instructions?.length, res?.lines?.length, res?.total_samples_in_function]);
  if (sig === lastSig) return;  // a live refresh that changed nothing here: keep the DOM
  lastSig = sig;
  const top = el.scrollTop;
  el.innerHTML = renderAnnotation(res);
  el.scrollTop = force ? 0 : top;
  drawRows();
}

// put the rows in view into the table's body, with spacers standing for the others
function drawRows() {
  const el = $("#annotate"), body = el.querySelector("table.ann tbody");
  if (!body) return;
  // how far the scroll box's top is below the body's first row
  const into = el.getBoundingClientRect().top - body.getBoundingClientRect().top;
  const from = Math.max(0, Math.floor(into / ROW_H) - OVERSCAN);
  const to = Math.min(rowsHtml.length, from + Math.ceil(el.clientHeight / ROW_H) + 2 * OVERSCAN);
  if (body.dataset.from === String(from) && body.dataset.to === String(to)) return;
  body.dataset.from = from; body.dataset.to = to;
  const pad = (n) => (n > 0 ? `<tr class="pad" aria-hidden="true" style="height:${n * ROW_H}px"><td colspan="5"></td></tr>` : "");
  body.innerHTML = pad(from) + rowsHtml.slice(from, to).map(rowHtml).join("") + pad(rowsHtml.length - to);
}

let queued = false;
export function setupAnnotate() {
  $("#annotate").addEventListener("scroll", () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; drawRows(); });
  }, { passive: true });
}

const hex = (n) => (typeof n === "number" || typeof n === "bigint" ? `0x${n.toString(16)}` : esc(n ?? "?"));
const baseName = (f) => String(f).split("/").pop();
const UNPLACED = { mid_instruction: "inside an instruction", outside_disassembly: "outside the disassembly",
  not_disassembled: "not disassembled", no_address: "no address" };

// A Python function (docs/protocol.md): the lines of its .py file, each with the samples where
// it was the innermost Python function on that line, and the total with it anywhere on the stack.
function renderPython(res) {
  const fn = res.function;
  const func = `<div class="ann-func" id="annotate-func"><b>${esc(fn.func)}</b> in ${esc(fn.binary)} ` +
    `<span class="muted">(${esc(baseName(fn.path))}:${fn.first_line}, Python; matched by ${esc(res.matched_by)})</span>` +
    ` · ${res.python_self_samples ?? 0} samples as the innermost Python function, ${ms(res.python_self_ns)}, ` +
    `${pct(res.python_self_pct)} of ${res.total_samples} in scope · on the stack in ${res.total_samples_in_function ?? 0}</div>`;
  const counts = `<div class="ann-counts" id="annotate-counts">lines ${fn.first_line}–${fn.last_line} of ` +
    `<span title="${esc(fn.path)}">${esc(baseName(fn.path))}</span> · samples: on the line, innermost · ` +
    `total: the functions it calls included</div>`;
  const note = res.note ? `<div class="note">${esc(res.note)}</div>` : "";
  const lines = res.lines || [];
  rowsHtml = lines.map((r) => [r]);
  const maxS = lines.reduce((a, r) => Math.max(a, r.samples || 0), 1);
  rowHtml = ([r]) => {
    const heat = (r.samples || 0) / maxS;
    const style = r.samples ? ` style="--heat:${Math.round(15 + 55 * heat)}%"` : "";
    const text = r.text != null ? esc(r.text) : `<span class="muted">(source not readable)</span>`;
    return `<tr class="pyline${r.samples ? " hot" : ""}"${style} data-line="${r.line}" data-samples="${r.samples || 0}" ` +
      `data-total="${r.total_samples || 0}"><td class="addr">${r.line}</td><td class="num">${r.samples || ""}</td>` +
      `<td class="num">${r.samples ? pct(r.pct) : ""}</td><td class="text">${text}</td>` +
      `<td class="num muted">${r.total_samples || ""}</td></tr>`;
  };
  if (!lines.length) return func + counts + (note || `<div class="note">no lines to show for this function</div>`);
  return func + counts + note +
    `<table class="ann" data-rows="${lines.length}" data-lines="${lines.length}"><colgroup><col class="c-n"><col class="c-n"><col class="c-n">` +
    `<col><col class="c-n"></colgroup><thead><tr><th>line</th><th class="num">samples</th><th class="num">%</th>` +
    `<th>source</th><th class="num">total</th></tr></thead><tbody></tbody></table>`;
}

// The annotate result (docs/protocol.md): the matched function, then its instructions in
// address order under a `file:line` header wherever the source line changes.
function renderAnnotation(res) {
  if (!res || typeof res !== "object") return `<div class="note">annotate not available for this function</div>`;
  const fn = res.function;
  if (!fn) {
    const hot = (res.hottest || []).map((h) => `<tr><td class="fn">${esc(h.func)}</td><td>${esc(h.binary)}</td>` +
      `<td class="num">${h.self_samples}</td><td class="num">${h.total_samples}</td></tr>`).join("");
    return `<div class="note">no sampled function matches “${esc(res.target)}” in this scope</div>` +
      (hot ? `<h3>Hottest functions</h3><table><thead><tr><th>function</th><th>binary</th><th class="num">self</th>` +
        `<th class="num">total</th></tr></thead><tbody>${hot}</tbody></table>` : "");
  }
  if (res.language === "python") return renderPython(res);
  const where = [`${hex(fn.addr)}`, fn.size ? `${fn.size} bytes` : null, res.arch].filter(Boolean).join(", ");
  const func = `<div class="ann-func" id="annotate-func"><b>${esc(fn.func)}</b> in ${esc(fn.binary)} ` +
    `<span class="muted">(${esc(where)}; matched by ${esc(res.matched_by)})</span>` +
    ` · self ${res.self_samples ?? 0} samples, ${ms(res.self_ns)}, ${pct(res.self_pct)} of ${res.total_samples} in scope` +
    ` · on the stack in ${res.total_samples_in_function ?? 0}</div>`;
  const un = res.unplaced || {};
  const unParts = Object.entries(un).filter(([, v]) => v > 0).map(([k, v]) => `${v} ${UNPLACED[k] || k}`);
  const unTitle = (res.unplaced_addrs || []).map((u) => `${hex(u.addr)}: ${u.samples} (${u.reason})`).join("\n");
  const counts = `<div class="ann-counts" id="annotate-counts">${res.placed_samples ?? 0} samples placed on instructions · ` +
    `<span class="${res.unplaced_samples ? "warn" : ""}" title="${esc(unTitle)}">${res.unplaced_samples ?? 0} unplaced` +
    `${unParts.length ? ` (${esc(unParts.join(", "))})` : ""}</span>` +
    (res.has_line_info === false ? ` · <span class="muted">no line table${res.debug_file ? "" : " (no debug file)"}</span>` : "") +
    `</div>`;
  const note = res.note ? `<div class="note">${esc(res.note)}</div>` : "";
  const ins = res.instructions || [];
  rowsHtml = [];
  if (!ins.length) return func + counts + (note || `<div class="note">no instructions to show for this function</div>`);
  const src = new Map((res.sources || []).map((x) => [`${x.file}:${x.line}`, x]));
  const maxS = ins.reduce((a, r) => Math.max(a, r.samples || 0), 1);
  const rows = rowsHtml;
  let prev = null;
  for (const r of ins) {
    const key = r.file ? `${r.file}:${r.line}` : null;
    if (key && key !== prev) rows.push([r, src.get(key) || {}]);
    prev = key;
    rows.push([r]);
  }
  rowHtml = ([r, x]) => {
    if (x) {
      const text = x.text != null ? esc(x.text) : `<span class="muted">(${esc(x.hidden || "source not readable")})</span>`;
      return `<tr class="src${x.samples ? " hot-src" : ""}"><td class="loc" colspan="3" title="${esc(r.file)}:${r.line}">${esc(baseName(r.file))}:${r.line}</td>` +
        `<td class="code">${text}</td><td class="num muted">${x.samples ? `${x.samples} samples` : ""}</td></tr>`;
    }
    const heat = (r.samples || 0) / maxS;
    const style = r.samples ? ` style="--heat:${Math.round(15 + 55 * heat)}%"` : "";
    return `<tr class="ins${r.samples ? " hot" : ""}"${style} data-samples="${r.samples || 0}">` +
      `<td class="addr">${hex(r.addr)}</td><td class="num">${r.samples || ""}</td>` +
      `<td class="num">${r.samples ? pct(r.pct) : ""}</td><td class="text">${esc(r.text)}</td>` +
      `<td class="barcell">${r.samples ? `<span class="hbar" style="width:${(100 * heat).toFixed(1)}%"></span>` : ""}</td></tr>`;
  };
  return func + counts + note +
    `<table class="ann" data-rows="${rows.length}" data-instructions="${ins.length}"><colgroup><col class="c-addr"><col class="c-n"><col class="c-n">` +
    `<col><col class="c-bar"></colgroup><thead><tr><th>address</th><th class="num">samples</th><th class="num">%</th>` +
    `<th>instruction</th><th></th></tr></thead><tbody></tbody></table>`;
}
