"""Pickling tasklets while they run, and channels with the tasklets waiting on them (issue 4;
Stackless's pickling.rst). Every shape of frame is pickled where it is blocked, loaded, resumed
and checked for the values it goes on with, in this process and in a child process."""
import gc
import os
import pathlib
import pickle
import re
import subprocess
import sys
import types
import weakref

import pytest
import stackless

import pickle_subjects as S

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LAUNCHER = os.environ.get("STACKLESS_LAUNCHER", str(ROOT / "stackless"))


def dumps_and_kill(*objects):
    """Pickles `objects` (tasklets and channels among them), then kills the original tasklets,
    those waiting on the channels included: only the pickle is left, as when it moves to
    another process."""
    data = pickle.dumps(objects)
    for o in objects:
        if isinstance(o, stackless.tasklet) and o.alive:
            o.kill()
        elif isinstance(o, stackless.channel):
            while o.balance:
                o.queue.kill()
    return data


def run_in_child(data, script):
    """Runs `script` in a fresh interpreter with `data` (a pickle) on stdin; returns stdout."""
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([LAUNCHER, "-c", script], input=data, capture_output=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


CHILD_PRELUDE = "import pickle, sys, stackless, pickle_subjects\n" \
                "objects = pickle.loads(sys.stdin.buffer.read())\n"


# ---------------------------------------------------------------------------------------------
# Frame shapes

def test_nested_calls_of_functions_and_methods_resume_with_the_received_value():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    assert t.blocked and log == ["start"]
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    assert t2.blocked and ch2.balance == -1 and ch2.queue is t2
    ch2.send(3)  # Box(20).wait -> 3 * 20 = 60; middle -> 61; outer -> 61 + 20
    assert log2 == ["start", ("done", 81)]
    assert not t2.alive


def test_nested_calls_resume_in_a_child_process():
    ch, log = stackless.channel(), []
    stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    out = run_in_child(dumps_and_kill(ch, log), CHILD_PRELUDE + (
        "ch, log = objects\n"
        "ch.send(3)\n"
        "print(log)\n"))
    assert out == "['start', ('done', 81)]\n"


def test_closures_and_cells_keep_their_shared_state():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.counter_with_closure)(ch, log)
    stackless.run()
    ch.send(5)
    ch.send(2)
    assert log == [5, 7]
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    ch2.send(10)  # the nested function (pickled by value) updates the restored cell
    ch2.send(None)
    assert log2 == [5, 7, 17]
    assert not t2.alive


def test_keyword_and_star_arguments_and_a_call_through_star_syntax():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.calls_with_star)(ch, log)
    stackless.run()
    assert log == [("before", 60, [("colour", "red")])]
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    ch2.send(4)
    assert log2[-1] == ("after", 64, (1, 2, 3), {"colour": "red"})


def test_for_loops_over_builtin_iterators_continue_where_they_were():
    expected_all = []
    stackless.tasklet(S.loops)(None, expected_all)
    stackless.run()
    log = []
    t = stackless.tasklet(S.loops)(None, log)
    for _ in range(37):  # into the second half of the outermost loop
        t.run()
    assert log == expected_all[:37]
    t2, log2 = pickle.loads(dumps_and_kill(t, log))
    t2.insert()
    stackless.run()
    assert log2 == expected_all and len(expected_all) == 64


def test_pending_with_exit_and_finally_run_after_resuming():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.in_with_and_finally)(ch, log)
    stackless.run()
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    ch2.send("go")
    assert log2 == [("entered", "token"), "after receive", ("exit", None), "finally"]


def test_calls_of_init_enter_exit_and_call_made_from_c_resume():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.through_special_methods)(ch, log)
    stackless.run()
    sent = iter(range(1, 10))
    while t.alive:  # pickled at each blocking point, resumed from the pickle only
        assert t.blocked and t.restorable and t.nesting_level == 0
        t, ch, log = pickle.loads(dumps_and_kill(t, ch, log))
        ch.send(next(sent))
    assert log == [("init", 1), ("enter", 2), ("same", True), ("called", 63),
                   ("exit", None, 4), ("enter", 5), ("exit", "KeyError", 6), "end"]


def test_an_init_that_returns_a_value_after_resuming_raises_typeerror():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.make_returns_from_init)(ch, log)
    stackless.run()
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    with pytest.raises(TypeError, match="should return None, not 'int'"):
        ch2.send(5)
    assert log2 == [] and not t2.alive


