"""stackless.run(timeout): a tasklet that runs about `timeout` instructions without switching is
interrupted, taken out of the run queue and returned (Stackless's watchdog; issue 5). The
budget is turned into time (docs/python.md), so these tests use budgets far from the work
they interrupt or let finish."""
import threading
import time

import pytest
import stackless

BUDGET = 200_000  # about a millisecond here


def busy(state):
    state["n"] = 0
    while True:
        state["n"] += 1


def test_a_busy_tasklet_is_interrupted_returned_and_goes_on_when_inserted():
    state = {}
    t = stackless.tasklet(busy)(state)
    interrupted = stackless.run(BUDGET)
    assert interrupted is t
    assert t.alive and t.paused and not t.scheduled
    first = state.get("n", 0)
    for _ in range(100):  # (on a loaded machine an interruption may come before any progress)
        t.insert()
        assert stackless.run(BUDGET) is t
        if state["n"] > first:
            break
    assert state["n"] > first  # it went on from where it was
    t.kill()


def test_tasklets_that_switch_are_not_interrupted():
    # The budget (about 10 ms here) is far longer than the time between two switches (well
    # under a microsecond) and a fifth of the whole run (about 50 ms): only a watchdog that
    # starts again at each switch lets the run end by itself. (Generous, so that the OS pausing
    # the process does not look like a tasklet that stopped switching.)
    log = []

    def polite(name):
        for i in range(300_000):
            log.append(name)
            stackless.schedule()

    stackless.tasklet(polite)("a")
    stackless.tasklet(polite)("b")
    start = time.perf_counter()
    assert stackless.run(3_000_000) is None
    elapsed_ns = (time.perf_counter() - start) * 1e9
    assert log.count("a") == 300_000 and log.count("b") == 300_000
    import _stackless_pickle
    assert elapsed_ns > 2 * 3_000_000 * _stackless_pickle.ns_per_instruction()  # it was tested


def test_the_others_run_after_the_interrupted_one_is_put_aside():
    log, state = [], {}
    t = stackless.tasklet(busy)(state)
    stackless.tasklet(log.append)("other")
    assert stackless.run(BUDGET) is t
    assert log == []  # run() returned at the interruption
    assert stackless.run(BUDGET) is None  # the other one runs; the busy one is paused
    assert log == ["other"]
    t.kill()


def careful(state):
    """Counts in an atomic section, rounds of 200,000 (well beyond the budget), for ever."""
    while True:
        with stackless.atomic():
            for _ in range(200_000):
                state["inside"] += 1
        state["outside"] += 1


def polite(state):
    """Computes for a while (beyond a twentieth of the budget), then schedules, for ever."""
    while True:
        for _ in range(50_000):
            pass
        state["rounds"] += 1
        stackless.schedule()


