"""Constants shared by the CLI, the server, the capture code and staxd, defined once here.

Stdlib only and import-free, so that the CLI can use them without loading server or capture
code. The RPC ranges are the ones stax.server.params enforces and docs/protocol.md states.
"""

from __future__ import annotations

# Sampling frequency (Hz per thread on CPU): the default, and the most any path accepts (the
# kernel's perf_event_max_sample_rate may allow less).
DEFAULT_FREQUENCY = 900
MAX_FREQUENCY = 100_000

# staxd's socket: where the daemon listens by default, and where a client looks by default
# (/var/run is /run on current systems; the client keeps the traditional spelling).
STAXD_SOCKET = "/run/staxd.sock"
STAXD_CLIENT_SOCKET = "/var/run/staxd.sock"

# The kernel's ceiling for pid_max on 64-bit (PID_MAX_LIMIT); pids and tids live below it.
MAX_PID = 1 << 22
# Run and subscription ids.
MAX_ID = (1 << 31) - 1
# Row counts (0 = all), depths, sample counts: generous, but far from what breaks a slice.
MAX_COUNT = 1_000_000_000
# Time limits, waits and timeouts: up to one week.
MAX_SECONDS = 7 * 24 * 3600

# Marks (``stax mark LABEL``): a label's length, and how many marks one run keeps.
MAX_MARK_LABEL = 64
MAX_MARKS = 10_000

# How long `stax wait` waits, without --timeout-ms, for the server to answer and a run to start
# (the `stax record … &` it follows may not have registered its run yet).
WAIT_START_GRACE_S = 5.0

# Exports (gecko): an off-CPU interval becomes samples one sampling period apart (so a zoom into
# the middle of a long wait still finds samples), at most this many per interval (the step grows
# for longer waits), and about this many in all (the period grows for runs with more blocked time).
MAX_OFFCPU_SAMPLES_PER_INTERVAL = 1000
MAX_OFFCPU_SAMPLES = 1_000_000