def test_killing_a_restored_blocked_tasklet_runs_its_exit_and_finally():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.in_with_and_finally)(ch, log)
    stackless.run()
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    t2.kill()
    assert log2 == [("entered", "token"), ("exit", "TaskletExit"), "finally"]
    assert ch2.balance == 0 and not t2.alive


def test_the_exception_being_handled_is_handled_again_after_resuming():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.handling_an_exception)(ch, log)
    stackless.run()
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    ch2.send(None)
    assert log2 == [("caught", "KeyError('original')"),
                    ("still handling", "KeyError('original')"),
                    ("after except", None)]


def test_an_exception_sent_to_a_restored_receiver_is_raised_in_its_frame():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.in_with_and_finally)(ch, log)
    stackless.run()
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    with pytest.raises(ValueError, match="boom"):
        ch2.send_exception(ValueError, "boom")  # escapes the tasklet, reaches main
    assert log2 == [("entered", "token"), ("exit", "ValueError"), "finally"]


def test_a_lambda_tasklet_function_is_pickled_by_value():
    log = []
    t = stackless.tasklet(lambda n: [log.append(i) or stackless.schedule() for i in range(n)])
    t(4)
    t.run()
    t.run()
    t2, log2 = pickle.loads(dumps_and_kill(t, log))
    t2.insert()
    stackless.run()
    assert log2 == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------
# Generators

@pytest.mark.parametrize("source, expected", [
    (S.doubled, [2, 4, 6, "done"]),
    (S.delegating, [2, 4, 6, ("returned", "end"), "done"]),
    (S.pipeline, [3, 5, 7, "pipeline end", "done"]),
])
def test_a_tasklet_blocked_inside_generators_resumes_them(source, expected):
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.consume)(ch, log, source)
    stackless.run()
    ch.send(1)
    ch.send(2)
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    assert t2.blocked
    ch2.send(3)
    ch2.send(None)  # the innermost generator returns: the loops around it end
    stackless.run()
    assert log2 == expected
    assert not t2.alive


def test_generators_in_a_tasklet_resume_in_a_child_process():
    ch, log = stackless.channel(), []
    stackless.tasklet(S.consume)(ch, log, S.delegating)
    stackless.run()
    ch.send(5)
    out = run_in_child(dumps_and_kill(ch, log), CHILD_PRELUDE + (
        "ch, log = objects\n"
        "ch.send(6)\n"
        "ch.send(None)\n"
        "print(log)\n"))
    assert out == "[10, 12, ('returned', 'end'), 'done']\n"


def test_killing_a_restored_tasklet_closes_the_generators_it_was_in():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.consume)(ch, log, S.pipeline)
    stackless.run()
    before = getattr(S.doubled, "closed", 0)
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    assert getattr(S.doubled, "closed", 0) == before + 1  # the original's finally ran
    t2.kill()
    assert getattr(S.doubled, "closed", 0) == before + 2  # and the restored one's
    assert log2 == [] and not t2.alive


def test_a_generator_on_its_own_keeps_its_place_locals_and_handled_exception():
    g = S.counting(10)
    assert next(g) == 10 and g.send(5) == 15
    g2 = pickle.loads(pickle.dumps(g))
    assert g2.send(1) == 16 and g.send(2) == 17  # independent copies
    assert g2.throw(KeyError) == ("handling", 16)
    g3 = pickle.loads(pickle.dumps(g2))  # suspended inside the except block
    with pytest.raises(StopIteration):
        next(g3)
    fresh = pickle.loads(pickle.dumps(S.counting(1)))
    assert next(fresh) == 1
    finished = S.counting(0)
    finished.close()
    assert list(pickle.loads(pickle.dumps(finished))) == []
    assert g2.__qualname__ == "counting"


def test_a_running_generator_does_not_pickle_without_its_tasklet():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.consume)(ch, log, S.doubled)
    stackless.run()
    running = [o for o in gc.get_objects()
               if type(o) is types.GeneratorType and o.gi_running and o.gi_code is
               S.doubled.__code__]
    assert len(running) == 1
    with pytest.raises(pickle.PicklingError, match="running generator"):
        pickle.dumps(running[0])
    t.kill()


# ---------------------------------------------------------------------------------------------
# Tasklet states

