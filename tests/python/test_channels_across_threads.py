"""Channels that connect threads (Stackless: "channels are thread-safe"): a tasklet woken by
another thread runs in its own thread; a thread whose tasklets all wait for other threads sleeps
without the GIL instead of reporting a deadlock; run(threadblock=True)."""
import textwrap
import threading
import time

import pytest

import stackless

from conftest import run_program


def in_thread(fn, *args):
    th = threading.Thread(target=fn, args=args, daemon=True)
    th.start()
    return th


def tasklet_in_thread(fn):
    """Runs `fn` as a tasklet of a new thread, whose run(threadblock=True) waits for other
    threads to wake it."""
    def body():
        stackless.tasklet(fn)()
        stackless.run(threadblock=True)
    return in_thread(body)


def wait_for_balance(ch, balance):
    """Waits until tasklets of other threads have blocked on `ch` (a hang fails)."""
    deadline = time.monotonic() + 30
    while ch.balance != balance and time.monotonic() < deadline:
        time.sleep(0.001)
    assert ch.balance == balance


def test_a_send_in_one_thread_wakes_a_receiver_of_another_which_runs_in_its_own_thread():
    ch = stackless.channel()
    got = []

    def receiver():
        got.append((ch.receive(), threading.get_ident(), stackless.getcurrent().thread_id))

    r = stackless.tasklet(receiver)()
    stackless.run()  # it blocks; run() returns
    assert r.blocked and got == []

    def sender():
        ch.send("hello")
        got.append(("sent", threading.get_ident()))

    th = in_thread(sender)
    th.join(30)
    assert not th.is_alive()
    assert got == [("sent", th.ident)]  # the receiver did not run in the sender's thread
    assert r.scheduled and not r.blocked
    stackless.run()
    me = threading.get_ident()
    assert got[1] == ("hello", me, me)
    assert not r.alive


def test_a_receive_in_one_thread_takes_the_value_of_a_sender_blocked_in_another():
    ch = stackless.channel()
    log = []

    def sender():
        ch.send("from the thread")
        log.append("sender resumed in %s" % (threading.get_ident() == th.ident))

    th = tasklet_in_thread(sender)  # its run() waits until the main thread wakes the sender
    wait_for_balance(ch, 1)
    assert ch.receive() == "from the thread"
    th.join(30)
    assert not th.is_alive()
    assert log == ["sender resumed in True"]


def test_the_main_tasklet_waits_for_another_thread_without_holding_the_gil():
    ch = stackless.channel()
    ticks = []

    def worker():
        for i in range(5):  # runs Python code while the main thread waits: it has the GIL
            ticks.append(i)
            time.sleep(0.01)
        ch.send("done")

    in_thread(worker)
    assert ch.receive() == "done"
    assert ticks == [0, 1, 2, 3, 4]


def test_sending_to_the_main_tasklet_of_a_waiting_thread_wakes_that_thread():
    ch = stackless.channel()
    out = []

    def worker():
        out.append(ch.receive())  # this thread's main tasklet waits
        out.append(ch.receive())

    th = in_thread(worker)
    ch.send(1)  # the worker's main may not wait yet: then main waits for it
    ch.send(2)
    th.join(30)
    assert out == [1, 2]


def test_a_deadlock_is_still_reported_when_no_other_thread_can_wake_us():
    ch = stackless.channel()
    with pytest.raises(RuntimeError, match="Deadlock"):
        ch.receive()
    assert ch.balance == 0


def test_of_two_threads_that_wait_for_each_other_the_second_reports_the_deadlock():
    # The first keeps waiting: the second, once its error is handled, may still wake it.
    a, b = stackless.channel(), stackless.channel()
    got = []

    def worker():
        got.append(a.receive())

    th = in_thread(worker)
    wait_for_balance(a, -1)
    with pytest.raises(RuntimeError, match="Deadlock"):
        b.receive()
    assert b.balance == 0
    a.send("released")
    th.join(30)
    assert not th.is_alive()
    assert got == ["released"]


def test_run_threadblock_returns_when_nothing_can_wake_this_thread():
    log = []
    stackless.tasklet(log.append)(1)
    stackless.run(threadblock=True)
    assert log == [1]


def test_run_threadblock_waits_for_tasklets_that_another_thread_wakes():
    ch = stackless.channel()
    out = []

    def receiver():
        out.append(ch.receive())

    stackless.tasklet(receiver)()
    in_thread(lambda: (time.sleep(0.05), ch.send("late")))
    stackless.run(threadblock=True)
    assert out == ["late"]


