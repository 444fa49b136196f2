"""Pickling coroutines, asynchronous generators and their awaitables (frames included, as
Stackless pickles them), the pickle flags for async generators' hooks, tasklets that run inside
coroutines and generators driven by send() and next(), and the other objects Stackless pickles
(dict views, tracebacks with their frames' links, the module) and copies (cells, tracebacks)."""
import contextlib
import copy
import gc
import inspect
import io
import pickle
import sys
import threading
import types

import pytest
import stackless

import pickle_subjects as S


@types.coroutine
def suspend(value):
    return (yield value)


async def adder(start):
    total = start
    total += await suspend("first")
    total += await suspend("second")
    return total


async def numbers(ch=None):
    yield 1
    if ch is not None:
        ch.receive()
    yield 2


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


# ---------------------------------------------------------------------------------------------
# Coroutines

def test_a_suspended_coroutine_resumes_where_it_was_from_its_pickle():
    c = adder(1)
    assert c.send(None) == "first"
    c2 = roundtrip(c)
    assert type(c2) is types.CoroutineType and c2.cr_await is not None
    assert c2.send(10) == "second"
    with pytest.raises(StopIteration) as stop:
        c2.send(100)
    assert stop.value.value == 111
    # the original goes on independently
    assert c.send(2) == "second"
    c.close()


def test_a_coroutine_not_started_and_one_finished():
    c = roundtrip(adder(5))
    assert c.cr_frame is not None and c.cr_await is None
    assert c.send(None) == "first"
    c.close()
    done = adder(0)
    done.send(None)
    done.send(0)
    with pytest.raises(StopIteration):
        done.send(0)
    c = roundtrip(done)
    assert c.cr_frame is None
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        c.send(None)


def test_a_coroutine_keeps_its_name_and_origin():
    old = sys.get_coroutine_origin_tracking_depth()
    sys.set_coroutine_origin_tracking_depth(3)
    try:
        c = adder(0)
    finally:
        sys.set_coroutine_origin_tracking_depth(old)
    c.__qualname__ = "renamed"
    c2 = roundtrip(c)
    assert c2.__qualname__ == "renamed" and c2.__name__ == "adder"
    assert c2.cr_origin == c.cr_origin and c2.cr_origin is not c.cr_origin
    c.close()
    c2.close()


def test_a_coroutine_wrapper_pickles_with_its_coroutine():
    w = adder(1).__await__()
    w2 = roundtrip(w)
    assert type(w2) is type(w)
    assert w2.send(None) == "first"
    w.close()
    w2.close()


def test_a_running_coroutine_pickles_only_with_its_tasklet():
    seen = []

    async def body():
        with pytest.raises(pickle.PicklingError, match="running coroutine"):
            pickle.dumps(running)
        seen.append("refused")

    running = body()
    with pytest.raises(StopIteration):
        running.send(None)
    assert seen == ["refused"]


# ---------------------------------------------------------------------------------------------
# Async generators and their awaitables

def asend_value(awaitable):
    with pytest.raises(StopIteration) as stop:
        awaitable.send(None)
    return stop.value.value


def test_an_async_generator_resumes_after_what_it_yielded():
    ag = numbers()
    assert asend_value(ag.__anext__()) == 1
    ag2 = roundtrip(ag)
    assert type(ag2) is types.AsyncGeneratorType and ag2.ag_frame is not None
    assert asend_value(ag2.__anext__()) == 2
    with pytest.raises(StopAsyncIteration):
        ag2.__anext__().send(None)
    assert ag2.ag_frame is None


def test_asend_and_athrow_pickle_with_their_state():
    ag = numbers()
    asend = ag.asend(None)
    asend2 = roundtrip(asend)
    assert type(asend2) is type(asend)
    assert asend_value(asend2) == 1  # the copy's generator, unstarted as when pickled
    assert stackless._wrap.async_generator_asend.__reduce__(asend2)[2][2] == 2  # closed
    assert asend_value(ag.__anext__()) == 1
    athrow = ag.athrow(KeyError("boom"))
    athrow2 = roundtrip(athrow)
    _, args, state, has_args = stackless._wrap.async_generator_athrow.__reduce__(athrow2)[2]
    assert state == 0 and has_args and type(args[0]) is KeyError
    with pytest.raises(KeyError, match="boom"):
        athrow2.send(None)
    # copy.copy makes another awaitable of the same generator
    asend3 = copy.copy(ag.asend(None))
    assert asend_value(asend3) == 2