def test_a_runnable_tasklet_resumes_schedule_with_its_tempval():
    log = []
    t = stackless.tasklet(S.schedule_loop)(log, 4)
    t.run()
    t.run()
    assert t.scheduled and log == [0, 1]
    t2, log2 = pickle.loads(dumps_and_kill(t, log))
    assert t2.alive and not t2.scheduled and not t2.blocked
    assert t2.tempval is t2  # schedule() returns the tasklet itself, as before pickling
    t2.insert()
    stackless.run()
    assert log2 == [0, 1, 2, 3]
    assert not t2.alive


def test_a_paused_tasklet_of_schedule_remove_is_restored_paused():
    box = []

    def f():
        box.append(stackless.schedule_remove("value"))
        box.append("after")

    t = stackless.tasklet(f)()
    t.run()
    assert t.paused
    t2, box2 = pickle.loads(dumps_and_kill(t, box))
    assert t2.paused and t2.tempval == "value"
    t2.run()
    assert box2 == ["value", "after"]


def test_a_new_tasklet_with_arguments_and_an_unbound_one():
    log = []
    t = stackless.tasklet(S.receiver)
    t.bind(S.receiver, (None, log, "x"))
    unbound = stackless.tasklet()
    t2, unbound2, log2 = pickle.loads(pickle.dumps((t, unbound, log)))
    assert t2.alive and not t2.scheduled
    assert not unbound2.alive
    ch = stackless.channel()
    t3 = stackless.tasklet(S.receiver)(ch, log2, "y")
    stackless.run()
    ch.send(1)
    assert log2 == [("y", 1)]


def test_a_dead_tasklet_unpickles_dead():
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    assert not pickle.loads(pickle.dumps(t)).alive


def test_a_restored_tasklet_can_be_pickled_again_before_it_runs():
    log = []
    t = stackless.tasklet(S.schedule_loop)(log, 3)
    t.run()
    once = pickle.loads(dumps_and_kill(t, log))
    t3, log3 = pickle.loads(pickle.dumps(once))
    t3.insert()
    stackless.run()
    assert log3 == [0, 1, 2]


def test_subclass_attributes_are_kept():
    log = []
    w = S.Worker(S.schedule_loop, "alpha")
    w(log, 2)
    w.run()
    w2, log2 = pickle.loads(dumps_and_kill(w, log))
    assert type(w2) is S.Worker and w2.name == "alpha"
    w2.insert()
    stackless.run()
    assert log2 == [0, 1]


# ---------------------------------------------------------------------------------------------
# Channels

def test_a_channel_keeps_its_waiting_tasklets_in_order_with_their_values():
    ch, log = stackless.channel(), []
    for value in ("a", "b", "c"):
        stackless.tasklet(S.sender)(ch, value, log)
    stackless.run()
    ch.preference = 1
    assert ch.balance == 3
    ch2, log2 = pickle.loads(dumps_and_kill(ch, log))
    assert ch2.balance == 3 and ch2.preference == 1
    assert [ch2.receive() for _ in range(3)] == ["a", "b", "c"]
    stackless.run()
    assert log2 == [("sent", "a"), ("sent", "b"), ("sent", "c")]


def test_waiting_receivers_resume_in_order_in_a_child_process():
    ch, log = stackless.channel(), []
    for name in ("first", "second"):
        stackless.tasklet(S.receiver)(ch, log, name)
    stackless.run()
    ch.close()
    out = run_in_child(dumps_and_kill(ch, log), CHILD_PRELUDE + (
        "ch, log = objects\n"
        "print(ch.balance, ch.closing, ch.closed)\n"
        "ch.send(1)\n"
        "ch.send(2)\n"
        "print(log, ch.closed)\n"))
    assert out == "-2 True False\n[('first', 1), ('second', 2)] True\n"


def test_channel_with_nobody_waiting_and_its_settings():
    ch = stackless.channel()
    ch.preference = 0
    ch.schedule_all = 1
    ch2 = pickle.loads(pickle.dumps(ch))
    assert (ch2.balance, ch2.preference, ch2.schedule_all, ch2.closing) == (0, 0, 1, False)


# ---------------------------------------------------------------------------------------------
# Frames with C state pickle (as in Stackless) but cannot run again: running the unpickled
# tasklet raises RuntimeError saying why; restorable and nesting_level say so beforehand.

def run_unpickled(t, ch):
    """Wakes a tasklet unpickled from t's pickle, blocked on its copy of channel ch; returns the
    RuntimeError its run raised."""
    u, ch2 = pickle.loads(pickle.dumps((t, ch)))
    assert u.alive and u.blocked and ch2.balance == -1
    with pytest.raises(RuntimeError) as raised:
        ch2.send(None)
    assert not u.alive
    return str(raised.value)


