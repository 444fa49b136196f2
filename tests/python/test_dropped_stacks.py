"""Blocked tasklets whose C stacks are dropped instead of saved (tasklet_hooks::discard_stack):
when more tasklets block than there are stack slots (256 in a Python thread), a tasklet blocked
in a channel operation or schedule_remove() called from plain Python frames goes on from its
frames alone. These tests block enough of them for that to happen, and check that every one
resumes with the right value, exception, finally block and traceback."""
import gc
import pickle
import sys
import traceback

import pytest
import stackless

SLOTS = 256  # stack slots of a Python thread (blocked tasklets drop their stacks beyond)
COUNT = 700  # well above them


def stats():
    return stackless._stats()


def nested(ch, i, out):
    base = i * 10
    try:
        got = middle(ch, base)
        out.append((i, got))
    finally:
        out.append(("finally", i))


def middle(ch, base):
    return ch.receive() + base + 1


def test_blocked_receivers_lose_their_stacks_and_resume_with_their_values():
    ch, out = stackless.channel(), []
    before = stats()["stacks_discarded"]
    for i in range(COUNT):
        stackless.tasklet(nested)(ch, i, out)
    stackless.run()
    assert ch.balance == -COUNT
    assert stats()["stacks_discarded"] - before >= COUNT - SLOTS
    for i in range(COUNT):
        ch.send(1000)
    stackless.run()
    results = [x for x in out if x[0] != "finally"]
    assert results == [(i, 1000 + i * 10 + 1) for i in range(COUNT)]
    assert sorted(x[1] for x in out if x[0] == "finally") == list(range(COUNT))


def test_exceptions_and_kills_reach_tasklets_without_stacks():
    ch, out = stackless.channel(), []
    tasklets = [stackless.tasklet(nested)(ch, i, out) for i in range(COUNT)]
    stackless.run()
    with pytest.raises(ValueError, match="first"):
        ch.send_exception(ValueError, "first")
    for t in tasklets[1:]:
        t.kill()
    assert [x for x in out if x[0] != "finally"] == []
    assert sorted(x[1] for x in out) == list(range(COUNT))
    assert all(not t.alive for t in tasklets)


def raiser(ch):
    value = ch.receive()
    raise KeyError(value)


def test_a_traceback_through_resumed_frames_names_them():
    ch = stackless.channel()
    for _ in range(COUNT):
        stackless.tasklet(raiser)(ch)
    stackless.run()
    for i in range(COUNT):
        with pytest.raises(KeyError) as info:
            ch.send(i)
        names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert names[-1] == "raiser"


def paused(out, i):
    value = stackless.schedule_remove(i)
    out.append(value)


def test_paused_tasklets_of_schedule_remove_resume_with_their_tempval():
    out = []
    tasklets = [stackless.tasklet(paused)(out, i) for i in range(COUNT)]
    stackless.run()
    assert stats()["stacks_discarded"] > 0
    for i, t in enumerate(tasklets):
        t.tempval = ("back", i)
        t.run()
    assert out == [("back", i) for i in range(COUNT)]


def test_unreachable_tasklets_without_stacks_are_collected_and_unwound():
    out = []

    def make():
        ch = stackless.channel()
        for i in range(COUNT):
            stackless.tasklet(nested)(ch, i, out)
        stackless.run()

    make()
    gc.collect()
    assert sorted(x[1] for x in out if x[0] == "finally") == list(range(COUNT))
    assert stackless.getruncount() == 1


def test_tasklets_without_stacks_pickle_and_resume():
    ch, out = stackless.channel(), []
    for i in range(COUNT):
        stackless.tasklet(nested)(ch, i, out)
    stackless.run()
    ch2, out2 = pickle.loads(pickle.dumps((ch, out)))
    while ch.balance:
        ch.queue.kill()
    for i in range(COUNT):
        ch2.send(5)
    assert [x for x in out2 if x[0] != "finally"] == [(i, 5 + i * 10 + 1) for i in range(COUNT)]


def test_traced_tasklets_keep_their_stacks():
    ch, out, events = stackless.channel(), [], []

    def traced(i):
        sys.settrace(lambda frame, event, arg: events.append(event) and None)
        nested(ch, i, out)

    for i in range(COUNT):
        stackless.tasklet(traced)(i)
    stackless.run()
    # Only the untraced part could drop stacks: these tasklets all trace.
    saved_before = stats()["stacks_saved"]
    for i in range(COUNT):
        ch.send(0)
    assert len([x for x in out if x[0] != "finally"]) == COUNT
    assert saved_before > 0 and "call" in events


def test_a_thread_that_ends_kills_its_tasklets_without_stacks():
    # Regression: tasklets whose stacks were dropped read as not started to the core, which
    # left them blocked when their thread ended (and another thread then met them).
    import threading
    out, keep = [], []

    def body():
        ch = stackless.channel()
        keep.append(ch)
        for i in range(COUNT):
            stackless.tasklet(nested)(ch, i, out)
        stackless.run()
        keep.append(stackless._stats()["stacks_discarded"])

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert keep[1] > 0
    assert sorted(x[1] for x in out if x[0] == "finally") == list(range(COUNT))
    assert keep[0].balance == 0


def iterating(ch, i, out):
    try:
        for value in ch:
            out.append((i, value))
            if value == "stop":
                break
    finally:
        out.append(("finally", i))


def test_tasklets_iterating_over_a_channel_drop_their_stacks_and_go_on():
    ch, out = stackless.channel(), []
    before = stats()["stacks_discarded"]
    tasklets = [stackless.tasklet(iterating)(ch, i, out) for i in range(COUNT)]
    stackless.run()
    assert ch.balance == -COUNT
    assert stats()["stacks_discarded"] - before >= COUNT - SLOTS
    for round_ in ("a", "stop"):
        for _ in range(COUNT):
            ch.send(round_)
    stackless.run()
    assert sorted(x for x in out if x[0] != "finally") == sorted(
        [(i, "a") for i in range(COUNT)] + [(i, "stop") for i in range(COUNT)])
    assert sorted(x[1] for x in out if x[0] == "finally") == list(range(COUNT))
    assert all(not t.alive for t in tasklets)


def test_iterating_tasklets_without_stacks_are_killed_cleanly():
    ch, out = stackless.channel(), []
    tasklets = [stackless.tasklet(iterating)(ch, i, out) for i in range(COUNT)]
    stackless.run()
    for t in tasklets:
        t.kill()
    assert sorted(x[1] for x in out if x[0] == "finally") == list(range(COUNT))
    assert ch.balance == 0
