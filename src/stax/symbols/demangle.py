"""Symbol name demangling: C++ (Itanium, via cxxfilt), Rust legacy and Rust v0 (rustv0.py).
Also strips linker decorations such as `@plt` and symbol version suffixes (`@@GLIBC_2.2.5`)."""

from __future__ import annotations

import re
from functools import lru_cache

import cxxfilt

from .rustv0 import demangle_rust_v0

__all__ = ["demangle", "strip_version_suffix", "demangle_rust_legacy"]

# `foo@plt`, `memcpy@GLIBC_2.2.5`, `memcpy@@GLIBC_2.14`.
_VERSION_SUFFIX = re.compile(r"@{1,2}[A-Za-z_][A-Za-z0-9_.]*$")
_RUST_HASH = re.compile(r"h[0-9a-f]{16}")
_RUST_LEGACY_ESCAPES = {
    "SP": "@",
    "BP": "*",
    "RF": "&",
    "LT": "<",
    "GT": ">",
    "LP": "(",
    "RP": ")",
    "C": ",",
}


def strip_version_suffix(name: str) -> str:
    """Drop `@plt` / `@VERSION` / `@@VERSION` from the end of a symbol name."""
    if "@" not in name:
        return name
    return _VERSION_SUFFIX.sub("", name)


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """Demangle a C++ or Rust symbol name; return it unchanged (minus decorations) otherwise."""
    name = strip_version_suffix(name)
    if name.startswith("_R"):
        out = demangle_rust_v0(name)
        return out if out is not None else name
    if name.startswith("_ZN"):
        out = demangle_rust_legacy(name)
        if out is not None:
            return out
    if name.startswith("_Z"):
        try:
            return cxxfilt.demangle(name)
        except Exception:  # cxxfilt.InvalidName, or anything odd from the ctypes layer
            return name
    return name


# --------------------------------------------------------------------------------------------
# Rust legacy mangling: `_ZN` {<len><ident>} `17h<16 hex>` `E` [`.suffix`]


def _decode_legacy_element(el: str) -> str | None:
    if el.startswith("_$"):
        el = el[1:]
    out: list[str] = []
    i = 0
    n = len(el)
    while i < n:
        c = el[i]
        if c == ".":
            if el.startswith("..", i):
                out.append("::")
                i += 2
            else:
                out.append(".")
                i += 1
        elif c == "$":
            end = el.find("$", i + 1)
            if end < 0:
                return None
            esc = el[i + 1 : end]
            rep = _RUST_LEGACY_ESCAPES.get(esc)
            if rep is None:
                if len(esc) < 2 or esc[0] != "u":
                    return None
                try:
                    rep = chr(int(esc[1:], 16))
                except ValueError:
                    return None
            out.append(rep)
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def demangle_rust_legacy(name: str) -> str | None:
    """Demangle a legacy Rust symbol, dropping the `::h<hash>`; None if `name` is not one."""
    if not name.startswith("_ZN"):
        return None
    i = 3
    n = len(name)
    elements: list[str] = []
    while i < n and name[i] != "E":
        j = i
        while j < n and name[j].isdigit():
            j += 1
        if j == i:
            return None
        length = int(name[i:j])
        if length == 0 or j + length > n:
            return None
        elements.append(name[j : j + length])
        i = j + length
    if i >= n:
        return None
    rest = name[i + 1 :]
    if rest and not rest.startswith("."):
        return None  # trailing C++ parameter types: not Rust
    if len(elements) < 2 or not _RUST_HASH.fullmatch(elements[-1]):
        return None
    parts: list[str] = []
    for el in elements[:-1]:
        dec = _decode_legacy_element(el)
        if dec is None:
            return None
        parts.append(dec)
    return "::".join(parts)
