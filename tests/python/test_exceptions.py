"""Exceptions: errors escaping tasklets to main, TaskletExit, kill(), throw(),
raise_exception(), bomb, and deadlock detection (scheduler.rst "Exceptions", tasklets.rst,
stackless.rst)."""
import gc
import sys
import traceback
import weakref

import pytest

import stackless


def frame_names(exc):
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


# --- TaskletExit -------------------------------------------------------------------------


def test_tasklet_exit_is_a_system_exit_not_an_exception():
    assert issubclass(stackless.TaskletExit, SystemExit)
    assert issubclass(stackless.TaskletExit, BaseException)
    assert not issubclass(stackless.TaskletExit, Exception)


def test_raising_tasklet_exit_ends_a_tasklet_silently():
    log = []

    def f():
        log.append("start")
        raise stackless.TaskletExit
        log.append("not reached")

    t = stackless.tasklet(f)()
    stackless.tasklet(log.append)("other")
    stackless.run()  # does not raise
    assert log == ["start", "other"]
    assert t.alive is False


def test_raising_a_subclass_of_tasklet_exit_also_ends_silently():
    class Quit(stackless.TaskletExit):
        pass

    def f():
        raise Quit

    t = stackless.tasklet(f)()
    stackless.run()  # does not raise
    assert t.alive is False


# --- exceptions escaping a tasklet reach main --------------------------------------------


def test_escaping_exception_is_raised_from_run():
    # scheduler.rst, "an exception raised out of the scheduler"
    log = []

    def func_loop():
        for i in range(3):
            log.append("loop %d" % i)
            stackless.schedule()

    def func_exception():
        try:
            raise Exception("catch this")
        finally:
            log.append("thrower finally")

    loop = stackless.tasklet(func_loop)()
    thrower = stackless.tasklet(func_exception)()
    with pytest.raises(Exception, match="catch this") as info:
        stackless.run()
    assert type(info.value) is Exception
    assert "func_exception" in frame_names(info.value)
    assert log == ["loop 0", "thrower finally"]
    assert thrower.alive is False
    assert stackless.getcurrent() is stackless.getmain()
    # the other tasklet is still runnable; a new run() finishes it
    assert loop.alive is True
    assert loop.scheduled is True
    assert stackless.getruncount() == 2
    stackless.run()
    assert log == ["loop 0", "thrower finally", "loop 1", "loop 2"]


def test_the_escaping_exception_is_the_same_object():
    raised = []

    def f():
        e = KeyError("the one")
        raised.append(e)
        raise e

    stackless.tasklet(f)()
    with pytest.raises(KeyError) as info:
        stackless.run()
    assert info.value is raised[0]


def test_escaping_exception_is_raised_from_mains_schedule():
    t = stackless.tasklet(lambda: 1 / 0)()
    with pytest.raises(ZeroDivisionError):
        stackless.schedule()
    assert t.alive is False


def test_escaping_exception_reaches_main_blocked_on_a_channel():
    ch = stackless.channel()

    def f():
        raise LookupError("while main waits")

    stackless.tasklet(f)()
    with pytest.raises(LookupError, match="while main waits"):
        ch.receive()
    assert ch.balance == 0
    assert ch.queue is None
    assert stackless.getmain().blocked is False


def test_exception_from_deep_inside_nested_calls_unwinds_everything():
    log = []

    def dive(depth):
        try:
            if depth == 0:
                stackless.schedule()
                raise ValueError("bottom")
            dive(depth - 1)
        finally:
            log.append("level %d" % depth)

    stackless.tasklet(dive)(3)
    with pytest.raises(ValueError, match="bottom") as info:
        stackless.run()
    assert log == ["level 0", "level 1", "level 2", "level 3"]
    assert frame_names(info.value).count("dive") == 4


def test_exception_caught_inside_the_tasklet_does_not_reach_main():
    log = []

    def f():
        try:
            raise ValueError("local")
        except ValueError as e:
            log.append(str(e))

    stackless.tasklet(f)()
    stackless.run()
    assert log == ["local"]