def test_a_c_function_between_python_frames_pickles_but_cannot_run():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.with_sorted_key)(ch, log)
    stackless.run()
    assert not t.restorable and t.nesting_level == 1
    assert re.search(r"C state.*C function sorted.*key", run_unpickled(t, ch))
    for _ in range(3):  # the original goes on
        ch.send(None)
    assert not t.alive


def test_a_generator_expression_consumed_by_a_c_function_pickles_but_cannot_run():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.sum_of_genexpr)(ch, log)
    stackless.run()
    assert not t.restorable
    assert "C function sum" in run_unpickled(t, ch)
    t.kill()


def test_without_soft_switching_frames_have_c_state():
    ch, log = stackless.channel(), []
    old = stackless.enable_softswitch(False)
    try:
        t = stackless.tasklet(S.blocked_three_deep)(ch, log)
        stackless.run()
        # (every frame counts: blocked_three_deep -> outer -> middle -> Box.wait)
        assert t.nesting_level == 4 and not t.restorable
        assert "without soft switching" in run_unpickled(t, ch)
    finally:
        stackless.enable_softswitch(old)
    assert t.nesting_level == 0 and t.restorable  # what it has now (its stack is droppable)
    t.kill()


def test_an_invalid_unpickled_tasklet_pickles_again_as_it_was():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.with_sorted_key)(ch, log)
    stackless.run()
    u, ch1 = pickle.loads(pickle.dumps((t, ch)))
    t.kill()
    assert "C function sorted" in run_unpickled(u, ch1)
    with pytest.raises(RuntimeError, match="C function sorted"):
        ch1.send(None)  # wakes the first unpickled tasklet, which cannot run either
    assert not u.alive


def test_soft_calls_keep_nesting_level_zero():
    """Calls that pickling resumes (as Stackless makes them without C recursion) add no
    nesting level: instances' __call__, classes' __init__, __enter__ and __exit__."""
    levels = []

    class Thing:
        def __init__(self):
            levels.append(("init", stackless.current.nesting_level))

        def __call__(self):
            levels.append(("call", stackless.current.nesting_level))

        def __enter__(self):
            levels.append(("enter", stackless.current.nesting_level))

        def __exit__(self, *exc):
            levels.append(("exit", stackless.current.nesting_level))
            return True

    def body():
        thing = Thing()
        thing()
        with thing:
            pass
        with thing:
            raise KeyError
        levels.append(("map", list(map(lambda _: stackless.current.nesting_level, [0]))[0]))

    stackless.tasklet(body)()
    stackless.run()
    assert levels == [("init", 0), ("call", 0), ("enter", 0), ("exit", 0), ("enter", 0),
                      ("exit", 0), ("map", 1)]


def test_main_and_current_tasklets_are_refused():
    with pytest.raises(pickle.PicklingError, match="main tasklet"):
        pickle.dumps(stackless.getmain())
    errors = []

    def f():
        try:
            pickle.dumps(stackless.getcurrent())
        except RuntimeError as e:  # (Stackless raises RuntimeError too)
            errors.append(str(e))

    stackless.tasklet(f)()
    stackless.run()
    assert len(errors) == 1 and "current tasklet" in errors[0]


def test_restorable_says_in_advance():
    ch, log = stackless.channel(), []
    good = stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    assert good.restorable
    good.kill()


# ---------------------------------------------------------------------------------------------
# Format and damage

def _blocked_pickle():
    ch, log = stackless.channel(), []
    stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    return dumps_and_kill(ch, log)


def test_another_format_or_python_version_is_refused_clearly():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.schedule_loop)(log, 2)
    t.run()
    cls, args, state = t.__reduce__()
    t.kill()
    other_format = (state[0], 99) + state[2:]
    with pytest.raises(pickle.UnpicklingError, match="format 99"):
        cls(*args).__setstate__(other_format)
    other_python = state[:2] + ((3, 7),) + state[3:]
    with pytest.raises(pickle.UnpicklingError, match="CPython 3.7"):
        cls(*args).__setstate__(other_python)


