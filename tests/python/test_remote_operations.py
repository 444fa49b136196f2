"""Operations on a tasklet of another thread (Stackless's inter-thread scheduling, tasklets.rst and
Stackless/unittests/test_thread.py): insert, remove, run, throw, raise_exception and kill are
carried out in the tasklet's own thread's run queue, and the tasklet runs there; switch() to
another thread's tasklet raises RuntimeError; next and prev read its chain there."""
import queue
import threading
import time

import pytest

import stackless

from conftest import run_program


class Worker:
    """A thread whose main tasklet drives its scheduler until stopped (Stackless's
    SchedulingThread), and runs functions sent to it (call) in its main tasklet."""

    def __init__(self, scheduling=True):
        self.scheduling = scheduling
        self.requests = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._main)
        self.thread.start()
        self.ident = self.call(threading.get_ident)

    def _main(self):
        stackless.getcurrent()  # this thread uses stackless
        while not self.stop.is_set():
            try:
                fn, box, done = self.requests.get(timeout=0.001)
            except queue.Empty:
                pass
            else:
                try:
                    box.append(fn())
                except BaseException as e:  # handed to the caller
                    box.append(e)
                done.set()
            if self.scheduling:
                stackless.run()

    def call(self, fn):
        box, done = [], threading.Event()
        self.requests.put((fn, box, done))
        assert done.wait(30)
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def join(self):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def worker():
    w = Worker()
    yield w
    w.join()


@pytest.fixture
def idle_worker():
    """A worker that does not schedule: its tasklets run only when it is told to."""
    w = Worker(scheduling=False)
    yield w
    w.join()


def wait_until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_insert_runs_the_tasklet_in_its_own_thread(worker):
    ran = []

    def made():
        t = stackless.tasklet(lambda: ran.append(threading.get_ident()))()
        t.remove()
        return t

    t = worker.call(made)
    assert t.paused
    before = stackless.getruncount()
    assert t.insert() is t
    assert stackless.getruncount() == before  # this thread's queue did not change
    wait_until(lambda: ran)
    assert ran == [worker.ident]
    assert not t.alive


def test_remove_takes_it_out_of_its_threads_queue_at_once(idle_worker):
    ran = []
    t = idle_worker.call(lambda: stackless.tasklet(ran.append)("ran"))
    assert t.scheduled
    before = stackless.getruncount()
    assert t.remove() is t
    assert not t.scheduled and t.paused
    assert stackless.getruncount() == before
    assert idle_worker.call(stackless.getruncount) == 1
    idle_worker.call(stackless.run)
    assert ran == []  # it left the queue before its thread ran it
    t.insert()
    assert idle_worker.call(stackless.getruncount) == 2
    idle_worker.call(stackless.run)
    assert ran == ["ran"]


def test_run_makes_it_run_next_in_its_thread_and_the_caller_goes_on(idle_worker):
    order = []

    def made():
        ts = [stackless.tasklet(order.append)(name) for name in "abc"]
        for t in ts:
            t.remove()
        return ts

    a, b, c = idle_worker.call(made)
    b.insert()
    c.insert()
    a.run()  # runs before b and c, there
    assert order == []  # not here: this thread went on
    assert a.scheduled
    idle_worker.call(stackless.run)
    assert order == ["a", "b", "c"]


def test_run_while_its_thread_waits_for_other_threads_wakes_it():
    # Stackless's TestRemoteSchedule.testRunOrder: the thread's main tasklet waits on a channel.
    order = []
    ch = stackless.channel()
    made = queue.Queue()

    def thread_main():
        ts = [stackless.tasklet(order.append)(name) for name in "abc"]
        for t in ts:
            t.remove()
        made.put(ts)
        order.append(ch.receive())  # waits for this thread (no deadlock: it may still send)

    th = threading.Thread(target=thread_main)
    th.start()
    a, b, c = made.get(timeout=30)
    time.sleep(0.05)  # let it begin to wait
    with stackless.atomic():
        b.insert()
        c.insert()
        a.run()
    wait_until(lambda: len(order) == 3)
    ch.send("done")
    th.join(30)
    assert order == ["a", "b", "c", "done"]


def test_a_blocked_tasklet_of_another_thread_cannot_be_run_or_inserted(worker):
    ch = stackless.channel()
    t = worker.call(lambda: stackless.tasklet(ch.receive)())
    wait_until(lambda: t.blocked)
    with pytest.raises(RuntimeError, match="blocked"):
        t.run()
    with pytest.raises(RuntimeError, match="blocked"):
        t.insert()
    with pytest.raises(RuntimeError, match="blocked"):
        t.remove()
    ch.send(None)
    wait_until(lambda: not t.alive)