def test_escaping_exception_is_raised_from_tasklet_run():
    def f():
        stackless.schedule_remove()
        raise ValueError("from t")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.paused is True
    with pytest.raises(ValueError, match="from t"):
        t.run()
    assert t.alive is False


def test_escaping_exception_is_raised_from_switch():
    def f():
        stackless.schedule()
        raise ValueError("while main is paused")

    t = stackless.tasklet(f)()
    with pytest.raises(ValueError, match="while main is paused"):
        t.switch()
    assert t.alive is False


def test_escaping_exception_while_other_tasklets_are_blocked():
    ch = stackless.channel()
    blocked = stackless.tasklet(ch.receive)()
    stackless.tasklet(lambda: 1 / 0)()
    with pytest.raises(ZeroDivisionError):
        stackless.run()
    assert blocked.blocked is True
    assert ch.balance == -1
    ch.send(None)
    assert blocked.alive is False


# --- kill ---------------------------------------------------------------------------------


def test_kill_of_a_paused_tasklet_runs_it_at_once_and_unwinds_it():
    log = []

    def f():
        try:
            log.append("start")
            stackless.schedule_remove()
            log.append("resumed")
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.paused is True
    assert t.kill() is None
    log.append("after kill")
    assert log == ["start", "finally", "after kill"]
    assert (t.alive, t.scheduled, t.paused) == (False, False, False)


def test_kill_of_a_runnable_started_tasklet():
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
    assert t.scheduled is True
    t.kill()
    log.append("after kill")
    assert log == ["tick", "finally", "after kill"]
    assert t.alive is False


def test_kill_of_a_blocked_tasklet_removes_it_from_its_channel():
    log = []
    ch = stackless.channel()
    other = stackless.tasklet(ch.receive)()

    def f():
        try:
            ch.receive()
            log.append("received")
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert ch.balance == -2
    t.kill()
    log.append("after kill")
    assert log == ["finally", "after kill"]
    assert ch.balance == -1
    assert ch.queue is other
    assert t.blocked is False
    assert t.alive is False
    ch.send(1)
    assert other.alive is False


def test_pending_kill_only_makes_the_tasklet_runnable():
    log = []

    def f():
        try:
            stackless.schedule_remove()
            log.append("resumed")
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.kill(pending=True) is None
    log.append("after kill")
    assert t.alive is True
    assert t.scheduled is True
    assert stackless.getruncount() == 2
    stackless.run()
    assert log == ["after kill", "finally"]
    assert t.alive is False


def test_pending_kill_of_a_blocked_tasklet_unblocks_it_at_once():
    log = []
    ch = stackless.channel()

    def f():
        try:
            ch.send(1)
            log.append("sent")
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert ch.balance == 1
    t.kill(True)
    assert ch.balance == 0
    assert t.blocked is False
    assert t.scheduled is True
    assert log == []
    stackless.run()
    assert log == ["finally"]


def test_killing_a_dead_or_unbound_tasklet_does_nothing():
    done = stackless.tasklet(lambda: None)()
    stackless.run()
    assert done.alive is False
    assert done.kill() is None
    assert done.kill(pending=True) is None
    stackless.tasklet().kill()
    no_args = stackless.tasklet(lambda x: None)
    no_args.kill()
    assert no_args.alive is False
    assert stackless.getruncount() == 1


def test_killing_an_unstarted_tasklet_ends_it_without_running_it():
    ran = []
    scheduled = stackless.tasklet(lambda: ran.append("scheduled"))()
    scheduled.kill()
    assert scheduled.alive is False
    assert scheduled.scheduled is False
    paused = stackless.tasklet(ran.append, ("paused",))
    assert paused.paused is True
    paused.kill()
    assert paused.alive is False
    stackless.run()
    assert ran == []