def test_a_frame_record_that_does_not_fit_its_code_is_refused():
    log = []
    t = stackless.tasklet(S.schedule_loop)(log, 3)
    t.run()
    cls, args, state = t.__reduce__()
    t.kill()
    frames, op, exc = state[4]
    code, globals_ref, resume, values, nulls = frames[0]
    nlocals = code.co_nlocals
    loop_iterator = values.index(next(v for v in values[nlocals:] if hasattr(v, "__next__")))
    bad_records = [
        (code, globals_ref, resume + 1, values, nulls),           # not where a call returns
        (code, globals_ref, resume, values + (1,), nulls),        # one slot too many
        (code, globals_ref, resume, values[:-1], nulls),          # one too few
        (code, globals_ref, resume, values[:loop_iterator] + (1,) + values[loop_iterator + 1:],
         nulls),                                                  # FOR_ITER's iterator, an int
        (code, globals_ref, resume, values, (loop_iterator,)),    # ... or NULL
        (code, globals_ref, -5, values, nulls),
        (code, 42, resume, values, nulls),
        (code, globals_ref, resume, values, ("x",)),
    ]
    for record in bad_records:
        bad = state[:4] + (((record,), op, exc),) + state[5:]
        with pytest.raises((pickle.UnpicklingError, ValueError)):
            cls(*args).__setstate__(bad)


def test_damaged_pickles_raise_instead_of_crashing():
    # A short run for `make test` (tests/python/fuzz_pickle.py runs as many cases as asked; the
    # long run is in docs/pickling.md): damaged bytes and damaged frame records.
    r = subprocess.run([LAUNCHER, str(HERE / "fuzz_pickle.py"), "--cases", "6000", "--seed",
                        "5", "--jobs", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("fuzz_pickle: 6000 cases")
    assert "state-ran" in r.stdout and "'ran'" in r.stdout  # some damaged states did run


def test_pickling_again_and_again_does_not_leak():
    def once():
        ch, log = stackless.channel(), []
        stackless.tasklet(S.blocked_three_deep)(ch, log)
        stackless.run()
        t2, ch2, log2 = pickle.loads(dumps_and_kill(ch.queue, ch, log))
        ch2.send(1)
        assert log2[-1] == ("done", 41)

    for _ in range(200):
        once()
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(2000):
        once()
    gc.collect()
    assert len(gc.get_objects()) - before < 50


def test_killing_a_restored_paused_tasklet_unwinds_every_frame():
    # Regression: the exception on its way out of a finished restored frame was lost when a
    # traceback kept that frame's object alive (SystemError at the next frame).
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    cls, args, state = t.__reduce__()  # pickled alone: restored paused, not on a channel
    t.kill()
    t2 = cls(*args)
    t2.__setstate__(state)
    assert t2.alive and not t2.scheduled
    t2.kill()
    assert not t2.alive and log == ["start"]


def test_a_tasklet_pickled_without_its_channel_raises_when_run_without_a_value():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    cls, args, state = t.__reduce__()
    t.kill()
    t2 = cls(*args)
    t2.__setstate__(state)
    t2.insert()
    with pytest.raises(RuntimeError, match="without being sent a value"):
        stackless.run()
    assert not t2.alive


# ---------------------------------------------------------------------------------------------
# Other objects

def _raise_here():
    raise KeyError("where")


def test_a_traceback_pickles_with_where_it_was():
    import traceback
    try:
        _raise_here()
    except KeyError as e:
        tb = e.__traceback__
    tb2 = pickle.loads(pickle.dumps(tb))
    original = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(tb)]
    restored = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(tb2)]
    assert restored == original and restored[-1][2] == "_raise_here"


def test_a_sender_of_an_exception_keeps_it_in_the_channel_pickle():
    ch = stackless.channel()

    def send():
        ch.send_exception(ValueError, "sent")

    t = stackless.tasklet(send)()
    stackless.run()
    ch2 = pickle.loads(dumps_and_kill(ch))[0]
    assert ch2.balance == 1
    with pytest.raises(ValueError, match="sent"):
        ch2.receive()
    stackless.run()
    assert not t.alive


def test_code_and_modules_pickle_on_their_own():
    code = S.blocked_three_deep.__code__
    assert pickle.loads(pickle.dumps(code)) == code
    assert pickle.loads(pickle.dumps(S)) is S


