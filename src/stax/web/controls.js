// Header controls: pause/resume of live updates, and the export downloads.
// Pause is the page's own: the server keeps recording and pushing "update" events, the page just
// stops re-querying on them (user actions still query); resume re-queries at once.
// Export: GET /export?format=F&run=N (served by stax-server behind the same guard as the page:
// the peer's uid on loopback, else the token this tab keeps in session storage).

import { $, S } from "./state.js";

export const EXPORT_FORMATS = ["pprof", "speedscope", "gecko", "folded", "archive"];

export function renderPause() {
  const b = $("#pause");
  b.textContent = S.paused ? "resume" : "pause";
  b.setAttribute("aria-pressed", String(!!S.paused));
  b.title = S.paused ? "live updates paused: click to resume" : "pause live updates (the run keeps recording)";
  document.body.dataset.paused = S.paused ? "1" : "";
}

export function exportUrl(format) {
  const q = new URLSearchParams({ format });
  if (S.run) q.set("run", String(S.run.id));
  const token = sessionStorage.getItem("stax-token");
  if (token) q.set("token", token);
  return `/export?${q}`;
}

// on.refresh: re-query (on resume)
export function setupControls(on) {
  $("#pause").addEventListener("click", () => {
    S.paused = !S.paused;
    renderPause();
    if (!S.paused) on.refresh();
  });
  renderPause();
  $("#exports").innerHTML = EXPORT_FORMATS.map((f) =>
    `<button type="button" data-format="${f}" title="download this run as ${f}">${f}</button>`).join("");
  $("#exports").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-format]");
    if (!b || !S.run) return;
    const a = document.createElement("a");
    a.href = exportUrl(b.dataset.format);
    a.download = "";
    document.body.append(a);
    a.click();
    a.remove();
  });
}
