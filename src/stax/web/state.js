// What every panel shares: the page's state, the DOM shortcut, and the counters tests read.

export const $ = (sel) => document.querySelector(sel);

export const S = {
  runId: null,        // null: follow the server's current run
  run: null,          // run summary being shown
  tid: null,          // thread scope
  range: null,        // [start_ns, end_ns] relative to the run's first sample
  view: null,         // [start_ns, end_ns] the time axis is zoomed to (null: the whole run)
  mode: "cpu",        // flamegraph mode
  sort: "self",       // top-table column, and its direction (1 up, -1 down, null: the column's default)
  sortDir: null,
  zoom: [],           // path of frame keys from the root to the zoomed node
  search: "",
  searchRegex: false, // the search is a regular expression
  searchCase: false,  // the search is case-sensitive
  paused: false,      // live updates paused (the page does not re-query on "update" events)
  selFunc: null,      // {func, binary} for the annotate pane
  flame: null, top: null, threads: null, timeline: null,
  annotateKey: null, annotateAt: 0,
};
// What tests and the benchmark read: renders so far, time of the first full render.
export const stats = { renders: 0, firstRenderMs: null, updates: 0, errors: [] };
window.__stax = stats;

// Let the browser run between two pieces of one refresh (input, painting): no piece of the
// page's work holds the main thread for long.
export const yieldToPage = () => (globalThis.scheduler?.yield
  ? globalThis.scheduler.yield() : new Promise((r) => setTimeout(r, 0)));

// An element's width, without a forced layout on each render: read once, then kept up to date
// by a ResizeObserver (a read after DOM changes would make the browser lay the page out again).
const widths = new WeakMap();
let sizes = null;
export function widthOf(el) {
  let w = widths.get(el);
  if (w === undefined) {
    sizes ??= new ResizeObserver((es) => { for (const e of es) widths.set(e.target, e.target.clientWidth); });
    w = el.clientWidth;
    widths.set(el, w);
    sizes.observe(el);
  }
  return w;
}

// The run, thread and time range every query is scoped to.
export function scopeParams() {
  const p = {};
  if (S.run) p.run = S.run.id;
  if (S.tid !== null) p.tid = S.tid;
  if (S.range) { p.start_ns = Math.floor(S.range[0]); p.end_ns = Math.ceil(S.range[1]); }
  return p;
}