def test_except_exception_does_not_catch_tasklet_exit():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except Exception:
            log.append("caught as Exception")
        log.append("went on")

    t = stackless.tasklet(f)()
    stackless.run()
    t.kill()
    assert log == []
    assert t.alive is False


def test_tasklet_exit_caught_and_reraised_ends_silently():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except stackless.TaskletExit:
            log.append("cleanup")
            raise

    t = stackless.tasklet(f)()
    stackless.run()
    t.kill()  # does not raise
    assert log == ["cleanup"]
    assert t.alive is False


def test_tasklet_exit_caught_and_swallowed_lets_the_tasklet_go_on():
    # Stackless: a caught TaskletExit is an ordinary exception; the tasklet runs on and ends
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except stackless.TaskletExit:
            log.append("swallowed")
        log.append("went on")

    t = stackless.tasklet(f)()
    stackless.run()
    t.kill()
    assert log == ["swallowed", "went on"]
    assert t.alive is False


def test_killing_the_current_tasklet_raises_at_once():
    log = []

    def f():
        try:
            stackless.getcurrent().kill()
            log.append("went on")
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()  # does not raise
    assert log == ["finally"]
    assert t.alive is False


def test_kill_from_another_tasklet_runs_the_victim_then_the_killer():
    log = []

    def victim_f():
        try:
            log.append("victim start")
            stackless.schedule_remove()
        finally:
            log.append("victim finally")

    victim = stackless.tasklet(victim_f)()

    def killer():
        victim.kill()
        log.append("killer after kill")

    stackless.tasklet(killer)()
    stackless.tasklet(log.append)("other")
    stackless.run()
    assert log == ["victim start", "victim finally", "killer after kill", "other"]


def test_killing_a_tasklet_inside_an_except_block():
    log = []

    def f():
        try:
            raise ValueError("being handled")
        except ValueError:
            try:
                stackless.schedule_remove()
                log.append("went on")
            finally:
                log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    t.kill()
    assert log == ["finally"]
    assert t.alive is False
    assert sys.exc_info() == (None, None, None)


def test_kill_releases_what_the_tasklets_hold():
    class Resource:
        pass

    resource = Resource()
    watch = weakref.ref(resource)

    def f(r):
        local = [r, "x" * 100]
        while True:
            stackless.schedule()

    ts = [stackless.tasklet(f)(resource) for _ in range(10)]
    del resource
    stackless.schedule()
    assert watch() is not None
    for t in ts:
        t.kill()
    del ts, t
    gc.collect()
    assert watch() is None


# --- throw, raise_exception ----------------------------------------------------------------


def test_raise_exception_in_a_paused_tasklet_which_runs_at_once():
    log = []

    def f():
        try:
            stackless.schedule_remove()
            log.append("no exception")
        except RuntimeError as e:
            log.append("caught %s" % e)
        log.append("end")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.raise_exception(RuntimeError, "boom") is None
    log.append("main after raise")
    assert log == ["caught boom", "end", "main after raise"]
    assert t.alive is False


def test_raise_exception_instantiates_the_class_with_the_arguments():
    caught = []

    def f():
        try:
            stackless.schedule_remove()
        except KeyError as e:
            caught.append((type(e), e.args))

    t = stackless.tasklet(f)()
    stackless.run()
    t.raise_exception(KeyError, 1, "two")
    assert caught == [(KeyError, (1, "two"))]


def test_raise_exception_needs_an_exception_class():
    t = stackless.tasklet(lambda: stackless.schedule_remove())()
    stackless.run()
    with pytest.raises(TypeError):
        t.raise_exception(42)
    with pytest.raises(TypeError):
        t.raise_exception()
    assert t.paused is True
    t.kill()


def test_uncaught_exception_in_the_target_reaches_the_caller():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    with pytest.raises(LookupError, match="unhandled"):
        t.raise_exception(LookupError, "unhandled")
    assert log == ["finally"]
    assert t.alive is False


