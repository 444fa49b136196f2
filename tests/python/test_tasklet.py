"""The tasklet class: creation, bind/setup/__call__, insert/remove, state attributes, flags,
tempval, subclassing, and misuse (tasklets.rst)."""
import threading

import pytest

import stackless


def noop():
    pass


# --- creation, bind, setup ------------------------------------------------------------------


def test_module_exports_tasklet_channel_and_exceptions():
    assert isinstance(stackless.tasklet, type)
    assert isinstance(stackless.channel, type)
    assert issubclass(stackless.TaskletExit, SystemExit)
    assert not issubclass(stackless.TaskletExit, Exception)
    assert isinstance(stackless.bomb, type)


def test_tasklet_of_function_is_bound_but_not_alive_until_called():
    log = []

    def f(*args, **kwargs):
        log.append((args, kwargs))

    t = stackless.tasklet(f)
    assert t.alive is False
    assert t.scheduled is False
    assert t.paused is False
    assert stackless.getruncount() == 1
    assert t(1, 2, x=3) is t  # __call__ is setup(), which returns the tasklet
    assert t.alive is True
    assert t.scheduled is True
    assert t.paused is False
    assert stackless.getruncount() == 2
    assert log == []
    stackless.run()
    assert log == [((1, 2), {"x": 3})]
    assert t.alive is False
    assert t.scheduled is False


def test_tasklets_doc_example_args_and_kwargs():
    # tasklets.rst: stackless.tasklet(func)(1, 2, 3, string="test")
    log = []

    def func(*args, **kwargs):
        log.append("scheduled with %s and %s" % (args, kwargs))

    stackless.tasklet(func)(1, 2, 3, string="test")
    stackless.run()
    assert log == ["scheduled with (1, 2, 3) and {'string': 'test'}"]


def test_setup_is_call():
    log = []
    t = stackless.tasklet(log.append)
    assert t.setup("via setup") is t
    assert t.scheduled is True
    stackless.run()
    assert log == ["via setup"]


def test_stepwise_bind_setup_insert_like_the_article():
    # t = stackless.tasklet(); t.bind(f); t.setup(); t.insert()
    log = []

    def f():
        log.append("f")

    t = stackless.tasklet()
    assert t.bind(f) is t
    assert t.alive is False
    t.setup()
    assert t.insert() is t  # already inserted by setup(): no effect
    assert stackless.getruncount() == 2
    stackless.run()
    assert log == ["f"]


def test_bind_with_arguments_makes_tasklet_alive_and_paused():
    log = []

    def f(a, b, c=None):
        log.append((a, b, c))

    t = stackless.tasklet()
    t.bind(f, (4, "x"), {"c": "kw"})
    assert t.alive is True
    assert t.paused is True
    assert t.scheduled is False
    assert stackless.getruncount() == 1
    stackless.run()  # not in the run queue: does not run
    assert log == []
    t.insert()
    assert t.scheduled is True
    assert t.paused is False
    stackless.run()
    assert log == [(4, "x", "kw")]
    assert t.alive is False


def test_bind_with_kwargs_only():
    log = []

    def f(a=0, b=0):
        log.append((a, b))

    t = stackless.tasklet()
    t.bind(f, kwargs={"b": 2})
    assert t.alive is True
    t.insert()
    stackless.run()
    assert log == [(0, 2)]


def test_constructor_takes_func_args_kwargs_like_bind():
    log = []

    def f(a, b, c):
        log.append(a + b + c)

    t = stackless.tasklet(f, (1, 2), {"c": 3})
    assert t.alive is True
    assert t.paused is True
    t.insert()
    stackless.run()
    assert log == [6]


def test_setup_with_bound_function_only_after_bind_none_args():
    # bind(None, args) keeps the function bound earlier
    log = []
    t = stackless.tasklet(log.append)
    t.bind(None, ("kept function",))
    assert t.alive is True
    t.insert()
    stackless.run()
    assert log == ["kept function"]


def test_dead_tasklet_can_be_bound_again_and_runs_again():
    log = []
    t = stackless.tasklet(lambda n: log.append("first %d" % n))(1)
    stackless.run()
    assert t.alive is False
    t.bind(lambda n: log.append("second %d" % n))
    t(2)
    stackless.run()
    assert log == ["first 1", "second 2"]
    assert t.alive is False


def test_bind_non_callable_is_type_error():
    t = stackless.tasklet()
    with pytest.raises(TypeError):
        t.bind(42)
    with pytest.raises(TypeError):
        stackless.tasklet("not callable")


