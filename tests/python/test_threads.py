"""Tasklets and Python threads: each thread has its own scheduler and main tasklet, and a thread
that ends with tasklets still alive kills them (Stackless does) instead of leaving the C++
scheduler to resume Python code after the thread state is gone."""
import gc
import textwrap
import threading

import pytest

import stackless

from conftest import run_program


def test_each_thread_has_its_own_main_tasklet_and_run_queue():
    seen = {}

    def worker():
        main = stackless.getmain()
        log = []
        stackless.tasklet(log.append)("ran in the thread")
        seen["runcount before"] = stackless.getruncount()
        stackless.run()
        seen["log"] = log
        seen["main"] = main
        seen["is main"] = main is stackless.getcurrent()

    th = threading.Thread(target=worker)
    th.start()
    th.join(30)
    assert seen["runcount before"] == 2
    assert seen["log"] == ["ran in the thread"]
    assert seen["is main"] is True
    assert seen["main"] is not stackless.getmain()
    assert stackless.getruncount() == 1


THREAD_ENDS_WITH_TASKLETS = textwrap.dedent("""\
    import stackless, threading

    def worker():
        ch = stackless.channel()

        def blocked():
            try:
                ch.receive()
            finally:
                print("blocked tasklet unwound")

        def runnable():
            try:
                while True:
                    stackless.schedule()
            finally:
                print("runnable tasklet unwound")

        stackless.tasklet(blocked)()
        stackless.tasklet(runnable)()
        stackless.schedule()
        print("thread ends")

    for _ in range(3):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    print("main ends")
    """)


def test_a_thread_that_ends_with_tasklets_alive_kills_them(tmp_path):
    lines = run_program(tmp_path, THREAD_ENDS_WITH_TASKLETS)
    assert lines.count("thread ends") == 3
    assert lines.count("blocked tasklet unwound") == 3
    assert lines.count("runnable tasklet unwound") == 3
    assert lines[-1] == "main ends"


DROPPED_ON_ANOTHER_THREAD = textwrap.dedent("""\
    import gc, stackless, threading

    box = {}
    ready, go = threading.Event(), threading.Event()

    def worker():
        def body():
            try:
                stackless.schedule_remove()
            finally:
                print("paused tasklet unwound")

        t = stackless.tasklet(body)()
        stackless.run()  # body pauses itself
        box["t"] = t
        del t
        ready.set()
        go.wait(30)
        print("thread ends")

    th = threading.Thread(target=worker)
    th.start()
    ready.wait(30)
    del box["t"]  # the last reference goes on another thread than the tasklet's
    gc.collect()
    go.set()
    th.join()
    print("main ends")
    """)


def test_the_last_reference_to_a_paused_tasklet_dropped_on_another_thread(tmp_path):
    lines = run_program(tmp_path, DROPPED_ON_ANOTHER_THREAD)
    assert lines[0] == "thread ends"
    assert "paused tasklet unwound" in lines  # killed by its own thread as that thread ends
    assert lines[-1] == "main ends"


def test_tasklets_that_outlive_their_thread_read_as_ended_and_go_later():
    kept = []

    def worker(i):
        receiver = stackless.tasklet(stackless.channel().receive)()
        stackless.tasklet(lambda: None)()
        stackless.run()  # the receiver stays blocked until the thread ends
        assert receiver.blocked and receiver.thread_id == threading.get_ident()
        kept.append(receiver)
        kept.append(stackless.getcurrent() if i % 2 else stackless.tasklet(lambda: None))

    def run_threads(n):
        for i in range(n):
            th = threading.Thread(target=worker, args=(i,))
            th.start()
            th.join()

    run_threads(10)
    assert len(kept) == 20  # every worker got through its checks
    assert stackless.threads == [threading.get_ident()]  # the ended threads are gone
    for t in kept:
        assert t.thread_id == -1  # its thread has ended (Stackless's value)
        assert not (t.alive or t.paused or t.blocked or t.scheduled or t.is_current)
        assert t.next is None and t.prev is None
        with pytest.raises(RuntimeError, match="Target thread isn't initialised"):
            t.insert()
    del kept[:]
    gc.collect()
    run_threads(4)  # new threads may reuse the idents and addresses of the old ones
    assert len(kept) == 8 and all(t.thread_id == -1 for t in kept)


def test_a_tasklet_that_would_not_die_with_its_thread_refuses_throw_but_takes_kill():
    # It caught every TaskletExit when its thread ended (Stackless: a tasklet "without thread
    # state"): throw() has no thread to run the exception in; kill() passes, as in Stackless.
    box = {}

    def stubborn():
        while box.get("loop", True):
            try:
                stackless.getmain().run()
            except TaskletExit:
                pass

    def thread_main():
        box["t"] = t = stackless.tasklet(stubborn)()
        t.run()

    th = threading.Thread(target=thread_main)
    th.start()
    th.join()
    box["loop"] = False
    t = box["t"]
    assert t.thread_id == -1 and not t.alive
    with pytest.raises(RuntimeError, match="tasklet has no thread"):
        t.throw(TaskletExit, pending=True)
    t.kill(pending=True)
    assert not t.alive and not t.scheduled


