"""Off-CPU units on hand-built inputs: reason rules, interval building, switch records, formats."""

from __future__ import annotations

import struct

import pytest

from stax.capture import perf, sched
from stax.capture import records as rec
from stax.profile import offcpu, offviews, views
from stax.profile.offcpu import (
    STATE_DEAD,
    STATE_IDLE,
    STATE_INTERRUPTIBLE,
    STATE_PARKED,
    STATE_PREEMPTED,
    STATE_RUNNING,
    STATE_STOPPED,
    STATE_UNINTERRUPTIBLE,
    classify,
)
from stax.profile.tables import Profile

SYSCALL = ["do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
S = STATE_INTERRUPTIBLE
D = STATE_UNINTERRUPTIBLE


def k(*names: str) -> list[str]:
    return ["__schedule", "schedule", *names, *SYSCALL]


@pytest.mark.parametrize("state,kernel,user,want", [
    # the state decides first
    (STATE_PREEMPTED, ["__schedule", "irqentry_exit_to_user_mode"], ["burn"], "ready"),
    (STATE_RUNNING, k("do_sched_yield"), ["sched_yield"], "ready"),
    (STATE_IDLE, ["__schedule", "schedule", "worker_thread", "kthread"], [], "idle"),
    (STATE_PARKED, ["__schedule", "kthread_parkme"], [], "idle"),
    (STATE_STOPPED, k("do_signal_stop"), [], "other"),
    # locks: mutex, condition variable, join (all futex waits)
    (S, k("futex_do_wait", "__futex_wait", "futex_wait", "do_futex", "__x64_sys_futex"),
     ["__lll_lock_wait", "waiter", "start_thread"], "lock"),
    (S, k("futex_wait_queue", "futex_wait", "do_futex", "__x64_sys_futex"),
     ["__futex_abstimed_wait_common", "___pthread_cond_wait"], "lock"),
    (D, ["__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock.constprop.0",
         "some_ioctl", *SYSCALL], [], "lock"),
    (D, ["__schedule", "rwsem_down_read_slowpath", "down_read", "do_user_addr_fault"], [],
     "lock"),
    # POSIX semaphores wait on a futex too; SysV semaphores in the kernel
    (S, k("futex_wait", "do_futex", "__x64_sys_futex"),
     ["do_futex_wait.constprop.0", "__new_sem_wait_slow64.constprop.0", "worker"], "sem"),
    (S, k("do_semtimedop", "__x64_sys_semop"), ["semop"], "sem"),
    # sleeps
    (S, k("do_nanosleep", "hrtimer_nanosleep", "common_nsleep", "__x64_sys_clock_nanosleep"),
     ["clock_nanosleep", "usleep"], "sleep"),
    (S, k("timerfd_read_iter", "vfs_read", "ksys_read"), ["read"], "sleep"),
    # ipc: pipes (read and write), unix sockets, wait(), signals
    (S, k("anon_pipe_read", "vfs_read", "ksys_read"), ["read"], "ipc"),
    (S, k("pipe_read", "vfs_read", "ksys_read"), ["read"], "ipc"),
    (S, k("pipe_write", "vfs_write", "ksys_write"), ["write"], "ipc"),
    (S, k("unix_stream_read_generic", "unix_stream_recvmsg", "sock_recvmsg",
          "__sys_recvfrom"), ["recv"], "ipc"),
    (S, k("__skb_wait_for_more_packets", "__unix_dgram_recvmsg", "sock_recvmsg"), [], "ipc"),
    (S, k("do_wait", "kernel_wait4", "__do_sys_wait4"), ["wait4", "waitpid"], "ipc"),
    (S, k("sigsuspend", "__x64_sys_rt_sigsuspend"), ["sigsuspend"], "ipc"),
    # network sockets and poll/epoll
    (S, k("wait_woken", "sk_wait_data", "tcp_recvmsg_locked", "tcp_recvmsg", "inet_recvmsg",
          "sock_recvmsg", "__sys_recvfrom"), ["recv"], "conn"),
    (S, k("inet_csk_accept", "inet_accept", "do_accept", "__sys_accept4"), ["accept"],
     "conn"),
    (S, k("schedule_hrtimeout_range", "ep_poll", "do_epoll_wait", "__x64_sys_epoll_wait"),
     ["epoll_wait"], "conn"),
    (S, k("schedule_hrtimeout_range", "do_poll.constprop.0", "do_sys_poll"), ["poll"], "conn"),
    # file and block I/O
    (D, k("io_schedule", "folio_wait_bit_common", "filemap_get_pages", "filemap_read",
          "vfs_read", "ksys_read"), ["read"], "ioR"),
    (D, k("io_schedule", "folio_wait_bit_common", "filemap_fault", "__do_fault"), [], "ioR"),
    (D, k("io_schedule", "folio_wait_bit_common", "folio_wait_writeback",
          "file_write_and_wait_range", "ext4_sync_file", "vfs_fsync_range", "do_fsync"),
     ["fsync"], "ioW"),
    (D, k("balance_dirty_pages", "generic_perform_write", "vfs_write", "ksys_write"),
     ["write"], "ioW"),
    # user-frame fallback when there are no kernel frames
    (S, [], ["__lll_lock_wait", "pthread_mutex_lock", "main"], "lock"),
    (S, [], ["clock_nanosleep", "usleep"], "sleep"),
    (S, [], ["sem_wait", "main"], "sem"),
    (S, [], ["epoll_wait", "loop"], "conn"),
    (S, [], ["waitpid", "main"], "ipc"),
    (S, k("n_tty_read", "tty_read", "vfs_read"), ["read"], "other"),
    (S, ["__schedule"], ["mystery"], "other"),
])
def test_classify(state: int, kernel: list[str], user: list[str], want: str) -> None:
    assert classify(state, kernel, user) == want


def test_every_reason_is_a_spec_bucket() -> None:
    assert set(offcpu.REASONS) == {"idle", "lock", "sem", "ipc", "ioR", "ioW", "ready",
                                   "sleep", "conn", "other"}
    for reason, _prefixes in offcpu.KERNEL_RULES + offcpu.USER_RULES:
        assert reason in offcpu.REASONS


def test_builder_pairs_switches_and_links_the_last_wakeup() -> None:
    iv, wk = offcpu.Intervals(), offcpu.Wakeups()
    b = offcpu.Builder(iv, wk, lambda stack, state: offcpu.REASON_CODE["lock"])
    b.switch_in(7, 50)  # a thread already off CPU when recording began
    b.switch_out(7, 100, STATE_INTERRUPTIBLE, 3)
    b.waking(150, 9, 7, 4)  # someone else
    w = b.waking(180, 8, 7, 5)  # the last one before the switch-in ends the wait
    b.waking(190, 8, 6, 5)  # a thread that is not off CPU: an edge, not linked
    assert b.switch_in(7, 200) == 0
    assert (iv.tid[0], iv.start_ns[0], iv.duration_ns[0], iv.stack[0], iv.wakeup[0]) == \
        (7, 100, 100, 3, w)
    b.waking(210, 8, 7, 5)  # woken while on CPU: no interval to link to
    b.switch_out(7, 300, STATE_PREEMPTED, 3)
    b.switch_in(7, 350)
    assert iv.wakeup[1] == -1 and iv.duration_ns[1] == 50
    b.switch_out(7, 400, STATE_DEAD, 3)  # exiting: never an interval
    assert b.open_intervals == 0 and len(iv) == 2
    b.switch_out(8, 500, STATE_INTERRUPTIBLE, 3)
    assert b.open_intervals == 1
    assert b.close_open(900) == 1 and b.open_intervals == 0
    assert (iv.tid[2], iv.duration_ns[2], iv.wakeup[2]) == (8, 400, -1)
    assert b.counts["closed_at_end"] == 1 and b.counts["switch_in"] == 3
    assert b.counts["unmatched_switch_in"] == 1 and b.counts["exit_switches"] == 1
    assert len(wk) == 4 and list(wk.waker_tid) == [9, 8, 8, 8]


def test_an_exited_thread_leaves_no_interval_open() -> None:
    # its switch-in was lost: the exit record drops the interval instead of letting the end
    # of the recording close it long after the thread died
    p = Profile()
    with p.lock:
        p.on_comm(100, 101, "worker", False, 10)
        p.offcpu.switch_out(101, 100, STATE_INTERRUPTIBLE, -1)
        p.offcpu.switch_out(102, 100, STATE_INTERRUPTIBLE, -1)
        assert p.offcpu.open_intervals == 2
        p.on_exit(100, 100, 101, 101, 500)
        assert p.offcpu.open_intervals == 1 and p.threads[101].end_ns == 500
        p.on_end(900)
    assert list(p.intervals.tid) == [102] and list(p.intervals.duration_ns) == [800]


def test_switch_records_decode() -> None:
    def switch(misc: int, pid: int, tid: int, time: int) -> bytes:
        body = struct.pack("<IIQIIQ", pid, tid, time, 1, 0, 77)
        return struct.pack("<IHH", rec.RECORD_SWITCH, misc, 8 + len(body)) + body

    got: list[tuple] = []

    class P(Profile):
        def on_switch(self, out: bool, preempt: bool, pid: int, tid: int, time: int) -> None:
            got.append((out, preempt, pid, tid, time))

    data = (switch(rec.MISC_SWITCH_OUT | rec.MISC_SWITCH_OUT_PREEMPT, 5, 6, 10)
            + switch(rec.MISC_SWITCH_OUT, 5, 6, 20) + switch(0, 5, 6, 30))
    assert rec.decode(data, P()) == 3
    assert got == [(True, True, 5, 6, 10), (True, False, 5, 6, 20), (False, False, 5, 6, 30)]
    assert [t for t, _ in rec.index(data)] == [10, 20, 30]


def test_tracefs_format_parsing() -> None:
    text = """name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
"""
    ev, fields = sched.parse_format(text)
    assert ev == 372
    assert fields["prev_pid"] == sched.Field(24, 4, True)
    assert fields["prev_comm"] == sched.Field(8, 16, False)
    raw = bytearray(64)
    struct.pack_into("<HBBi", raw, 0, 372, 0, 0, 42)
    struct.pack_into("<iiq", raw, 24, 42, 120, 0x100)
    f = sched.Formats(switch=fields)
    assert f.switch_out(bytes(raw)) == (42, STATE_PREEMPTED)
    wake = bytearray(40)
    struct.pack_into("<HBBi", wake, 0, 375, sched.TRACE_FLAG_SOFTIRQ, 0, 9)
    struct.pack_into("<i", wake, 24, 43)
    assert sched.Formats().waking_of(bytes(wake)) == (43, True)
    wake[2] = 0
    assert sched.Formats().waking_of(bytes(wake)) == (43, False)


def test_probe_reports_a_missing_tracefs(tmp_path: object, monkeypatch:
                                         pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAX_TRACEFS", "/nonexistent/tracefs")
    pr = sched.probe()
    assert not pr.switch_ok and pr.problem is not None and "tracefs not found" in pr.problem


def _sample(kind: str, tid: int, time: int, raw: bytes, chain: tuple[int, ...]) -> rec.Sample:
    return rec.Sample(1, kind, chain[0], 100, tid, time, 0, 1, chain, raw)


def test_profile_builds_intervals_views_from_tracepoint_samples() -> None:
    p = Profile()
    kernel = rec.CONTEXT_KERNEL
    user = rec.CONTEXT_USER
    sw = bytearray(64)
    struct.pack_into("<iiq", sw, 24, 101, 120, STATE_INTERRUPTIBLE)
    wake = bytearray(40)
    struct.pack_into("<i", wake, 24, 101)
    chain = (kernel, 0xffffffff81000010, 0xffffffff81000020, user, 0x401000)
    with p.lock:
        p.on_comm(100, 101, "blocked", False, 1)
        p.on_comm(100, 102, "waker", False, 1)
        p.on_sample(_sample("sched_switch", 101, 1000, bytes(sw), chain))
        p.on_sample(_sample("sched_waking", 102, 5000, bytes(wake), chain))
        p.on_switch(False, False, 100, 101, 6000)
        p.on_sample(rec.Sample(2, "cpu-clock", 0x401000, 100, 102, 6500, 0, 1_000_000,
                               (user, 0x401000)))
    assert len(p.intervals) == 1 and p.intervals.duration_ns[0] == 5000
    assert p.intervals.wakeup[0] == 0 and p.wakeups.waker_tid[0] == 102
    flt = views.Filter()
    rows = {r["name"]: r for r in views.threads(p, flt)["rows"]}
    assert rows["blocked"]["offcpu_ns"] == 5000 and rows["blocked"]["blocked"] == "other"
    w = offviews.wakers(p, flt)
    assert w["rows"][0]["waker"] == "waker" and w["rows"][0]["blocked_ns"] == 5000
    ivs = offviews.intervals(p, views.Filter(tid=101))
    assert ivs["rows"][0]["wakeup"]["waker_tid"] == 102 and ivs["offcpu_ns"] == 5000
    assert ivs["rows"][0]["wakeup"]["runnable_ns"] == 1000
    fl = views.flame(p, flt, mode="wall")
    assert fl["total_ns"] == 1_005_000 and fl["intervals"] == 1 and fl["samples"] == 1
    assert views.flame(p, flt, mode="offcpu")["total_ns"] == 5000
    # wall-mode nodes say how much of their time was blocked and why; cpu mode says nothing
    root = fl["roots"][0]
    assert root["offcpu_ns"] == 5000 and root["reasons"] == {"other": 5000}
    assert offviews.offcpu_reasons(p, flt) == {p.intervals.stack[0]: {"other": 5000}}
    assert "reasons" not in views.flame(p, flt)["roots"][0]
    # an interrupt on a target thread's CPU waking a thread outside the target is dropped
    irq = bytearray(wake)
    irq[2] = sched.TRACE_FLAG_HARDIRQ
    struct.pack_into("<i", irq, 24, 999)
    with p.lock:
        p.on_sample(_sample("sched_waking", 102, 7000, bytes(irq), chain))
    assert len(p.wakeups) == 1


def test_tracepoint_attr_is_per_thread_every_hit() -> None:
    from stax.capture.events import tracepoint_attr

    layout = rec.SampleLayout(rec.SAMPLE_TYPE | perf.SAMPLE_RAW)
    a = tracepoint_attr(372, True, True, 1 << 20, layout, True)
    assert a.type == perf.PERF_TYPE_TRACEPOINT and a.config == 372
    assert a.sample_period_or_freq == 1 and "freq" not in a.flags
    assert {"inherit", "context_switch", "enable_on_exec", "use_clockid"} <= set(a.flags)
    assert not {"mmap", "comm", "task"} & set(a.flags)
    assert a.sample_type & perf.SAMPLE_RAW


def test_zero_return_addresses_in_a_tracepoint_chain_are_skipped() -> None:
    p = Profile()
    sid = p.intern_chain(1, (rec.CONTEXT_KERNEL, 0xffffffff81000010, rec.CONTEXT_USER, 0x1000,
                             0, 0))
    n = 0
    while sid >= 0:
        n += 1
        sid = p.stack_parent[sid]
    assert n == 2


def test_threads_blocked_before_an_attach_are_seeded_from_proc() -> None:
    import os
    import threading

    r, w = os.pipe()
    t = threading.Thread(target=os.read, args=(r, 1))
    t.start()
    try:
        import time

        time.sleep(0.2)
        p = Profile()
        tid = t.native_id
        assert p.seed_blocked(os.getpid(), 1000) >= 1
        assert tid in p.offcpu.pending
        p.on_switch(False, False, os.getpid(), tid, 5000)
        i = list(p.intervals.tid).index(tid)
        assert offcpu.REASONS[p.intervals.reason[i]] == "ipc"
        assert p.intervals.duration_ns[i] == 4000 and p.intervals.stack[i] == -1
        # a switch-in stamped before the seed time (it had already woken): no interval
        p.offcpu.seed(tid, 9000, STATE_INTERRUPTIBLE, 0)
        assert p.offcpu.switch_in(tid, 8000) == -1
    finally:
        os.write(w, b"x")
        t.join()
        os.close(r)
        os.close(w)