def test_setup_without_function_is_runtime_error():
    t = stackless.tasklet()
    with pytest.raises(RuntimeError):
        t.setup()
    assert t.alive is False
    assert stackless.getruncount() == 1


def test_setup_on_alive_tasklet_is_runtime_error():
    t = stackless.tasklet(lambda: stackless.schedule_remove(None))()
    with pytest.raises(RuntimeError, match="alive"):
        t.setup()  # scheduled, not started
    assert stackless.getruncount() == 2
    stackless.run()
    assert t.paused is True
    with pytest.raises(RuntimeError, match="alive"):
        t.setup()  # started and paused
    t.kill()
    assert t.alive is False


def test_bind_on_scheduled_tasklet_is_runtime_error():
    log = []
    t = stackless.tasklet(log.append)("original")
    with pytest.raises(RuntimeError):
        t.bind(lambda: log.append("replacement"))
    stackless.run()
    assert log == ["original"]


def test_bind_of_the_current_tasklet_is_runtime_error():
    errors = []

    def f():
        try:
            stackless.getcurrent().bind(noop)
        except RuntimeError as e:
            errors.append(e)

    stackless.tasklet(f)()
    stackless.run()
    assert len(errors) == 1


def test_unbinding_the_main_tasklet_is_runtime_error():
    with pytest.raises(RuntimeError):
        stackless.getmain().bind(None)
    assert stackless.getmain().alive is True


# --- state attributes ----------------------------------------------------------------------


def test_new_unbound_tasklet_attributes():
    t = stackless.tasklet()
    assert t.alive is False
    assert t.scheduled is False
    assert t.blocked is False
    assert t.paused is False
    assert t.is_main is False
    assert t.is_current is False
    assert t.next is None
    assert t.prev is None
    assert t.atomic is False
    assert t.ignore_nesting is False
    assert t.block_trap is False
    assert t.thread_id == threading.get_ident()


def test_main_tasklet_attributes():
    m = stackless.getmain()
    assert m is stackless.main
    assert m is stackless.getcurrent()
    assert m is stackless.current
    assert m.is_main is True
    assert m.is_current is True
    assert m.alive is True
    assert m.scheduled is True
    assert m.paused is False
    assert m.blocked is False
    assert m.thread_id == threading.get_ident()
    # with only main in the run queue, main is its own neighbour
    assert m.next is m
    assert m.prev is m
    assert stackless.getruncount() == 1
    assert stackless.runcount == 1


def test_attributes_seen_from_inside_a_running_tasklet():
    seen = {}

    def f():
        me = stackless.getcurrent()
        seen["same"] = me is t
        seen["module current"] = stackless.current is t
        seen["is_current"] = t.is_current
        seen["scheduled"] = t.scheduled
        seen["alive"] = t.alive
        seen["is_main"] = t.is_main
        seen["main is current"] = stackless.getmain().is_current
        seen["main scheduled"] = stackless.getmain().scheduled  # run() took main out
        seen["main paused"] = stackless.getmain().paused
        seen["main"] = stackless.main is stackless.getmain()

    t = stackless.tasklet(f)()
    assert t.is_current is False
    stackless.run()
    assert seen == {"same": True, "module current": True, "is_current": True, "scheduled": True,
                    "alive": True, "is_main": False, "main is current": False,
                    "main scheduled": False, "main paused": True, "main": True}


def test_blocked_tasklet_attributes():
    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    stackless.run()
    assert t.alive is True
    assert t.blocked is True
    assert t.scheduled is True  # blocked counts as scheduled
    assert t.paused is False
    assert t.is_current is False
    assert stackless.getruncount() == 1  # but it is not runnable
    ch.send(1)
    assert t.alive is False
    assert t.blocked is False


def test_next_and_prev_describe_the_run_queue_ring():
    m = stackless.getmain()
    a = stackless.tasklet(noop)()
    b = stackless.tasklet(noop)()
    assert m.next is a and a.next is b and b.next is m
    assert m.prev is b and b.prev is a and a.prev is m
    b.remove()
    assert b.next is None and b.prev is None
    assert a.next is m
    b.insert()
    assert a.next is b
    stackless.run()
    assert a.next is None and a.prev is None


def test_thread_id_is_shared_by_the_threads_tasklets():
    seen = []
    t = stackless.tasklet(lambda: seen.append(stackless.getcurrent().thread_id))()
    assert t.thread_id == stackless.getmain().thread_id == threading.get_ident()
    stackless.run()
    assert seen == [threading.get_ident()]


def test_tasklets_are_distinct_and_hashable():
    a, b = stackless.tasklet(), stackless.tasklet()
    assert a is not b
    assert a != b
    assert len({a, b, a}) == 2
    assert stackless.getmain() == stackless.getmain()


