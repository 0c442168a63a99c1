"""Validation of RPC parameters at the edge: right type, finite, in range, or one bad_request.

Every handler reads its parameters through these helpers, so a request can never carry a value
the code behind it was not written for (an infinite time limit, a NaN interval, a pid beyond
what the kernel can hand out). A parameter given as ``null`` is the same as one left out.
docs/protocol.md states every range.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stax.limits import MAX_COUNT, MAX_ID, MAX_PID, MAX_SECONDS
from stax.protocol import E_BAD_REQUEST, RPCError

if TYPE_CHECKING:
    from stax.profile.views import Filter
    from stax.profile.window import Window

# Pids, ids, counts and durations: stax.limits (the CLI checks the same ranges).
# Exit statuses as a shell reports them (128+N for signal N).
MAX_STATUS = 255
# Times relative to a run's first event (ns), and durations: ±146 years, so that adding one to
# a kernel timestamp still fits a signed 64-bit integer.
MAX_NS = 1 << 62
MAX_MS = MAX_SECONDS * 1000
# Strings (function names, symbols, paths) and lists of them.
MAX_TEXT = 4096
MAX_ITEMS = 1000


def bad(message: str) -> RPCError:
    return RPCError(E_BAD_REQUEST, message)


def integer(params: dict[str, Any], name: str, default: int | None = None, lo: int = 0,
            hi: int = MAX_COUNT, required: bool = False) -> int | None:
    """An integer in [lo, hi]; ``default`` when absent (an error when ``required``)."""
    v = params.get(name)
    if v is None:
        if required:
            raise bad(f"{name} is required")
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(f"{name} must be an integer between {lo} and {hi}")
    if not lo <= v <= hi:
        raise bad(f"{name} must be between {lo} and {hi} (got {_short(v)})")
    return v


def number(params: dict[str, Any], name: str, default: float | None = None, lo: float = 0.0,
           hi: float = float(MAX_MS), lo_open: bool = False) -> float | None:
    """A finite number in [lo, hi] (in (lo, hi] when ``lo_open``); ``default`` when absent."""
    v = params.get(name)
    if v is None:
        return default
    rng = f"{'above' if lo_open else 'from'} {lo:g} {'and at most' if lo_open else 'to'} {hi:g}"
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise bad(f"{name} must be a number {rng}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f) or f < lo or f > hi or (lo_open and f <= lo):
        raise bad(f"{name} must be a finite number {rng} (got {_short(v)})")
    return f


def boolean(params: dict[str, Any], name: str, default: bool) -> bool:
    v = params.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad(f"{name} must be true or false")
    return v


def text(params: dict[str, Any], name: str, required: bool = False,
         empty: bool = True) -> str | None:
    """A string of valid Unicode (no NUL; the only lone surrogates allowed are U+DC80..U+DCFF,
    the bytes of a non-UTF-8 path or argument kept by surrogateescape), at most MAX_TEXT
    characters."""
    v = params.get(name)
    if v is None:
        if required:
            raise bad(f"{name} is required")
        return None
    return _check_text(v, name, empty)


def _check_text(v: Any, name: str, empty: bool = True) -> str:
    if not isinstance(v, str):
        raise bad(f"{name} must be a string")
    if not empty and not v.strip():
        raise bad(f"{name} must not be empty")
    if len(v) > MAX_TEXT:
        raise bad(f"{name} is too long (max {MAX_TEXT} characters)")
    if "\0" in v:
        raise bad(f"{name} must not contain NUL characters")
    try:
        v.encode("utf-8", "surrogateescape")  # a non-UTF-8 file name or argument is bytes
    except UnicodeEncodeError:
        raise bad(f"{name} must be valid Unicode text") from None
    return v


def choice(params: dict[str, Any], name: str, options: Sequence[str],
           default: str | None) -> str | None:
    v = params.get(name)
    if v is None:
        return default
    if not isinstance(v, str) or v not in options:
        raise bad(f"{name} must be one of {', '.join(options)}")
    return v


def text_list(params: dict[str, Any], name: str) -> list[str]:
    """A list of at most MAX_ITEMS strings (empty when absent)."""
    v = params.get(name)
    if v is None:
        return []
    if not isinstance(v, list):
        raise bad(f"{name} must be a list of strings")
    if len(v) > MAX_ITEMS:
        raise bad(f"{name} has too many items (max {MAX_ITEMS})")
    return [_check_text(x, f"{name} items") for x in v]


MAX_EXPAND = 200  # paths one `neighbors` request may expand


def neighbor_paths(params: dict[str, Any], name: str = "expand"
                   ) -> list[tuple[str, list[tuple[str, str | None]]]] | None:
    """``expand`` of ``neighbors``: at most MAX_EXPAND ``{side: "callers" | "callees", path:
    [{func, binary?}, ...]}`` (a path of 1 to MAX_ITEMS functions; without ``binary``, a name
    of any binary); None when absent."""
    v = params.get(name)
    if v is None:
        return None
    if not isinstance(v, list):
        raise bad(f"{name} must be a list of {{side, path}} objects")
    if len(v) > MAX_EXPAND:
        raise bad(f"{name} has too many items (max {MAX_EXPAND})")
    out = []
    for item in v:
        if not isinstance(item, dict):
            raise bad(f"{name} items must be {{side, path}} objects")
        side = choice(item, "side", ("callers", "callees"), None)
        if side is None:
            raise bad(f"{name} items need a side: callers or callees")
        nodes = item.get("path")
        if not isinstance(nodes, list) or not nodes or len(nodes) > MAX_ITEMS:
            raise bad(f"{name} items need a path: a list of 1 to {MAX_ITEMS} "
                      "{func, binary} objects")
        want: list[tuple[str, str | None]] = []
        for node in nodes:
            if not isinstance(node, dict):
                raise bad(f"{name} path items must be {{func, binary}} objects")
            func = text(node, "func", required=True, empty=False)
            assert func is not None
            want.append((func, text(node, "binary")))
        out.append((side, want))
    return out


def path(params: dict[str, Any], name: str, required: bool = True,
         absolute: bool = False) -> str | None:
    p = text(params, name, required=required, empty=False)
    if p is not None and absolute and not os.path.isabs(p):
        raise bad(f"{name} must be absolute")
    return p


def pid(params: dict[str, Any], name: str = "pid") -> int:
    v = integer(params, name, lo=1, hi=MAX_PID, required=True)
    assert v is not None
    return v


def tid(params: dict[str, Any]) -> int | None:
    return integer(params, "tid", lo=0, hi=MAX_PID)


def run_id(params: dict[str, Any], required: bool = False) -> int | None:
    return integer(params, "run", lo=1, hi=MAX_ID, required=required)


def _short(v: Any) -> str:
    if isinstance(v, int) and v.bit_length() > 64:
        return "a number too large"
    s = repr(v)
    return s if len(s) <= 24 else s[:20] + "…"


def dwarf_unwind(params: dict[str, Any]) -> bool:
    """``dwarf_unwind`` (default: on for x86-64): sample user registers and a stack copy
    and unwind them with .eh_frame; false = the kernel's frame-pointer chain only."""
    from stax.unwind import dwarf_unwind_default

    v = params.get("dwarf_unwind")
    return dwarf_unwind_default() if v is None else boolean(params, "dwarf_unwind", True)