@pytest.mark.parametrize("pending", [False, True])
def test_kill_unblocks_and_ends_it_in_its_own_thread(worker, pending):
    log = []
    ch = stackless.channel()

    def body():
        try:
            ch.receive()
        except TaskletExit:
            log.append(("exit", threading.get_ident()))
            raise

    t = worker.call(lambda: stackless.tasklet(body)())
    wait_until(lambda: t.blocked)
    t.kill(pending=pending)
    log.append("caller goes on")  # a kill across threads never switches here
    wait_until(lambda: not t.alive)
    assert log == ["caller goes on", ("exit", worker.ident)]
    assert ch.balance == 0


@pytest.mark.parametrize("how", ["throw", "throw pending", "raise_exception"])
def test_throw_raises_in_it_there(worker, how):
    log = []

    class Boom(Exception):
        pass

    def body():
        try:
            stackless.schedule_remove()  # paused
        except Boom as e:
            log.append((e.args, threading.get_ident()))

    t = worker.call(lambda: stackless.tasklet(body)())
    wait_until(lambda: t.paused)
    if how == "throw":
        t.throw(Boom("x"))
    elif how == "throw pending":
        t.throw(Boom, "x", pending=True)
    else:
        t.raise_exception(Boom, "x")
    wait_until(lambda: not t.alive)
    assert log == [(("x",), worker.ident)]


def test_throw_to_a_dead_tasklet_of_another_thread(worker):
    t = worker.call(lambda: stackless.tasklet(lambda: None)())
    wait_until(lambda: not t.alive)
    with pytest.raises(RuntimeError, match="dead tasklet"):
        t.throw(ValueError)
    t.throw(TaskletExit)  # ending an ended tasklet is no error
    t.kill()


def test_switch_to_a_tasklet_of_another_thread_is_refused(worker):
    # Stackless's SwitchTest.test_switch ("different thread"): switch() pauses the caller and
    # runs the target here, which a tasklet of another thread never does.
    t = worker.call(lambda: stackless.tasklet(stackless.schedule_remove)())
    wait_until(lambda: t.paused)
    with pytest.raises(RuntimeError, match="different thread"):
        t.switch()
    assert t.paused
    t.kill()
    wait_until(lambda: not t.alive)


def test_next_and_prev_read_its_threads_chain(idle_worker):
    a, b = idle_worker.call(lambda: (stackless.tasklet(lambda: None)(),
                                     stackless.tasklet(lambda: None)()))
    main = stackless.get_thread_info(idle_worker.ident)[0]
    assert a.next is b and b.prev is a
    assert b.next is main and a.prev is main
    idle_worker.call(stackless.run)


def test_bind_thread_of_a_runnable_or_started_tasklet_in_stacklesss_words(idle_worker):
    runnable = idle_worker.call(lambda: stackless.tasklet(lambda: None)())
    with pytest.raises(RuntimeError, match="can't \\(re\\)bind a runnable tasklet"):
        runnable.bind_thread()
    started = idle_worker.call(lambda: stackless.tasklet(stackless.schedule_remove)())
    idle_worker.call(stackless.run)
    assert started.paused
    with pytest.raises(RuntimeError, match="tasklet has C state on its stack"):
        started.bind_thread()
    started.kill()
    idle_worker.call(stackless.run)
    assert not started.alive


def test_operations_on_a_tasklet_whose_thread_ended():
    box = []
    th = threading.Thread(target=lambda: box.append(stackless.tasklet(lambda: None)()))
    th.start()
    th.join()
    t = box[0]
    assert t.thread_id == -1
    assert t.remove() is t  # nothing to do (Stackless)
    for op in (t.insert, t.run, t.switch):
        with pytest.raises(RuntimeError):
            op()
    with pytest.raises(RuntimeError, match="no thread"):
        t.throw(ValueError)
    t.kill()  # it ended with its thread
    assert t.block_trap is False
    t.__reduce__()  # as a dead tasklet (Stackless's DeadThreadTest.test_methods_on_dead)


REMOTE_OPERATIONS_STRESS = """\
import random, stackless, threading, time

# Threads operate on each other's tasklets at random while they run, block and end.
rng = random.Random(5)
tasklets = []
lock = threading.Lock()
ch = stackless.channel()

def body():
    for _ in range(20):
        if random.random() < 0.3:
            try:
                ch.send_exception(ValueError) if random.random() < 0.5 else ch.receive()
            except ValueError:
                pass
        stackless.schedule()

def worker(seed):
    r = random.Random(seed)
    for _ in range(200):
        with lock:
            tasklets.append(stackless.tasklet(body)())
            victims = r.sample(tasklets, min(3, len(tasklets)))
        for v in victims:
            op = r.choice(["insert", "remove", "run", "kill", "throw", "next", "bind_thread"])
            try:
                if op == "throw":
                    v.throw(KeyError, pending=r.random() < 0.5)
                elif op == "next":
                    v.next, v.prev
                else:
                    getattr(v, op)()
            except (RuntimeError, KeyError, ValueError):
                pass
        try:
            stackless.run(threadblock=False)
        except (KeyError, ValueError, RuntimeError):
            pass
    with lock:
        mine = [t for t in tasklets if t.thread_id == threading.get_ident()]
    for t in mine:
        try:
            t.kill()
        except RuntimeError:
            pass

threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
"""


