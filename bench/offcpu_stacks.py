"""Stack copy sizes of the off-CPU events: completeness and cost.

1. Blocking stacks (sched_switch samples): for copies of 1, 2, 4 and 8 KiB, the share of
   blocking-stack walks that reach the thread's entry point on threads.c, napper.c, condvar.c,
   pingpong.c (20k round trips) and a CPython program (threads sleeping, locking, queueing).
2. Waker stacks (sched_waking samples): the same share for the waker walks, and the cost of
   the copy on a switch-heavy target (pipe ping-pong, 100k round trips: the target's elapsed
   time and lost records) for waker copies of 0 (frame-pointer chain only), 1, 2 and 4 KiB.

Sizes are set through $STAX_SWITCH_STACK / $STAX_WAKING_STACK in the server's environment.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from _common import (
    ROOT,
    bench_env,
    compile_workloads,
    elapsed_from,
    emit,
    log,
    median,
    parse_args,
)

SOURCES = {
    "threads": ROOT / "workloads" / "threads.c",
    "napper": ROOT / "tests" / "workloads" / "napper.c",
    "condvar": ROOT / "tests" / "workloads" / "condvar.c",
    "pingpong": ROOT / "tests" / "workloads" / "pingpong.c",
}
PYPROG = """
import queue, threading, time
lock = threading.Lock()
q = queue.Queue()
def sleeper():
    for _ in range(10):
        time.sleep(0.02)
def locker():
    for _ in range(20):
        with lock:
            time.sleep(0.005)
def consumer():
    while q.get() is not None:
        pass
def producer():
    for i in range(200):
        q.put(i)
        time.sleep(0.001)
    q.put(None)
ts = [threading.Thread(target=f) for f in (sleeper, locker, locker, consumer, producer)]
for t in ts:
    t.start()
for t in ts:
    t.join()
"""


def _pct(side: dict[str, Any]) -> float:
    return round(100.0 * side["complete"] / side["walks"], 1) if side.get("walks") else float(
        "nan")


def _config(env: Any, exe: dict[str, Any], switch: int, waking: int, reps: int,
            rounds: int) -> dict[str, Any]:
    env.env["STAX_SWITCH_STACK"] = str(switch)
    env.env["STAX_WAKING_STACK"] = str(waking)
    env.start_server()
    res: dict[str, Any] = {"switch_stack": switch, "waking_stack": waking, "workloads": {}}
    try:
        runs: list[tuple[str, list[str]]] = [
            (n, [str(exe[n])]) for n in ("threads", "napper", "condvar")]
        runs.append(("pingpong", [str(exe["pingpong"]), "20000"]))
        runs.append(("cpython", [sys.executable, str(env.tmp / "prog.py")]))
        for name, argv in runs:
            env.stax("record", "--", *argv)
            uw = env.stax_json("diagnose")["run"]["unwind"]
            res["workloads"][name] = {"blocking": _pct(uw["blocking_stacks"]),
                                      "waker": _pct(uw["waker_stacks"]),
                                      "blocking_walks": uw["blocking_stacks"]["walks"],
                                      "waker_walks": uw["waker_stacks"]["walks"]}
        times, lost = [], []
        for _ in range(reps):
            p = env.stax("record", "--json", "--", str(exe["pingpong"]), str(rounds))
            times.append(elapsed_from(p.err))
            lost.append(json.loads(p.out)["lost_records"])
        res["pingpong_s"], res["pingpong_lost"] = median(times), lost
    finally:
        env.stop_server()
    return res


def main() -> int:
    args = parse_args(__doc__ or "")
    reps, rounds = (1, 20_000) if args.quick else (3, 100_000)
    configs = [(1024, 2048), (2048, 2048), (4096, 2048), (8192, 2048),
               (1024, 0), (1024, 1024), (1024, 4096)]
    out: list[dict[str, Any]] = []
    with bench_env("offcpu-stacks") as env:
        exe = compile_workloads(env.tmp, SOURCES)
        (env.tmp / "prog.py").write_text(PYPROG)
        bare = median([elapsed_from(env.run([str(exe["pingpong"]), str(rounds)]).err)
                       for _ in range(reps)])
        for switch, waking in configs:
            log(f"switch copy {switch} B, waker copy {waking} B")
            out.append(_config(env, exe, switch, waking, reps, rounds))
    lines = [f"off-CPU stack copies (pingpong bare {bare:.3f} s, {rounds} round trips)",
             "  switch waking | complete blocking stacks % (threads napper condvar pingpong "
             "cpython) | waker % | pingpong s, lost"]
    for r in out:
        w = r["workloads"]
        lines.append(f"  {r['switch_stack']:6} {r['waking_stack']:6} | "
                     + " ".join(f"{w[n]['blocking']:5}" for n in w)
                     + " | " + " ".join(f"{w[n]['waker']:5}" for n in w)
                     + f" | {r['pingpong_s']:.3f} {r['pingpong_lost']}")
    emit(args, {"bare_pingpong_s": bare, "rounds": rounds, "configs": out}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
