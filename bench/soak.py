"""Soak: a long recording at 999 Hz on two busy threads, queried every second.

``stax record -F 999 -- spin S 2`` (S = ``--minutes`` x 60, default 10 minutes; ``--quick``: 1)
through an isolated stax-server, while this script asks the server for ``top``, ``flamegraph``
and ``threads`` in turn, one query a second, over the RPC client (the server's own latency, no
CLI start-up). Every second it also reads the server's RSS and the run's lost records.

Reports: RSS over time (start, every minute, peak, end) and its growth per million samples
(the tables grow a few bytes a sample; anything far beyond is a leak), lost records, load
shed, and query latency percentiles (p50/p95/p99/max) per query and overall.
Targets: 0 lost records, nothing shed, query p99 under 0.5 s, RSS growth under 100 MiB per
million samples. Missed targets are printed, not failures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from _common import bench_env, log

TARGET_P99_S = 0.5
TARGET_MIB_PER_MSAMPLE = 100.0
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("top", {"limit": 20}), ("flamegraph", {"max_depth": 0}), ("threads", {}),
]


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to record (10)")
    ap.add_argument("--quick", action="store_true", help="one minute")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--no-queries", action="store_true",
                    help="only record and watch RSS (a baseline for the RSS growth)")
    args = ap.parse_args()
    if args.quick:
        args.minutes = min(args.minutes, 1.0)
    if not 0 < args.minutes <= 24 * 60:
        ap.error("--minutes must be more than 0 and at most 1440")
    return args


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def latency(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {"n": len(xs), "p50_ms": round(pct(xs, 50) * 1000, 1),
            "p95_ms": round(pct(xs, 95) * 1000, 1), "p99_ms": round(pct(xs, 99) * 1000, 1),
            "max_ms": round(max(xs) * 1000, 1)}


def main() -> int:
    args = parse()
    seconds = round(args.minutes * 60)
    with bench_env("soak") as env:
        server = env.start_server()
        os.environ["STAX_SERVER_SOCKET"] = env.env["STAX_SERVER_SOCKET"]
        from stax.client import Client

        client = Client(timeout=30)
        log(f"soak: stax record -F 999 -- spin {seconds} 2, one query a second")
        rec = subprocess.Popen([env.stax_exe, "record", "-F", "999", "--json", "--",
                                str(env.bin["spin"]), str(seconds), "2"], env=env.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        rss: list[tuple[float, int, int]] = []  # (s, rss bytes, samples)
        lat: dict[str, list[float]] = {name: [] for name, _ in QUERIES}
        errors = 0
        lost = 0
        i = 0
        while rec.poll() is None:
            tick = t0 + i + 1
            time.sleep(max(0.0, tick - time.monotonic()))
            name, params = QUERIES[i % len(QUERIES)]
            i += 1
            q0 = time.perf_counter()
            try:
                if not args.no_queries:
                    client.call(name, timeout=60, **params)
                    lat[name].append(time.perf_counter() - q0)
            except Exception as e:  # noqa: BLE001 - a failed query is a number to report
                errors += 1
                log(f"soak: {name} failed: {e}")
            try:
                act = client.call("status", timeout=60)["active"]
            except Exception:  # noqa: BLE001
                act = None
            if act is not None:
                lost = act["lost_records"]
                rss.append((time.monotonic() - t0, rss_bytes(server), act["samples"]))
            if i % 60 == 0 and rss:
                log(f"soak: {rss[-1][0]:.0f} s, rss {rss[-1][1] / 2**20:.1f} MiB, "
                    f"{rss[-1][2]} samples, {lost} lost")
        out, err = rec.communicate()
        if rec.returncode != 0:
            print(err[-2000:], file=sys.stderr)
            return 1
        run = json.loads(out)
        end_rss = rss_bytes(server)
        client.close()
    return report(args, seconds, run, rss, end_rss, lat, errors)


def report(args: argparse.Namespace, seconds: int, run: dict[str, Any],
           rss: list[tuple[float, int, int]], end_rss: int, lat: dict[str, list[float]],
           errors: int) -> int:
    every = [r for k, r in enumerate(rss) if k % 60 == 0] + rss[-1:]
    # from a fifth of the way in: the first queries load symbols and unwind tables
    base = rss[min(len(rss) - 1, max(4, len(rss) // 5))] if rss else (0.0, 0, 0)
    growth = ((rss[-1][1] - base[1]) / 2**20 / max(1e-9, (rss[-1][2] - base[2]) / 1e6)
              if rss and rss[-1][2] > base[2] else 0.0)
    # the first query of each kind also symbolises the run: reported apart
    first = {k: round(v[0] * 1000, 1) for k, v in lat.items() if v}
    lat = {k: v[1:] for k, v in lat.items()}
    all_lat = [x for xs in lat.values() for x in xs]
    overall = latency(all_lat)
    doc = {
        "minutes": args.minutes, "samples": run["samples"], "lost_records": run["lost_records"],
        "elapsed_ms": run["elapsed_ms"], "shedding": run.get("shedding"),
        "query_errors": errors,
        "rss_mib": [{"t_s": round(t, 1), "rss_mib": round(b / 2**20, 1), "samples": n}
                    for t, b, n in rss],
        "rss_peak_mib": round(max((b for _, b, _ in rss), default=0) / 2**20, 1),
        "rss_end_mib": round(end_rss / 2**20, 1),
        "rss_growth_mib_per_msample": round(growth, 1),
        "latency": {**{k: latency(v) for k, v in lat.items()}, "all": overall},
        "first_query_ms": first,
    }
    missed = []
    if run["lost_records"]:
        missed.append(f"{run['lost_records']} lost records (target 0)")
    if run.get("shedding"):
        missed.append("load was shed (target: none at 999 Hz)")
    if all_lat and overall["p99_ms"] > TARGET_P99_S * 1000:
        missed.append(f"query p99 {overall['p99_ms']} ms (target {TARGET_P99_S * 1000:.0f})")
    if growth > TARGET_MIB_PER_MSAMPLE:
        missed.append(f"RSS grew {growth:.1f} MiB per million samples "
                      f"(target {TARGET_MIB_PER_MSAMPLE:.0f})")
    if errors:
        missed.append(f"{errors} queries failed")
    doc["missed"] = missed
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    lines = [f"soak: {args.minutes:g} min at -F 999 on spin x2: {run['samples']} samples, "
             f"{run['lost_records']} lost records, shed: "
             f"{'none' if not run.get('shedding') else run['shedding']}",
             "server RSS: " + ", ".join(f"{t / 60:.1f} min {b / 2**20:.0f} MiB"
                                        for t, b, _ in every),
             f"  peak {doc['rss_peak_mib']} MiB, end {doc['rss_end_mib']} MiB, growth "
             f"{growth:.1f} MiB per million samples"]
    for name, st in doc["latency"].items():
        lines.append(f"  {name:<10} n={st['n']:<4} p50 {st['p50_ms']} ms  p95 {st['p95_ms']} ms"
                     f"  p99 {st['p99_ms']} ms  max {st['max_ms']} ms")
    lines.append("  first query of each kind (symbolises the run): "
                 + ", ".join(f"{k} {v} ms" for k, v in first.items()))
    lines += [f"MISSED: {m}" for m in missed] or ["all targets met"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
