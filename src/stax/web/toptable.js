// The top-functions table: every function of the scope (asked with limit 0, sorted here), any
// column sortable both ways (click a header; click again to reverse), the first SHOW_FIRST rows
// shown with a "show all" button. Its "N functions" count is the scope's, whatever the sort.

import { $, S } from "./state.js";
import { esc, keyOf, ms, pct } from "./format.js";
import { binaryChip } from "./colors.js";
import { matcher } from "./search.js";

const SHOW_FIRST = 200;
// column key -> how a row compares; numbers sort descending first, names ascending first
const COLS = {
  self: (r) => r.self_ns, self_pct: (r) => r.self_pct, total: (r) => r.total_ns,
  total_pct: (r) => r.total_pct, samples: (r) => r.total_samples, func: (r) => r.func, binary: (r) => r.binary,
};
const TEXT = new Set(["func", "binary"]);
let showAll = false;

// names in a fixed order, the same in every browser and locale: case-insensitive by code point
// (localeCompare would order "__udp4" and "__udp_enqueue" by the locale's punctuation rules)
const byName = (a, b) => {
  const x = a.toLowerCase(), y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : (a < b ? -1 : a > b ? 1 : 0);
};

// the rows of S.top in the chosen order (S.sort: column, S.sortDir: 1 ascending, -1 descending)
export function sortedRows() {
  const rows = S.top?.rows ? [...S.top.rows] : [];
  const get = COLS[S.sort] || COLS.self, dir = S.sortDir || (TEXT.has(S.sort) ? 1 : -1);
  const text = TEXT.has(S.sort);
  rows.sort((a, b) => {
    const x = get(a), y = get(b);
    const c = text ? byName(String(x), String(y)) : (x - y);
    return c * dir || (b.total_ns - a.total_ns) || byName(a.func, b.func);
  });
  return rows;
}

export function renderTop() {
  const t = S.top, body = $("#top tbody");
  const dir = S.sortDir || (TEXT.has(S.sort) ? 1 : -1);
  for (const th of document.querySelectorAll("#top th[data-sort]")) {
    const on = th.dataset.sort === S.sort;
    th.classList.toggle("sorted", on);
    th.dataset.dir = on ? (dir > 0 ? "asc" : "desc") : "";
    th.setAttribute("aria-sort", on ? (dir > 0 ? "ascending" : "descending") : "none");
  }
  const more = $("#top-more");
  more.hidden = true;
  $("#top-info").textContent = t ? `${t.total_samples} samples, ${ms(t.total_ns)} on-CPU, ${t.functions} functions` : "";
  if (!t) { body.innerHTML = ""; return; }
  const sel = S.selFunc ? keyOf(S.selFunc) : null;
  if (!t.rows.length) {
    const off = S.run && S.run.intervals > 0 ? "; its blocked time is in the off-CPU flamegraph" : "";
    body.innerHTML = `<tr class="empty"><td colspan="7" class="muted">no on-CPU samples in this scope${off}</td></tr>`;
    return;
  }
  const mt = matcher();
  const rows = mt ? sortedRows().filter((r) => mt.test(r.func)) : sortedRows();
  $("#top").dataset.filtered = mt ? String(rows.length) : "";
  const shown = showAll ? rows : rows.slice(0, SHOW_FIRST);
  S.topShown = shown;
  if (shown.length < rows.length) {
    more.hidden = false;
    more.textContent = `showing ${shown.length} of ${rows.length} functions — show all`;
  }
  if (mt && !rows.length) { body.innerHTML = `<tr class="empty"><td colspan="7" class="muted">no function matches the search</td></tr>`; return; }
  body.innerHTML = shown.map((r, i) => `<tr data-i="${i}" tabindex="${i === 0 ? 0 : -1}" class="${sel === keyOf(r) ? "selected" : ""}">` +
    `<td class="num">${ms(r.self_ns)}</td><td class="num">${pct(r.self_pct)}</td>` +
    `<td class="num">${ms(r.total_ns)}</td><td class="num">${pct(r.total_pct)}</td>` +
    `<td class="num">${r.total_samples}</td>` +
    `<td class="fn" title="${esc(r.func)}">${esc(r.func)}</td><td class="bin" title="${esc(r.binary)}">${binaryChip(r.binary)}</td></tr>`).join("");
}

// on.selected: after renderTop, when a click (or Enter) has selected a function
export function setupTop(on) {
  for (const th of document.querySelectorAll("#top th[data-sort]")) {
    th.addEventListener("click", () => {
      const col = th.dataset.sort;
      const first = TEXT.has(col) ? 1 : -1;
      S.sortDir = S.sort === col ? -(S.sortDir || first) : first;
      S.sort = col;
      renderTop();
    });
  }
  $("#top-more").addEventListener("click", () => { showAll = true; renderTop(); });
  const pick = (tr) => {
    const r = S.topShown?.[Number(tr.dataset.i)];
    if (!r) return;
    S.selFunc = { func: r.func, binary: r.binary };
    renderTop(); on.selected();
    $(`#top tbody tr[data-i="${tr.dataset.i}"]`)?.focus();
  };
  $("#top tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (tr && S.top) pick(tr);
  });
  // arrow keys move between rows, Enter selects (and annotates) the focused one
  $("#top tbody").addEventListener("keydown", (ev) => {
    const tr = ev.target.closest("tr");
    if (!tr) return;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      (ev.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling)?.focus();
    } else if (ev.key === "Enter") { ev.preventDefault(); pick(tr); }
  });
}