@contextlib.contextmanager
def asyncgen_hooks(firstiter, finalizer):
    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
    try:
        yield
    finally:
        sys.set_asyncgen_hooks(*old)


@contextlib.contextmanager
def pickle_flags(flags):
    old = stackless.pickle_flags(flags)
    try:
        yield
    finally:
        stackless.pickle_flags(old)


HOOK_CALLS = []


def first_hook(ag):
    HOOK_CALLS.append("first")


def final_hook(ag):
    HOOK_CALLS.append("final")


def first_hook2(ag):
    HOOK_CALLS.append("first2")


def final_hook2(ag):
    HOOK_CALLS.append("final2")


@pytest.mark.parametrize("dump_flags, load_flags, expected", [
    (0, 0, "now"), (stackless.PICKLEFLAGS_PRESERVE_AG_FINALIZER, 0, "now"),
    (0, stackless.PICKLEFLAGS_PRESERVE_AG_FINALIZER, "now"),
    (stackless.PICKLEFLAGS_PRESERVE_AG_FINALIZER, stackless.PICKLEFLAGS_PRESERVE_AG_FINALIZER,
     "kept"),
    (stackless.PICKLEFLAGS_RESET_AG_FINALIZER, 0, "reset"),
    (0, stackless.PICKLEFLAGS_RESET_AG_FINALIZER, "reset")])
def test_an_async_generators_hooks_follow_the_pickle_flags(dump_flags, load_flags, expected):
    HOOK_CALLS.clear()
    ag = numbers()
    with asyncgen_hooks(first_hook, final_hook):
        asend_value(ag.__anext__())
    assert HOOK_CALLS == ["first"]
    with pickle_flags(dump_flags):
        p = pickle.dumps(ag)
    del ag
    gc.collect()
    assert HOOK_CALLS == ["first", "final"]
    HOOK_CALLS.clear()
    with asyncgen_hooks(first_hook2, final_hook2):
        with pickle_flags(load_flags):
            ag = pickle.loads(p)
        del ag
        gc.collect()
    assert HOOK_CALLS == {"now": ["first2", "final2"], "kept": ["final"], "reset": []}[expected]


def test_pickle_flags_are_per_thread_and_new_threads_take_the_default():
    assert stackless.pickle_flags() == 0 and stackless.pickle_flags_default() == 0
    with pytest.raises(ValueError, match="undefined pickle-flag"):
        stackless.pickle_flags(8)
    seen = []
    old = stackless.pickle_flags_default(stackless.PICKLEFLAGS_PRESERVE_TRACING_STATE)
    try:
        assert stackless.pickle_flags() == 0  # this thread's own flags
        t = threading.Thread(target=lambda: seen.append(stackless.pickle_flags()))
        t.start()
        t.join()
    finally:
        stackless.pickle_flags_default(old)
    assert seen == [stackless.PICKLEFLAGS_PRESERVE_TRACING_STATE]
    assert stackless.pickle_flags(6, 2) == 0 and stackless.pickle_flags() == 2
    assert stackless.pickle_flags(0) == 2


# ---------------------------------------------------------------------------------------------
# Tasklets inside coroutines and generators driven by calls

def drive_with_send(ch, log):
    c = adder_receiving(ch)
    log.append(c.send(None))
    try:
        c.send(None)
    except StopIteration as e:
        log.append(("returned", e.value))


async def adder_receiving(ch):
    first = await suspend("suspended")
    return (first, ch.receive())


def pull_with_next(ch, log):
    def gen():
        yield ch.receive()
        yield "second"

    g = gen()
    log.append(next(g))
    log.append(g.__next__())
    log.append(next(g, "done"))


@pytest.mark.parametrize("function, expected", [
    (drive_with_send, ["suspended", ("returned", (None, 7))]),
    (pull_with_next, [7, "second", "done"]),
])
def test_a_tasklet_blocked_in_a_coroutine_or_generator_driven_by_a_call_resumes(function,
                                                                              expected):
    ch, log = stackless.channel(), []
    t = stackless.tasklet(function)(ch, log)
    stackless.run()
    assert t.blocked and t.nesting_level == 0 and t.restorable
    t2, ch2, log2 = pickle.loads(pickle.dumps((t, ch, log)))
    t.kill()
    ch2.send(7)
    stackless.run()
    assert log2 == expected and not t2.alive


