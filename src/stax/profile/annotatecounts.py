"""Annotate answers without the code a client already holds.

An annotate result names its disassembly (instructions, their source lines and those lines'
text) by ``code_id``, a digest of all of it. A client that shows the function and asks again
(another thread or time range, a run still recording) sends that ``code_id`` back; when the
code is the same, the answer carries only the counts that changed, by position, instead of the
whole table again: for a function of 10,000 instructions that is a few kilobytes instead of
megabytes to send and to parse.
"""

from __future__ import annotations

import hashlib
from typing import Any


def code_id(res: dict[str, Any]) -> str | None:
    """The digest of an annotate result's code: the function's identity, every instruction's
    address, size, text and source line, every source line's text (None: nothing
    disassembled)."""
    ins = res.get("instructions")
    fn = res.get("function")
    if not ins or not fn:
        return None
    h = hashlib.blake2b(digest_size=12)

    def put(*parts: Any) -> None:
        h.update("\t".join(map(str, parts)).encode("utf-8", "surrogatepass") + b"\n")

    put(fn["binary"], fn["path"], fn["build_id"], fn["addr"], fn["size"], res.get("arch"))
    for r in ins:
        put(r["addr"], r["size"], r["text"], r["file"], r["line"])
    for s in res.get("sources") or ():
        put(s["file"], s["line"], s["text"], s["hidden"])
    return h.hexdigest()


def with_code_id(res: dict[str, Any], known: str | None) -> dict[str, Any]:
    """``res`` with its ``code_id``; when that is ``known`` (the client has this code),
    ``instructions`` and ``sources`` are null and ``instruction_counts`` / ``source_counts``
    list ``[index, samples, self_ns]`` of the rows with samples (every other row has none)."""
    cid = code_id(res)
    res["code_id"] = cid
    if cid is None or cid != known:
        return res
    res["instruction_counts"] = [[i, r["samples"], r["self_ns"]]
                                 for i, r in enumerate(res["instructions"]) if r["samples"]]
    res["source_counts"] = [[i, s["samples"], s["self_ns"]]
                            for i, s in enumerate(res["sources"]) if s["samples"]]
    res["instructions"] = None
    res["sources"] = None
    return res
