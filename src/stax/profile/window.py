"""Time windows and marks: ``A..B``, ``A..`` or ``..B``, each end seconds from the run's start
or the label of one of the run's marks, resolved to the Filter's ``start_ns``/``end_ns``.

The run's start is the profile's time origin (its first recorded event, ``first_time``), the
origin of the timeline and of every ``start_ns``/``time_ns`` a view reports. Marks are kept on
the Profile as (monotonic ns, label), the clock of the samples; ``marks`` gives them relative.

Stdlib only: the CLI checks a window's spelling with ``parse`` before it asks the server, and
the server (stax.server.params, handlers/queries.py) and ``stax compare`` (which reads archives
itself) resolve windows here, so every command reads ``--window`` the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stax.limits import MAX_MARK_LABEL, MAX_SECONDS

SEP = ".."
MAX_WINDOW_TEXT = 2 * MAX_MARK_LABEL + 64
SYNTAX = ("A..B, A.. or ..B, where A and B are seconds from the run's start (1.5) or mark "
          "labels (stax mark LABEL)")


class WindowError(ValueError):
    """A window or mark label that cannot be used; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Window:
    """A parsed window: each end seconds (float), a mark label (str) or open (None)."""

    start: float | str | None
    end: float | str | None
    text: str


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v


def check_label(label: Any) -> str:
    """A mark label as given, or WindowError: 1..MAX_MARK_LABEL printable characters, not
    starting or ending with a space, without ``..`` and not a number (so that a window end is
    always either seconds or a label)."""
    if not isinstance(label, str) or not label.strip():
        raise WindowError("mark label must not be empty")
    if len(label) > MAX_MARK_LABEL:
        raise WindowError(f"mark label is too long (max {MAX_MARK_LABEL} characters)")
    if not label.isprintable():
        raise WindowError("mark label must be printable text (no control characters)")
    if label != label.strip():
        raise WindowError("mark label must not start or end with a space")
    if SEP in label:
        raise WindowError(f"mark label must not contain '{SEP}' (it separates window ends)")
    if _number(label) is not None:
        raise WindowError("mark label must not be a number (numeric window ends are seconds)")
    return label


def _end(text: str, which: str) -> float | str | None:
    text = text.strip()
    if not text:
        return None
    v = _number(text)
    if v is None:
        try:
            return check_label(text)
        except WindowError:
            raise WindowError(f"window {which} {text[:40]!r} is neither seconds nor a mark "
                              f"label; expected {SYNTAX}") from None
    if not math.isfinite(v) or v < 0 or v > MAX_SECONDS:
        raise WindowError(f"window {which} must be seconds from 0 to {MAX_SECONDS} "
                          f"(got {text[:40]})")
    return v


def parse(text: Any) -> Window:
    """``A..B`` / ``A..`` / ``..B``; WindowError on anything else."""
    if not isinstance(text, str):
        raise WindowError(f"window must be a string: {SYNTAX}")
    if len(text) > MAX_WINDOW_TEXT:
        raise WindowError(f"window is too long (max {MAX_WINDOW_TEXT} characters)")
    if SEP not in text:
        raise WindowError(f"window {text[:40]!r} has no '..'; expected {SYNTAX}")
    a, b = text.split(SEP, 1)
    start, end = _end(a, "start"), _end(b, "end")
    if start is None and end is None:
        raise WindowError(f"window needs a start, an end or both; expected {SYNTAX}")
    if isinstance(start, float) and isinstance(end, float) and end <= start:
        raise _order(start, end)
    return Window(start, end, text)


def _order(start: float, end: float) -> WindowError:
    if end == start:
        return WindowError(f"window is empty: its start and end are both {start:g} s")
    return WindowError(f"window end before start ({end:g} s < {start:g} s)")


def resolve(w: Window | str, marks: Sequence[tuple[int, str]]) -> tuple[int | None, int | None]:
    """(start_ns, end_ns) relative to the run's start, for a Filter; ``marks`` are the run's
    (relative time ns, label). WindowError for an unknown mark or an end before the start."""
    if isinstance(w, str):
        w = parse(w)
    by_label = {label: t for t, label in marks}

    def ns(end: float | str | None) -> int | None:
        if end is None:
            return None
        if isinstance(end, str):
            t = by_label.get(end)
            if t is None:
                known = ", ".join(label for _t, label in marks) or "(none)"
                raise WindowError(f"unknown mark {end!r}; marks: {known}")
            return t
        return int(round(end * 1e9))

    start, end = ns(w.start), ns(w.end)
    if start is not None and end is not None and end <= start:
        raise _order(start / 1e9, end / 1e9)
    return start, end


def relative(profile: Any) -> list[tuple[int, str]]:
    """A profile's marks as (ns since the run's start, label), in time order."""
    with profile.lock:
        base = profile.first_time
        raw = list(profile.marks)
    return sorted(((t - base if base else 0), label) for t, label in raw)


def marks(profile: Any) -> list[dict[str, Any]]:
    """A profile's marks as JSON rows ``{"label", "time_ns"}`` (ns since the run's start)."""
    return [{"label": label, "time_ns": t} for t, label in relative(profile)]


def add(profile: Any, label: str, time_ns: int, limit: int) -> int:
    """Put a mark (monotonic ns) on a profile; returns its time relative to the run's start.
    WindowError when the label is taken or the run holds ``limit`` marks already."""
    check_label(label)
    with profile.lock:
        if any(existing == label for _t, existing in profile.marks):
            raise WindowError(f"this run has a mark {label!r} already (labels are unique)")
        if len(profile.marks) >= limit:
            raise WindowError(f"this run holds {limit} marks already (the most one run keeps)")
        profile.marks.append((time_ns, label))
        base = profile.first_time
    return time_ns - base if base else 0