LATE_TASKLET = textwrap.dedent("""\
    import stackless, threading

    local = threading.local()

    class MakesATaskletWhenFreed:
        def __del__(self):
            try:
                stackless.tasklet(stackless.channel().receive)()
                stackless.schedule()
                print("a tasklet was made and left blocked")
            except RuntimeError as e:
                print("refused:", e)

    def worker():
        stackless.getcurrent()  # the binding's end-of-thread hook enters the thread's dict first
        local.x = MakesATaskletWhenFreed()  # freed after it, while CPython clears the thread

    for _ in range(3):
        th = threading.Thread(target=worker)
        th.start()
        th.join()
    print("main ends")
    """)


def test_code_run_while_a_thread_is_torn_down_cannot_start_tasklets(tmp_path):
    # A tasklet made then would outlive the thread's Python state: nothing could end it while
    # Python still runs (it used to be killed later, running Python code with no thread state).
    lines = run_program(tmp_path, LATE_TASKLET)
    refusal = "refused: stackless: this thread is ending; it cannot run tasklets any more"
    assert lines == [refusal] * 3 + ["main ends"]


def test_bind_thread_moves_a_new_tasklet_to_the_thread_that_runs_it():
    import threading
    ran_on = []
    t = stackless.tasklet()
    t.bind(lambda: ran_on.append(threading.get_ident()), ())
    assert t.alive and not t.scheduled and t.thread_id == threading.get_ident()

    def worker():
        t.bind_thread()  # pull it to this thread
        assert t.thread_id == threading.get_ident()
        t.insert()
        stackless.run()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert ran_on == [thread.ident]
    assert not t.alive


def _steps_logging_threads(log):
    import threading
    for i in range(3):
        log.append((i, threading.get_ident()))
        stackless.schedule()


def test_bind_thread_hands_an_unpickled_tasklet_to_another_thread():
    import pickle
    import threading
    log = []
    t = stackless.tasklet(_steps_logging_threads)(log)
    t.run()
    t2, log2 = pickle.loads(pickle.dumps((t, log)))
    t.kill()
    ready, done = threading.Event(), threading.Event()
    idents = []

    def worker():
        idents.append(threading.get_ident())
        stackless.getcurrent()  # this thread uses stackless
        ready.set()
        done.wait(10)
        t2.insert()
        stackless.run()

    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait(10)
    t2.bind_thread(idents[0])  # push it from here
    assert t2.thread_id == idents[0]
    t2.insert()  # into the queue of its thread, which runs it
    assert t2.scheduled
    done.set()
    thread.join()
    assert [i for i, _ in log2] == [0, 1, 2]
    assert log2[0][1] == threading.get_ident() and {who for _, who in log2[1:]} == {idents[0]}


def test_bind_thread_refuses_what_cannot_move():
    import threading
    started = stackless.tasklet(stackless.schedule_remove)()
    started.run()
    with pytest.raises(RuntimeError, match="C state on its stack"):
        started.bind_thread(threading.get_ident() + 1)
    with pytest.raises(ValueError, match="no thread"):
        stackless.tasklet(lambda: None).bind_thread(12345)
    scheduled = stackless.tasklet(lambda: None)()

    def worker():
        try:
            scheduled.bind_thread()
        except RuntimeError as e:
            errors.append(str(e))

    errors = []
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "can't (re)bind a runnable tasklet" in errors[0]
    started.kill()
    stackless.run()


def test_the_collector_in_one_thread_traverses_a_channel_another_threads_tasklets_wait_on():
    # Regression: the collector of the main thread visited the channel, whose waiters belong to
    # the worker thread; reading them raised a C++ error out of a noexcept function, which
    # terminated the process (seen under load in thread_operations.py).
    import gc
    import threading
    shared = {}
    blocked, finish = threading.Event(), threading.Event()

    def worker():
        ch = stackless.channel()
        shared["ch"] = ch
        stackless.tasklet(ch.receive)()
        stackless.run()  # the tasklet blocks on ch
        blocked.set()
        finish.wait(10)
        ch.send("bye")

    thread = threading.Thread(target=worker)
    thread.start()
    assert blocked.wait(10)
    assert shared["ch"].balance == -1
    gc.collect()  # traverses the worker's channel from this thread
    finish.set()
    thread.join()
    assert shared["ch"].balance == 0
