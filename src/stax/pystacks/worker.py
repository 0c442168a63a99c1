"""The stack-reading process: ``python -m stax.pystacks.worker SPEC`` reads a CPython target's
Python stacks at a steady rate and writes each snapshot to its standard output, one JSON array
per line. Its own interpreter, so the server's busy threads (decoding and unwinding samples)
never hold up a read: in the server a read waited for the GIL and took 30 times as long, and
its time stamp said little about when the stacks were read.

SPEC (JSON): ``{"pid", "hz", "interpreter": {path, bias, runtime_addr, version,
code_type_addr}}``, the interpreter the server located (so it is not looked for again), and,
when staxd runs it as root, ``"pidfd"``, a descriptor of the target it inherited, and
``"owner"``, the requester's uid: a read is only written out when that process had not exited
by the end of it (so a pid reused by another process is never read for the requester) and
still belongs to the requester (not after it exec'd a setuid or setgid program).

Lines written:
- ``["c", ID, QUALNAME, FILENAME, FIRSTLINENO]``: a code object seen for the first time;
- ``["s", STAMP_NS, READ_NS, [[TID, [ID, LINE, ENTRY, OWNER, ...]], ...]]``: a snapshot,
  CLOCK_MONOTONIC at the middle of the read, each thread's frames innermost first (LINE -1:
  unknown, ENTRY 0/1);
- ``["f"]``: a read failed; ``["x", MESSAGE]``: cannot read at all (then it exits 1).

It exits when the target is gone or its output is closed (the server stopped reading)."""

from __future__ import annotations

import json
import os
import sys
import time

__all__ = ["command", "main"]


def command(pid: int, hz: float, interpreter: dict[str, object],
            pidfd: int | None = None, owner: int | None = None) -> list[str]:
    """The command line that runs it on ``pid`` (``interpreter``: ``Interpreter.spec()``;
    ``pidfd`` and ``owner``, the requester's uid, when staxd runs it as root)."""
    spec: dict[str, object] = {"pid": pid, "hz": hz, "interpreter": interpreter}
    if pidfd is not None:
        spec["pidfd"] = pidfd
    if owner is not None:
        spec["owner"] = owner
    return [sys.executable, "-m", "stax.pystacks.worker", json.dumps(spec)]


def _emit(out: object, lines: list[str]) -> bool:
    try:
        out.write(("\n".join(lines) + "\n").encode())  # type: ignore[attr-defined]
        out.flush()  # type: ignore[attr-defined]
    except (BrokenPipeError, ValueError, OSError):
        return False
    return True


def _still_theirs(pid: int, owner: int) -> bool:
    """The target still belongs to ``owner``, as staxd's access check found it: an exec of a
    setuid or setgid program makes it non-dumpable, and its /proc entry root's."""
    try:
        return os.stat(f"/proc/{pid}").st_uid == owner
    except OSError:
        return False


def _exited(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    import select

    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(0))


def main(argv: list[str] | None = None) -> int:
    from stax.pystacks.locate import Interpreter
    from stax.pystacks.procmem import RemoteReadError
    from stax.pystacks.reader import NotPythonError, PyStackReader

    args = sys.argv[1:] if argv is None else argv
    out = sys.stdout.buffer
    try:
        spec = json.loads(args[0])
        pid, hz = int(spec["pid"]), max(1.0, min(float(spec["hz"]), 1000.0))
        pidfd = spec.get("pidfd")
        pidfd = None if pidfd is None else int(pidfd)
        owner = spec.get("owner")
        owner = None if owner is None or int(owner) == 0 else int(owner)
        interp = Interpreter.from_spec(spec["interpreter"])
        reader = PyStackReader(pid, interp)
    except (IndexError, KeyError, TypeError, ValueError) as e:
        _emit(out, [json.dumps(["x", f"bad spec: {e}"])])
        return 1
    except (NotPythonError, OSError) as e:
        _emit(out, [json.dumps(["x", str(e)])])
        return 1
    codes: dict[tuple[str, str, int], int] = {}
    period = 1.0 / hz
    nxt = time.monotonic()
    while True:
        lines: list[str] = []
        t0 = time.monotonic_ns()
        try:
            threads = reader.threads()
            if pidfd is not None and _exited(pidfd):
                return 0  # (what was read may be another process's by now)
            if owner is not None and not _still_theirs(pid, owner):
                return 0  # it exec'd a setuid program: no longer the requester's to read
        except (RemoteReadError, OSError):
            if (_exited(pidfd) if pidfd is not None else not os.path.exists(f"/proc/{pid}")):
                return 0
            lines.append('["f"]')
        else:
            t1 = time.monotonic_ns()
            stacks = []
            for th in threads:
                flat: list[int] = []
                for f in th.frames:
                    key = (f.qualname, f.filename, f.firstlineno)
                    cid = codes.get(key)
                    if cid is None:
                        cid = codes[key] = len(codes)
                        lines.append(json.dumps(["c", cid, *key]))
                    flat += (cid, -1 if f.line is None else f.line, int(f.is_entry), f.owner)
                stacks.append([th.native_tid, flat])
            lines.append(json.dumps(["s", (t0 + t1) // 2, t1 - t0, stacks],
                                    separators=(",", ":")))
        if not _emit(out, lines):
            return 0
        nxt += period
        delay = nxt - time.monotonic()
        if delay < 0:  # behind: skip ahead rather than burst
            nxt = time.monotonic()
        else:
            time.sleep(delay)


if __name__ == "__main__":
    sys.exit(main())
