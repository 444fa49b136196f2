"""Details of Stackless's API that programs and Stackless's own tests rely on: argument errors
worded as CPython words them, the tempval protocol of run() and switch(), what a channel
callback sees, schedule_remove() as the last runnable tasklet, preference and schedule_all,
`from stackless import *`, recursion_depth and frame, send_sequence resuming from a pickle."""
import pickle
import sys
import types

import pytest
import stackless


def test_argument_errors_use_cpythons_wording():
    with pytest.raises(TypeError, match=r"schedule\(\) takes at most 1 argument \(2 given\)"):
        stackless.schedule(1, 2)
    with pytest.raises(TypeError, match=r"schedule_remove\(\) takes at most 1 argument"):
        stackless.schedule_remove(1, 2)
    with pytest.raises(TypeError, match=r"'x' is an invalid keyword argument for schedule\(\)"):
        stackless.schedule(x=1)
    with pytest.raises(TypeError, match=r"send_exception\(\) takes at least 1 argument"):
        stackless.channel().send_exception()
    with pytest.raises(TypeError, match=r"throw\(\) missing required argument 'exc'"):
        stackless.current.throw()
    with pytest.raises(TypeError, match="not NoneType"):
        stackless.current.throw(None)
    assert stackless.schedule(retval=5) == 5


def test_run_and_switch_return_the_callers_tempval():
    main = stackless.getmain()

    def sets_tempval(value):
        main.tempval = value

    assert stackless.tasklet(sets_tempval)("from run").run() == "from run"

    def switches_back():
        main.tempval = 99
        main.switch()

    t = stackless.tasklet(switches_back)()
    assert t.switch() == 99
    assert main.tempval is None  # taken by switch()
    t.kill()
    # A bomb left there explodes in the caller.
    t = stackless.tasklet(lambda: setattr(main, "tempval", stackless.bomb(KeyError, KeyError(1))))()
    with pytest.raises(KeyError):
        t.run()


def test_a_bound_tasklet_shows_its_function_as_tempval_until_setup():
    def f():
        pass

    t = stackless.tasklet(f)
    assert t.tempval is f and not t.alive
    t.setup()
    assert t.tempval is None
    stackless.run()


def test_the_channel_callback_sees_the_value_in_the_senders_tempval():
    seen = []
    ch = stackless.channel()
    stackless.tasklet(lambda: ch.send(42))()
    old = stackless.set_channel_callback(
        lambda channel, tasklet, sending, will_block: seen.append((sending, tasklet.tempval)))
    try:
        stackless.run()
        assert ch.receive() == 42
    finally:
        stackless.set_channel_callback(old)
    stackless.run()  # (the sender ends)
    assert seen == [(1, 42), (0, None)]


def test_schedule_remove_as_the_last_runnable_tasklet_while_main_is_blocked_is_a_deadlock():
    ch, log = stackless.channel(), []

    def only_runnable():
        with pytest.raises(RuntimeError, match="the last runnable tasklet cannot be blocked"):
            stackless.schedule_remove()
        log.append("still running")
        ch.send(None)

    stackless.tasklet(only_runnable)()
    ch.receive()
    assert log == ["still running"]
    assert stackless.schedule_remove() is stackless.main  # main alone: it returns at once


def test_from_stackless_import_star_binds_stackless_and_not_taskletexit():
    namespace = {}
    exec("from stackless import *", namespace)
    assert namespace["stackless"] is stackless and "tasklet" in namespace
    assert "TaskletExit" not in namespace  # a builtin


def test_recursion_depth_and_frame_of_tasklets():
    ch = stackless.channel()

    def deeper(n):
        return deeper(n - 1) if n else ch.receive()

    t = stackless.tasklet(deeper)(5)
    shallow = stackless.tasklet(deeper)(0)
    assert t.recursion_depth == 0 and t.frame is None
    stackless.run()
    assert t.recursion_depth - shallow.recursion_depth == 5
    shallow.kill()
    frame = t.frame
    assert isinstance(frame, types.FrameType) and frame.f_code is deeper.__code__
    assert frame.f_locals["n"] == 0 and frame.f_back.f_locals["n"] == 1
    assert stackless.current.frame is sys._getframe()
    ch.send(None)
    assert t.frame is None and t.recursion_depth == 0


def test_a_tasklet_blocked_in_send_sequence_resumes_from_its_pickle():
    ch = stackless.channel()
    t = stackless.tasklet(ch.send_sequence)(iter(["a", "b", "c"]))
    stackless.run()
    assert ch.receive() == "a"
    assert t.restorable and t.nesting_level == 0
    t2, ch2 = pickle.loads(pickle.dumps((t, ch)))
    t.kill()
    assert t2.paused  # (an unpickled runnable tasklet comes back paused, as in Stackless)
    t2.insert()
    assert [ch2.receive(), ch2.receive()] == ["b", "c"]
    stackless.run()
    assert not t2.alive


def test_rebinding_a_paused_tasklet_drops_its_frames_without_running_them():
    import weakref
    log = []

    def task():
        try:
            stackless.schedule_remove(None)
        finally:
            log.append("finally")

    t = stackless.tasklet(task)()
    ref = weakref.ref(t)
    stackless.run()
    frame = t.frame
    assert t.alive and t.paused and t.nesting_level == 0
    t.bind(None)
    assert not t.alive and t.frame is None and log == []
    assert frame.f_code is task.__code__  # the frame object outlives its frame
    t.bind(log.append)  # and runs something else
    t.setup("again")
    stackless.run()
    assert log == ["again"]
    t = None
    assert ref() is None and log == ["again"]  # its finally block never ran


def test_a_paused_tasklet_with_c_state_cannot_be_rebound():
    import operator
    log = []

    def task():
        try:
            operator.call(stackless.schedule_remove, None)
        finally:
            log.append("finally")

    t = stackless.tasklet(task)()
    stackless.run()
    assert t.nesting_level == 1
    with pytest.raises(RuntimeError, match="C state"):
        t.bind(None)
    assert t.alive
    t.kill()
    assert log == ["finally"]
    with pytest.raises(RuntimeError, match="current tasklet"):
        stackless.getcurrent().bind(None)
    with pytest.raises(TypeError, match="callable"):
        stackless.getcurrent().bind(42)


def test_rebinding_a_tasklet_paused_inside_a_generator_ends_the_generator_unrun():
    log = []

    def gen():
        try:
            stackless.schedule_remove(None)
            yield 1
        finally:
            log.append("finally")

    def task(g):
        for x in g:
            log.append(x)

    g = gen()
    t = stackless.tasklet(task)(g)
    stackless.run()
    assert t.paused and t.restorable
    t.bind(None)
    assert not t.alive and g.gi_frame is None and list(g) == [] and log == []