def test_a_generator_driven_by_a_c_function_has_c_state():
    ch, log = stackless.channel(), []

    def body():
        log.append(list(ch.receive() for _ in range(1)))

    t = stackless.tasklet(body)()
    stackless.run()
    assert t.nesting_level == 1 and not t.restorable
    ch.send(3)
    assert log == [[3]]


# ---------------------------------------------------------------------------------------------
# Dict views, tracebacks, the module, copies

@pytest.mark.parametrize("view", [lambda d: d.keys(), lambda d: d.values(),
                                  lambda d: d.items()])
def test_dict_views_pickle_with_their_dict(view):
    d = {1: "a", 2: "b"}
    v2, d2 = roundtrip((view(d), d))
    assert type(v2) is type(view(d)) and list(v2) == list(view(d))
    d2[3] = "c"  # the view is of the dict pickled with it
    assert len(v2) == 3


def test_traceback_frames_keep_their_places_and_callers():
    def inner():
        1 // 0

    def outer():
        return inner()

    try:
        outer()
    except ZeroDivisionError:
        tb = sys.exc_info()[2]
    tb2 = roundtrip(tb)
    innermost = inspect.getinnerframes(tb2)[-1][0]
    chain = [(f.function, f.lineno) for f in inspect.getouterframes(innermost)]
    original = [(f.function, f.lineno) for f in inspect.getinnerframes(tb)][::-1]
    # (the outermost frame, this test's, ran on after the traceback was made)
    assert chain[:-1] == original[:-1] and chain[-1][0] == original[-1][0]
    assert innermost.f_locals == {}  # frames of an unpickled traceback keep no locals


def test_copies_of_cells_tracebacks_and_the_module():
    def f():
        x = [1]

        def g():
            return x
        return g

    cell = f().__closure__[0]
    c = copy.copy(cell)
    assert c is not cell and c.cell_contents is cell.cell_contents
    d = copy.deepcopy(cell)
    assert d.cell_contents == [1] and d.cell_contents is not cell.cell_contents
    try:
        1 // 0
    except ZeroDivisionError:
        tb = sys.exc_info()[2]
    tb2 = copy.copy(tb)
    assert tb2 is not tb and tb2.tb_frame is tb.tb_frame and tb2.tb_lineno == tb.tb_lineno
    assert copy.copy(stackless) is stackless
    assert roundtrip(stackless) is stackless


def make_counter(start):
    count = [start]

    def step():
        count[0] += 1
        return count[0]
    return step


@pytest.mark.parametrize("dumps", [pickle.dumps, pickle._dumps, lambda o: dump_to_bytes(o)])
def test_functions_pickle_cannot_find_by_name_are_pickled_by_value(dumps):
    twice = lambda x: 2 * x  # noqa: E731
    step = make_counter(10)
    loaded_twice, loaded_step, shared = pickle.loads(dumps((twice, step, [step, step])))
    assert loaded_twice(21) == 42 and loaded_twice.__module__ == __name__
    assert loaded_step() == 11 and loaded_step() == 12
    assert shared[0] is shared[1] is loaded_step  # one function, pickled once
    assert step() == 11  # the original's own cell


def dump_to_bytes(obj):
    f = io.BytesIO()
    pickle.dump(obj, f)
    return f.getvalue()


def test_what_cannot_be_pickled_still_fails_with_the_original_error():
    with pytest.raises(TypeError, match="cannot pickle '_thread.lock' object"):
        pickle.dumps(threading.Lock())
    # The second try fails too (the lock): the first error is what CPython's pickle said.
    with pytest.raises(AttributeError, match="Can't pickle local object"):
        pickle.dumps([lambda: None, threading.Lock()])


def test_the_exceptions_handled_around_and_inside_a_running_generator_survive_pickling():
    def inner():
        stackless.schedule_remove(sys.exc_info()[0])  # the outer frame's, seen from inside
        try:
            raise KeyError
        except KeyError:
            yield stackless.schedule_remove(sys.exc_info()[0])
        yield

    def outer():
        try:
            raise ZeroDivisionError
        except ZeroDivisionError:
            for _ in inner():
                stackless.schedule_remove(sys.exc_info()[0])

    t = stackless.tasklet(outer)()
    stackless.run()
    expected = [ZeroDivisionError, KeyError, ZeroDivisionError, ZeroDivisionError]
    seen_after = []
    while t.alive:  # each step from a pickle, the original killed
        seen_after.append(t.tempval)
        t2 = pickle.loads(pickle.dumps(t))
        t.kill()
        t = t2
        t.insert()
        stackless.run()
    assert seen_after == expected
