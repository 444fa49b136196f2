"""Per-tasklet interpreter state: the exception being handled (sys.exc_info()), the recursion
depth, the contextvars context; and the lifetime of tasklet objects (gc, finalization)."""
import contextvars
import gc
import sys
import textwrap
import weakref

import pytest

import stackless

from conftest import run_program


# --- sys.exc_info() ------------------------------------------------------------------------


def test_the_exception_being_handled_belongs_to_its_tasklet():
    seen = {}

    def a():
        try:
            raise ValueError("a's")
        except ValueError:
            mine = sys.exc_info()[1]
            stackless.schedule()  # b runs while a is inside its except block
            seen["a after switch"] = sys.exc_info()[1] is mine
            stackless.schedule()
            try:
                raise  # re-raises a's exception, not anybody else's
            except ValueError as e:
                seen["a reraised"] = e is mine

    def b():
        seen["b start"] = sys.exc_info()
        stackless.schedule()
        seen["b after switch"] = sys.exc_info()

    stackless.tasklet(a)()
    stackless.tasklet(b)()
    stackless.run()
    assert seen == {"b start": (None, None, None), "a after switch": True,
                    "b after switch": (None, None, None), "a reraised": True}


def test_many_tasklets_handling_their_own_exceptions_across_switches():
    current, rethrown = {}, {}

    def f(me):
        try:
            raise KeyError("tasklet %d" % me)
        except KeyError:
            stackless.schedule()  # the others raise and catch their own meanwhile
            current[me] = sys.exc_info()[1].args[0]
            stackless.schedule()
            try:
                raise
            except KeyError as e:
                rethrown[me] = e.args[0]

    for i in range(12):
        stackless.tasklet(f)(i)
    stackless.run()
    assert current == {i: "tasklet %d" % i for i in range(12)}
    assert rethrown == {i: "tasklet %d" % i for i in range(12)}


def test_main_handling_an_exception_does_not_show_it_to_tasklets():
    seen = []
    try:
        raise KeyError("main's")
    except KeyError:
        mine = sys.exc_info()[1]
        stackless.tasklet(lambda: seen.append(sys.exc_info()))()
        stackless.run()
        seen.append(sys.exc_info()[1] is mine)
    assert seen == [(None, None, None), True]
    assert sys.exc_info() == (None, None, None)


def test_implicit_exception_chaining_uses_the_tasklets_own_exception():
    contexts = {}

    def f(name, exc_type):
        try:
            raise exc_type(name)
        except exc_type:
            stackless.schedule()  # the other tasklet is inside its own except block
            try:
                raise ValueError("second in " + name)
            except ValueError as e:
                contexts[name] = (type(e.__context__), e.__context__.args)

    stackless.tasklet(f)("a", KeyError)
    stackless.tasklet(f)("b", IndexError)
    stackless.run()
    assert contexts == {"a": (KeyError, ("a",)), "b": (IndexError, ("b",))}


# --- recursion depth -------------------------------------------------------------------------


def probe(n=0):
    """How many more nested Python calls are possible from here."""
    try:
        return probe(n + 1)
    except RecursionError:
        return n


def current_depth():
    n, f = 0, sys._getframe(1)
    while f is not None:
        n += 1
        f = f.f_back
    return n


def test_deep_recursion_in_a_tasklet_raises_recursion_error():
    limit = sys.getrecursionlimit()
    reached = []
    stackless.tasklet(lambda: reached.append(probe()))()
    stackless.run()
    assert len(reached) == 1
    # the tasklet starts near depth 0 and is stopped at the recursion limit
    assert limit - 100 <= reached[0] <= limit


def test_uncaught_recursion_error_in_a_tasklet_reaches_main():
    def endless(n):
        return endless(n + 1)

    stackless.tasklet(endless)(0)
    with pytest.raises(RecursionError):
        stackless.run()


def test_each_tasklet_has_its_own_recursion_depth():
    limit = sys.getrecursionlimit()
    results = {}

    def dive(n):
        if n > 0:
            return dive(n - 1)
        # main is now close to the recursion limit
        results["main before"] = probe()
        stackless.tasklet(lambda: results.setdefault("tasklet", probe()))()
        stackless.run()
        results["main after"] = probe()

    margin = 60
    dive(limit - current_depth() - margin)
    assert results["main before"] < 150
    # the tasklet's depth does not start where main's is
    assert results["tasklet"] >= limit - 100
    # and main's depth is restored when it resumes
    assert abs(results["main after"] - results["main before"]) <= 5


