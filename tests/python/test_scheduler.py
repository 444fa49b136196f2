"""The scheduler: schedule, schedule_remove, run, the run queue's round-robin order,
tasklet.run/switch, runcount, module attributes, threads, and the Phase-1 module functions
(enable_softswitch, get_thread_info, switch_trap) (stackless.rst, scheduler.rst, tasklets.rst)."""
import textwrap
import threading

import pytest

import stackless
from conftest import run_program


def test_listing2_run_interleaves_two_tasklets():
    log = []

    def f(c):
        log.append(c + " before")
        stackless.schedule()
        log.append(c + " after")

    stackless.tasklet(f)("a")
    stackless.tasklet(f)("b")
    stackless.run()
    assert log == ["a before", "b before", "a after", "b after"]


def test_listing1_schedule_from_main():
    log = []

    def f():
        log.append("1")
        stackless.schedule()
        log.append("2")

    t = stackless.tasklet(f)()
    assert log == []
    stackless.schedule(None)
    log.append("main")
    assert t.alive is True
    assert t.scheduled is True
    assert stackless.getruncount() == 2
    stackless.schedule(None)
    log.append("main")
    assert log == ["1", "main", "2", "main"]
    assert t.alive is False


def test_schedule_with_nothing_else_runnable_returns_at_once():
    assert stackless.schedule() is stackless.getcurrent()
    assert stackless.schedule(None) is None
    assert stackless.schedule(42) == 42
    assert stackless.getruncount() == 1


def test_schedule_returns_its_retval_argument_after_the_round():
    seen = []

    def f():
        seen.append(stackless.schedule("value"))
        seen.append(stackless.schedule() is stackless.getcurrent())
        seen.append(stackless.schedule(retval=None))

    stackless.tasklet(f)()
    stackless.tasklet(lambda: [stackless.schedule() for _ in range(3)])()
    stackless.run()
    assert seen == ["value", True, None]


def test_run_with_nothing_runnable_returns_at_once():
    assert stackless.run() is None
    assert stackless.getruncount() == 1


def test_schedule_is_round_robin_including_main():
    log = []

    def worker(name):
        for r in range(3):
            log.append("%s%d" % (name, r))
            stackless.schedule()

    for name in "ABC":
        stackless.tasklet(worker)(name)
    for r in range(3):
        stackless.schedule()
        log.append("main")
    assert log == ["A0", "B0", "C0", "main", "A1", "B1", "C1", "main", "A2", "B2", "C2", "main"]
    assert stackless.getruncount() == 4  # each is still inside its last schedule()
    stackless.schedule()
    assert stackless.getruncount() == 1


def test_runcount_counts_runnable_tasklets_including_current():
    counts = []
    assert stackless.getruncount() == 1
    stackless.tasklet(lambda: counts.append(stackless.getruncount()))()
    stackless.tasklet(lambda: counts.append(stackless.runcount))()
    assert stackless.getruncount() == 3
    assert stackless.runcount == 3
    stackless.run()
    # main left the queue for run(): the first sees itself and the second, the second itself
    assert counts == [2, 1]
    assert stackless.getruncount() == 1


def test_module_attributes_follow_the_current_tasklet():
    seen = []

    def f():
        seen.append((stackless.current is t, stackless.getcurrent() is t,
                     stackless.main is stackless.getmain(), stackless.main is not t))

    t = stackless.tasklet(f)()
    stackless.run()
    assert seen == [(True, True, True, True)]
    assert stackless.current is stackless.main


def test_schedule_remove_pauses_the_current_tasklet_until_inserted():
    log = []

    def f():
        log.append("start")
        log.append(stackless.schedule_remove("retval"))
        log.append("resumed")

    t = stackless.tasklet(f)()
    stackless.run()
    assert log == ["start"]
    assert t.alive is True
    assert t.paused is True
    assert t.scheduled is False
    assert t.blocked is False
    assert stackless.getruncount() == 1
    stackless.run()  # nothing to run: t is paused
    assert log == ["start"]
    t.insert()
    assert t.scheduled is True
    assert stackless.getruncount() == 2
    stackless.run()
    assert log == ["start", "retval", "resumed"]
    assert t.alive is False


