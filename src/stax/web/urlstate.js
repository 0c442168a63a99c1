// The view in the address bar: run, thread, range, time-axis zoom, mode, flamegraph zoom path,
// search (with its regex and case toggles), the call tree's inversion and the transforms of the
// stacks live in the URL's hash (#run=3&tid=12&range=A,B&mode=wall&zoom=…&tf=merge:work_a), so a
// reload or a shared link shows the same view. A user action that changes them pushes a history
// entry (typing in the search box replaces the current one); back/forward restore the entry's
// view. The query string is left to api.js (its token is taken out of the address bar there).
// Values are percent-encoded except for `:`, `/`, `@` and `,`, which a fragment may hold as
// they are (a function name or a binary's path stays readable); it is read back with
// URLSearchParams.

import { $, S } from "./state.js";
import { isInverted, setInverted } from "./calltree.js";
import { setTransformItems, transformItems } from "./transforms.js";

const MODES = new Set(["cpu", "offcpu", "wall"]);
const int = (s) => (s !== null && /^\d{1,19}$/.test(s) ? Number(s) : null);
const pair = (s) => {
  const m = /^(\d{1,19}),(\d{1,19})$/.exec(s || "");
  return m && Number(m[1]) < Number(m[2]) ? [Number(m[1]), Number(m[2])] : null;
};

const READABLE = { "%3A": ":", "%2F": "/", "%40": "@", "%2C": "," };
const enc = (s) => encodeURIComponent(s).replace(/%3A|%2F|%40|%2C/g, (m) => READABLE[m]);

// the hash for the view shown now (without "#")
export function currentHash() {
  const q = [];
  const add = (k, v) => q.push(`${k}=${enc(v)}`);
  const run = S.runId ?? (S.tid !== null || S.range ? S.run?.id ?? null : null);
  if (run !== null) add("run", String(run));
  if (S.tid !== null) add("tid", String(S.tid));
  if (S.range) add("range", `${Math.floor(S.range[0])},${Math.ceil(S.range[1])}`);
  if (S.view) add("view", `${Math.floor(S.view[0])},${Math.ceil(S.view[1])}`);
  if (S.mode !== "cpu") add("mode", S.mode);
  for (const k of S.zoom) add("zoom", k);
  if (S.search) add("search", S.search);
  if (S.searchRegex) add("regex", "1");
  if (S.searchCase) add("case", "1");
  if (isInverted()) add("inverted", "1");
  for (const t of transformItems()) add("tf", t);
  return q.join("&");
}

// set S (and the controls that are not redrawn from it) from a hash
export function applyHash(hash) {
  const q = new URLSearchParams(hash.replace(/^#/, ""));
  S.runId = int(q.get("run"));
  S.tid = int(q.get("tid"));
  S.range = pair(q.get("range"));
  S.view = pair(q.get("view"));
  S.mode = MODES.has(q.get("mode")) ? q.get("mode") : "cpu";
  S.zoom = q.getAll("zoom");
  S.search = q.get("search") || "";
  S.searchRegex = q.get("regex") === "1";
  S.searchCase = q.get("case") === "1";
  setInverted(q.get("inverted") === "1");
  setTransformItems(q.getAll("tf"));
  $("#search").value = S.search;
  $("#search-regex").checked = S.searchRegex;
  $("#search-case").checked = S.searchCase;
  $("#calltree-invert").checked = isInverted();
}

// push (or replace) a history entry when the view differs from the address bar's
export function syncUrl(push = true) {
  const want = currentHash();
  if (want === location.hash.replace(/^#/, "")) return;
  const url = location.pathname + location.search + (want ? `#${want}` : "");
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

// on.refresh: re-query everything (after back/forward). User actions are caught where they
// happen (click, change, keys, the end of a drag); the handlers have updated S by the time the
// deferred check runs.
export function setupUrlState(on) {
  applyHash(location.hash);
  const later = () => setTimeout(() => syncUrl(true), 0);
  for (const type of ["click", "change", "keydown", "mouseup"]) document.addEventListener(type, later);
  $("#search").addEventListener("input", () => setTimeout(() => syncUrl(false), 0));
  window.addEventListener("popstate", () => {
    applyHash(location.hash);
    S.selFunc = null;
    on.refresh();
  });
}
