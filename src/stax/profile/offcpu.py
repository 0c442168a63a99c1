"""Off-CPU intervals and wakeup edges: the column tables, the interval builder, the reason rules.

The rules that turn a blocking stack and thread state into a reason bucket are documented in
docs/offcpu.md; keep the two in step.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

REASONS = ("idle", "lock", "sem", "ipc", "ioR", "ioW", "ready", "sleep", "conn", "other")
REASON_CODE = {name: i for i, name in enumerate(REASONS)}

# prev_state values as sched:sched_switch reports them (one bit per state letter of ps(1))
STATE_RUNNING = 0x0  # R: switched out while runnable (yield)
STATE_INTERRUPTIBLE = 0x1  # S
STATE_UNINTERRUPTIBLE = 0x2  # D
STATE_STOPPED = 0x4  # T
STATE_TRACED = 0x8  # t
STATE_DEAD = 0x10  # X
STATE_ZOMBIE = 0x20  # Z
STATE_PARKED = 0x40  # P
STATE_IDLE = 0x80  # I
STATE_PREEMPTED = 0x100  # "R+": preempted (TASK_REPORT_MAX)

STATE_LETTERS = {STATE_RUNNING: "R", STATE_INTERRUPTIBLE: "S", STATE_UNINTERRUPTIBLE: "D",
                 STATE_STOPPED: "T", STATE_TRACED: "t", STATE_DEAD: "X", STATE_ZOMBIE: "Z",
                 STATE_PARKED: "P", STATE_IDLE: "I", STATE_PREEMPTED: "R+"}


def state_letter(state: int) -> str:
    return STATE_LETTERS.get(state, f"{state:#x}")


# Kernel-frame rules, tried in this order over the whole kernel part of the blocking stack; the
# first rule with a frame whose name starts with one of its prefixes wins. Names are matched
# after dropping compiler suffixes (".isra.0", ".constprop.0", ...).
KERNEL_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("other", ("n_tty_read", "tty_read", "n_tty_write", "tty_write")),  # terminals
    ("sem", ("do_semtimedop", "ksys_semtimedop", "__x64_sys_semop", "__x64_sys_semtimedop",
             "__arm64_sys_semop", "__arm64_sys_semtimedop", "down_interruptible", "down_timeout",
             "down_killable", "___down_common", "__down_interruptible", "__down_killable",
             "__down_timeout")),
    ("ipc", ("pipe_read", "pipe_write", "pipe_wait", "anon_pipe_", "fifo_", "wait_for_partner",
             "unix_", "__unix_", "do_wait",
             "kernel_wait4", "kernel_waitid", "__x64_sys_wait", "__x64_sys_pause",
             "__arm64_sys_pause", "sys_pause", "sigsuspend", "__x64_sys_rt_sigsuspend",
             "__arm64_sys_rt_sigsuspend", "do_sigtimedwait", "do_msgrcv", "do_msgsnd",
             "do_mq_timed", "wq_sleep", "eventfd_read", "eventfd_write", "signalfd_")),
    ("conn", ("tcp_", "inet_", "inet6_", "udp", "sk_wait_", "sk_stream_wait", "sock_",
              "__sock_", "___sys_recvmsg", "___sys_sendmsg", "__sys_recv", "__sys_send",
              "__sys_accept", "__sys_connect", "__skb_wait_for_more_packets",
              "__skb_recv_datagram", "do_epoll_wait", "ep_poll", "do_sys_poll", "do_poll",
              "do_select", "core_sys_select", "poll_schedule_timeout", "__x64_sys_poll",
              "__x64_sys_ppoll", "__x64_sys_select", "__x64_sys_pselect", "__x64_sys_epoll")),
    ("lock", ("futex_", "__futex_", "do_futex", "__x64_sys_futex", "__arm64_sys_futex",
              "mutex_lock", "__mutex_lock", "rwsem_down_", "down_read", "down_write",
              "rt_mutex", "__rt_mutex", "percpu_rwsem_wait", "flock_", "locks_lock",
              "posix_lock", "fcntl_setlk")),
    ("sleep", ("do_nanosleep", "hrtimer_nanosleep", "common_nsleep", "__x64_sys_nanosleep",
               "__x64_sys_clock_nanosleep", "__arm64_sys_nanosleep",
               "__arm64_sys_clock_nanosleep", "msleep", "usleep_range", "timerfd_read",
               "do_timerfd", "__x64_sys_alarm")),
    ("ioW", ("vfs_write", "ksys_write", "__x64_sys_write", "__x64_sys_pwrite",
             "__arm64_sys_write", "vfs_fsync", "do_fsync", "file_write_and_wait",
             "balance_dirty_pages", "jbd2_", "filemap_write", "writeback_", "blkdev_write",
             "generic_perform_write", "iomap_file_buffered_write", "do_iter_write")),
    ("ioR", ("vfs_read", "ksys_read", "__x64_sys_read", "__x64_sys_pread", "__arm64_sys_read",
             "filemap_read", "filemap_fault", "do_read_fault", "filemap_get_pages",
             "folio_wait_bit", "wait_on_page_bit", "io_schedule", "bit_wait_io",
             "blkdev_read", "do_iter_read", "blk_", "submit_bio_wait", "do_page_cache_ra")),
    ("idle", ("kthread_parkme", "worker_thread", "smpboot_thread_fn", "rescuer_thread",
              "kthreadd", "rcu_gp_kthread")),
)

# User-frame rules: sem first (glibc semaphores wait on a futex, so the kernel says "lock"),
# then a fallback for stacks without kernel frames (kernel frames not permitted).
USER_SEM = ("sem_wait", "sem_timedwait", "sem_clockwait", "__new_sem_wait", "do_futex_wait",
            "__sem_wait")
USER_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sem", USER_SEM),
    ("lock", ("pthread_mutex_lock", "__pthread_mutex_lock", "___pthread_mutex_lock",
              "__lll_lock_wait", "pthread_cond_", "__pthread_cond_", "___pthread_cond_",
              "pthread_rwlock_", "pthread_join", "__pthread_clockjoin", "__futex_abstimed_wait",
              "futex_wait", "syscall_futex")),
    ("sleep", ("nanosleep", "__nanosleep", "clock_nanosleep", "__clock_nanosleep", "usleep",
               "sleep", "__sleep")),
    ("conn", ("poll", "__poll", "ppoll", "epoll_wait", "epoll_pwait", "select", "pselect",
              "accept", "accept4", "connect", "recv", "recvfrom", "recvmsg", "send", "sendto",
              "sendmsg", "__libc_recv", "__libc_send", "__libc_accept", "__libc_connect")),
    ("ipc", ("waitpid", "wait4", "__wait4", "waitid", "sigsuspend", "sigwait", "sigtimedwait",
             "pause", "msgrcv", "mq_receive", "mq_timedreceive")),
)


def _base(name: str) -> str:
    dot = name.find(".")
    return name if dot <= 0 else name[:dot]


def classify(state: int, kernel: Sequence[str], user: Sequence[str]) -> str:
    """The reason bucket of an off-CPU interval from the state at switch-out and the function
    names of the blocking stack (``kernel`` and ``user`` frames, leaf first)."""
    if state in (STATE_RUNNING, STATE_PREEMPTED):
        return "ready"
    if state in (STATE_PARKED, STATE_IDLE):
        return "idle"
    if state in (STATE_STOPPED, STATE_TRACED):
        return "other"
    names = [_base(n) for n in kernel]
    unames = [_base(n) for n in user]
    for reason, prefixes in KERNEL_RULES:
        if any(n.startswith(prefixes) for n in names):
            if reason == "lock" and any(n in USER_SEM for n in unames):
                return "sem"
            return reason
    for reason, exact in USER_RULES:
        if any(n in exact for n in unames):
            return reason
    return "other"


class Intervals:
    """Off-CPU intervals, one row each: the thread, when it went off CPU (CLOCK_MONOTONIC ns),
    for how long, why (an index into REASONS; -1 until Profile.classify_pending() has run,
    because classifying needs symbols and the capture path does not symbolise), the blocking
    stack, the state at switch-out, and the index of the wakeup that ended it (-1: none
    recorded)."""

    def __init__(self) -> None:
        self.tid = array("i")
        self.start_ns = array("q")
        self.duration_ns = array("q")
        self.reason = array("b")
        self.stack = array("i")
        self.state = array("i")
        self.wakeup = array("i")

    def __len__(self) -> int:
        return len(self.tid)


class Wakeups:
    """Wakeup edges: when, the waking thread (0: an interrupt or timer on a target thread's
    CPU), the woken thread, and the waker's stack (kernel frames only for interrupts)."""

    def __init__(self) -> None:
        self.time_ns = array("q")
        self.waker_tid = array("i")
        self.wakee_tid = array("i")
        self.waker_stack = array("i")

    def __len__(self) -> int:
        return len(self.time_ns)