# --- insert, remove ------------------------------------------------------------------------


def test_insert_appends_at_the_end_in_insertion_order():
    log = []
    ts = [stackless.tasklet(log.append, (name,)) for name in "ABC"]
    assert [t.paused for t in ts] == [True, True, True]
    assert ts[2].insert() is ts[2]
    ts[0].insert()
    ts[1].insert()
    assert stackless.getruncount() == 4
    stackless.run()
    assert log == ["C", "A", "B"]


def test_insert_of_a_scheduled_tasklet_changes_nothing():
    log = []
    a = stackless.tasklet(log.append)("a")
    stackless.tasklet(log.append)("b")
    a.insert()
    a.insert()
    assert stackless.getruncount() == 3
    stackless.run()
    assert log == ["a", "b"]


def test_remove_takes_a_tasklet_out_of_the_run_queue():
    log = []
    stackless.tasklet(log.append)("a")
    b = stackless.tasklet(log.append)("b")
    assert b.remove() is b
    assert b.alive is True
    assert b.paused is True
    assert b.scheduled is False
    assert stackless.getruncount() == 2
    b.remove()  # removing a paused tasklet is harmless
    assert stackless.getruncount() == 2
    stackless.run()
    assert log == ["a"]
    b.insert()
    stackless.run()
    assert log == ["a", "b"]


# --- flags -------------------------------------------------------------------------------


def test_set_atomic_returns_the_old_value():
    t = stackless.tasklet()
    assert t.atomic is False
    assert t.set_atomic(True) is False
    assert t.atomic is True
    assert t.set_atomic(True) is True
    assert t.set_atomic(False) is True
    assert t.atomic is False
    m = stackless.getcurrent()
    old = m.set_atomic(1)
    try:
        assert m.atomic is True
    finally:
        m.set_atomic(old)
    assert m.atomic is False


def test_atomic_tasklet_still_switches_cooperatively():
    # atomic only inhibits preemption (run(timeout)); explicit switches still happen
    log = []

    def f(name):
        stackless.getcurrent().set_atomic(True)
        log.append(name + "1")
        stackless.schedule()
        log.append(name + "2")

    stackless.tasklet(f)("a")
    stackless.tasklet(f)("b")
    stackless.run()
    assert log == ["a1", "b1", "a2", "b2"]


def test_set_ignore_nesting_returns_the_old_value():
    t = stackless.tasklet()
    assert t.ignore_nesting is False
    assert t.set_ignore_nesting(1) is False
    assert t.ignore_nesting is True
    assert t.set_ignore_nesting(0) is True
    assert t.ignore_nesting is False


def test_block_trap_is_a_settable_flag():
    t = stackless.tasklet()
    assert t.block_trap is False
    t.block_trap = True
    assert t.block_trap is True
    t.block_trap = False
    assert t.block_trap is False


# --- tempval ------------------------------------------------------------------------------


def test_tempval_carries_the_value_schedule_remove_returns():
    # stackless.rst, schedule_remove: wait_for_result() / event_callback()
    waiting = []
    results = []

    def wait_for_result():
        waiting.append(stackless.getcurrent())
        return stackless.schedule_remove()

    def tasklet_function(name):
        results.append((name, wait_for_result()))

    stackless.tasklet(tasklet_function)("t1")
    stackless.tasklet(tasklet_function)("t2")
    stackless.run()
    assert len(waiting) == 2 and results == []
    for i, t in enumerate(waiting):
        assert t.paused is True
        t.tempval = "result %d" % i
        assert t.tempval == "result %d" % i
        t.insert()
    stackless.run()
    assert results == [("t1", "result 0"), ("t2", "result 1")]


# --- subclassing -------------------------------------------------------------------------


class Worker(stackless.tasklet):
    def __init__(self, name, log):
        super().__init__(self.work)
        self.name = name
        self.log = log
        self.count = 0

    def work(self, n):
        for i in range(n):
            self.count += 1
            self.log.append((self.name, i, stackless.getcurrent() is self))
            stackless.schedule()


def test_subclass_with_its_own_init_and_attributes():
    log = []
    w1 = Worker("w1", log)
    w2 = Worker("w2", log)
    assert isinstance(w1, stackless.tasklet)
    assert w1.alive is False
    w1(2)
    w2(2)
    stackless.run()
    assert log == [("w1", 0, True), ("w2", 0, True), ("w1", 1, True), ("w2", 1, True)]
    assert (w1.count, w2.count) == (2, 2)
    assert w1.alive is False