def test_throw_an_instance_keeps_its_identity():
    caught = []

    def f():
        try:
            stackless.schedule_remove()
        except ValueError as e:
            caught.append(e)

    t = stackless.tasklet(f)()
    stackless.run()
    exc = ValueError("this one")
    assert t.throw(exc) is None
    assert caught == [exc] and caught[0] is exc


def test_throw_class_value_and_traceback_like_raise():
    caught = []

    def f():
        for _ in range(2):
            try:
                stackless.schedule_remove()
            except KeyError as e:
                caught.append(e)

    def original_raiser():
        raise KeyError("with traceback")

    t = stackless.tasklet(f)()
    stackless.run()
    t.throw(KeyError, KeyError("class and value"))
    assert t.paused is True
    try:
        original_raiser()
    except KeyError:
        t.throw(*sys.exc_info())
    assert [e.args for e in caught] == [("class and value",), ("with traceback",)]
    assert "original_raiser" in frame_names(caught[1])
    assert t.alive is False


def test_throw_with_something_that_is_not_an_exception_is_type_error():
    t = stackless.tasklet(lambda: stackless.schedule_remove())()
    stackless.run()
    with pytest.raises(TypeError):
        t.throw(42)
    with pytest.raises(TypeError):
        t.throw(ValueError("instance"), "and a separate value")
    assert t.paused is True
    t.kill()


def test_pending_throw_raises_when_the_tasklet_next_runs():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except ValueError as e:
            log.append(str(e))

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.throw(ValueError("later"), pending=True) is None
    log.append("main continues")
    assert t.alive is True
    assert t.scheduled is True
    stackless.run()
    assert log == ["main continues", "later"]


def test_throw_into_a_blocked_tasklet_unblocks_it():
    log = []
    ch = stackless.channel()

    def f():
        try:
            ch.receive()
        except ValueError as e:
            log.append(str(e))

    t = stackless.tasklet(f)()
    stackless.run()
    assert ch.balance == -1
    t.throw(ValueError("wake up"))
    assert log == ["wake up"]
    assert ch.balance == 0
    assert t.alive is False


def test_raise_exception_into_a_runnable_tasklet_from_another_tasklet():
    log = []

    def target_f():
        try:
            while True:
                stackless.schedule()
        except KeyError as e:
            log.append("target caught %s" % e.args[0])

    target = stackless.tasklet(target_f)()

    def thrower():
        stackless.schedule()  # let target start
        target.raise_exception(KeyError, 3)
        log.append("thrower continues")

    stackless.tasklet(thrower)()
    stackless.run()
    assert log == ["target caught 3", "thrower continues"]


def test_throw_into_the_current_tasklet_raises_at_once():
    with pytest.raises(ValueError, match="here"):
        stackless.getcurrent().throw(ValueError("here"))
    with pytest.raises(KeyError):
        stackless.getcurrent().raise_exception(KeyError, "here too")
    assert stackless.getruncount() == 1


def test_throw_into_a_dead_tasklet_is_runtime_error_unless_tasklet_exit():
    # tasklets.rst: "you can safely raise TaskletExit, if the tasklet already ended"
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    assert t.alive is False
    with pytest.raises(RuntimeError, match="(?i)dead|alive"):
        t.throw(ValueError("x"))
    with pytest.raises(RuntimeError, match="(?i)dead|alive"):
        t.raise_exception(ValueError, "x")
    assert t.throw(stackless.TaskletExit) is None
    assert t.raise_exception(stackless.TaskletExit) is None
    assert stackless.getruncount() == 1


# --- bomb ---------------------------------------------------------------------------------


def test_bomb_holds_an_exception():
    try:
        1 / 0
    except ZeroDivisionError:
        info = sys.exc_info()
    b = stackless.bomb(*info)
    assert (b.type, b.value, b.traceback) == info
    b2 = stackless.bomb(info)  # bombs are "sloppy" about the argument list
    assert (b2.type, b2.value, b2.traceback) == info
    empty = stackless.bomb()
    assert (empty.type, empty.value, empty.traceback) == (None, None, None)