def test_random_operations_across_threads_end_normally(tmp_path):
    assert run_program(tmp_path, REMOTE_OPERATIONS_STRESS)[-1] == "ok"


def test_setup_from_another_thread_runs_it_in_its_own_thread(worker):
    # Stackless's SetupFromDifferentThreadTest: it raised here, the test then left its thread
    # waiting, and the process did not exit.
    ran = []
    t = worker.call(lambda: stackless.tasklet(lambda x: ran.append((x, threading.get_ident()))))
    assert t.setup("arg") is t
    wait_until(lambda: ran)
    assert ran == [("arg", worker.ident)] and t.thread_id == worker.ident


def test_bind_from_another_thread_keeps_it_on_its_thread(idle_worker):
    ran = []
    t = idle_worker.call(stackless.tasklet)
    t.bind(ran.append, ("bound here",))
    assert t.alive and t.paused and t.thread_id == idle_worker.ident
    t.insert()
    idle_worker.call(stackless.run)
    assert ran == ["bound here"]
    started = idle_worker.call(lambda: stackless.tasklet(stackless.schedule_remove)())
    idle_worker.call(stackless.run)
    with pytest.raises(RuntimeError, match="C state"):
        started.bind(lambda: None, ())
    started.kill()
    idle_worker.call(stackless.run)


def test_block_trap_reads_and_sets_from_another_thread(idle_worker):
    t = idle_worker.call(lambda: stackless.tasklet(lambda: None)())
    assert t.block_trap is False
    t.block_trap = True
    assert idle_worker.call(lambda: t.block_trap) is True
    idle_worker.call(stackless.run)


def test_a_fresh_tasklet_of_an_ended_thread_can_be_bound_to_this_one():
    # Stackless's DeadThreadTest.test_rebind_from_dead, and test_methods_on_dead's binds.
    ran = []
    box = []
    th = threading.Thread(target=lambda: box.append(stackless.tasklet(ran.append)))
    th.start()
    th.join()
    t = box[0]
    wait_until(lambda: t.thread_id == -1)
    t.bind(None)
    t.bind(ran.append)
    with pytest.raises(RuntimeError, match="no thread"):
        t.bind(ran.append, ("x",))
    with pytest.raises(RuntimeError):
        t.setup("x")
    wait_until(lambda: rebound_here(t))  # once its thread's scheduler is gone
    assert t.thread_id == threading.get_ident()
    t.setup("here")
    stackless.run()
    assert ran == ["here"]


def rebound_here(t):
    try:
        t.bind_thread()
    except RuntimeError as e:
        assert "ending" in str(e)
        return False
    return True


def test_throw_into_a_threads_main_tasklet_waiting_for_other_threads():
    # Its thread sleeps (its last tasklet waits on a channel another thread may still use): the
    # throw takes it off the channel and wakes the thread, where receive() raises.
    ch = stackless.channel()
    out = []
    ready = threading.Event()

    def thread_main():
        stackless.getcurrent()
        ready.set()
        try:
            ch.receive()
        except ValueError as e:
            out.append(e.args)

    th = threading.Thread(target=thread_main)
    th.start()
    ready.wait(30)
    main = stackless.get_thread_info(th.ident)[0]
    wait_until(lambda: main.blocked)
    assert main.is_current
    main.throw(ValueError("x"))
    th.join(30)
    assert out == [("x",)] and not th.is_alive() and ch.balance == 0


def test_a_tasklet_dropped_alive_when_its_thread_ended_reads_as_having_c_state():
    # Stackless's DeadThreadTest.test_rebind_from_dead_fail_cstate: it caught every kill, so its
    # frames were never unwound.
    import gc
    loop = [True]

    def stubborn():
        while loop[0]:
            try:
                stackless.main.switch()
            except TaskletExit:
                pass

    box = []

    def thread_main():
        t = stackless.tasklet(stubborn)()
        t.run()
        box.append(t)

    th = threading.Thread(target=thread_main)
    th.start()
    th.join()
    t = box.pop()
    wait_until(lambda: t.thread_id == -1)
    loop[0] = False
    assert not t.alive
    assert t.nesting_level > 0 and not t.restorable
    with pytest.raises(RuntimeError, match="C state on its stack"):
        t.bind_thread()
    with pytest.raises(RuntimeError, match="C state on its stack"):
        t.bind(None)
    del t
    gc.collect()
    dropped = [o for o in gc.garbage if isinstance(o, stackless.tasklet)]
    assert len(dropped) == 1  # uncollectable, as in Stackless
    gc.garbage.remove(dropped[0])