def test_schedule_remove_returns_the_current_tasklet_by_default():
    seen = []

    def f():
        seen.append(stackless.schedule_remove() is stackless.getcurrent())

    t = stackless.tasklet(f)()
    stackless.run()
    t.insert()
    stackless.run()
    assert seen == [True]


def test_schedule_remove_runs_the_next_tasklet():
    log = []

    def a():
        log.append("a1")
        stackless.schedule_remove()
        log.append("a2")

    def b():
        log.append("b1")
        stackless.schedule()
        log.append("b2")

    ta = stackless.tasklet(a)()
    stackless.tasklet(b)()
    stackless.run()
    assert log == ["a1", "b1", "b2"]
    ta.insert()
    stackless.run()
    assert log == ["a1", "b1", "b2", "a2"]


def test_tasklets_created_by_tasklets_go_to_the_end():
    log = []

    def a():
        log.append("A")
        stackless.tasklet(log.append)("C")
        stackless.schedule()
        log.append("A again")

    def b():
        log.append("B")
        stackless.tasklet(log.append)("D")

    stackless.tasklet(a)()
    stackless.tasklet(b)()
    stackless.run()
    assert log == ["A", "B", "C", "A again", "D"]


def test_many_tasklets_many_rounds_stay_in_round_robin_order():
    order = []

    def f(me):
        for r in range(20):
            order.append((r, me))
            stackless.schedule()

    for i in range(50):
        stackless.tasklet(f)(i)
    stackless.run()
    assert order == [(r, i) for r in range(20) for i in range(50)]


def _chain_logger(log):
    def f(name):
        for i in range(2):
            log.append("%s:%d main %s" % (
                name, i, "scheduled" if stackless.getmain().scheduled else "paused"))
            stackless.schedule()
    return f


def test_tasklet_run_on_a_scheduled_tasklet_starts_the_ring_there():
    # tasklets.rst, tasklet.run(): "t1 is not the only tasklet that ran"
    log = []
    f = _chain_logger(log)
    t1 = stackless.tasklet(f)("t1")
    t2 = stackless.tasklet(f)("t2")
    t3 = stackless.tasklet(f)("t3")
    t1.run()
    assert log == ["t1:0 main scheduled", "t2:0 main scheduled", "t3:0 main scheduled"]
    assert stackless.getmain().next is t1
    del log[:]
    t2.run()  # t1 is before t2 in the ring: it is skipped
    assert log == ["t2:1 main scheduled", "t3:1 main scheduled"]
    del log[:]
    stackless.run()
    assert log == ["t1:1 main paused"]
    assert (t1.alive, t2.alive, t3.alive) == (False, False, False)


def test_tasklet_run_on_a_removed_tasklet_runs_only_it():
    # tasklets.rst: removing the tasklet first "gives more predictable results"
    log = []
    next_is_main = []

    def f(name):
        for i in range(2):
            log.append("%s:%d" % (name, i))
            if name == "t2" and i == 0:
                next_is_main.append(stackless.getcurrent().next is stackless.getmain())
            stackless.schedule()

    stackless.tasklet(f)("t1")
    t2 = stackless.tasklet(f)("t2")
    stackless.tasklet(f)("t3")
    assert t2.remove() is t2
    t2.run()
    assert log == ["t2:0"]
    assert next_is_main == [True]
    assert t2.scheduled is True
    del log[:]
    stackless.run()
    assert log == ["t1:0", "t3:0", "t2:1", "t1:1", "t3:1"]


def test_tasklet_run_of_a_paused_started_tasklet():
    log = []

    def f():
        log.append("t1")
        stackless.schedule_remove()
        log.append("t2")
        stackless.schedule()
        log.append("t3")

    t = stackless.tasklet(f)()
    stackless.tasklet(log.append)("other")
    stackless.schedule()  # t pauses, other ends, main resumes
    assert log == ["t1", "other"]
    assert t.paused is True
    t.run()  # t resumes at once; main stays runnable, so t's schedule() comes back to main
    assert log == ["t1", "other", "t2"]
    assert t.scheduled is True
    assert stackless.getruncount() == 2
    stackless.run()
    assert log == ["t1", "other", "t2", "t3"]


