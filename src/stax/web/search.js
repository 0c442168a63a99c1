// The search box's matcher: a substring (case-insensitive unless "Aa" is on) or, with ".*" on, a
// regular expression. The flamegraph highlights what matches; the top table and the call tree
// keep only the rows that match (the call tree: a matching row and the rows on its path).

import { $, S } from "./state.js";

// {test(name) -> bool} for the search in S, null when there is none; {error} when the regex is bad
export function matcher() {
  if (!S.search) return null;
  if (S.searchRegex) {
    try {
      const re = new RegExp(S.search, S.searchCase ? "" : "i");
      return { test: (s) => re.test(s) };
    } catch (e) { return { error: e.message, test: () => false }; }
  }
  if (S.searchCase) return { test: (s) => s.includes(S.search) };
  const q = S.search.toLowerCase();
  return { test: (s) => s.toLowerCase().includes(q) };
}

// rerender: the panels that show the search (after any change of the box or a toggle)
export function setupSearch(rerender) {
  const box = $("#search"), rx = $("#search-regex"), cs = $("#search-case");
  const sync = () => { rx.checked = !!S.searchRegex; cs.checked = !!S.searchCase; };
  box.addEventListener("input", () => { S.search = box.value; rerender(); });
  rx.addEventListener("change", () => { S.searchRegex = rx.checked; rerender(); });
  cs.addEventListener("change", () => { S.searchCase = cs.checked; rerender(); });
  sync();
  return sync;
}
