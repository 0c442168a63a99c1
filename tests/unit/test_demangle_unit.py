"""Demangling: C++ (with clone suffixes and garbage), Rust legacy and Rust v0 symbols."""

from __future__ import annotations

from stax.symbols import demangle
from stax.symbols.demangle import demangle_rust_legacy
from stax.symbols.rustv0 import demangle_rust_v0


def test_demangle_cxx() -> None:
    assert demangle("_ZN2ns4TypeIiE6methodEv") == "ns::Type<int>::method()"
    assert demangle("_Z3fooi") == "foo(int)"
    assert demangle("_Z3foov.cold") == "foo() [clone .cold]"
    assert demangle("_Zgarbage!") == "_Zgarbage!"
    assert demangle("main") == "main"
    assert demangle("") == ""


def test_demangle_strips_decorations() -> None:
    assert demangle("memcpy@@GLIBC_2.14") == "memcpy"
    assert demangle("memcpy@GLIBC_2.2.5") == "memcpy"
    assert demangle("malloc@plt") == "malloc"
    assert demangle("_Z3fooi@plt") == "foo(int)"


def test_demangle_rust_legacy() -> None:
    assert demangle("_ZN4core3fmt5write17h0123456789abcdefE") == "core::fmt::write"
    el = "_$LT$core..fmt..Arguments$u20$as$u20$core..fmt..Display$GT$"
    mangled = f"_ZN{len(el)}{el}3fmt17h0123456789abcdefE.llvm.42"
    assert demangle(mangled) == "<core::fmt::Arguments as core::fmt::Display>::fmt"
    el2 = "$LT$alloc..vec..Vec$LT$T$C$A$GT$$u20$as$u20$core..ops..drop..Drop$GT$"
    mangled2 = f"_ZN{len(el2)}{el2}4drop17hffffffffffffffffE"
    assert demangle(mangled2) == "<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop"
    assert demangle("_ZN3std2rt10lang_start28_$u7b$$u7b$closure$u7d$$u7d$17h0000000000000000E") == (
        "std::rt::lang_start::{{closure}}"
    )
    assert demangle_rust_legacy("_ZN3foo3barEv") is None  # C++ with parameters
    assert demangle("_ZN3foo3barEv") == "foo::bar()"


def test_demangle_rust_v0() -> None:
    cases = {
        "_RNvC6_123foo3bar": "123foo::bar",
        "_RNCNCNgCs6DXkGYLi8lr_2cc5spawn00B5_": "cc::spawn::{closure#0}::{closure#0}",
        "_RINbNbCskIICzLVDPPb_5alloc5alloc8box_freeDINbNiB4_5boxed5FnBoxuEp6OutputuEL_ECs1iopQbuBiw2_3std": (  # noqa: E501
            "alloc::alloc::box_free::<dyn alloc::boxed::FnBox<(), Output = ()>>"
        ),
        "_RMC0INtC8arrayvec8ArrayVechKj7b_E": "<arrayvec::ArrayVec<u8, 123>>",
        "_RNvNtCs1234_7mycrate3foo3bar.llvm.123": "mycrate::foo::bar",
        "_RMC3fooFUKCjEu": '<unsafe extern "C" fn(usize)>',
        "_RMC3fooFG_RL0_hEu": "<for<'a> fn(&'a u8)>",
        "_RMC3fooTjbE": "<(usize, bool)>",
        "_RMC3fooAhj4_": "<[u8; 4]>",
        "_RINvC3foo3barKb1_Kc41_Kxn5_KpE": "foo::bar::<true, 'A', -5, _>",
    }
    for mangled, expected in cases.items():
        assert demangle_rust_v0(mangled) == expected, mangled
        assert demangle(mangled) == expected
    word = "საჭმელად_გემრიელი_სადილი"
    ascii_part, _, deltas = word.encode("punycode").decode().rpartition("-")
    raw = f"{ascii_part}_{deltas}"
    mangled = f"_RNvCs1_11utf8_identsu{len(raw)}_{raw}"
    assert demangle(mangled) == f"utf8_idents::{word}"
    # malformed input is returned unchanged
    assert demangle("_RNvC3foo") == "_RNvC3foo"
    assert demangle("_RB0_") == "_RB0_"
