"""annotate end to end through a real server: per-instruction samples and DWARF source lines of
the recorded ``split`` workload, target matching by name, substring and address, bad input, and
a function of the vDSO (no file on disk)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from build_helpers import func_sym as _func_sym
from harness import Stax


def test_annotate_split_end_to_end(stax: Stax, workloads: dict[str, Path]) -> None:
    stax("record", "-F", "1999", "--", str(workloads["split"]), "800", check=True)
    top = stax("top", "--json", "-n", "0", check=True).json()
    rows = {r["func"]: r for r in top["rows"]}
    assert "work_a" in rows, top
    self_a = rows["work_a"]["self_samples"]
    assert self_a > 200

    res = stax("annotate", "work_a", "--json", check=True).json()
    fn = res["function"]
    assert fn["func"] == "work_a" and fn["binary"] == "split"
    assert (fn["addr"], fn["size"]) == _func_sym(workloads["split"], "work_a")
    assert res["self_samples"] == self_a
    insns = res["instructions"]
    assert insns and insns[0]["addr"] == fn["addr"]
    # every self sample of work_a lands on an instruction boundary
    assert sum(i["samples"] for i in insns) == res["placed_samples"] == self_a
    assert res["unplaced_samples"] == 0
    assert abs(sum(i["pct"] for i in insns) - 100.0) < 1e-6
    # source lines come from split.c; the hot loop is the spin() body
    hot = [i for i in insns if i["samples"]]
    assert all(i["file"] and i["file"].endswith("split.c") for i in hot), hot
    assert res["has_line_info"]
    hottest_line = max(res["sources"], key=lambda s: s["samples"])
    assert hottest_line["file"].endswith("split.c")
    assert "acc += i ^ (acc >> 3)" in hottest_line["text"]

    # by address (the function start, and an address inside it) the same answer
    for addr in (fn["addr"], max(hot, key=lambda i: i["samples"])["addr"]):
        by_addr = stax("annotate", hex(addr), "--json", check=True).json()
        assert by_addr["matched_by"] == "address"
        assert by_addr["function"]["func"] == "work_a"
        assert by_addr["instructions"] == insns

    # a caller (main: few or no self samples) is still shown, its own samples placed
    main_addr = _func_sym(workloads["split"], "main")[0]
    main = stax("annotate", hex(main_addr), "--json", check=True).json()
    assert main["function"]["func"] == "main" and main["instructions"]  # type: ignore[index]
    assert main["placed_samples"] == main["self_samples"] < 0.05 * self_a  # type: ignore[index]
    assert main["total_samples_in_function"] > 0.9 * top["total_samples"]  # type: ignore[index]

    # a substring, any case: the hottest match wins, and stax says what it picked
    text = stax("annotate", "WORK", check=True).out
    assert f'matched "WORK" -> work_a @ {hex(fn["addr"])} ({self_a} self samples)' in text
    assert "split.c:7" in text
    assert f"placed {self_a} of {self_a} self samples" in text

    # no match: the hottest names that did land, one error line, exit 1
    r = stax("annotate", "no_such_function_xyz")
    assert r.code == 1
    assert "work_a" in r.out and "work_b" in r.out
    assert r.err.strip().splitlines() == ['error: no sampled function matches '
                                          '"no_such_function_xyz"']
    r = stax("annotate", "0x1", "--json")
    assert r.code == 1 and r.json()["function"] is None  # type: ignore[index]
    # a thread with no samples: nothing to show is an answer (exit 0), not an error
    r = stax("annotate", "work_a", "--tid", "1")
    assert r.code == 0 and "(no samples for tid 1)" in r.out
    tid = stax("threads", "--json", check=True).json()["rows"][0]["tid"]  # type: ignore[index]
    by_tid = stax("annotate", "work_a", "--tid", str(tid), "--json", check=True).json()
    assert by_tid["placed_samples"] == self_a  # type: ignore[index]


def test_annotate_bad_input_and_no_runs(stax: Stax) -> None:
    r = stax("annotate", "work_a")
    assert r.code == 0 and "no runs yet" in r.out
    r = stax("annotate", "work_a", "--run", "7")
    assert r.code == 1 and r.err.startswith("error: ")
    r = stax("annotate", "  ")
    assert r.code == 1 and r.err.startswith("error: target is required")


VDSO_LOOP = r"""
#include <time.h>
int main(void) {
    struct timespec t; long s = 0;
    for (long i = 0; i < 4000000; i++) { clock_gettime(CLOCK_MONOTONIC, &t); s += t.tv_nsec; }
    return (int)(s & 1) * 0;
}
"""


def test_annotate_vdso_function(stax: Stax, tmp_path: Path) -> None:
    """Code that has no file on disk (the vDSO) is disassembled from the kernel's image."""
    src = tmp_path / "vd.c"
    src.write_text(VDSO_LOOP)
    exe = tmp_path / "vd"
    subprocess.run([shutil.which("gcc") or "cc", "-O2", "-o", str(exe), str(src)], check=True)
    stax("record", "-F", "1999", "--", str(exe), check=True)
    top = stax("top", "--json", "-n", "0", check=True).json()
    vdso = [r for r in top["rows"] if r["binary"] == "[vdso]"]  # type: ignore[index]
    if not vdso:
        pytest.skip("no samples landed in the vDSO (clock_gettime falls back to a syscall "
                    f"here?): {[(r['func'], r['binary']) for r in top['rows'][:4]]}")  # type: ignore[index]
    res = stax("annotate", vdso[0]["func"], "--json", check=True).json()
    assert res["function"]["binary"] == "[vdso]"  # type: ignore[index]
    assert res["instructions"] and res["arch"] in ("x86-64", "aarch64")  # type: ignore[index]
    assert res["placed_samples"] + res["unplaced_samples"] == res["self_samples"]  # type: ignore[index]
    assert res["placed_samples"] == res["self_samples"] > 0  # type: ignore[index]