def test_run_threadblock_sleeps_while_tasklets_wait_on_a_channel_no_other_thread_touched():
    # The loop of docs/threads.md, entered when the receiver already waits on a channel that is
    # still private to this thread: run() sleeps until the other thread's send wakes it rather
    # than return at once (which made this loop spin, a million times a second).
    ch = stackless.channel()
    got = []
    receiver = stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.run()
    assert receiver.blocked
    switches = []
    sender = in_thread(lambda: (time.sleep(0.2), ch.send("late")))
    stackless.set_schedule_callback(lambda prev, next: switches.append(next))
    loops = 0
    try:
        while receiver.alive:
            loops += 1
            stackless.run(threadblock=True)
    finally:
        stackless.set_schedule_callback(None)
    sender.join(30)
    assert got == ["late"]
    assert loops == 1
    assert len(switches) <= 2  # main -> receiver -> main


def test_run_threadblock_reports_a_deadlock_when_no_other_thread_can_wake_its_tasklets():
    ch = stackless.channel()
    receiver = stackless.tasklet(ch.receive)()
    stackless.run()
    with pytest.raises(RuntimeError, match="Deadlock"):
        stackless.run(threadblock=True)
    assert receiver.blocked
    receiver.kill()


def test_a_value_that_is_an_exception_crosses_threads():
    ch = stackless.channel()

    def worker():
        ch.send_exception(KeyError, "across")

    in_thread(worker)
    with pytest.raises(KeyError, match="across"):
        ch.receive()


def test_preference_cannot_run_a_partner_of_another_thread_so_the_caller_runs_on():
    ch = stackless.channel()
    ch.preference = 1  # the sender would run first, were it of this thread
    order = []

    def sender():
        ch.send("x")
        order.append("sender resumed")

    th = tasklet_in_thread(sender)
    wait_for_balance(ch, 1)
    order.append(ch.receive())
    order.append("receiver goes on")
    th.join(30)
    assert order[:2] == ["x", "receiver goes on"]
    assert order[2] == "sender resumed"


def test_killing_a_tasklet_blocked_on_a_shared_channel_takes_it_off():
    ch = stackless.channel()
    in_thread(lambda: None).join()

    def worker():  # makes the channel shared: tasklets of two threads meet on it
        def w():
            try:
                ch.receive()
            except stackless.TaskletExit:
                raise
        t = stackless.tasklet(w)()
        stackless.run()
        assert t.blocked
        t.kill()

    victim = stackless.tasklet(ch.receive)()
    stackless.run()
    th = in_thread(worker)
    th.join(30)
    assert ch.balance == -1
    victim.kill()
    assert ch.balance == 0 and not victim.alive


def test_a_thread_that_ends_takes_its_tasklets_off_shared_channels():
    ch = stackless.channel()

    def worker():
        stackless.tasklet(ch.receive)()
        stackless.run()

    victim = stackless.tasklet(ch.receive)()
    stackless.run()
    th = in_thread(worker)
    th.join(30)
    assert ch.balance == -1  # only ours: the thread's tasklet was killed when it ended
    ch.send("to ours")
    assert not victim.alive


STRESS = textwrap.dedent("""\
    import sys, threading, stackless

    THREADS, TASKLETS, MESSAGES = 4, 50, 200
    ch = stackless.channel()
    logs = []
    sys.setswitchinterval(1e-5)  # threads take turns with the GIL often: messages cross
    start = threading.Barrier(THREADS)

    def sender(name):
        for seq in range(MESSAGES):
            ch.send((name, seq))

    def receiver(log):
        for _ in range(MESSAGES):
            log.append(ch.receive())

    def thread_body(index):
        mine = [[] for _ in range(TASKLETS)]
        tasklets = [stackless.tasklet(sender)((index, i)) for i in range(TASKLETS)]
        tasklets += [stackless.tasklet(receiver)(log) for log in mine]
        start.wait()
        while any(t.alive for t in tasklets):
            stackless.run(threadblock=True)
        logs.extend((index, log) for log in mine)

    total_crossed = 0
    for rep in range(int(sys.argv[1])):
        logs.clear()
        threads = [threading.Thread(target=thread_body, args=(i,)) for i in range(THREADS)]
        for t in threads: t.start()
        for t in threads: t.join()
        everything = sorted(m for _, log in logs for m in log)
        expected = sorted(((t, i), seq) for t in range(THREADS) for i in range(TASKLETS)
                          for seq in range(MESSAGES))
        assert everything == expected, "a message was lost or received twice"
        # A sender's next message exists only once its last one was taken: whoever receives
        # them must see each sender's messages in the order it sent them.
        for _, log in logs:
            last = {}
            for name, seq in log:
                assert seq > last.get(name, -1), (name, seq, last[name])
                last[name] = seq
        assert ch.balance == 0
        total_crossed += sum(name[0] != index for index, log in logs for name, _ in log)
    # (Any one repetition may run its threads one after the other on a loaded machine.)
    assert total_crossed > 0, "no message crossed threads"
    print("ok", rep + 1)
    """)


