"""Tracing, profiling, atomic and the schedule/channel callbacks (Stackless: debugging.rst and
stackless.rst): tracing is per tasklet, callbacks see every switch and channel action."""
import sys

import pytest

import stackless


def test_settrace_in_a_tasklet_traces_that_tasklet_only():
    calls = []

    def tracer(frame, event, arg):
        if event == "call":
            calls.append(frame.f_code.co_name)
        return None

    def traced():
        sys.settrace(tracer)
        stackless.schedule()
        inner_traced()
        sys.settrace(None)

    def inner_traced():
        pass

    def untraced():
        stackless.schedule()
        inner_untraced()

    def inner_untraced():
        pass

    stackless.tasklet(traced)()
    stackless.tasklet(untraced)()
    stackless.run()
    assert calls == ["inner_traced"]
    assert sys.gettrace() is None


def test_trace_function_attribute_of_another_tasklet():
    calls = []

    def tracer(frame, event, arg):
        if event == "call":
            calls.append(frame.f_code.co_name)

    def body():
        helper()

    def helper():
        pass

    t = stackless.tasklet(body)()
    t.trace_function = tracer
    assert t.trace_function is tracer
    assert stackless.current.trace_function is None
    stackless.run()
    assert calls == ["body", "helper"]
    assert sys.gettrace() is None


def test_profile_function_attribute_and_setprofile_per_tasklet():
    events = []

    def profiler(frame, event, arg):
        if event == "call":
            events.append(frame.f_code.co_name)

    def a():
        sys.setprofile(profiler)
        assert stackless.current.profile_function is profiler
        stackless.schedule()
        mark_a()
        sys.setprofile(None)

    def mark_a():
        pass

    def b():
        stackless.schedule()
        mark_b()

    def mark_b():
        pass

    stackless.tasklet(a)()
    stackless.tasklet(b)()
    stackless.run()
    assert "mark_a" in events and "mark_b" not in events
    assert sys.getprofile() is None


def test_trace_function_must_be_callable():
    t = stackless.tasklet(lambda: None)
    with pytest.raises(TypeError):
        t.trace_function = 42


def test_atomic_context_manager_sets_and_restores_the_flag():
    current = stackless.getcurrent()
    assert current.atomic is False
    with stackless.atomic():
        assert current.atomic is True
        with stackless.atomic():
            assert current.atomic is True
        assert current.atomic is True
    assert current.atomic is False
    assert current.set_atomic(True) is False
    assert current.set_atomic(False) is True


def test_schedule_callback_sees_every_switch():
    seen = []

    def cb(prev, next):
        seen.append((prev, next))

    def f():
        stackless.schedule()

    t = stackless.tasklet(f)()
    main = stackless.getmain()
    assert stackless.set_schedule_callback(cb) is None
    try:
        assert stackless.get_schedule_callback() is cb
        stackless.run()
    finally:
        assert stackless.set_schedule_callback(None) is cb
    assert stackless.get_schedule_callback() is None
    # main -> t (starts), t -> main? no: t schedules with main out of the queue (run()), so
    # t -> t is no switch; t ends -> main.
    assert seen[0] == (main, t)
    assert seen[-1] == (t, main)
    assert all(p is not n for p, n in seen)


def test_schedule_callback_errors_are_reported_and_do_not_break_scheduling(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_type))
    ran = []

    def cb(prev, next):
        raise ValueError("callback")

    stackless.tasklet(ran.append)(1)
    stackless.set_schedule_callback(cb)
    try:
        stackless.run()
    finally:
        stackless.set_schedule_callback(None)
    assert ran == [1]
    assert reported and all(t is ValueError for t in reported)


def test_channel_callback_sees_each_action_and_whether_it_blocks():
    seen = []

    def cb(channel, tasklet, sending, willblock):
        seen.append((channel, tasklet, bool(sending), bool(willblock)))

    ch = stackless.channel()
    receiver = stackless.tasklet(ch.receive)()
    stackless.run()  # blocks in receive: no callback yet
    stackless.set_channel_callback(cb)
    try:
        ch.send(1)
        stackless.tasklet(ch.send)(2)
        stackless.run()  # the sender blocks
        assert ch.receive() == 2
    finally:
        assert stackless.set_channel_callback(None) is cb
    main = stackless.getmain()
    assert seen[0] == (ch, main, True, False)
    assert seen[1][0] is ch and seen[1][2] is True and seen[1][3] is True
    assert seen[2] == (ch, main, False, False)
    assert receiver.alive is False
    stackless.run()


def test_callbacks_must_be_callable():
    with pytest.raises(TypeError):
        stackless.set_schedule_callback(42)
    with pytest.raises(TypeError):
        stackless.set_channel_callback("no")


