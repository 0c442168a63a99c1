// The keyboard help: `?` shows it, Esc or a click hides it.

import { $ } from "./state.js";

const KEYS = [
  ["/", "search the flamegraph"],
  ["Esc", "clear the search, then unzoom, then clear the range (and close this help)"],
  ["↑ ↓", "move between rows of the top table"],
  ["Enter", "in the top table: select the focused function (annotate shows it)"],
  ["← → ↑ ↓", "in the flamegraph: the frame beside, the caller, the first callee"],
  ["Enter", "in the flamegraph: zoom into the focused frame"],
  ["← → ↑ ↓ *", "in the call tree: collapse or go to the parent, expand or go to the first child, move, expand all below"],
  ["Tab", "focus the next control, table or the flamegraph"],
  ["?", "show this help"],
];

export function setupHelp() {
  const el = $("#help");
  el.innerHTML = `<div class="help-box" role="document"><h2>Keyboard</h2><table>` +
    KEYS.map(([k, what]) => `<tr><td><kbd>${k}</kbd></td><td>${what}</td></tr>`).join("") +
    `</table><p class="muted">Esc or a click closes this.</p></div>`;
  el.addEventListener("click", () => { el.hidden = true; });
  $("#help-btn").addEventListener("click", () => { el.hidden = false; });
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement) return;
    if (ev.key === "?") { ev.preventDefault(); el.hidden = !el.hidden; }
    else if (ev.key === "Escape" && !el.hidden) { el.hidden = true; ev.stopImmediatePropagation(); }
  }, true);
}