def test_an_atomic_section_is_never_interrupted():
    state = {"inside": 0, "outside": 0}
    t = stackless.tasklet(careful)(state)
    assert stackless.run(BUDGET // 10) is t
    # Interrupted only outside the atomic section: the count inside is a whole number of rounds.
    assert state["inside"] == 200_000 * state["outside"] or \
        state["inside"] == 200_000 * (state["outside"] + 1)
    assert state["inside"] % 200_000 == 0
    t.kill()


def test_soft_returns_none_at_the_next_switch_and_leaves_the_tasklet_runnable():
    # Stackless: run(timeout, soft=True) returns None at the first switch after the time is up,
    # and the tasklets stay in the run queue (checked against Stackless 3.7).
    state = {"rounds": 0}
    t = stackless.tasklet(polite)(state)
    assert stackless.run(BUDGET // 20, soft=True) is None
    rounds = state["rounds"]
    assert rounds >= 1
    assert t.scheduled and not t.paused
    assert stackless.getruncount() == 2
    assert stackless.run(BUDGET // 20, soft=True) is None
    assert state["rounds"] > rounds
    t.kill()


def test_totaltimeout_counts_the_whole_call():
    log = []

    def polite():
        while True:
            log.append(1)
            stackless.schedule()

    t1 = stackless.tasklet(polite)()
    t2 = stackless.tasklet(polite)()
    try:
        # They switch all the time: only a budget for the whole call interrupts one of them.
        interrupted = stackless.run(BUDGET * 10, totaltimeout=True)
        assert interrupted in (t1, t2)
        assert len(log) > 0
    finally:
        t1.kill()
        t2.kill()


def test_only_the_outermost_timed_run_counts():
    # Stackless: a run(timeout) called in a tasklet while another is active is a plain run();
    # the interruption returns to the outermost one, whose return makes the inner caller
    # runnable again; the inner run() then returns None. (The same log as Stackless 3.7's.)
    log = []

    def a_body():
        b = stackless.tasklet(busy)({})
        log.append(("inner", stackless.run(100_000_000)))  # far beyond the outer budget
        log.append(("b", b.alive, b.paused))
        b.kill()

    a = stackless.tasklet(a_body)()
    r = stackless.run(BUDGET)
    log.append(("outer", r is not None and r is not a, a.scheduled, stackless.getruncount()))
    stackless.run()
    assert log == [("outer", True, True, 2), ("inner", None), ("b", True, True)]


def test_a_timed_run_with_totaltimeout_in_a_tasklet_returns_the_interrupted_one():
    # It used to never return: the interruption went to the innermost run().
    done = []

    def task():
        while True:
            for i in range(500):
                i = i
            stackless.schedule()

    t1 = stackless.tasklet(task)()
    t2 = stackless.tasklet(task)()

    def runner():
        r = stackless.run(2, totaltimeout=True)
        done.append((r in (t1, t2), r.paused if r is not None else None))
        t1.kill()
        t2.kill()

    stackless.tasklet(runner)()
    stackless.run()
    assert done == [(True, True)]


def test_a_loop_that_jumps_to_itself_is_interrupted():
    # `while True: pass` is one JUMP_BACKWARD to itself: it starts no line, and 3.11 reports a
    # backward jump as a line only when it lands on an earlier instruction.
    for budget in (1_000, BUDGET):  # counted by the trace function / timed by the thread
        t = stackless.tasklet(self_jump)()
        assert stackless.run(budget) is t
        t.kill()


def self_jump():
    while True:
        pass


def loop_while_1():
    x = 0
    while 1:
        x += 1


def loop_for():
    for _ in iter(int, 1):  # endless
        pass


def loop_nested_calls():
    def inner(n):
        return n + 1

    def outer(n):
        return inner(n) + inner(n)

    n = 0
    while True:
        n = outer(n) % 1000


def loop_comprehension():
    while True:
        [i * 2 for i in range(100)]


@pytest.mark.parametrize("shape", [self_jump, loop_while_1, loop_for, loop_nested_calls,
                                   loop_comprehension])
@pytest.mark.parametrize("budget", [1_000, BUDGET])
def test_every_loop_shape_is_interrupted(shape, budget):
    t = stackless.tasklet(shape)()
    assert stackless.run(budget) is t
    t.insert()
    assert stackless.run(budget) is t  # and again after it went on
    t.kill()


def test_soft_with_totaltimeout_over_a_chain_of_channels_returns():
    # Stackless's test_channelchain: the tasklets only switch through channels, never by
    # schedule(); a soft run() returns at the next switch after the time is up (it used to wait
    # for a schedule() that never came), leaving them all in place.
    chans = [stackless.channel() for _ in range(3)]

    def link(i):
        a, b = i, (i + 1) % 3
        first = i == 0
        while True:
            if not first:
                chans[a].receive()
            first = False
            j = 0
            for k in range(300):
                j = k + k
            chans[b].send(j)

    ts = [stackless.tasklet(link)(i) for i in range(3)]
    try:
        for _ in range(5):
            assert stackless.run(50_000, soft=True, totaltimeout=True) is None
            assert stackless.getruncount() in (3, 4)
    finally:
        for t in ts:
            t.kill()


def test_no_interruption_inside_the_schedule_callback():
    # A schedule callback is Python code that runs during a switch: an interruption there used to
    # leave tasklets paused that run() never returned.
    calls = []

    def callback(prev, next):
        calls.append(1)
        x = 0
        for i in range(200):
            x += i

    def work(n, out):
        x = 0
        for i in range(n):
            x += 1
        out.append(x)

    out = []
    ts = [stackless.tasklet(work)(20_000, out) for _ in range(3)]
    stackless.set_schedule_callback(callback)
    try:
        for _ in range(100_000):
            if stackless.getruncount() == 1:
                break
            r = stackless.run(300)
            if r is not None:
                assert r in ts and r.paused
                r.insert()
    finally:
        stackless.set_schedule_callback(None)
    assert out == [20_000] * 3
    assert not any(t.alive for t in ts)
    assert calls


def test_a_long_c_call_does_not_leave_the_tasklet_unwatched():
    # A C call that holds the GIL lets many deadlines pass while the main thread runs no pending
    # calls. The tasklet is still interrupted afterwards: it used to run on unwatched once
    # CPython's short queue of pending calls had filled up with the watchdog's calls.
    state = {}

    def worker():
        sum(range(5_000_000))  # tens of milliseconds: a thousand budgets and more
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            pass
        state["finished"] = True

    t = stackless.tasklet(worker)()
    try:
        assert stackless.run(BUDGET // 20) is t
        assert "finished" not in state
    finally:
        t.kill()


def test_an_exception_in_a_tasklet_still_reaches_run():
    def fails():
        raise ValueError("boom")

    stackless.tasklet(fails)()
    with pytest.raises(ValueError, match="boom"):
        stackless.run(BUDGET * 1000)  # (not interrupted first, even on a loaded machine)


def in_threads(*bodies):
    """Runs each body in its own thread; returns what each returned or raised."""
    results = [None] * len(bodies)

    def call(i, body):
        try:
            results[i] = body()
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=call, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a timed run() in a thread did not return"
    return results


def test_a_busy_tasklet_of_another_thread_is_interrupted_there():
    def body():
        state = {}
        t = stackless.tasklet(busy)(state)
        interrupted = stackless.run(BUDGET)
        ok = interrupted is t and t.paused and t.thread_id == threading.get_ident()
        t.insert()
        again = stackless.run(BUDGET) is t  # it goes on, and is interrupted again
        t.kill()
        return ok and again and state["n"] > 0

    assert in_threads(body) == [True]


def test_timed_runs_in_several_threads_at_once_are_interrupted_each_in_its_own_thread():
    results = {}

    def body(tag):
        state = {}
        t = stackless.tasklet(busy)(state)
        got = stackless.run(BUDGET)
        results[tag] = (got is t, t.thread_id == threading.get_ident())
        t.kill()

    threads = [threading.Thread(target=body, args=(tag,)) for tag in "ab"]
    for th in threads:
        th.start()
    body("main")  # the main thread's, while the others run theirs
    for th in threads:
        th.join(120)
        assert not th.is_alive()
    assert results == {"a": (True, True), "b": (True, True), "main": (True, True)}


def test_soft_and_atomic_in_another_thread():
    def body():
        state = {"inside": 0, "outside": 0, "rounds": 0}
        t = stackless.tasklet(careful)(state)
        first = stackless.run(BUDGET // 10) is t and state["inside"] % 200_000 == 0
        t.kill()
        p = stackless.tasklet(polite)(state)
        second = stackless.run(BUDGET // 20, soft=True) is None and state["rounds"] >= 1 and \
            p.scheduled
        p.kill()
        return first, second

    assert in_threads(body) == [(True, True)]


def test_a_thread_with_a_timed_run_does_not_disturb_another_threads_plain_run():
    log = []

    def timed():
        t = stackless.tasklet(busy)({})
        got = stackless.run(BUDGET)
        t.kill()
        return got is t

    def plain():
        def work():
            total = 0
            for i in range(3_000_000):  # far beyond the other thread's budget
                total += i
            log.append(total)
        stackless.tasklet(work)()
        return stackless.run()

    assert in_threads(timed, plain) == [True, None]
    assert log == [sum(range(3_000_000))]


def counting(state, limit):
    total = 0
    for i in range(limit):
        total += i
        state["i"] = i
    state["total"] = total


def test_an_interrupted_tasklet_pickles_and_finishes_after_unpickling():
    import pickle
    state = {}
    t = stackless.tasklet(counting)(state, 30_000_000)
    assert stackless.run(BUDGET) is t
    assert state.get("i", -1) < 30_000_000 - 1  # interrupted before the end of the loop
    assert t.restorable
    t2, state2 = pickle.loads(pickle.dumps((t, state)))
    t.kill()
    assert t2.paused
    t2.insert()
    while True:  # it may be interrupted again; each time it goes on
        r = stackless.run(BUDGET * 50)
        if r is None:
            break
        r.insert()
    assert state2["total"] == sum(range(30_000_000))
    assert not t2.alive


def test_preemption_works_in_a_forked_child():
    import os
    state = {}
    stackless.tasklet(busy)(state)
    first = stackless.run(BUDGET)
    assert first is not None
    first.kill()
    pid = os.fork()
    if pid == 0:  # the child: its watchdog thread did not survive the fork; a new one starts
        code = 1
        try:
            t = stackless.tasklet(busy)({})
            code = 0 if stackless.run(BUDGET) is t else 2
            t.kill()
        finally:
            os._exit(code)
    import time
    deadline = time.monotonic() + 60  # a child that is never interrupted would spin forever
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("run(timeout) did not interrupt the busy tasklet in the forked child")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_the_watchdog_list_shows_the_run_callers_as_stackless_does():
    # get_thread_info(-1, 1 << 31)[3]: [caller of the active timed run() or None, callers of
    # run() outermost first], one list kept up to date (Stackless's test suite watches it).
    seen = []
    wd = stackless.get_thread_info(-1, 1 << 31)[3]
    assert wd == [None]
    main = stackless.getmain()
    tasklets = []

    def worker():
        seen.append(list(wd))

    def watchdog2():
        tasklets.append(stackless.tasklet(worker)())
        stackless.run()

    def watchdog1():
        tasklets.append(stackless.tasklet(watchdog2)())
        stackless.run(100_000_000, totaltimeout=True)

    w1 = stackless.tasklet(watchdog1)()
    stackless.run()
    assert seen == [[w1, main, w1, tasklets[0]]]
    assert wd == [None]
    assert stackless.get_thread_info(-1, 1 << 31)[3] is wd


def test_a_tiny_budget_still_lets_a_tasklet_run_a_few_lines():
    # Stackless's test_watchdog_on_tasklet: with run(150, totaltimeout=True) in a tasklet, a
    # tasklet that has one line left finishes, and one of the busy ones is interrupted. (The time
    # of the switches alone used to use up such a budget: the one-line tasklet was interrupted.)
    log = []

    def one_line_left():
        stackless.schedule()
        log.append("finished")

    def task():
        while True:
            for i in range(500):
                i = i
            stackless.schedule()

    stackless.tasklet(one_line_left)()
    t1 = stackless.tasklet(task)()
    t2 = stackless.tasklet(task)()

    def runner():
        r = stackless.run(150, totaltimeout=True)
        log.append(r in (t1, t2))
        t1.kill()
        t2.kill()

    stackless.tasklet(runner)()
    stackless.run()
    assert log == ["finished", True]


def test_a_small_budget_interrupts_in_another_thread_too():
    # Counted by the trace function, which needs neither pending calls nor the GIL's hand-over.
    def body():
        results = []
        for shape in (self_jump, loop_while_1, loop_nested_calls):
            t = stackless.tasklet(shape)()
            results.append(stackless.run(1_000) is t)
            t.kill()
        return results

    assert in_threads(body) == [[True, True, True]]


def test_a_small_budget_returns_the_interrupted_tasklet():
    # Stackless's test_watchdog get_pickled_tasklet: run(100) on a tasklet with a loop of 1,000
    # iterations returns it, unfinished. (The watchdog thread alone woke up too late: the loop
    # had ended and run() returned None.)
    def runtask_print(name):
        x = 0
        for ii in range(1000):
            x += 1
        return name

    t = stackless.tasklet(runtask_print)("pickleme")
    assert stackless.run(100) is t
    assert t.alive and t.paused and t.restorable
    t.insert()
    while True:
        r = stackless.run(100)
        if r is None:
            break
        assert r is t
        r.insert()
    assert not t.alive