def test_switch_pauses_the_caller():
    # tasklets.rst, tasklet.switch(): like run(), but the calling tasklet is paused
    log = []
    f = _chain_logger(log)
    t1 = stackless.tasklet(f)("t1")
    t2 = stackless.tasklet(f)("t2")
    t1.switch()
    # both ran to their end; with nothing left to run, the paused main resumed
    assert log == ["t1:0 main paused", "t2:0 main paused", "t1:1 main paused",
                   "t2:1 main paused"]
    assert (t1.alive, t2.alive) == (False, False)


def test_switch_from_a_tasklet_pauses_that_tasklet():
    log = []
    b = stackless.tasklet(log.append)("b")
    b.remove()

    def a():
        log.append("a1")
        b.switch()
        log.append("a2")

    ta = stackless.tasklet(a)()
    stackless.run()
    assert log == ["a1", "b"]
    assert ta.paused is True
    assert b.alive is False
    ta.insert()
    stackless.run()
    assert log == ["a1", "b", "a2"]


def test_run_pauses_main_until_the_queue_is_empty():
    log = []

    def f():
        log.append("main paused" if stackless.getmain().paused else "main not paused")
        log.append("runcount %d" % stackless.getruncount())

    stackless.tasklet(f)()
    stackless.run()
    assert log == ["main paused", "runcount 1"]
    assert stackless.getmain().paused is False


def test_run_can_be_called_repeatedly_as_the_queue_refills():
    total = []
    for batch in range(1, 6):
        for i in range(batch):
            stackless.tasklet(total.append)(i)
        stackless.run()
        assert stackless.getruncount() == 1
    assert len(total) == 15


def test_long_chain_of_spawns_all_run():
    depth = []

    def step(n):
        depth.append(n)
        if n > 0:
            stackless.tasklet(step)(n - 1)

    stackless.tasklet(step)(999)
    stackless.run()
    assert len(depth) == 1000


MANY_TASKLETS_IN_CONSECUTIVE_RUNS = textwrap.dedent("""\
    import stackless

    def f(me, order):
        for r in range(3):
            order.append((r, me))
            stackless.schedule()

    for rep in range(3):
        order = []
        for i in range(600):
            stackless.tasklet(f)(i, order)
        stackless.run()
        assert order == [(r, i) for r in range(3) for i in range(600)], rep
        assert stackless.getruncount() == 1
        print("round", rep, "ok", flush=True)
    """)


def test_more_live_tasklets_than_stack_slots_in_consecutive_runs(tmp_path):
    # 600 tasklets alive at once, three times in a row on the same scheduler. In a subprocess,
    # so that a crash fails this test only.
    lines = run_program(tmp_path, MANY_TASKLETS_IN_CONSECUTIVE_RUNS)
    assert lines == ["round 0 ok", "round 1 ok", "round 2 ok"]


def test_run_with_a_timeout_that_nothing_reaches_is_the_cooperative_run():
    log = []
    t = stackless.tasklet(log.append)("ran")
    assert stackless.run(10_000_000) is None  # nothing ran long enough to be interrupted
    assert log == ["ran"] and not t.alive
    stackless.tasklet(log.append)("again")
    stackless.run(0)  # timeout 0 is the cooperative run()
    assert log == ["ran", "again"]


def test_enable_softswitch_is_a_flag_on_by_default():
    assert stackless.enable_softswitch(None) is True
    try:
        assert stackless.enable_softswitch(False) is True
        assert stackless.enable_softswitch(None) is False
        assert stackless.enable_softswitch(0) is False
    finally:
        assert stackless.enable_softswitch(True) is False
    assert stackless.enable_softswitch(None) is True