def test_four_threads_fifty_tasklets_each_two_hundred_messages_through_one_channel(tmp_path):
    # In a child process with a time limit (run_program's): a hang fails the test.
    assert run_program(tmp_path, STRESS.replace("int(sys.argv[1])", "20")) == ["ok 20"]


def test_schedule_remove_with_nothing_else_to_run_returns_at_once_while_other_threads_run():
    # Waiting for other threads is for a tasklet that blocks on a channel, not for one that steps
    # aside: main returns at once (it would wait for the helper thread to end otherwise).
    helper = in_thread(time.sleep, 2)
    started = time.monotonic()
    stackless.schedule_remove()
    assert time.monotonic() - started < 1
    assert stackless.getcurrent().scheduled
    helper.join()


def test_a_tasklet_completed_by_another_thread_can_be_killed_before_it_runs():
    ch = stackless.channel()
    got = []

    def receiver():
        try:
            got.append(ch.receive())
        except stackless.TaskletExit:
            got.append("killed")
            raise

    r = stackless.tasklet(receiver)()
    stackless.run()
    in_thread(ch.send, "value").join(30)
    assert r.scheduled and not r.blocked  # handed over, not yet in this thread's queue
    r.kill()
    assert got == ["killed"] and not r.alive
    assert ch.balance == 0


CTRL_C_WHILE_WAITING = textwrap.dedent("""\
    import os, signal, stackless, threading, time
    ch = stackless.channel()
    stop = threading.Event()

    def helper():  # another thread that may still send: the main tasklet waits for it
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)
        stop.wait(30)

    threading.Thread(target=helper, daemon=True).start()
    try:
        ch.receive()
    except KeyboardInterrupt:
        print("interrupted", ch.balance)
    stop.set()
    """)


def test_ctrl_c_ends_the_main_threads_wait_for_another_thread(tmp_path):
    assert run_program(tmp_path, CTRL_C_WHILE_WAITING) == ["interrupted 0"]


DAEMON_WAITING_AT_EXIT = textwrap.dedent("""\
    import stackless, threading, time
    ch = stackless.channel()

    def daemon():
        ch.receive()  # waits for the main thread, which ends instead

    threading.Thread(target=daemon, daemon=True).start()
    while ch.balance != -1:
        time.sleep(0.001)
    print("main ends")
    """)


def test_the_interpreter_exits_while_a_daemon_thread_waits_for_another_thread(tmp_path):
    for _ in range(5):
        assert run_program(tmp_path, DAEMON_WAITING_AT_EXIT) == ["main ends"]


POOL_THREADS_AT_EXIT = textwrap.dedent("""\
    import stackless, threading, time

    requests, results = stackless.channel(), stackless.channel()

    def serve():
        while True:
            n = requests.receive()
            results.send(n * n)

    def napper():  # takes the GIL back often, so maybe while the interpreter finalizes
        while True:
            time.sleep(0.0005)
            stackless.schedule()

    def pool_thread(kind):
        if kind == 0:
            serve()  # the thread's main tasklet waits
        else:
            for _ in range(3):
                stackless.tasklet(serve)()
            if kind == 2:
                stackless.tasklet(napper)()
            while True:
                stackless.run(threadblock=True)

    for i in range(6):
        threading.Thread(target=pool_thread, args=(i % 3,), daemon=True).start()
    print(sum(requests.send(i) or results.receive() for i in range(100)))
    """)


def test_the_interpreter_exits_while_daemon_pool_threads_wait_in_tasklets(tmp_path):
    # CPython ends a daemon thread that takes the GIL back during finalization with
    # pthread_exit: its forced unwind passes through the core's and the tasklets' C++ frames
    # (on a tasklet's stack down to its bottom), and the thread's end drops its tasklets.
    for _ in range(30):
        assert run_program(tmp_path, POOL_THREADS_AT_EXIT) == [str(sum(i * i for i in range(100)))]


