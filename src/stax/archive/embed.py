"""What a version-3 archive keeps for annotate beyond the tables: each binary's loadable
segments, and with ``--with-code`` the hot functions' bytes, line-table rows and source lines.

``segments_of`` and ``hot_code`` run at save time (on a live profile through its symbolizer,
on a profile read from an archive through its ``code_store``); ``store_from`` rebuilds the
``CodeStore`` when reading.
"""

from __future__ import annotations

import zlib
from typing import Any

from stax.profile.codestore import CodeStore, EmbeddedCode, rows_covering, store_of
from stax.profile.tables import KERNEL_BINARY, UNKNOWN_BINARY, Profile

CODE_SHARE = 0.95  # the hottest functions holding this share of the self samples
CODE_BUDGET = 4 << 20  # bytes of code at most
MAX_FUNC_BYTES = 256 << 10  # a larger function is not embedded
MAX_ROWS = 1 << 16  # line-table rows per function
MAX_SOURCE_LINE = 4096  # characters of one source line kept
MAX_PYTHON_SOURCE = 1 << 20  # characters of Python source lines kept in all
MAX_PYTHON_FUNC_LINES = 2000  # a longer Python function (a module) keeps its sampled lines only


def segments_of(p: Profile, binaries: list[Any]) -> list[list[list[int]] | None]:
    """Per binary index: its segments ``[[offset, filesz, vaddr], ...]`` or None."""
    old = store_of(p)
    out: list[list[list[int]] | None] = []
    for i, b in enumerate(binaries):
        segs: Any = None
        if i in (KERNEL_BINARY, UNKNOWN_BINARY) or b.path.startswith("["):
            segs = None
        elif p.symbolizer is not None:
            segs = p.symbolizer.segments(b)
        elif old is not None:
            segs = old.segments.get(i)
        out.append([list(s) for s in segs] if segs else None)
    return out


def _self_counts(p: Profile, n: int) -> dict[int, int]:
    import numpy as np

    st = np.frombuffer(p.s_stack[:n], dtype=np.int32)
    st = st[st >= 0]
    if not len(st):
        return {}
    frames = np.frombuffer(p.stack_frame[:], dtype=np.int32)[st]
    funcs = np.frombuffer(p.frame_func[:], dtype=np.int32)[frames]
    bins = np.frombuffer(p.frame_binary[:], dtype=np.int32)[frames]
    keys, counts = np.unique(np.stack([funcs, bins]), axis=1, return_counts=True)
    out: dict[int, int] = {}
    for (func, b), c in zip(keys.T.tolist(), counts.tolist(), strict=True):
        if func >= 0 and b not in (KERNEL_BINARY, UNKNOWN_BINARY):
            out[func * (1 << 20) + b] = out.get(func * (1 << 20) + b, 0) + c
    return out


def hot_code(p: Profile, n: int, budget: int = CODE_BUDGET,
             share: float = CODE_SHARE) -> list[EmbeddedCode]:
    """The code of the hottest functions (self samples), until ``share`` of the self samples
    or ``budget`` bytes; functions whose bytes cannot be read are skipped."""
    from stax.profile.annotate import read_code

    counts = _self_counts(p, n)
    total = sum(counts.values())
    got: list[EmbeddedCode] = []
    used = covered = 0
    old = store_of(p)
    for key, c in sorted(counts.items(), key=lambda kv: -kv[1]):
        if total and covered >= share * total:
            break
        func, b = divmod(key, 1 << 20)
        f = p.funcs[func]
        if not f.resolved or f.size <= 0 or f.size > MAX_FUNC_BYTES or used + f.size > budget:
            continue
        emb = _read_one(p, b, f.addr, f.size, read_code)
        if emb is None and old is not None:
            emb = old.code_at(b, f.addr)
        if emb is None:
            continue
        got.append(emb)
        used += len(emb.code)
        covered += c
    return got


def _read_one(p: Profile, b: int, addr: int, size: int, read_code: Any) -> EmbeddedCode | None:
    from stax.profile import srclines
    from stax.symbols import read_build_id

    binary = p.binaries[b]
    code, arch, _err, _label, disk = read_code(binary, addr, size)
    if not code or arch is None:
        return None
    rows: list[tuple[int, str | None, int]] = []
    if disk is not None:
        debug = srclines.debug_elf_for(disk, binary.build_id or read_build_id(disk))
        table = srclines.line_table(debug, addr) if debug is not None else None
        if table is not None:
            rows = rows_covering(table, addr, addr + len(code))[:MAX_ROWS]
    return EmbeddedCode(b, addr, code, arch, rows)


def sources_of(p: Profile, code: list[EmbeddedCode]) -> dict[str, dict[int, str]]:
    """The source lines the embedded rows name, from files the run's owner could read."""
    from stax.profile import access

    old = store_of(p)
    want: dict[str, set[int]] = {}
    for c in code:
        for _a, f, line in c.rows:
            if f is not None and line > 0:
                want.setdefault(f, set()).add(line)
    out: dict[str, dict[int, str]] = {}
    for f, lines in want.items():
        text, why = access.source_lines(f, p.owner)
        if why is not None:
            continue
        got = {}
        for ln in lines:
            t = text[ln - 1] if text is not None and ln <= len(text) else None
            if t is None and old is not None:
                t = old.source_line(f, ln)
            if t is not None:
                got[ln] = t[:MAX_SOURCE_LINE]
        if got:
            out[f] = got
    return out