def test_get_thread_info_takes_minus_one_and_knows_threads_without_stackless():
    main = stackless.getmain()
    assert stackless.get_thread_info(-1) == (main, main, 1)
    ready, done = threading.Event(), threading.Event()
    t = threading.Thread(target=lambda: (ready.set(), done.wait(10)))
    t.start()
    try:
        ready.wait(10)
        assert stackless.get_thread_info(t.ident) == (None, None, 0)
    finally:
        done.set()
        t.join()
    with pytest.raises(RuntimeError, match="Thread id not found"):
        stackless.get_thread_info(t.ident)


def test_get_thread_info_flags_append_c_stack_serials_and_the_watchdog_list():
    # Stackless's undocumented second argument (its test support reads both): 1 << 30 appends
    # (serial, serial_last_jump, initial_stub), 1 << 31 the watchdog list.
    main = stackless.getmain()
    assert stackless.get_thread_info(-1, 0) == (main, main, 1)
    assert stackless.get_thread_info(-1, 1) == (main, main, 1)  # reserved bits: ignored
    serial, last_jump, stub = stackless.get_thread_info(-1, 1 << 30)[3:]
    assert last_jump == 0 and stub is None  # main runs on the thread's own stack
    seen = []

    def body():
        seen.append(stackless.get_thread_info(-1, (1 << 30) | (1 << 31))[3:])

    stackless.tasklet(body)()
    stackless.tasklet(body)()
    stackless.run()
    (s1, j1, _, wd1), (s2, j2, _, wd2) = seen
    assert (s1, j1) == (serial + 1, serial + 1) and (s2, j2) == (serial + 2, serial + 2)
    assert wd1 == wd2 == [None]  # no run(timeout) (Stackless 3.7 gives the same lists)
    assert stackless.get_thread_info(-1, 1 << 30)[3:5] == (serial + 2, 0)
    assert stackless.get_thread_info(-1, 1 << 31)[3] == [None]  # no run() active

    def timed():
        seen.append(stackless.get_thread_info(-1, 1 << 31)[3])

    stackless.tasklet(timed)()
    stackless.run(1000000)
    assert seen[-1] == [None]
    info = stackless.get_thread_info(-1, 1 << 31)
    assert info[:3] == (main, main, 1) and info[3] == [None]

    def fresh_thread():
        seen.append(stackless.get_thread_info(-1, 1 << 31)[3])

    t = threading.Thread(target=fresh_thread)
    t.start()
    t.join()
    assert seen[-1] is None  # that thread never called run()


def test_set_error_handler_takes_what_a_tasklet_leaves_uncaught():
    seen = []

    def handler(exc, val, tb):
        seen.append((exc, str(val), stackless.getcurrent()))

    def fail():
        raise ZeroDivisionError("boom")

    assert stackless.set_error_handler(handler) is None
    try:
        t = stackless.tasklet(fail)()
        stackless.run()
        assert seen == [(ZeroDivisionError, "boom", t)]
        # Thrown before it ran: handled in the tasklet too.
        t2 = stackless.tasklet(fail)()
        t2.throw(KeyError("early"))
        assert seen[-1][:2] == (KeyError, "'early'") and seen[-1][2] is t2
        # A handler that raises: that goes to the main tasklet.
        stackless.set_error_handler(lambda *a: 1 / 0)
        stackless.tasklet(fail)()
        with pytest.raises(ZeroDivisionError, match="division by zero"):
            stackless.run()
    finally:
        assert stackless.set_error_handler(None) is not None
    assert stackless.set_error_handler(None) is None


def test_taskletexit_is_a_builtin_and_the_module_refers_to_itself():
    import builtins
    assert builtins.TaskletExit is stackless.TaskletExit
    assert stackless.stackless is stackless