def test_a_bomb_in_tempval_explodes_when_the_tasklet_resumes():
    caught = []

    def f():
        try:
            stackless.schedule_remove()
        except ZeroDivisionError as e:
            caught.append(e)

    t = stackless.tasklet(f)()
    stackless.run()
    try:
        1 / 0
    except ZeroDivisionError:
        t.tempval = stackless.bomb(*sys.exc_info())
    t.insert()
    stackless.run()
    assert len(caught) == 1 and isinstance(caught[0], ZeroDivisionError)


def test_a_bomb_in_tempval_of_a_new_tasklet_explodes_on_run():
    # the example in bomb's docstring
    ran = []
    t = stackless.tasklet(lambda: ran.append(42))()
    try:
        1 / 0
    except ZeroDivisionError:
        b = stackless.bomb(*sys.exc_info())
    t.tempval = b
    with pytest.raises(ZeroDivisionError):
        t.run()  # let the bomb explode
    assert ran == []
    assert t.alive is False


# --- deadlock -----------------------------------------------------------------------------


def test_main_receiving_with_nothing_runnable_is_a_deadlock():
    ch = stackless.channel()
    with pytest.raises(RuntimeError, match="Deadlock"):
        ch.receive()
    assert ch.balance == 0
    assert ch.queue is None
    assert stackless.getmain().blocked is False
    # the channel and the scheduler still work
    stackless.tasklet(ch.send)(2)
    assert ch.receive() == 2
    stackless.run()


def test_main_sending_with_nothing_runnable_is_a_deadlock():
    ch = stackless.channel()
    with pytest.raises(RuntimeError, match="Deadlock"):
        ch.send("nobody listens")
    assert ch.balance == 0


def test_main_blocked_when_the_last_tasklet_ends():
    log = []
    ch = stackless.channel()
    stackless.tasklet(log.append)("ran and ended")
    with pytest.raises(RuntimeError, match="(?i)deadlock|without a (sender|receiver)"):
        ch.receive()
    assert log == ["ran and ended"]
    assert ch.balance == 0
    assert stackless.getmain().blocked is False


def test_main_blocked_when_the_last_tasklet_blocks_elsewhere():
    mains, others = stackless.channel(), stackless.channel()
    t = stackless.tasklet(others.receive)()
    with pytest.raises(RuntimeError, match="(?i)deadlock"):
        mains.receive()
    assert mains.balance == 0
    assert stackless.getmain().blocked is False
    if t.alive:
        t.kill()
    assert t.alive is False
    assert others.balance == 0


def test_a_tasklet_blocking_while_main_is_in_run_lets_run_return():
    ch = stackless.channel()
    got = []
    t = stackless.tasklet(lambda: got.append(ch.receive()))()
    assert stackless.run() is None
    assert t.blocked is True
    assert ch.balance == -1
    ch.send(8)
    assert got == [8]


def test_a_tasklet_blocking_while_main_is_paused_lets_main_resume():
    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    t.switch()  # main paused, t blocks: nothing runnable, main resumes
    assert t.blocked is True
    ch.send(1)
    assert t.alive is False


def test_iterating_a_channel_whose_producer_ends_without_closing_in_time():
    # With the default preference the consumer (main) runs as soon as each value arrives and
    # blocks again before the producer gets to close(): when the producer ends, nothing is
    # runnable and main is blocked.
    ch = stackless.channel()

    def producer():
        ch.send_sequence([1, 2, 3])
        ch.close()

    stackless.tasklet(producer)()
    got = []
    with pytest.raises(RuntimeError, match="(?i)deadlock|without a (sender|receiver)"):
        for v in ch:
            got.append(v)
    assert got == [1, 2, 3]
    assert ch.balance == 0