def test_getcurrent_returns_the_subclass_instance():
    seen = []

    class Named(stackless.tasklet):
        label = "named"

    def f():
        cur = stackless.getcurrent()
        seen.append((type(cur) is Named, cur.label, cur.extra))

    t = Named(f)
    t.extra = 7
    t()
    stackless.run()
    assert seen == [(True, "named", 7)]


# --- misuse ------------------------------------------------------------------------------


def test_insert_or_run_of_a_tasklet_without_arguments_is_runtime_error():
    never_bound = stackless.tasklet()
    no_args = stackless.tasklet(noop)
    for t in (never_bound, no_args):
        with pytest.raises(RuntimeError):
            t.insert()
        with pytest.raises(RuntimeError):
            t.run()
        with pytest.raises(RuntimeError):
            t.switch()
    assert stackless.getruncount() == 1


def test_running_a_dead_tasklet_is_runtime_error():
    runs = []
    t = stackless.tasklet(lambda: runs.append(1))()
    stackless.run()
    assert t.alive is False
    with pytest.raises(RuntimeError, match="(?i)dead|unbound|alive"):
        t.run()
    with pytest.raises(RuntimeError, match="(?i)dead|unbound|alive"):
        t.insert()
    with pytest.raises(RuntimeError, match="(?i)dead|unbound|alive"):
        t.switch()
    assert runs == [1]
    assert stackless.getruncount() == 1


def test_inserting_or_running_a_blocked_tasklet_is_runtime_error():
    ch = stackless.channel()
    got = []
    t = stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.run()
    assert t.blocked is True
    with pytest.raises(RuntimeError, match="(?i)blocked"):
        t.insert()
    with pytest.raises(RuntimeError, match="(?i)blocked"):
        t.run()
    assert t.blocked is True
    assert ch.balance == -1
    assert stackless.getruncount() == 1
    ch.send(5)
    assert got == [5]


def test_removing_a_blocked_tasklet_is_runtime_error():
    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    stackless.run()
    with pytest.raises(RuntimeError, match="(?i)blocked"):
        t.remove()
    assert t.blocked is True
    assert ch.balance == -1
    ch.send(1)
    assert t.alive is False


def test_removing_the_current_tasklet_is_runtime_error():
    errors = []

    def f():
        try:
            stackless.getcurrent().remove()
        except RuntimeError as e:
            errors.append(e)

    stackless.tasklet(f)()
    stackless.run()
    assert len(errors) == 1
    with pytest.raises(RuntimeError):
        stackless.getmain().remove()
    assert stackless.getmain().scheduled is True


def test_switching_to_a_tasklet_of_another_thread_is_runtime_error():
    ready, go_on = threading.Event(), threading.Event()
    box, log = {}, []

    def thread_main():
        box["t"] = stackless.tasklet(log.append)("ran in its own thread")
        box["ident"] = threading.get_ident()
        ready.set()
        go_on.wait(30)
        stackless.run()

    th = threading.Thread(target=thread_main)
    th.start()
    try:
        assert ready.wait(30)
        t = box["t"]
        assert t.thread_id == box["ident"]
        assert t.thread_id != stackless.getmain().thread_id
        with pytest.raises(RuntimeError, match="(?i)thread"):
            t.switch()
        assert log == []
        assert stackless.getcurrent() is stackless.getmain()
        assert stackless.getruncount() == 1
    finally:
        go_on.set()
        th.join(30)
    assert not th.is_alive()
    assert log == ["ran in its own thread"]


class CallsBack:
    def __init__(self):
        self.levels = []

    def __call__(self, ch):
        self.levels.append(stackless.getcurrent().nesting_level)
        return ch.receive()


def test_an_instance_with_a_python_call_as_tasklet_function_has_no_c_state():
    # As in Stackless: the instance's __call__ frame is where the tasklet's frames start.
    import pickle
    f, ch = CallsBack(), stackless.channel()
    t = stackless.tasklet(f)(ch)
    stackless.run()
    assert f.levels == [0] and t.nesting_level == 0 and t.restorable
    t2, ch2 = pickle.loads(pickle.dumps((t, ch)))
    ch2.send(5)
    assert not t2.alive
    t.kill()


def test_the_main_tasklet_cannot_be_unbound_or_rebound():
    def other():
        main = stackless.getmain()
        with pytest.raises(RuntimeError, match="can't unbind the main tasklet"):
            main.bind(None)
        with pytest.raises(RuntimeError, match="can't rebind the main tasklet"):
            main.bind(print, ())
        log.append("checked")

    log = []
    stackless.tasklet(other)().switch()
    assert log == ["checked"]