def test_get_thread_info_of_this_thread():
    ident = threading.get_ident()
    main = stackless.getmain()
    assert stackless.get_thread_info(ident) == (main, main, 1)
    info = stackless.get_thread_info(ident)
    assert info[0] is main and info[1] is main
    seen = []

    def f():
        seen.append(stackless.get_thread_info(ident))

    t = stackless.tasklet(f)()
    stackless.tasklet(lambda: None)()
    stackless.run()
    assert len(seen) == 1
    assert seen[0][0] is main
    assert seen[0][1] is t
    assert seen[0][2] == 2  # t and the second tasklet; main is out of the queue in run()


def test_get_thread_info_of_an_unknown_thread_is_runtime_error():
    with pytest.raises(RuntimeError):
        stackless.get_thread_info(2 ** 62 + 12345)


def test_switch_trap_forbids_switching():
    log = []
    t = stackless.tasklet(log.append)("ran")
    assert stackless.switch_trap(1) == 0
    try:
        assert stackless.switch_trap(0) == 1
        with pytest.raises(RuntimeError):
            stackless.schedule()
        with pytest.raises(RuntimeError):
            t.run()
        with pytest.raises(RuntimeError):
            stackless.run()
        assert log == []
        assert t.scheduled is True
        assert stackless.getruncount() == 2
        assert stackless.getcurrent() is stackless.getmain()
    finally:
        assert stackless.switch_trap(-1) == 1
    assert stackless.switch_trap(0) == 0
    stackless.run()
    assert log == ["ran"]


def test_switch_trap_allows_what_does_not_switch():
    assert stackless.switch_trap(1) == 0
    try:
        assert stackless.schedule("nobody else") == "nobody else"
    finally:
        stackless.switch_trap(-1)


def test_switch_trap_forbids_a_channel_action_that_would_switch():
    ch = stackless.channel()
    got = []
    r = stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.run()
    assert ch.balance == -1
    stackless.switch_trap(1)
    try:
        with pytest.raises(RuntimeError):
            ch.send(1)  # preference -1: the receiver would run at once
        # nothing changed
        assert ch.balance == -1
        assert r.blocked is True
        assert got == []
        assert stackless.getruncount() == 1
    finally:
        stackless.switch_trap(-1)
    ch.send(2)
    assert got == [2]


# --- threads -------------------------------------------------------------------------------


def test_each_thread_has_its_own_main_tasklet_and_scheduler():
    # threads.rst, "A scheduler per thread"
    here = stackless.tasklet(lambda: None)()  # this thread's queue now has two tasklets
    result = {}

    def thread_main():
        m = stackless.getmain()
        result["own main"] = (m.is_main, m is stackless.getcurrent(), m.is_current,
                              m is not here, m.thread_id == threading.get_ident())
        result["runcount"] = stackless.getruncount()
        log = []

        def f(c):
            log.append(c + " before")
            stackless.schedule()
            log.append(c + " after")

        stackless.tasklet(f)("a")
        stackless.tasklet(f)("b")
        stackless.run()
        result["log"] = log
        result["runcount after"] = stackless.getruncount()
        result["main"] = m

    th = threading.Thread(target=thread_main)
    th.start()
    th.join(30)
    assert not th.is_alive()
    assert result["own main"] == (True, True, True, True, True)
    assert result["runcount"] == 1
    assert result["log"] == ["a before", "b before", "a after", "b after"]
    assert result["runcount after"] == 1
    assert result["main"] is not stackless.getmain()
    # this thread's scheduler was not touched
    assert stackless.getruncount() == 2
    assert here.scheduled is True
    stackless.run()
    assert here.alive is False


def test_get_thread_info_of_another_thread():
    ready, go_on = threading.Event(), threading.Event()
    box = {}

    def thread_main():
        box["main"] = stackless.getmain()
        box["t"] = stackless.tasklet(lambda: None)()
        box["ident"] = threading.get_ident()
        ready.set()
        go_on.wait(30)
        stackless.run()

    th = threading.Thread(target=thread_main)
    th.start()
    try:
        assert ready.wait(30)
        info = stackless.get_thread_info(box["ident"])
        assert info[0] is box["main"]
        assert info[1] is box["main"]
        assert info[2] == 2
    finally:
        go_on.set()
        th.join(30)
