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


def test_soft_interrupts_at_the_next_schedule():
    state = {"rounds": 0}
    t = stackless.tasklet(polite)(state)
    assert stackless.run(BUDGET // 20, soft=True) is t
    rounds = state["rounds"]
    assert rounds >= 1
    assert t.paused
    t.insert()
    assert stackless.run(BUDGET // 20, soft=True) is t
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


def test_an_inner_timed_run_leaves_the_outer_one_its_own_budget():
    # run(timeout) in a tasklet of another timed run(): once the inner one has returned, the
    # outer one's watchdog goes on with the outer budget (seconds here), not with the inner one's
    # (about a millisecond): the outer tasklet then runs 0.3 s without switching, uninterrupted.
    log = []

    def outer_body():
        inner = stackless.tasklet(busy)({})
        log.append(stackless.run(BUDGET) is inner)
        inner.kill()
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            pass
        log.append("outer done")

    outer = stackless.tasklet(outer_body)()
    try:
        assert stackless.run(BUDGET * 10_000) is None
        assert log == [True, "outer done"]
    finally:
        outer.kill()


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
        second = stackless.run(BUDGET // 20, soft=True) is p and state["rounds"] >= 1
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