def test_cprofile_inside_a_tasklet_sees_its_calls():
    import cProfile
    import io
    import pstats

    out = io.StringIO()

    def work():
        stackless.schedule()
        return sum(range(100))

    def profiled():
        profile = cProfile.Profile()
        profile.enable()
        work()
        profile.disable()
        pstats.Stats(profile, stream=out).print_stats()

    stackless.tasklet(profiled)()
    stackless.tasklet(stackless.schedule)()
    stackless.run()
    assert "work" in out.getvalue()
    assert sys.getprofile() is None


def test_pdb_steps_through_a_tasklet():
    import io
    import pdb

    stdout = io.StringIO()
    result = []

    def debugged():
        debugger = pdb.Pdb(stdin=io.StringIO("n\nn\np x * 2\nc\n"), stdout=stdout)
        debugger.set_trace()
        x = 20
        x += 1
        stackless.schedule()
        result.append(x)

    stackless.tasklet(debugged)()
    stackless.tasklet(stackless.schedule)()
    stackless.run()
    assert result == [21]
    assert "42" in stdout.getvalue()
    assert sys.gettrace() is None


def test_tracebacks_inside_tasklets_start_at_the_tasklet_function():
    import traceback

    seen = {}

    def inner():
        stackless.schedule()
        seen["stack"] = [f.name for f in traceback.extract_stack()]
        raise KeyError("k")

    def outer():
        try:
            inner()
        except KeyError:
            seen["tb"] = [f.name for f in traceback.extract_tb(sys.exc_info()[2])]

    stackless.tasklet(outer)()
    stackless.run()
    assert seen["stack"] == ["outer", "inner"]
    assert seen["tb"] == ["outer", "inner"]


def test_schedule_and_channel_callbacks_fire_in_the_order_of_events():
    # Stackless: the channel callback before each action (willblock: whether it will block),
    # the schedule callback at each switch with the tasklet that was running and the next one.
    log = []
    ch = stackless.channel()
    names = {}

    def name(t):
        return "main" if t is stackless.getmain() else names[id(t)]

    def a():
        ch.send("x")
        log.append("a: sent")
        stackless.schedule()  # alone in the queue: no switch
        log.append("a: goes on")

    def b():
        log.append(("b: got", ch.receive()))

    ta, tb = stackless.tasklet(a)(), stackless.tasklet(b)()
    names.update({id(ta): "a", id(tb): "b"})
    stackless.set_schedule_callback(lambda prev, next: log.append(("switch", name(prev),
                                                                   name(next))))
    stackless.set_channel_callback(lambda c, t, sending, willblock: log.append(
        ("send" if sending else "receive", name(t), bool(willblock))))
    try:
        stackless.run()
    finally:
        stackless.set_schedule_callback(None)
        stackless.set_channel_callback(None)
    assert log == [
        ("switch", "main", "a"),
        ("send", "a", True),        # no receiver yet: a blocks
        ("switch", "a", "b"),
        ("receive", "b", False),    # a waits with the value
        ("b: got", "x"),            # the receiver runs on (preference -1); a is queued
        ("switch", "b", "a"),       # b ended
        "a: sent",
        "a: goes on",
        ("switch", "a", "main"),    # a ended: run() returns
    ]


def test_trace_and_profile_functions_of_tasklets_that_are_not_alive():
    def tracer(frame, event, arg):
        return tracer

    t = stackless.tasklet()
    assert t.trace_function is None
    with pytest.raises(RuntimeError, match="tasklet is not alive"):
        t.trace_function = tracer
    with pytest.raises(RuntimeError, match="tasklet is not alive"):
        t.profile_function = tracer
    t = stackless.tasklet(lambda: None)()
    t.trace_function = tracer
    t.profile_function = sys.getprofile()  # None: no profiler
    assert t.trace_function is tracer and t.profile_function is None
    stackless.run()
    assert t.trace_function is None  # what it traced ended with it


def test_a_trace_function_runs_at_a_nesting_level_above_its_frames():
    levels = []

    def tracer(frame, event, arg):
        if event == "line":
            levels.append(stackless.current.nesting_level)
        return tracer

    def traced():
        return 1

    def body():
        sys.settrace(tracer)
        traced()
        sys.settrace(None)
        levels.append(("after", stackless.current.nesting_level))

    stackless.tasklet(body)()
    stackless.run()
    assert levels[0] == 1 and levels[-1] == ("after", 0)


def test_pickle_with_tracing_state_keeps_a_tasklets_trace_function():
    import pickle
    events = []
    ch = stackless.channel()

    def body():
        ch.receive()
        events.append("resumed")

    t = stackless.tasklet(body)()
    stackless.run()
    t.trace_function = record_events
    for keep, expected in ((False, None), (True, record_events)):
        stackless.pickle_with_tracing_state = keep
        try:
            t2, ch2 = pickle.loads(pickle.dumps((t, ch)))
        finally:
            stackless.pickle_with_tracing_state = False
        assert t2.trace_function is expected
        t2.kill()
    t.kill()


TRACED = []


def record_events(frame, event, arg):
    TRACED.append(event)
    return record_events
