"""Run every stax benchmark in sequence: overhead, ingest, query_latency, inline_latency, unwind,
python, offcpu, web, archive, annotate_latency, staxd, journal, soak (for 1 minute; 0.5 with
--quick: the full 10-minute soak is run alone, bench/soak.py).

``--quick`` is passed through. With ``--json`` the numbers of all of them are printed as one JSON
document keyed by benchmark. Missed targets are reported, not failures; the exit status is
non-zero only if a benchmark itself crashed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import log, parse_args

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("overhead", "ingest", "query_latency", "inline_latency", "unwind", "python",
              "offcpu", "web", "archive", "annotate_latency", "staxd", "journal", "soak")
# extra arguments per benchmark (the soak's length)
EXTRA = {"soak": (["--minutes", "1"], ["--minutes", "0.5"])}


def main() -> int:
    args = parse_args(__doc__ or "")
    extra = ["--quick"] if args.quick else []
    docs: dict[str, Any] = {}
    failed: list[str] = []
    for name in BENCHMARKS:
        log(f"=== {name} ===")
        t0 = time.perf_counter()
        full, quick = EXTRA.get(name, ([], []))
        cmd = [sys.executable, str(HERE / f"{name}.py"), *extra, *(quick if args.quick else full)]
        if args.json:
            p = subprocess.run([*cmd, "--json"], stdout=subprocess.PIPE, text=True)
            if p.returncode == 0:
                docs[name] = json.loads(p.stdout)
        else:
            p = subprocess.run(cmd)
            print(flush=True)
        log(f"=== {name}: exit {p.returncode} in {time.perf_counter() - t0:.1f} s ===")
        if p.returncode != 0:
            failed.append(name)
    if args.json:
        print(json.dumps({"quick": args.quick, "failed": failed, **docs}, indent=2))
    elif failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
