"""greenlet and gevent in the same process as tasklets (greenlet_state.cpp): each tasklet hosts its
own greenlets, as each thread does for greenlet; a greenlet of another tasklet is refused with
greenlet.error, as one of another thread. Each case runs in a process of its own: these were
segmentation faults."""
import textwrap

import pytest

from conftest import run_program

pytest.importorskip("greenlet")

GREENLETS_PER_TASKLET = textwrap.dedent("""\
    import stackless, greenlet

    log = []

    def steps(name):
        for i in range(3):
            log.append((name, i))
            greenlet.getcurrent().parent.switch()

    def tasklet_body(name):
        g = greenlet.greenlet(steps)
        g.switch(name)            # starts it: greenlets of this tasklet, on its C stack
        stackless.schedule()      # the other tasklet runs its own greenlet meanwhile
        g.switch()
        stackless.schedule()
        g.switch()
        log.append((name, "main", greenlet.getcurrent().parent is None))

    stackless.tasklet(tasklet_body)("a")
    stackless.tasklet(tasklet_body)("b")
    stackless.run()
    print(log)
    """)


def test_each_tasklet_switches_among_its_own_greenlets(tmp_path):
    lines = run_program(tmp_path, GREENLETS_PER_TASKLET)
    assert lines == [str([("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("a", "main", True),
                          ("b", 2), ("b", "main", True)])]


GREENLET_OF_ANOTHER_TASKLET = textwrap.dedent("""\
    import greenlet  # before stackless: its state is found at the first switch
    import stackless

    kept = {}

    def parked():
        greenlet.getcurrent().parent.switch("parked")
        print("resumed in its own tasklet")

    def maker():
        kept["g"] = greenlet.greenlet(parked)
        print(kept["g"].switch())
        stackless.schedule()
        kept["g"].switch()

    def other():
        for attempt in (lambda: kept["g"].switch(), lambda: kept["g"].throw(ValueError)):
            try:
                attempt()
            except greenlet.error as e:
                print("refused:", e)

    stackless.tasklet(maker)()
    stackless.tasklet(other)()
    stackless.run()
    print("end")
    """)


def test_a_greenlet_of_another_tasklet_is_refused_not_a_crash(tmp_path):
    lines = run_program(tmp_path, GREENLET_OF_ANOTHER_TASKLET)
    assert lines == ["parked", "refused: cannot switch to a different thread",
                     "refused: cannot switch to a different thread",
                     "resumed in its own tasklet", "end"]


GEVENT_IN_TWO_TASKLETS = textwrap.dedent("""\
    import gevent, greenlet, stackless

    def sleeper(name):
        try:
            gevent.sleep(0.001)
            print(name, "slept")
        except greenlet.error as e:
            print(name, "refused:", e)

    stackless.tasklet(sleeper)("a")  # gevent's hub (one per thread) begins in this tasklet
    stackless.tasklet(sleeper)("b")
    stackless.run()
    stackless.tasklet(sleeper)("c")
    stackless.run()
    print("end")
    """)


def test_gevent_sleep_in_two_tasklets_is_refused_in_the_second_not_a_crash(tmp_path):
    pytest.importorskip("gevent")
    lines = run_program(tmp_path, GEVENT_IN_TWO_TASKLETS)
    assert lines == ["a slept", "b refused: cannot switch to a different thread",
                     "c refused: cannot switch to a different thread", "end"]


MANY_TASKLETS_WITH_GREENLETS = textwrap.dedent("""\
    import gc, threading, tracemalloc
    import greenlet, stackless

    def body(i):
        g = greenlet.greenlet(lambda: greenlet.getcurrent().parent.switch(i) or i)
        assert g.switch() == i
        stackless.schedule()
        assert g.switch() == i and g.dead  # it finished: nothing left of this tasklet's state

    def batch():
        for i in range(200):
            stackless.tasklet(body)(i)
        stackless.run()

    batch()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(10):
        batch()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    print("grown", grown < 200 * 1000)  # the states of ended tasklets serve the next ones

    def in_thread():
        batch()
        print("thread ok")

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    print("end")
    """)


def test_greenlet_states_of_ended_tasklets_are_reused(tmp_path):
    lines = run_program(tmp_path, MANY_TASKLETS_WITH_GREENLETS)
    assert lines == ["grown True", "thread ok", "end"]


KILLED_INSIDE_A_GREENLET = textwrap.dedent("""\
    import threading
    import greenlet, stackless

    log = []

    def inner():
        try:
            stackless.schedule_remove()  # paused while a greenlet of its own runs
        except TaskletExit:
            log.append("exit in greenlet")
            raise

    def body():
        try:
            greenlet.greenlet(inner).switch()
        except TaskletExit:
            log.append("exit reached the tasklet")
            raise

    t = stackless.tasklet(body)()
    stackless.run()
    t.kill()
    print(log, t.alive)

    def thread_main():
        stackless.tasklet(body)()
        stackless.run()  # left paused inside its greenlet: killed when the thread ends

    th = threading.Thread(target=thread_main)
    th.start()
    th.join()
    print(len(log))
    """)


def test_a_tasklet_killed_inside_one_of_its_greenlets_unwinds_both(tmp_path):
    lines = run_program(tmp_path, KILLED_INSIDE_A_GREENLET)
    assert lines == ["['exit in greenlet', 'exit reached the tasklet'] False", "4"]


BLOCKED_WITH_A_SUSPENDED_GREENLET = textwrap.dedent("""\
    # More tasklets block than there are stack slots, each with a greenlet of its own suspended:
    # their C stacks must be kept (saved), not dropped, for those greenlets to go on.
    import stackless, greenlet

    ch = stackless.channel()
    log = []

    def parked(i):
        log.append(greenlet.getcurrent().parent.switch(i))

    def body(i):
        g = greenlet.greenlet(parked)
        assert g.switch(i) == i
        g.switch(ch.receive())

    for i in range(600):
        stackless.tasklet(body)(i)
    stackless.run()
    for i in range(600):
        ch.send(i)
    stackless.run()
    print(sorted(log) == list(range(600)))
    """)


def test_blocked_tasklets_with_suspended_greenlets_keep_their_stacks(tmp_path):
    assert run_program(tmp_path, BLOCKED_WITH_A_SUSPENDED_GREENLET) == ["True"]


REBOUND_WITH_A_SUSPENDED_GREENLET = textwrap.dedent("""\
    import stackless, greenlet

    kept = {}

    def parked():
        greenlet.getcurrent().parent.switch()
        print("must not run: its stack went with the rebound tasklet's")

    def holder():
        kept["g"] = greenlet.greenlet(parked)
        kept["g"].switch()
        stackless.schedule_remove()

    def again():
        try:
            kept["g"].switch()
        except greenlet.error as e:
            print("refused:", e)

    t = stackless.tasklet(holder)()
    stackless.run()
    t.bind(None)  # drops its frames and C stack
    t.bind(again, ())
    t.insert()
    stackless.run()
    print("end")
    """)


def test_a_greenlet_of_a_rebound_tasklet_is_refused_to_its_next_run(tmp_path):
    assert run_program(tmp_path, REBOUND_WITH_A_SUSPENDED_GREENLET) == [
        "refused: cannot switch to a different thread", "end"]


ENDED_WITH_A_SUSPENDED_GREENLET = textwrap.dedent("""\
    import stackless, greenlet

    kept = {}

    def parked():
        greenlet.getcurrent().parent.switch()
        print("must not run: its stack went with the tasklet's first run")

    def first():
        kept["g"] = greenlet.greenlet(parked)
        kept["g"].switch()  # the tasklet ends with it suspended

    def second():
        try:
            kept["g"].switch()
        except greenlet.error as e:
            print("refused:", e)

    t = stackless.tasklet(first)()
    stackless.run()
    t.bind(second, ())  # the same tasklet object, run again
    t.insert()
    stackless.run()
    print("end")
    """)


def test_a_greenlet_left_by_an_ended_tasklet_is_refused_when_it_runs_again(tmp_path):
    assert run_program(tmp_path, ENDED_WITH_A_SUSPENDED_GREENLET) == [
        "refused: cannot switch to a different thread", "end"]