def test_threads_waiting_for_another_thread_sleep_rather_than_wake_each_other():
    ch = stackless.channel()
    waiters = [in_thread(ch.receive) for _ in range(2)]
    wait_for_balance(ch, -2)
    before = time.process_time()
    time.sleep(1.0)  # they wait for this thread, which may still send
    spent = time.process_time() - before
    ch.send(1)
    ch.send(2)
    for th in waiters:
        th.join(30)
    assert spent < 0.25, "the waiting threads used %.2f s of CPU in 1 s" % spent


def test_tasklets_whose_stacks_were_dropped_are_woken_by_another_thread():
    # More blocked tasklets than stack slots (256): most drop their C stacks (docs/
    # soft-switching.md) and resume their frames in place when another thread wakes them. (In a
    # thread of its own: its scheduler's stack pool goes with it.)
    ch = stackless.channel()
    got, dropped = [], []

    def receiver(i):
        def deeper(j):
            return (ch.receive(), j)
        got.append(deeper(i))

    def receiving_thread():
        mine = [stackless.tasklet(receiver)(i) for i in range(1500)]
        stackless.run()
        dropped.append(stackless._stats()["stacks_discarded"])
        while any(t.alive for t in mine):
            stackless.run(threadblock=True)

    th = in_thread(receiving_thread)
    wait_for_balance(ch, -1500)
    for i in range(1500):
        ch.send(i * 10)
    th.join(60)
    assert not th.is_alive()
    assert sorted(got) == [(i * 10, i) for i in range(1500)]
    assert dropped[0] > 0


def test_callbacks_fire_in_the_thread_that_acts():
    log = []
    ch = stackless.channel()
    receiver = stackless.tasklet(ch.receive)()
    stackless.run()

    def tag(t):
        return "receiver" if t is receiver else (
            "main of %s" % ("this thread" if threading.get_ident() == me else "the sender"))

    me = threading.get_ident()
    stackless.set_schedule_callback(lambda prev, next: log.append(("switch", tag(prev), tag(next))))
    stackless.set_channel_callback(lambda c, t, sending, willblock: log.append(
        ("send" if sending else "receive", tag(t), bool(willblock))))
    try:
        in_thread(ch.send, 1).join(30)
        log.append("sender done")
        stackless.run()
    finally:
        stackless.set_schedule_callback(None)
        stackless.set_channel_callback(None)
    assert log == [
        ("send", "main of the sender", False),  # in the sender's thread; no switch there
        "sender done",
        ("switch", "main of this thread", "receiver"),  # the receiver runs in its own thread
        ("switch", "receiver", "main of this thread"),
    ]


def test_switch_trap_allows_completing_a_partner_of_another_thread():
    # Completing it does not switch here (it runs in its own thread), whatever the preference.
    ch = stackless.channel()
    ch.preference = 1  # would run a sender of this thread first

    th = tasklet_in_thread(lambda: ch.send("x"))
    wait_for_balance(ch, 1)
    stackless.switch_trap(1)
    try:
        assert ch.receive() == "x"
    finally:
        stackless.switch_trap(-1)
    th.join(30)
    assert not th.is_alive()


def test_the_flags_of_another_threads_tasklets_read_as_there():
    ch = stackless.channel()
    box = {}
    done = threading.Event()

    def other():
        box["blocked"] = stackless.tasklet(ch.receive)()
        box["paused"] = stackless.tasklet(lambda: None)
        box["paused"].bind(lambda: None, ())  # alive, not scheduled
        box["main"] = stackless.getcurrent()
        stackless.run()
        done.wait(30)
        box["blocked"].kill()

    th = in_thread(other)
    wait_for_balance(ch, -1)
    b, p, m = box["blocked"], box["paused"], box["main"]
    assert (b.alive, b.blocked, b.scheduled, b.paused, b.is_current) == (True, True, True, False,
                                                                          False)
    assert (p.alive, p.blocked, p.scheduled, p.paused) == (True, False, False, True)
    assert (m.alive, m.is_current, m.is_main) == (True, True, True)
    b.kill()  # carried to its own thread: it waits there, off the channel, to die
    assert (b.alive, b.blocked, b.scheduled) == (True, False, True) and ch.balance == 0
    done.set()
    th.join(30)