class Builder:
    """Pairs each thread's switch-out (tracepoint, with stack and state) with its next switch-in
    (context-switch record) into an interval, and links the last wakeup in between."""

    def __init__(self, intervals: Intervals, wakeups: Wakeups,
                 reason_of: Callable[[int, int], int]) -> None:
        self.intervals = intervals
        self.wakeups = wakeups
        self.reason_of = reason_of  # (stack, state) -> reason code, or -1 if not known yet
        self.unclassified: list[int] = []  # intervals whose reason is still -1
        # tid -> (start, state, stack, reason code or -1 to classify from the stack)
        self.pending: dict[int, tuple[int, int, int, int]] = {}
        self.last_wake: dict[int, int] = {}  # tid -> wakeup index while it is off CPU
        self.counts = {"switch_out": 0, "switch_in": 0, "unmatched_switch_in": 0,
                       "wakeups": 0, "exit_switches": 0, "closed_at_end": 0, "seeded": 0}

    def switch_out(self, tid: int, time: int, state: int, stack: int, reason: int = -1) -> None:
        """The thread left the CPU; ``reason`` is its code when known without the stack."""
        self.counts["switch_out"] += 1
        if state in (STATE_DEAD, STATE_ZOMBIE):
            self.counts["exit_switches"] += 1
            self.pending.pop(tid, None)
            self.last_wake.pop(tid, None)
            return
        self.pending[tid] = (time, state, stack, reason)
        self.last_wake.pop(tid, None)

    def seed(self, tid: int, time: int, state: int, reason: int) -> None:
        """A thread already off CPU when recording began (its switch-out was not seen): its
        interval starts at ``time``, with no stack and a reason found another way."""
        if tid not in self.pending:
            self.pending[tid] = (time, state, -1, reason)
            self.counts["seeded"] += 1

    def switch_in(self, tid: int, time: int) -> int:
        """Close the thread's interval; returns its index or -1."""
        self.counts["switch_in"] += 1
        got = self.pending.pop(tid, None)
        if got is None:
            self.counts["unmatched_switch_in"] += 1
            return -1
        start, state, stack, code = got
        if time < start:  # a seeded interval that had already ended
            self.counts["unmatched_switch_in"] += 1
            return -1
        wk = self.last_wake.pop(tid, -1)
        iv = self.intervals
        iv.tid.append(tid)
        iv.start_ns.append(start)
        iv.duration_ns.append(max(0, time - start))
        if code < 0:
            code = self.reason_of(stack, state)
        if code < 0:
            self.unclassified.append(len(iv.tid) - 1)
        iv.reason.append(code)
        iv.stack.append(stack)
        iv.state.append(state)
        iv.wakeup.append(wk)
        return len(iv.tid) - 1

    def waking(self, time: int, waker: int, wakee: int, stack: int) -> int:
        self.counts["wakeups"] += 1
        w = self.wakeups
        w.time_ns.append(time)
        w.waker_tid.append(waker)
        w.wakee_tid.append(wakee)
        w.waker_stack.append(stack)
        idx = len(w.time_ns) - 1
        if wakee in self.pending:
            self.last_wake[wakee] = idx
        return idx

    def close_open(self, time: int) -> int:
        """End every interval still open at ``time`` (the recording stopped while threads were
        off CPU); returns how many. They keep the reason of their switch-out."""
        n = 0
        for tid in list(self.pending):
            start = self.pending[tid][0]
            if time >= start:
                self.counts["switch_in"] -= 1  # not a real switch-in
                self.switch_in(tid, time)
                n += 1
        self.pending.clear()
        self.last_wake.clear()
        self.counts["closed_at_end"] = self.counts.get("closed_at_end", 0) + n
        return n

    def thread_exit(self, tid: int) -> None:
        """The thread exited (its PERF_RECORD_EXIT): it ran to get there, so an interval still
        open is one whose switch-in was lost; drop it rather than let close_open stretch it to
        the end of the recording."""
        self.pending.pop(tid, None)
        self.last_wake.pop(tid, None)

    @property
    def open_intervals(self) -> int:
        """Threads off CPU right now (their interval has no end yet)."""
        return len(self.pending)