@pytest.mark.parametrize("name, sends, expected", [
    ("counter_with_closure", "ch.send(5); ch.send(None)", "[7, 12]"),
    ("calls_with_star", "ch.send(4)", "[('before', 60, [('colour', 'red')]), "
                                      "('after', 64, (1, 2, 3), {'colour': 'red'})]"),
    ("in_with_and_finally", "ch.send(0)", "[('entered', 'token'), 'after receive', "
                                          "('exit', None), 'finally']"),
    ("handling_an_exception", "ch.send(0)", "[('caught', \"KeyError('original')\"), "
                                            "('still handling', \"KeyError('original')\"), "
                                            "('after except', None)]"),
])
def test_frame_shapes_resume_in_a_child_process(name, sends, expected):
    ch, log = stackless.channel(), []
    t = stackless.tasklet(getattr(S, name))(ch, log)
    stackless.run()
    if name == "counter_with_closure":
        ch.send(7)
    out = run_in_child(dumps_and_kill(t, ch, log), CHILD_PRELUDE + (
        "t, ch, log = objects\n"
        + sends + "\n"
        "stackless.run()\n"
        "print(log, t.alive)\n"))
    assert out == expected + " False\n"


def test_loops_over_iterators_resume_in_a_child_process():
    log = []
    t = stackless.tasklet(S.loops)(None, log)
    for _ in range(40):
        t.run()
    out = run_in_child(dumps_and_kill(t, log), CHILD_PRELUDE + (
        "t, log = objects\n"
        "t.insert()\n"
        "stackless.run()\n"
        "print(len(log), log[-1])\n"))
    assert out == "64 (1, 20, 100, 'b', 2, ('b', 2), 1, ('q', 7))\n"


def _receives_twice(ch):
    a = ch.receive()
    b = ch.receive()
    return a + b


def _adds_up(ch, log):
    log.append(_receives_twice(ch))


def test_a_restored_tasklet_that_blocks_again_pickles_again():
    # Its outer frame then waits for the inner one in the restoring loop: it resumes the same
    # way as after an inline call.
    ch, log = stackless.channel(), []
    t = stackless.tasklet(_adds_up)(ch, log)
    stackless.run()
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    ch2.send(10)
    assert t2.blocked and t2.restorable
    t3, ch3, log3 = pickle.loads(dumps_and_kill(t2, ch2, log2))
    ch3.send(5)
    assert log3 == [15] and not t3.alive


def test_a_tasklet_a_damaged_pickle_left_queued_without_frames_is_collected():
    # The channel's state queues the tasklet, then the tasklet's own state fails to load: the
    # two are garbage together, and nothing is left behind.
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    cls, args, state = t.__reduce__()
    t.kill()
    bare = cls(*args)
    ch2 = stackless.channel()
    stackless._channel_restore(ch2, -1, False, False, ((bare, -1, None),))
    with pytest.raises((pickle.UnpicklingError, ValueError)):
        bare.__setstate__(state[:4] + (("bad",) * 3,) + state[5:])
    assert ch2.balance == -1
    alive = weakref.ref(bare)
    del bare, ch2
    gc.collect()
    assert alive() is None


def _on_a_fresh_channel(log, channels):
    try:
        log.append(channels.pop().receive())  # only the call holds the channel
    finally:
        log.append("finally")


def test_an_unpickled_tasklet_blocked_on_a_channel_nothing_else_holds_is_collected_and_killed():
    log = []
    t = stackless.tasklet(_on_a_fresh_channel)(log, [stackless.channel()])
    stackless.run()
    data = pickle.dumps((t, log))
    t.kill()
    log.clear()
    t2, log2 = pickle.loads(data)
    assert t2.blocked
    alive = weakref.ref(t2)
    del t2
    gc.collect()
    assert alive() is None
    assert log2 == ["finally"]  # killed: its finally block ran


def test_an_unpickled_tasklet_reports_its_frames_before_it_runs():
    # Stackless's recursion_depth counts the frames an unpickled tasklet will resume.
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    depth = t.recursion_depth
    t2, ch2, log2 = pickle.loads(dumps_and_kill(t, ch, log))
    assert depth >= 4 and t2.recursion_depth == depth
    ch2.send(1)
    assert t2.recursion_depth == 0 and not t2.alive


def test_an_unpickled_tasklet_with_c_state_reports_its_frames_too():
    ch, log = stackless.channel(), []
    t = stackless.tasklet(S.blocked_three_deep)(ch, log)
    stackless.run()
    depth = t.recursion_depth
    old = stackless.enable_softswitch(False)
    try:
        data = dumps_and_kill(t, ch, log)  # frames with C state: they load, but cannot run
    finally:
        stackless.enable_softswitch(old)
    t2, ch2, log2 = pickle.loads(data)
    assert t2.recursion_depth == depth
    t2.kill()
