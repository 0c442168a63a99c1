// Keyboard use of the flamegraph, and its redraw on resize: Tab into it, ← → move between frames of one level, ↑ to the
// caller, ↓ to the first callee, Enter zooms into the focused frame (as a click does).

import { $ } from "./state.js";

const FRAME_H = 18;  // flame.js's level height
const geom = (d) => ({ left: parseFloat(d.style.left), width: parseFloat(d.style.width), top: parseFloat(d.style.top) });

function neighbour(cur, key) {
  const g = geom(cur), frames = [...$("#flame").querySelectorAll(".frame")];
  const mid = g.left + g.width / 2;
  if (key === "ArrowLeft" || key === "ArrowRight") {
    const row = frames.filter((d) => geom(d).top === g.top).sort((a, b) => geom(a).left - geom(b).left);
    return row[row.indexOf(cur) + (key === "ArrowRight" ? 1 : -1)] || null;
  }
  const top = g.top + (key === "ArrowDown" ? 1 : -1) * FRAME_H;
  const level = frames.filter((d) => Math.abs(geom(d).top - top) < 2);
  if (key === "ArrowUp") return level.find((d) => { const h = geom(d); return h.left <= mid && mid <= h.left + h.width; }) || null;
  return level.filter((d) => { const h = geom(d); return h.left >= g.left - 0.5 && h.left < g.left + g.width; })
    .sort((a, b) => geom(a).left - geom(b).left)[0] || null;
}

// redraw: flame.js's renderFlame, re-run when the width changes (frames are laid out in px)
export function setupFlameKeys(redraw) {
  const el = $("#flame");
  let width = el.clientWidth, timer = null;
  new ResizeObserver(() => {
    if (el.clientWidth === width) return;
    width = el.clientWidth;
    clearTimeout(timer); timer = setTimeout(redraw, 100);
  }).observe(el);
  el.tabIndex = 0;
  el.setAttribute("aria-label", "flamegraph: arrow keys move between frames, Enter zooms");
  el.addEventListener("keydown", (ev) => {
    if (!ev.key.startsWith("Arrow") && ev.key !== "Enter") return;
    const cur = document.activeElement?.closest?.(".frame");
    if (ev.key === "Enter") {
      if (!cur) return;
      ev.preventDefault();
      const name = cur.dataset.name, top = cur.style.top;
      cur.click();  // re-renders: focus the frame of the same name at the same level again
      [...el.querySelectorAll(".frame")].find((d) => d.dataset.name === name && d.style.top === top)?.focus();
      return;
    }
    ev.preventDefault();
    const next = cur ? neighbour(cur, ev.key) : el.querySelector(".frame");
    if (next) { next.focus(); next.scrollIntoView({ block: "nearest" }); }
  });
}