def test_recursion_depth_is_restored_across_switches_between_tasklets():
    results = {}

    def deep(name, n):
        if n > 0:
            return deep(name, n - 1)
        results[name + " before"] = probe()
        stackless.schedule()  # the other tasklet runs at its own depth
        results[name + " after"] = probe()

    stackless.tasklet(deep)("shallow", 10)
    stackless.tasklet(deep)("deep", sys.getrecursionlimit() - 150)
    stackless.run()
    assert abs(results["shallow after"] - results["shallow before"]) <= 5
    assert abs(results["deep after"] - results["deep before"]) <= 5
    assert results["shallow before"] - results["deep before"] > sys.getrecursionlimit() // 2


RECURSION_THROUGH_C_CALLS = textwrap.dedent("""\
    import stackless

    def via_map(n):
        return list(map(via_map, [n + 1]))

    class Nested:
        def __init__(self, n):
            self.child = Nested(n + 1)

    class Repr:
        def __repr__(self):
            return repr(Repr())

    results = []

    def attempt(name, fn):
        try:
            fn()
        except RecursionError:
            results.append(name + " RecursionError")
        else:
            results.append(name + " returned")

    for name, fn in [("map", lambda: via_map(0)), ("init", lambda: Nested(0)),
                     ("repr", lambda: repr(Repr()))]:
        stackless.tasklet(attempt)(name, fn)
    stackless.run()
    print("\\n".join(results))
    """)


def test_deep_recursion_through_c_calls_in_a_tasklet_raises_recursion_error(tmp_path):
    # Each level of these recursions nests C calls (map, type call, repr), so it uses C stack
    # in the tasklet; it must end in RecursionError, not overflow the tasklet's stack. In a
    # subprocess, so that a crash fails this test only.
    lines = run_program(tmp_path, RECURSION_THROUGH_C_CALLS)
    assert lines == ["map RecursionError", "init RecursionError", "repr RecursionError"]


# --- contextvars -----------------------------------------------------------------------------

var = contextvars.ContextVar("var", default="default")


def test_a_tasklet_sees_the_context_variables_of_its_creator():
    token = var.set("set by main")
    try:
        seen = []
        stackless.tasklet(lambda: seen.append(var.get()))()
        stackless.run()
        assert seen == ["set by main"]
    finally:
        var.reset(token)


def test_a_tasklet_runs_in_the_context_it_was_created_in():
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inside ctx")
    seen = []

    def f():
        seen.append(var.get())
        stackless.schedule()
        seen.append(var.get())

    ctx.run(lambda: stackless.tasklet(f)())
    token = var.set("main's own")
    try:
        stackless.schedule()
        seen.append(("main", var.get()))
        stackless.run()
        seen.append(("main", var.get()))
    finally:
        var.reset(token)
    assert seen == ["inside ctx", ("main", "main's own"), "inside ctx", ("main", "main's own")]


def test_switching_inside_context_run():
    ctx = contextvars.Context()
    seen = []

    def inner():
        var.set("in ctx.run")
        stackless.schedule()
        return var.get()

    def f():
        seen.append(ctx.run(inner))
        seen.append(var.get())

    stackless.tasklet(f)()
    stackless.tasklet(lambda: seen.append(("other", var.get())))()
    stackless.run()
    assert seen == [("other", "default"), "in ctx.run", "default"]
    assert ctx[var] == "in ctx.run"


# The next two tests state the brief's rule, "each tasklet runs in its own copy of the
# context" (as an asyncio Task does). Note that Stackless 3.7.6 (tasklets.rst, "Tasklets and
# Context Variables") instead makes a new tasklet *share* the context object of its creator,
# so there a variable set in one tasklet is seen by its creator and siblings.

def test_a_context_variable_set_in_a_tasklet_does_not_leak_into_others():
    seen = []

    def setter():
        var.set("set by setter")
        seen.append(("setter", var.get()))
        stackless.schedule()
        seen.append(("setter again", var.get()))

    stackless.tasklet(setter)()
    stackless.tasklet(lambda: seen.append(("sibling", var.get())))()
    stackless.run()
    seen.append(("main", var.get()))
    assert seen == [("setter", "set by setter"), ("sibling", "default"),
                    ("setter again", "set by setter"), ("main", "default")]


def test_tasklets_keep_their_own_context_values_across_switches():
    seen = []

    def f(name):
        var.set(name)
        for _ in range(3):
            stackless.schedule()
            seen.append((name, var.get()))

    for name in ("a", "b", "c"):
        stackless.tasklet(f)(name)
    stackless.run()
    assert len(seen) == 9
    assert all(name == value for name, value in seen)
    assert var.get() == "default"


# --- lifetime --------------------------------------------------------------------------------


def test_a_finished_tasklet_is_collected():
    t = stackless.tasklet(lambda: None)()
    ref = weakref.ref(t)
    stackless.run()
    del t
    gc.collect()
    assert ref() is None