def python_sources(p: Profile) -> dict[str, dict[int, str]]:
    """The source lines of the run's Python functions (stax.profile.pyannotate's lines: each
    from its first line to its last, only the sampled ones of a longer one), from files the
    run's owner could read, up to MAX_PYTHON_SOURCE characters."""
    from stax.profile import access
    from stax.profile.model import python_line
    from stax.profile.pyannotate import function_lines

    with p.lock:
        n = len(p.frame_func)
    sampled: dict[int, set[int]] = {}
    for fid in range(n):
        fn = p.frame_func[fid]
        if fn >= 0 and p.funcs[fn].python:
            sampled.setdefault(fn, set()).add(python_line(p.frame_offset[fid]))
    out: dict[str, dict[int, str]] = {}
    used = 0
    old = store_of(p)  # an archive saved with its code: its lines where the files are gone
    for fn, lines in sorted(sampled.items()):
        f = p.funcs[fn]
        if not f.path.startswith("/"):
            continue
        text, why = access.source_lines(f.path, p.owner)
        if why is not None:
            continue
        if text is None:
            kept = old.sources.get(f.path) if old is not None else None
            if kept:
                out.setdefault(f.path, {}).update(kept)
            continue
        extent = function_lines(text, f.name, f.addr)
        want = set(lines)
        if extent is not None and extent[1] - extent[0] < MAX_PYTHON_FUNC_LINES:
            want.update(range(extent[0], extent[1] + 1))
        got = out.setdefault(f.path, {})
        for ln in sorted(want):
            if 0 < ln <= len(text) and ln not in got:
                t = text[ln - 1][:MAX_SOURCE_LINE]
                used += len(t) + 1
                if used > MAX_PYTHON_SOURCE:
                    return out
                got[ln] = t
    return out


def code_manifest(code: list[EmbeddedCode], sources: dict[str, dict[int, str]], start: int,
                  level: int) -> tuple[dict[str, Any], list[bytes]]:
    """The manifest's ``code`` entry and the blobs to append to the data file at ``start``."""
    files: list[str] = []
    index: dict[str, int] = {}

    def fid(name: str | None) -> int:
        if name is None:
            return -1
        if name not in index:
            index[name] = len(files)
            files.append(name)
        return index[name]

    funcs, blobs = [], []
    offset = start
    for c in code:
        blob = zlib.compress(c.code, level)
        blobs.append(blob)
        funcs.append({"binary": c.binary, "addr": c.addr, "size": len(c.code), "arch": c.arch,
                      "offset": offset, "stored": len(blob), "crc32": zlib.crc32(blob),
                      "rows": [[a, fid(f), ln] for a, f, ln in c.rows]})
        offset += len(blob)
    src = [[fid(f), ln, t] for f, lines in sources.items() for ln, t in sorted(lines.items())]
    return {"functions": funcs, "files": files, "sources": src}, blobs


def store_from(m: dict[str, Any], data: bytes, nbins: int) -> CodeStore:
    """The CodeStore a manifest describes (raises ValueError/TypeError/zlib.error when bad)."""
    st = CodeStore()
    for i, b in enumerate(m.get("binaries") or []):
        if isinstance(b, list) and len(b) > 3 and isinstance(b[3], list) and i < nbins:
            st.segments[i] = [(int(o), int(n), int(v)) for o, n, v in b[3]]
    code = m.get("code")
    if not isinstance(code, dict):
        return st
    files = [str(f) for f in code.get("files") or []]

    def name(i: int) -> str | None:
        return files[i] if 0 <= i < len(files) else None

    for fn in code.get("functions") or []:
        off, stored = int(fn["offset"]), int(fn["stored"])
        if not (0 <= off and 0 <= stored and off + stored <= len(data)):
            raise ValueError("embedded code out of the data file")
        blob = data[off:off + stored]
        if zlib.crc32(blob) != fn["crc32"]:
            raise ValueError("checksum of embedded code")
        raw = zlib.decompressobj().decompress(blob, int(fn["size"]) + 1)
        if len(raw) != int(fn["size"]) or not 0 <= int(fn["binary"]) < nbins:
            raise ValueError("embedded code size or binary")
        rows = [(int(a), name(int(f)), int(ln)) for a, f, ln in fn.get("rows") or []]
        rows.sort(key=lambda r: r[0])
        st.code.append(EmbeddedCode(int(fn["binary"]), int(fn["addr"]), raw, str(fn["arch"]),
                                    rows))
    for f, ln, text in code.get("sources") or []:
        n = name(int(f))
        if n is not None:
            st.sources.setdefault(n, {})[int(ln)] = str(text)
    return st
