"""Rust v0 symbol demangling (RFC 2603): a hand-written recursive-descent printer. Crate
disambiguators and the instantiating crate are dropped (like `{:#}` of rustc-demangle). Const
generics of integer, bool and char types are supported; structured consts (newer rustc) make the
whole name fall back to its mangled form."""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["demangle_rust_v0"]

# Characters that may appear in a v0 mangled name; anything else starts a vendor suffix.
_V0_CHARS = re.compile(r"[A-Za-z0-9_]*")
_MAX_V0_DEPTH = 256
_MAX_V0_OUTPUT = 8192

_V0_BASIC = {
    "a": "i8",
    "b": "bool",
    "c": "char",
    "d": "f64",
    "e": "str",
    "f": "f32",
    "h": "u8",
    "i": "isize",
    "j": "usize",
    "l": "i32",
    "m": "u32",
    "n": "i128",
    "o": "u128",
    "s": "i16",
    "t": "u16",
    "u": "()",
    "v": "...",
    "x": "i64",
    "y": "u64",
    "z": "!",
    "p": "_",
}
_V0_INT_TYPES = frozenset("hijmtoyasnlx")
_B62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_B62_VALUE = {c: i for i, c in enumerate(_B62)}


class _V0Error(Exception):
    pass


class _V0Printer:
    __slots__ = ("s", "pos", "depth", "bound")

    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0
        self.depth = 0
        self.bound = 0  # number of lifetimes bound by enclosing binders

    # -- lexing ------------------------------------------------------------------------------
    def peek(self) -> str:
        return self.s[self.pos] if self.pos < len(self.s) else ""

    def next(self) -> str:
        if self.pos >= len(self.s):
            raise _V0Error("unexpected end")
        c = self.s[self.pos]
        self.pos += 1
        return c

    def eat(self, c: str) -> bool:
        if self.pos < len(self.s) and self.s[self.pos] == c:
            self.pos += 1
            return True
        return False

    def base62(self) -> int:
        if self.eat("_"):
            return 0
        value = 0
        while True:
            c = self.next()
            if c == "_":
                return value + 1
            d = _B62_VALUE.get(c)
            if d is None:
                raise _V0Error("bad base-62 digit")
            value = value * 62 + d

    def opt_base62(self, tag: str) -> int:
        return self.base62() + 1 if self.eat(tag) else 0

    def decimal(self) -> int:
        start = self.pos
        if self.peek() == "0":
            self.pos += 1
            return 0
        while self.peek().isdigit():
            self.pos += 1
        if self.pos == start:
            raise _V0Error("expected decimal")
        return int(self.s[start : self.pos])

    def raw_ident(self) -> str:
        puny = self.eat("u")
        length = self.decimal()
        self.eat("_")
        if self.pos + length > len(self.s):
            raise _V0Error("identifier overruns symbol")
        raw = self.s[self.pos : self.pos + length]
        self.pos += length
        if not puny:
            return raw
        if "_" in raw:
            ascii_part, deltas = raw.rsplit("_", 1)
            encoded = f"{ascii_part}-{deltas}"
        else:
            encoded = raw
        try:
            return encoded.encode("ascii").decode("punycode")
        except (UnicodeError, ValueError) as exc:
            raise _V0Error("bad punycode") from exc

    def backref_target(self) -> int:
        tag_pos = self.pos - 1
        target = self.base62()
        if target >= tag_pos:
            raise _V0Error("forward backref")
        return target

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_V0_DEPTH:
            raise _V0Error("too deep")

    # -- grammar -----------------------------------------------------------------------------
    def at_backref(self, fn: Callable[..., str], *args: bool) -> str:
        target = self.backref_target()
        saved = self.pos
        self.pos = target
        try:
            return fn(*args)
        finally:
            self.pos = saved

    def path(self, in_value: bool) -> str:
        self.enter()
        try:
            return self._path(in_value)
        finally:
            self.depth -= 1

    def _path(self, in_value: bool) -> str:
        tag = self.next()
        if tag == "C":
            self.opt_base62("s")
            return self.raw_ident()
        if tag == "N":
            ns = self.next()
            if not ns.isalpha():
                raise _V0Error("bad namespace")
            prefix = self.path(in_value)
            dis = self.opt_base62("s")
            name = self.raw_ident()
            if ns.isupper():
                kind = {"C": "closure", "S": "shim"}.get(ns, ns)
                label = f"{kind}:{name}" if name else kind
                return f"{prefix}::{{{label}#{dis}}}"
            return f"{prefix}::{name}" if name else prefix
        if tag in "MXY":
            if tag != "Y":
                self.opt_base62("s")
                self.path(False)  # the impl's own path is not printed
            ty = self.type()
            if tag == "M":
                return f"<{ty}>"
            trait = self.path(False)
            return f"<{ty} as {trait}>"
        if tag == "I":
            base = self.path(in_value)
            args = self.generic_args()
            sep = "::" if in_value else ""
            return f"{base}{sep}<{args}>"
        if tag == "B":
            return self.at_backref(self.path, in_value)
        raise _V0Error(f"bad path tag {tag!r}")

    def generic_args(self) -> str:
        args: list[str] = []
        while not self.eat("E"):
            if self.eat("L"):
                args.append(self.lifetime(self.base62()))
            elif self.eat("K"):
                args.append(self.const())
            else:
                args.append(self.type())
        return ", ".join(args)

    def lifetime(self, index: int) -> str:
        if index == 0:
            return "'_"
        depth = self.bound - index
        if depth < 0:
            raise _V0Error("unbound lifetime")
        if depth < 26:
            return "'" + chr(ord("a") + depth)
        return f"'_{depth}"

    def binder(self) -> tuple[str, int]:
        """Parse an optional `G` binder; returns the `for<...> ` prefix and lifetimes bound."""
        if not self.eat("G"):
            return "", 0
        count = self.base62() + 1
        self.bound += count
        names = [self.lifetime(i) for i in range(1, count + 1)]
        return f"for<{', '.join(names)}> ", count

    def type(self) -> str:
        self.enter()
        try:
            return self._type()
        finally:
            self.depth -= 1

    def _type(self) -> str:
        tag = self.next()
        basic = _V0_BASIC.get(tag)
        if basic is not None:
            return basic
        if tag in "RQ":
            lt = ""
            if self.eat("L"):
                index = self.base62()
                if index:
                    lt = self.lifetime(index) + " "
            mut = "mut " if tag == "Q" else ""
            return f"&{lt}{mut}{self.type()}"
        if tag == "P":
            return f"*const {self.type()}"
        if tag == "O":
            return f"*mut {self.type()}"
        if tag == "A":
            ty = self.type()
            return f"[{ty}; {self.const()}]"
        if tag == "S":
            return f"[{self.type()}]"
        if tag == "T":
            items: list[str] = []
            while not self.eat("E"):
                items.append(self.type())
            if len(items) == 1:
                return f"({items[0]},)"
            return f"({', '.join(items)})"
        if tag == "F":
            return self.fn_sig()
        if tag == "D":
            return self.dyn_bounds()
        if tag == "B":
            return self.at_backref(self.type)
        self.pos -= 1
        return self.path(False)

    def fn_sig(self) -> str:
        prefix, bound = self.binder()
        try:
            out = prefix
            if self.eat("U"):
                out += "unsafe "
            if self.eat("K"):
                abi = "C" if self.eat("C") else self.raw_ident().replace("_", "-")
                out += f'extern "{abi}" '
            params: list[str] = []
            while not self.eat("E"):
                params.append(self.type())
            ret = self.type()
            out += f"fn({', '.join(params)})"
            if ret != "()":
                out += f" -> {ret}"
            return out
        finally:
            self.bound -= bound

    def dyn_bounds(self) -> str:
        prefix, bound = self.binder()
        try:
            traits: list[str] = []
            while not self.eat("E"):
                trait = self.path(False)
                bindings: list[str] = []
                while self.eat("p"):
                    name = self.raw_ident()
                    bindings.append(f"{name} = {self.type()}")
                if bindings:
                    joined = ", ".join(bindings)
                    if trait.endswith(">"):
                        trait = f"{trait[:-1]}, {joined}>"
                    else:
                        trait = f"{trait}<{joined}>"
                traits.append(trait)
        finally:
            self.bound -= bound
        out = "dyn " + prefix + " + ".join(traits)
        if not self.eat("L"):
            raise _V0Error("dyn without lifetime")
        index = self.base62()
        if index:
            out += " + " + self.lifetime(index)
        return out

    def const(self) -> str:
        if self.eat("B"):
            return self.at_backref(self.const)
        if self.eat("p"):
            return "_"
        ty = self.next()
        if ty in _V0_INT_TYPES or ty in "bc":
            neg = self.eat("n")
            start = self.pos
            while self.peek() and self.peek() in "0123456789abcdef":
                self.pos += 1
            digits = self.s[start : self.pos]
            if not self.eat("_"):
                raise _V0Error("unterminated const")
            value = int(digits, 16) if digits else 0
            if ty == "b":
                return "true" if value else "false"
            if ty == "c":
                try:
                    return repr(chr(value))
                except (ValueError, OverflowError) as exc:
                    raise _V0Error("bad char const") from exc
            return f"-{value}" if neg else str(value)
        raise _V0Error("unsupported const")


def demangle_rust_v0(name: str) -> str | None:
    """Demangle a Rust v0 (`_R...`) symbol; None when it cannot be parsed."""
    if not name.startswith("_R"):
        return None
    body = _V0_CHARS.match(name, 2)
    inner = body.group(0) if body else ""
    if not inner or not inner[0].isupper():
        return None  # encoding-version prefixes are not in use; anything else is malformed
    printer = _V0Printer(inner)
    try:
        out = printer.path(True)
    except (_V0Error, RecursionError, ValueError):
        return None
    if len(out) > _MAX_V0_OUTPUT:
        return None
    return out