def start_options(params: dict[str, Any]) -> tuple[int, int, float | None, bool, str | None]:
    """pid, frequency, time limit (s), dwarf_unwind, daemon_socket of start_launch and
    start_attach; the pid is checked last, so a request with a bad pid has had every other
    parameter checked too."""
    from stax.limits import DEFAULT_FREQUENCY, MAX_FREQUENCY

    freq = integer(params, "frequency", DEFAULT_FREQUENCY, lo=1, hi=MAX_FREQUENCY)
    assert freq is not None
    limit = number(params, "time_limit_ms", lo=0.0, hi=float(MAX_MS), lo_open=True)
    dwarf = dwarf_unwind(params)
    daemon_socket = path(params, "daemon_socket", required=False)
    return (pid(params), freq, (limit / 1000.0 if limit is not None else None), dwarf,
            daemon_socket)


def query_filter(params: dict[str, Any]) -> Filter:
    """The stax.profile.views.Filter of a query: thread, time range, excluded functions, inline
    frames (``no_inline`` folds them into their functions), the path transforms (``focus``,
    ``focus_path``, ``drop``, ``collapse_binary``, ``merge_recursion``)."""
    from stax.profile import views

    return views.Filter(tid=tid(params),
                        start_ns=integer(params, "start_ns", lo=-MAX_NS, hi=MAX_NS),
                        end_ns=integer(params, "end_ns", lo=-MAX_NS, hi=MAX_NS),
                        exclude=tuple(text_list(params, "exclude")),
                        inline=not boolean(params, "no_inline", False),
                        focus=text(params, "focus", empty=False),
                        focus_path=tuple(text_list(params, "focus_path")),
                        drop=tuple(text_list(params, "drop")),
                        collapse_binary=tuple(text_list(params, "collapse_binary")),
                        merge_recursion=boolean(params, "merge_recursion", False))


def window(params: dict[str, Any]) -> Window | None:
    """``window`` (``A..B``, ``A..``, ``..B``: seconds from the run's start or mark labels),
    parsed; it is resolved against the run's marks once the run is known. Not together with
    ``start_ns``/``end_ns``."""
    from stax.profile.window import WindowError, parse

    v = text(params, "window")
    if v is None:
        return None
    if params.get("start_ns") is not None or params.get("end_ns") is not None:
        raise bad("window and start_ns/end_ns are mutually exclusive")
    try:
        return parse(v)
    except WindowError as e:
        raise bad(str(e)) from None


def mark_label(params: dict[str, Any]) -> str:
    """``label`` of a mark: non-empty printable text, at most MAX_MARK_LABEL characters."""
    from stax.profile.window import WindowError, check_label

    v = text(params, "label", required=True)
    try:
        return check_label(v)
    except WindowError as e:
        raise bad(str(e)) from None