def test_a_finished_tasklet_releases_its_function_and_arguments():
    class Token:
        pass

    arg, held = Token(), Token()
    w_arg, w_held = weakref.ref(arg), weakref.ref(held)

    def make():
        captured = held

        def f(a):
            assert captured is not None and a is not None
        return f

    t = stackless.tasklet(make())(arg)
    del arg, held
    gc.collect()
    assert w_arg() is not None and w_held() is not None  # the tasklet has not run yet
    stackless.run()
    gc.collect()
    assert t.alive is False
    assert w_arg() is None
    assert w_held() is None


def test_dropping_the_last_reference_to_a_paused_tasklet_kills_it():
    log = []

    def f():
        try:
            log.append("start")
            stackless.schedule_remove(None)
            log.append("resumed")
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.paused is True
    ref = weakref.ref(t)
    del t
    gc.collect()
    stackless.run()  # in case the kill was made pending
    assert log == ["start", "finally"]
    gc.collect()
    assert ref() is None


def test_dropping_the_last_reference_to_a_removed_tasklet_kills_it():
    log = []

    def f():
        try:
            while True:
                log.append("tick")
                stackless.schedule()
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.schedule()
    t.remove()
    assert t.paused is True
    del t
    gc.collect()
    stackless.run()  # in case the kill was made pending
    assert log == ["tick", "finally"]


def test_an_unstarted_tasklet_dropped_never_runs():
    ran = []
    t = stackless.tasklet(ran.append, ("never",))  # alive, paused, never started
    ref = weakref.ref(t)
    del t
    gc.collect()
    stackless.run()
    assert ran == []
    assert ref() is None


def test_a_tasklet_blocked_on_a_channel_nobody_else_can_reach_is_collected_and_killed():
    log = []

    def waits_forever():
        ch = stackless.channel()  # only this frame refers to it
        try:
            ch.receive()
        finally:
            log.append("finally")

    t = stackless.tasklet(waits_forever)()
    ref = weakref.ref(t)
    stackless.run()
    assert t.blocked
    del t
    assert log == []  # still blocked: its channel keeps it
    gc.collect()
    stackless.run()
    gc.collect()
    assert log == ["finally"]
    assert ref() is None


def test_a_tasklet_blocked_on_a_reachable_channel_is_not_collected():
    ch = stackless.channel()
    got = []
    stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.run()
    gc.collect()
    assert ch.balance == -1
    ch.send("still there")
    assert got == ["still there"]


def test_a_cycle_through_a_blocked_tasklets_locals_is_collected():
    class Holder:
        pass

    log = []

    def blocked(holder):
        ch = stackless.channel()
        holder.ch = ch
        holder.me = stackless.getcurrent()  # tasklet -> frame -> holder -> tasklet
        try:
            ch.receive()
        finally:
            log.append("unwound")

    h = Holder()
    w = weakref.ref(h)
    stackless.tasklet(blocked)(h)
    stackless.run()
    del h
    gc.collect()
    stackless.run()
    gc.collect()
    assert log == ["unwound"]
    assert w() is None


def test_set_context_and_context_run_before_the_tasklet_starts():
    var = contextvars.ContextVar("var", default="default")
    seen = []
    ctx = contextvars.Context()
    t = stackless.tasklet(lambda: seen.append(var.get()))
    assert t.set_context(ctx) is t
    t.context_run(var.set, "given")
    t()
    stackless.run()
    assert seen == ["given"]
    assert var.get() == "default"
    assert ctx[var] == "given"


def test_context_run_in_a_paused_tasklets_context():
    var = contextvars.ContextVar("var2", default="default")
    seen = []

    def body():
        var.set("inside")
        stackless.schedule_remove()
        seen.append(var.get())

    t = stackless.tasklet(body)()
    stackless.run()
    assert t.paused
    assert t.context_run(var.get) == "inside"
    t.context_run(var.set, "changed from outside")
    t.insert()
    stackless.run()
    assert seen == ["changed from outside"]


def test_threads_lists_this_thread():
    import threading
    assert threading.get_ident() in stackless.threads


def test_frames_deeper_than_a_tasklets_first_chunk_reuse_chunks():
    # A tasklet's frames start in a small chunk of its own, sized for its function's frame and a
    # little more; a call that goes deeper spills into a chunk CPython allocates, and frees when
    # the call returns. Those chunks are reused, not mapped anew at every call.
    def inner(a, b, c, d, e, f, g, h):
        x1 = x2 = x3 = x4 = x5 = x6 = x7 = x8 = a
        return x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + b + c + d + e + f + g + h

    results = []

    def body(n):
        total = 0
        for i in range(n):
            total += inner(i, 1, 2, 3, 4, 5, 6, 7)
        results.append(total)

    before = stackless._stats()["frame_chunks_reused"]
    stackless.tasklet(body)(1000)
    stackless.run()
    assert results == [sum(8 * i + 28 for i in range(1000))]
    assert stackless._stats()["frame_chunks_reused"] - before >= 900
