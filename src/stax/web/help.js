// The keyboard help: `?` shows it, Esc or a click hides it.

import { $ } from "./state.js";

const KEYS = [
  ["/", "search the flamegraph"],
  ["Esc", "clear the search, then unzoom, then clear the range (and close this help)"],
  ["↑ ↓", "move between rows of the top table"],
  ["Enter", "select the focused function (the flamegraph highlights it, annotate shows it)"],
  ["Tab", "focus the next control, table row or frame"],
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
