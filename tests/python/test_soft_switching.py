"""Soft switching at scale: with more tasklets than the 256 stack slots of a Python thread, a
tasklet switched out in schedule(), schedule_remove() or a channel operation called from plain
Python frames goes on without its C stack (tasklet_hooks::discard_stack), and the next tasklet
starts on the slot the running one left (scheduler.cpp transfer_slow, try_discard). Its frames
then go on in place (frame_resume.cpp resume_in_place), and may drop their stack again, along
another chain of frames, at the next switch (in_place_frame).

Every test runs thousands of tasklets through those paths, asserts the order of execution, the
values, exceptions, tracebacks, finally blocks and channel balances, and checks with the
scheduler's counters (stackless._stats(): stacks_discarded, stacks_saved) that stacks really were
dropped (or, where a tasklet cannot do without its stack, saved)."""
import collections
import contextvars
import functools
import gc
import inspect
import os
import pickle
import sys
import threading
import time
import traceback

import pytest
import stackless

SLOTS = 256  # stack slots of the threads these tests run in (in_fresh_thread)
PAGE = os.sysconf("SC_PAGE_SIZE")
# STACKLESS_TEST_QUICK=1 (scripts/valgrind.sh): the largest scenarios smaller, still well above
# the slots
QUICK = os.environ.get("STACKLESS_TEST_QUICK") == "1"


def stats():
    return stackless._stats()


def stats_delta(before):
    after = stats()
    return {k: after[k] - before[k] for k in ("stacks_discarded", "stacks_saved", "switches")}


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def tb_names(exc):
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


def tb_lines(exc):
    return [(f.name, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]


def line_of(func, text):
    """The line number of the first line of `func` that contains `text`."""
    lines, first = inspect.getsourcelines(func)
    return first + next(k for k, line in enumerate(lines) if text in line)


def in_fresh_thread(test):
    """Runs the test in a new thread, whose scheduler starts with 256 stack slots, and in which
    runnable tasklets also drop their stacks beyond them (a Python thread's default keeps them
    up to 1,024 slots: stackless._configure_stacks): slots mapped by earlier tests (up to 4096,
    for runnable tasklets) stay mapped in their thread, and with them fewer stacks would be
    dropped."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        failure = []

        def body():
            try:
                stackless._configure_stacks(SLOTS, SLOTS)
                test(*args, **kwargs)
                assert stackless.getruncount() == 1, "tasklets left runnable"
            except BaseException as e:
                failure.append(e)

        th = threading.Thread(target=body)
        th.start()
        th.join()
        if failure:
            raise failure[0]

    return wrapper


@pytest.fixture
def hard_switching():
    """Soft switching off for the test (every tasklet keeps its stack): the oracle some tests
    compare with."""
    old = stackless.enable_softswitch(False)
    try:
        yield
    finally:
        stackless.enable_softswitch(old)


# --- round-robin order -----------------------------------------------------------------------

RR_COUNT, RR_STEPS = 2000, 10


def rr_inner(ident, step, acc, log, bad):
    mine = (ident, step, acc)
    log.append((ident, step))
    if step % 2:
        got = stackless.schedule()  # retval defaults to the current tasklet
        if got is not stackless.current:
            bad.append(("default retval", ident, step, got))
    else:
        got = stackless.schedule(mine)
        if got is not mine:
            bad.append(("retval", ident, step, got))
    # the locals of this frame and of its callers are what they were before the switch
    if mine != (ident, step, acc):
        bad.append(("inner locals", ident, step))
    return acc * 3 + step


def rr_middle(ident, step, acc, log, bad):
    local = [ident, step, acc]
    text = "m%d.%d" % (ident, step)
    r = rr_inner(ident, step, acc + 1, log, bad)
    if local != [ident, step, acc] or text != "m%d.%d" % (ident, step):
        bad.append(("middle locals", ident, step))
    return r - local[2]


def rr_body(ident, log, bad, results):
    acc = ident
    for step in range(RR_STEPS):
        acc = rr_middle(ident, step, acc, log, bad)
    results[ident] = acc


def rr_expected(ident):
    acc = ident
    for step in range(RR_STEPS):
        acc = (acc + 1) * 3 + step - acc
    return acc


@in_fresh_thread
def test_round_robin_order_is_kept_when_every_switch_drops_a_stack():
    log, bad, results = [], [], {}
    before = stats()
    for i in range(RR_COUNT):
        stackless.tasklet(rr_body)(i, log, bad, results)
    stackless.run()
    delta = stats_delta(before)
    assert bad == []
    assert log == [(i, s) for s in range(RR_STEPS) for i in range(RR_COUNT)]
    assert results == {i: rr_expected(i) for i in range(RR_COUNT)}
    # Nearly every switch between tasklets started the next one on the slot the previous one
    # left: soft switching, with nothing copied. (schedule() records its call site once a
    # tasklet could not drop its stack for want of one: a few switches of the first round.)
    assert delta["stacks_discarded"] >= (RR_COUNT - SLOTS) * RR_STEPS - 16
    assert delta["stacks_saved"] == 0


@in_fresh_thread
def test_schedule_returns_a_tempval_set_while_its_stack_was_dropped():
    # Tasklet i's tempval is set by tasklet i-1 (run just before it) while i is switched out
    # in schedule() without its stack; schedule() returns that, not its retval.
    count = 1000
    ts, got = [], {}

    def setter_and_getter(i):
        for step in range(3):
            if i + 1 < count:
                ts[i + 1].tempval = ("from", i, step)
            got[i, step] = rr_schedule_in(i, step)

    for i in range(count):
        ts.append(stackless.tasklet(setter_and_getter)(i))
    before = stats()
    stackless.run()
    assert stats_delta(before)["stacks_discarded"] >= 2 * (count - SLOTS)
    for i in range(count):
        for step in range(3):
            # Tasklet i-1 sets it at its step+1, while tasklet i waits in its schedule() of step
            # `step`; tasklet 0 and the last step get their own retval back.
            expected = ("from", i - 1, step + 1) if i > 0 and step < 2 else ("retval", i, step)
            assert got[i, step] == expected, (i, step)


def rr_schedule_in(i, step):
    return rr_schedule_leaf(("retval", i, step))


def rr_schedule_leaf(value):
    return stackless.schedule(value)


def turn_leaf(i, r, log):
    log.append((i, r))
    return stackless.schedule()


def turn_body(i, rounds, log):
    for r in range(rounds):
        turn_leaf(i, r, log)


@in_fresh_thread
def test_soft_switched_tasklets_removed_and_inserted_again_keep_their_turns():
    # Main takes its turn in the ring; between rounds it takes every fifth tasklet out of the
    # ring (each switched out in schedule() without its stack) and puts it back a round later,
    # at the end of the ring, so its turns come after the others'.
    count, rounds = 1500, 6
    log = []
    ts = [stackless.tasklet(turn_body)(i, rounds, log) for i in range(count)]
    before = stats()
    stackless.schedule()  # round 0
    expected = [(i, 0) for i in range(count)]
    steps = [1] * count  # turns taken by each tasklet
    order = list(range(count))
    removed = []
    for r in range(1, rounds):
        for i in removed:
            ts[i].insert()
        order = [i for i in order if i not in removed] + removed
        removed = [i for i in order if i % 5 == r % 5]
        for i in removed:
            assert ts[i].scheduled and not ts[i].blocked
            ts[i].remove()
            assert ts[i].paused
        stackless.schedule()
        for i in order:
            if i not in removed:
                expected.append((i, steps[i]))
                steps[i] += 1
    for i in removed:
        ts[i].insert()
    stackless.run()
    delta = stats_delta(before)
    assert delta["stacks_discarded"] >= (rounds - 1) * (count - count // 5 - SLOTS)
    assert log[:len(expected)] == expected
    # then the turns the removed ones missed
    assert sorted(log[len(expected):]) == sorted(
        (i, s) for i in range(count) for s in range(steps[i], rounds))
    assert all(not t.alive for t in ts)


# --- dropping again along other frame chains -------------------------------------------------

CHAIN_COUNT, CHAIN_ROUNDS = 1000, 4
M = 1_000_000


def chain_a2(ch, i, r, fin):
    try:
        mark = i * 7 + r
        v = ch.receive()  # blocks at depth 3: chain_body, chain_a1, chain_a2
        return v + mark
    finally:
        fin.append(("a2", i, r))


def chain_b3(ch, i, r, fin):
    try:
        k = [i, r]
        v = ch.receive()  # blocks at depth 4: chain_body, chain_a1, chain_b2, chain_b3
        return v * 2 + k[0] - k[1]
    finally:
        fin.append(("b3", i, r))


def chain_b2(ch, i, r, fin):
    s = "b2-%d" % i
    w = chain_b3(ch, i, r, fin)
    return w + len(s)


def chain_a1(ch, i, r, fin):
    try:
        v = chain_a2(ch, i, r, fin)
        # back in chain_a1 (which went on in place), a deeper chain blocks again
        w = chain_b2(ch, i, r, fin)
        return (v, w)
    finally:
        fin.append(("a1", i, r))


def chain_body(ch, i, out, fin):
    results = []
    for r in range(CHAIN_ROUNDS):
        results.append(chain_a1(ch, i, r, fin))
    out.append((i, results))


def chain_expected(i):
    results = []
    for r in range(CHAIN_ROUNDS):
        v = (2 * r * M + i) + i * 7 + r
        w = ((2 * r + 1) * M + i) * 2 + i - r + len("b2-%d" % i)
        results.append((v, w))
    return (i, results)


def chain_sender(ch, count, passes):
    for p in range(passes):
        for k in range(count):
            ch.send(p * M + k)


@pytest.mark.parametrize("sender", ["main", "tasklet"])
@in_fresh_thread
def test_tasklets_drop_their_stacks_again_along_other_frame_chains(sender):
    ch, out, fin = stackless.channel(), [], []
    ts = [stackless.tasklet(chain_body)(ch, i, out, fin) for i in range(CHAIN_COUNT)]
    before = stats()
    stackless.run()
    assert ch.balance == -CHAIN_COUNT
    # The receivers wait in the order they blocked, so each pass of sends reaches tasklet k
    # with value pass * M + k, and each then blocks again at the end of the channel's queue.
    passes = 2 * CHAIN_ROUNDS
    if sender == "main":
        chain_sender(ch, CHAIN_COUNT, passes)
    else:
        stackless.tasklet(chain_sender)(ch, CHAIN_COUNT, passes)
        stackless.run()
    delta = stats_delta(before)
    assert ch.balance == 0
    assert out == [chain_expected(i) for i in range(CHAIN_COUNT)]
    counts = collections.Counter(fin)
    assert len(counts) == 3 * CHAIN_COUNT * CHAIN_ROUNDS
    assert set(counts.values()) == {1}  # every finally block ran exactly once
    assert all(not t.alive for t in ts)
    # every tasklet dropped its stack at (nearly) every receive, at two depths
    assert delta["stacks_discarded"] >= passes * (CHAIN_COUNT - SLOTS)
    assert delta["stacks_saved"] == 0


@in_fresh_thread
def test_frames_of_tasklets_dropped_several_times_can_be_inspected():
    ch, out, fin = stackless.channel(), [], []
    ts = [stackless.tasklet(chain_body)(ch, i, out, fin) for i in range(CHAIN_COUNT)]
    stackless.run()
    before = stats()
    for p in range(3):  # blocked in chain_b3 of round 1 now
        for k in range(CHAIN_COUNT):
            ch.send(p * M + k)
    assert stats_delta(before)["stacks_discarded"] >= 3 * (CHAIN_COUNT - SLOTS)
    for i in (0, 1, 300, CHAIN_COUNT - 1):
        f = ts[i].frame
        names = []
        while f is not None:
            names.append(f.f_code.co_name)
            f = f.f_back
        assert names[:4] == ["chain_b3", "chain_b2", "chain_a1", "chain_body"]
        b3 = ts[i].frame
        assert b3.f_lineno == line_of(chain_b3, "v = ch.receive()")
        assert b3.f_back.f_lineno == line_of(chain_b2, "w = chain_b3(")
        assert b3.f_back.f_back.f_lineno == line_of(chain_a1, "w = chain_b2(")
        assert ts[i].recursion_depth == 4
        assert b3.f_locals["k"] == [i, 1] and b3.f_locals["r"] == 1
        assert b3.f_back.f_locals["s"] == "b2-%d" % i
        assert b3.f_back.f_back.f_locals["v"] == (2 * M + i) + i * 7 + 1
        body = b3.f_back.f_back.f_back
        assert body.f_locals["results"] == [chain_expected(i)[1][0]]
    for p in range(3, 2 * CHAIN_ROUNDS):
        for k in range(CHAIN_COUNT):
            ch.send(p * M + k)
    assert out == [chain_expected(i) for i in range(CHAIN_COUNT)]


@in_fresh_thread
def test_unreachable_tasklets_dropped_several_times_are_collected_and_unwound():
    fin, out = [], []

    def make():
        ch = stackless.channel()
        for i in range(CHAIN_COUNT):
            stackless.tasklet(chain_body)(ch, i, out, fin)
        stackless.run()
        for p in range(3):  # blocked in chain_b3 of round 1, dropped three times
            for k in range(CHAIN_COUNT):
                ch.send(p * M + k)

    before = stats()
    make()
    assert stats_delta(before)["stacks_discarded"] >= 3 * (CHAIN_COUNT - SLOTS)
    assert len(fin) == 4 * CHAIN_COUNT  # round 0's finally blocks and round 1's chain_a2's
    gc.collect()
    assert stackless.getruncount() == 1
    counts = collections.Counter(fin)
    assert counts == collections.Counter(
        [(name, i, r) for i in range(CHAIN_COUNT) for r in (0, 1) for name in ("a1", "a2", "b3")])
    assert out == []


@in_fresh_thread
def test_soft_switching_turned_off_while_tasklets_are_without_their_stacks(hard_switching):
    # Dropped with soft switching on; woken and blocking again with it off (their stacks are
    # then saved); on again for the last round.
    stackless.enable_softswitch(True)
    ch, out, fin = stackless.channel(), [], []
    ts = [stackless.tasklet(chain_body)(ch, i, out, fin) for i in range(CHAIN_COUNT)]
    before = stats()
    stackless.run()
    dropped = stats_delta(before)["stacks_discarded"]
    assert dropped >= CHAIN_COUNT - SLOTS
    passes = 2 * CHAIN_ROUNDS
    for p in range(passes):
        stackless.enable_softswitch(p != passes // 2)
        mid = stats()
        for k in range(CHAIN_COUNT):
            ch.send(p * M + k)
        if p == passes // 2:
            assert stats_delta(mid)["stacks_discarded"] == 0
            assert stats_delta(mid)["stacks_saved"] > 0
    assert out == [chain_expected(i) for i in range(CHAIN_COUNT)]
    assert set(collections.Counter(fin).values()) == {1}
    assert not any(t.alive for t in ts)


# --- exceptions and kills --------------------------------------------------------------------

EX_COUNT, EX_WARMUPS = 800, 3


def ex_warm(ch):
    return ch.receive()


def ex_leaf(ch):
    return ch.receive()


def ex_mid(ch, i, log):
    try:
        return ex_leaf(ch)
    finally:
        log.append(("mid finally", i))


def ex_body(ch, i, log):
    for k in range(EX_WARMUPS):
        got = ex_warm(ch)  # another chain of frames: blocks at depth 2
        if got != (k, i):
            log.append(("bad warmup value", i, k, got))
    try:
        ex_mid(ch, i, log)
    except ValueError as e:
        log.append(("caught", i, e.args, tb_lines(e)))
    else:
        log.append(("not raised", i))
    log.append(("end", i))


def ex_run(how, count):
    ch, log = stackless.channel(), []
    ts = [stackless.tasklet(ex_body)(ch, i, log) for i in range(count)]
    before = stats()
    stackless.run()
    for k in range(EX_WARMUPS):
        for i in range(count):
            ch.send((k, i))
    assert ch.balance == -count
    for i, t in enumerate(ts):
        if how == "send_exception":
            ch.send_exception(ValueError, i)
        elif how == "throw":
            t.throw(ValueError(i))
        elif how == "throw pending":
            t.throw(ValueError, i, pending=True)
        elif how == "raise_exception":
            t.raise_exception(ValueError, i)
    stackless.run()
    assert ch.balance == 0
    assert all(not t.alive for t in ts)
    return log, stats_delta(before)


@pytest.mark.parametrize("how", ["send_exception", "throw", "throw pending", "raise_exception"])
@in_fresh_thread
def test_exceptions_reach_the_right_frame_of_tasklets_dropped_several_times(how):
    log, delta = ex_run(how, EX_COUNT)
    assert delta["stacks_discarded"] >= (EX_WARMUPS + 1) * (EX_COUNT - SLOTS)
    tb = [("ex_body", line_of(ex_body, "ex_mid(ch, i, log)")),
          ("ex_mid", line_of(ex_mid, "return ex_leaf(ch)")),
          ("ex_leaf", line_of(ex_leaf, "return ch.receive()"))]
    expected = []
    for i in range(EX_COUNT):
        expected += [("mid finally", i), ("caught", i, (i,), tb), ("end", i)]
    assert log == expected


@pytest.mark.parametrize("how", ["send_exception", "throw", "raise_exception"])
@in_fresh_thread
def test_exceptions_into_dropped_stacks_match_hard_switching(how, hard_switching):
    # The same scenario with every tasklet keeping its stack (the oracle): the same log.
    count = 300
    hard_log, hard_delta = ex_run(how, count)
    assert hard_delta["stacks_discarded"] == 0
    stackless.enable_softswitch(True)
    soft_log, soft_delta = ex_run(how, count)
    assert soft_delta["stacks_discarded"] > 0
    assert soft_log == hard_log


def sched_leaf(i, r):
    return stackless.schedule((i, r))


def sched_mid(i, r):
    return sched_leaf(i, r)


def sched_looper(i, log):
    r = 0
    try:
        while True:
            got = sched_mid(i, r)
            if got != (i, r):
                log.append(("bad", i, r, got))
            r += 1
    except ValueError as e:
        log.append(("caught", i, r, e.args, tb_lines(e)))


@in_fresh_thread
def test_exceptions_thrown_into_tasklets_soft_switched_in_schedule():
    count, rounds = 1500, 4
    log = []
    ts = [stackless.tasklet(sched_looper)(i, log) for i in range(count)]
    before = stats()
    for _ in range(rounds):
        stackless.schedule()  # main takes its turn in the ring: every tasklet goes one round
    for i, t in enumerate(ts):
        t.throw(ValueError(i), pending=True)
    stackless.run()
    delta = stats_delta(before)
    # (each round, the tasklet before the first one without a stack gives up its slot too)
    assert delta["stacks_discarded"] >= rounds * (count - SLOTS - rounds)
    # raised in the schedule() of round rounds-1, where each was switched out
    tb = [("sched_looper", line_of(sched_looper, "got = sched_mid(i, r)")),
          ("sched_mid", line_of(sched_mid, "return sched_leaf(i, r)")),
          ("sched_leaf", line_of(sched_leaf, "return stackless.schedule((i, r))"))]
    assert log == [("caught", i, rounds - 1, (i,), tb) for i in range(count)]
    assert all(not t.alive for t in ts)


KILL_COUNT = 900


def kill_leaf(ch):
    return ch.receive()


def kill_mid(ch, i, log):
    try:
        return kill_leaf(ch)
    finally:
        log.append(("mid finally", i))


def kill_body(ch, i, log):
    try:
        for k in range(3):
            ex_warm(ch)
        if i % 3 == 0:
            kill_mid(ch, i, log)  # blocked on the channel
        else:
            while True:  # runnable, switching in schedule()
                sched_mid(i, 1)
    except stackless.TaskletExit:
        log.append(("exit", i))
        raise
    finally:
        log.append(("finally", i))


def kill_body_paused(ch, i, log):
    try:
        for k in range(3):
            ex_warm(ch)
        kill_pause(i)
    except stackless.TaskletExit:
        log.append(("exit", i))
        raise
    finally:
        log.append(("finally", i))


def kill_pause(i):
    return stackless.schedule_remove(i)


@pytest.mark.parametrize("pending", [False, True])
@in_fresh_thread
def test_kills_of_tasklets_dropped_several_times(pending):
    ch, log = stackless.channel(), []
    ts = []
    for i in range(KILL_COUNT):
        body = kill_body_paused if i % 3 == 1 else kill_body
        ts.append(stackless.tasklet(body)(ch, i, log))
    before = stats()
    stackless.run()
    for k in range(3):
        for i in range(KILL_COUNT):
            ch.send(k)
    # blocked: i % 3 == 0; paused: 1; the runnable ones took a round or so meanwhile
    assert ch.balance == -(KILL_COUNT // 3)
    assert all(ts[i].paused for i in range(1, KILL_COUNT, 3))
    assert all(ts[i].scheduled for i in range(2, KILL_COUNT, 3))
    stackless.schedule()  # the runnable ones go round again
    delta = stats_delta(before)
    assert delta["stacks_discarded"] >= 3 * (KILL_COUNT - SLOTS)
    assert log == []
    for t in ts:
        t.kill(pending=pending)
    if pending:
        stackless.run()
    assert all(not t.alive for t in ts)
    assert ch.balance == 0
    counts = collections.Counter(log)
    expected = collections.Counter()
    for i in range(KILL_COUNT):
        expected[("exit", i)] = expected[("finally", i)] = 1
        if i % 3 == 0:
            expected[("mid finally", i)] = 1
    assert counts == expected
    if not pending:
        # an immediate kill runs the victim at once: its unwinding comes in kill order
        assert [x for x in log if x[0] == "finally"] == [("finally", i) for i in range(KILL_COUNT)]


def bm_leaf(i, remove):
    return stackless.schedule_remove(i) if remove else stackless.schedule(i)


def bm_body(i, remove, out):
    try:
        got = bm_mid(i, remove)
        out.append((i, "returned", got))
    except KeyError as e:
        out.append((i, "exploded", e.args, tb_names(e)[-1]))


def bm_mid(i, remove):
    return bm_leaf(i, remove)


@pytest.mark.parametrize("remove", [False, True])
@in_fresh_thread
def test_a_bomb_in_the_tempval_of_a_soft_switched_tasklet_explodes_in_its_frame(remove):
    count = 800
    out = []
    ts = [stackless.tasklet(bm_body)(i, remove, out) for i in range(count)]
    before = stats()
    if remove:
        stackless.run()  # each pauses in schedule_remove
    else:
        stackless.schedule()  # each waits in schedule(), main takes its turn
    assert stats_delta(before)["stacks_discarded"] >= count - SLOTS - 2
    for i, t in enumerate(ts):
        if i % 2:
            t.tempval = stackless.bomb(KeyError, KeyError(i), None)
        if remove:
            t.insert()
    stackless.run()
    assert out == [(i, "exploded", (i,), "bm_leaf") if i % 2 else (i, "returned", i)
                   for i in range(count)]


def fb_leaf(ch):
    return ch.receive()


def fb_body(ch, i, out):
    try:
        fb_leaf(ch)  # killed here
    finally:
        # blocks again while TaskletExit is on its way: dropped here, too
        out.append((i, "finally got", fb_leaf(ch)))


@in_fresh_thread
def test_a_killed_tasklet_blocks_in_its_finally_block_without_its_stack():
    count = 800
    ch, out = stackless.channel(), []
    ts = [stackless.tasklet(fb_body)(ch, i, out) for i in range(count)]
    stackless.run()
    before = stats()
    for t in ts:
        t.kill(pending=True)
    stackless.run()  # each unwinds into its finally block and blocks there
    assert ch.balance == -count
    assert all(t.alive and t.blocked for t in ts)
    for i in range(count):
        ch.send(("value", i))  # the finally block ends, TaskletExit goes on: the tasklet ends
    assert stats_delta(before)["stacks_discarded"] >= count - SLOTS
    assert out == [(i, "finally got", ("value", i)) for i in range(count)]
    assert not any(t.alive for t in ts)


# --- pickling --------------------------------------------------------------------------------

PK_COUNT = 600
PK_PICKLED = (0, 1, 257, 300, PK_COUNT - 2, PK_COUNT - 1)


def pk_leaf(ch):
    return ch.receive()


def pk_mid(ch, i):
    base = i * 3
    v = pk_leaf(ch)
    return v + base


def pk_other(ch, i):
    # a deeper chain for odd rounds
    return pk_mid(ch, i) * 2


def pk_body(ch, i, rounds, out):
    total = 0
    for r in range(rounds):
        total += pk_mid(ch, i) if r % 2 == 0 else pk_other(ch, i)
    out.append((i, total))


def pk_expected(i, values):
    total = 0
    for r, v in enumerate(values):
        total += v + 3 * i if r % 2 == 0 else (v + 3 * i) * 2
    return total


@in_fresh_thread
def test_a_tasklet_dropped_several_times_pickles_blocked_in_receive():
    rounds = 5
    chs = [stackless.channel() for _ in range(PK_COUNT)]
    out = []
    ts = [stackless.tasklet(pk_body)(chs[i], i, rounds, out) for i in range(PK_COUNT)]
    before = stats()
    stackless.run()
    for r in range(rounds - 1):
        for i in range(PK_COUNT):
            chs[i].send(r * 10 + i)
    assert stats_delta(before)["stacks_discarded"] >= (rounds - 1) * (PK_COUNT - SLOTS)
    copies = {}
    for i in PK_PICKLED:
        # the channel travels with the tasklet (its frames refer to it); only this tasklet waits
        # on it
        # (and so does `out`, empty so far: nobody has ended)
        copies[i] = pickle.loads(pickle.dumps((ts[i], chs[i], out)))
    for i in PK_PICKLED:
        t2, ch2, out2 = copies[i]
        assert t2.alive and t2.blocked and ch2.balance == -1
        ch2.send((rounds - 1) * 10 + i + 5)  # the copy gets another value than the original
        assert out2 == [(i, pk_expected(i, [r * 10 + i for r in range(rounds - 1)] +
                                        [(rounds - 1) * 10 + i + 5]))]
        assert not t2.alive
    for i in range(PK_COUNT):
        chs[i].send((rounds - 1) * 10 + i)
    assert out == [(i, pk_expected(i, [r * 10 + i for r in range(rounds)]))
                   for i in range(PK_COUNT)]
    assert all(not t.alive for t in ts)


def pr_leaf(i, r):
    return stackless.schedule_remove(("retval", i, r))


def pr_mid(i, r):
    tag = ("mid", i)
    got = pr_leaf(i, r)
    return (tag, got)


def pr_body(i, rounds, out):
    seen = []
    for r in range(rounds):
        seen.append(pr_mid(i, r))
    out.append((i, seen))


@in_fresh_thread
def test_a_tasklet_dropped_several_times_pickles_paused_in_schedule_remove():
    rounds = 5
    out = []
    ts = [stackless.tasklet(pr_body)(i, rounds, out) for i in range(PK_COUNT)]
    before = stats()
    stackless.run()
    for r in range(rounds - 1):
        for i, t in enumerate(ts):
            assert t.paused
            if i % 2:
                t.tempval = ("tempval", i, r)  # schedule_remove returns this instead
            t.insert()
        stackless.run()
    assert stats_delta(before)["stacks_discarded"] >= (rounds - 1) * (PK_COUNT - SLOTS)

    def expected(i, last):
        seen = []
        for r in range(rounds - 1):
            seen.append((("mid", i), ("tempval", i, r) if i % 2 else ("retval", i, r)))
        seen.append((("mid", i), last))
        return (i, seen)

    for i in PK_PICKLED:
        t2, out2 = pickle.loads(pickle.dumps((ts[i], out)))  # (out is empty so far)
        assert t2.alive and t2.paused
        t2.tempval = ("copy", i)
        t2.insert()
        stackless.run()
        assert out2 == [expected(i, ("copy", i))]
        assert not t2.alive
    for i, t in enumerate(ts):
        t.insert()
    stackless.run()
    assert out == [expected(i, ("retval", i, rounds - 1)) for i in range(PK_COUNT)]


# --- a thread that ends ----------------------------------------------------------------------

def th_leaf(ch):
    return ch.receive()


def th_receiver(ch, i, log):
    try:
        while True:
            v = th_leaf(ch)
            log.append(("got", i, v))
    finally:
        log.append(("finally", "receiver", i))


def th_pause_leaf():
    return stackless.schedule_remove()


def th_pauser(i, log):
    try:
        while True:
            th_pause_leaf()
            log.append(("resumed", i))
    finally:
        log.append(("finally", "pauser", i))


def th_looper(i, log):
    try:
        while True:
            sched_mid(i, 0)
    finally:
        log.append(("finally", "looper", i))


@in_fresh_thread
def test_a_thread_that_ends_kills_its_soft_switched_tasklets():
    k = 1000  # of each kind: blocked, paused and runnable
    log, keep = [], {}

    def thread_main():
        ch = stackless.channel()
        keep["ch"] = ch
        receivers = [stackless.tasklet(th_receiver)(ch, i, log) for i in range(k)]
        pausers = [stackless.tasklet(th_pauser)(i, log) for i in range(k)]
        stackless.run()
        for p in range(2):
            for i in range(k):
                ch.send(p)
            for t in pausers:
                t.insert()
            stackless.run()
        loopers = [stackless.tasklet(th_looper)(i, log) for i in range(k)]
        for _ in range(3):
            stackless.schedule()
        keep["tasklets"] = receivers + pausers + loopers
        keep["stats"] = stats()
        # ends with k tasklets blocked, k paused and k runnable, all without stacks

    th = threading.Thread(target=thread_main)
    th.start()
    th.join()
    assert keep["stats"]["stacks_discarded"] >= 2 * (3 * k - SLOTS)
    got = [x for x in log if x[0] == "got"]
    assert sorted(got) == sorted(("got", i, p) for i in range(k) for p in range(2))
    assert sorted(x for x in log if x[0] == "resumed") == sorted(
        ("resumed", i) for i in range(k) for _ in range(2))
    finallies = collections.Counter(x for x in log if x[0] == "finally")
    assert finallies == collections.Counter(
        [("finally", kind, i) for kind in ("receiver", "pauser", "looper") for i in range(k)])
    assert all(not t.alive for t in keep["tasklets"])
    assert keep["ch"].balance == 0


# --- tasklets that cannot drop their stacks, mixed in ----------------------------------------

MIX_COUNT, MIX_ROUNDS = 1200, 3


def mx_leaf(ch):
    stackless.schedule()
    return ch.receive()


def mx_plain(ch, i, out):
    total = []
    for r in range(MIX_ROUNDS):
        total.append(mx_leaf(ch) + 1)
    out.append((i, total))


def mx_sorted(ch, i, out):
    # blocked under a C function (sorted calls the key): its stack must be kept
    total = []
    for r in range(MIX_ROUNDS):
        keys = []
        sorted([2, 1], key=lambda x: keys.append(mx_leaf(ch) * 10 + x) or x)
        total.append(sum(keys))
    out.append((i, total))


def mx_gen_source(ch):
    while True:
        stackless.schedule()
        yield ch.receive() + 2


def mx_generator(ch, i, out):
    # blocked inside a generator: its stack must be kept
    gen = mx_gen_source(ch)
    total = []
    for r in range(MIX_ROUNDS):
        total.append(next(gen))
    out.append((i, total))


def mx_traced(ch, i, out):
    # traced: its stack must be kept
    events = []
    sys.settrace(lambda frame, event, arg: events.append(event) and None)
    total = []
    for r in range(MIX_ROUNDS):
        total.append(mx_leaf(ch) + 3)
    sys.settrace(None)
    out.append((i, total, "call" in events))


MIX_KINDS = [mx_plain, mx_sorted, mx_generator, mx_traced]


def mx_expected(i, r):
    v = r * 10_000 + i
    kind = MIX_KINDS[i % 4]
    if kind is mx_plain:
        return v + 1
    if kind is mx_sorted:
        return (v * 10 + 1) + (v * 10 + 2)  # two receives of the same round's value
    if kind is mx_generator:
        return v + 2
    return v + 3


@in_fresh_thread
def test_tasklets_that_keep_their_stacks_mixed_with_ones_that_drop_them():
    chs = [stackless.channel() for _ in range(MIX_COUNT)]
    out = []
    ts = [stackless.tasklet(MIX_KINDS[i % 4])(chs[i], i, out) for i in range(MIX_COUNT)]
    before = stats()
    stackless.run()
    for r in range(MIX_ROUNDS):
        for i in range(MIX_COUNT):
            for _ in range(2 if MIX_KINDS[i % 4] is mx_sorted else 1):
                chs[i].send(r * 10_000 + i)
        stackless.run()
    delta = stats_delta(before)
    assert all(not t.alive for t in ts)
    assert all(ch.balance == 0 for ch in chs)
    by_tasklet = {x[0]: x[1:] for x in out}
    assert len(by_tasklet) == MIX_COUNT
    for i in range(MIX_COUNT):
        expected = [mx_expected(i, r) for r in range(MIX_ROUNDS)]
        if MIX_KINDS[i % 4] is mx_traced:
            assert by_tasklet[i] == (expected, True), i
        else:
            assert by_tasklet[i] == (expected,), i
    # the plain ones dropped their stacks; the others kept theirs, in slots of their own (up
    # to 4,096) or copied out
    assert delta["stacks_discarded"] > MIX_COUNT // 4
    assert stats()["slots_mapped"] - SLOTS + delta["stacks_saved"] > MIX_COUNT // 4


def ov_leaf(i, r, log):
    log.append((i, r))
    return stackless.schedule((i, r))


def ov_keeper(i, rounds, log, results):
    # switches under sorted(), a C function: its stack must be kept (copied when no slot is free)
    got = []
    for r in range(rounds):
        keys = []
        sorted([1], key=lambda x: keys.append(ov_leaf(i, r, log)))
        got.append(keys[0])
    results[i] = got


def ov_plain(i, rounds, log, results):
    results[i] = [ov_leaf(i, r, log) for r in range(rounds)]


@in_fresh_thread
def test_runnable_tasklets_that_keep_their_stacks_beyond_the_slot_maximum_are_copied():
    # More runnable tasklets that need their stacks than the 4,096 slots a thread maps at most:
    # their stacks are copied through the overflow window, while the others soft-switch.
    count, rounds = 7000, 3
    log, results = [], {}
    for i in range(count):
        stackless.tasklet(ov_keeper if i % 7 else ov_plain)(i, rounds, log, results)
    before = stats()
    stackless.run()
    delta = stats_delta(before)
    assert log == [(i, r) for r in range(rounds) for i in range(count)]
    assert results == {i: [(i, r) for r in range(rounds)] for i in range(count)}
    assert stats()["slots_mapped"] == 4096
    assert delta["stacks_saved"] > count - 4096
    assert delta["stacks_discarded"] > count // 7


# Assorted shapes of frames around the blocking call, droppable or not; tasklet i receives
# ASSORTED_ROUNDS values on its own channel, switching in schedule() before each, and stores what
# it computed in results[i].
ASSORTED_ROUNDS = 3


def as_leaf(ch):
    stackless.schedule()
    return ch.receive()


def as_plain(ch, i, results):
    results[i] = [as_leaf(ch) for _ in range(ASSORTED_ROUNDS)]


class AsObject:
    def __init__(self, ch):
        self.ch = ch
        self.exits = 0

    def method(self, i, results, c):  # a bound method as the tasklet's function: droppable
        results[i] = [(c, as_leaf(self.ch)) for _ in range(ASSORTED_ROUNDS)]

    def many(self, i, results, c, d, e):  # more than 4 arguments: not droppable
        results[i] = [(c + d + e, as_leaf(self.ch)) for _ in range(ASSORTED_ROUNDS)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.exits += 1
        return False

    def __add__(self, other):  # called by C (a slot wrapper): not droppable
        return as_leaf(self.ch) + other

    @staticmethod
    def static(ch):
        return as_leaf(ch)


def as_keywords(ch, i, results, *, scale):  # keywords: not droppable
    results[i] = [as_leaf(ch) * scale for _ in range(ASSORTED_ROUNDS)]


def as_closure(ch, i, results):
    get = lambda: as_leaf(ch) + 0.5
    results[i] = [get() for _ in range(ASSORTED_ROUNDS)]


def as_numbers():
    yield from range(ASSORTED_ROUNDS)


def as_for_generator(ch, i, results):
    # the generator is suspended while the body blocks: not in the chain of frames
    results[i] = [(n, as_leaf(ch)) for n in as_numbers()]


def as_with(ch, i, results):
    obj = AsObject(ch)
    got = []
    for _ in range(ASSORTED_ROUNDS):
        with obj:
            got.append(as_leaf(ch))
    results[i] = (got, obj.exits)


def as_handlers(ch, i, results):
    got = []
    for r in range(ASSORTED_ROUNDS):
        try:
            try:
                raise LookupError(r)
            except LookupError as e:
                got.append((e.args, as_leaf(ch)))
                raise
            finally:
                got.append("finally")
        except LookupError as e:
            got.append(e.args)
    results[i] = got


def as_slot(ch, i, results):
    obj = AsObject(ch)
    results[i] = [obj + 1 for _ in range(ASSORTED_ROUNDS)]


def as_static(ch, i, results):
    results[i] = [AsObject.static(ch) for _ in range(ASSORTED_ROUNDS)]


ASSORTED = ["plain", "method", "many", "keywords", "closure", "generator", "with", "handlers",
            "slot", "static"]


def as_start(kind, ch, i, results):
    if kind == "method":
        return stackless.tasklet(AsObject(ch).method)(i, results, 7)
    if kind == "many":
        return stackless.tasklet(AsObject(ch).many)(i, results, 3, 4, 5)
    if kind == "keywords":
        return stackless.tasklet(as_keywords)(ch, i, results, scale=3)
    fn = {"plain": as_plain, "closure": as_closure, "generator": as_for_generator,
          "with": as_with, "handlers": as_handlers, "slot": as_slot, "static": as_static}[kind]
    return stackless.tasklet(fn)(ch, i, results)


def as_expected(kind, values):
    n = range(ASSORTED_ROUNDS)
    if kind == "method":
        return [(7, v) for v in values]
    if kind == "many":
        return [(12, v) for v in values]
    if kind == "keywords":
        return [v * 3 for v in values]
    if kind == "closure":
        return [v + 0.5 for v in values]
    if kind == "generator":
        return list(zip(n, values))
    if kind == "with":
        return values, ASSORTED_ROUNDS
    if kind == "handlers":
        got = []
        for r, v in zip(n, values):
            got += [((r,), v), "finally", (r,)]
        return got
    if kind == "slot":
        return [v + 1 for v in values]
    return values


def as_run(count):
    chs = [stackless.channel() for _ in range(count)]
    results = {}
    ts = [as_start(ASSORTED[i % len(ASSORTED)], chs[i], i, results) for i in range(count)]
    before = stats()
    stackless.run()
    for r in range(ASSORTED_ROUNDS):
        for i in range(count):
            chs[i].send(r * M + i)
        stackless.run()
    assert all(not t.alive for t in ts)
    assert all(ch.balance == 0 for ch in chs)
    return results, stats_delta(before)


@pytest.mark.parametrize("mode", ["hard", "soft"])
@in_fresh_thread
def test_assorted_frame_shapes_around_the_blocking_call(mode, hard_switching):
    count = 1500
    stackless.enable_softswitch(mode == "soft")
    results, delta = as_run(count)
    assert len(results) == count
    for i, got in results.items():
        kind = ASSORTED[i % len(ASSORTED)]
        assert got == as_expected(kind, [r * M + i for r in range(ASSORTED_ROUNDS)]), (i, kind)
    if mode == "hard":
        assert delta["stacks_discarded"] == 0
    else:
        # the droppable kinds dropped their stacks, the others' were copied
        assert delta["stacks_discarded"] > count
        assert delta["stacks_saved"] > 0


# --- frames that went on in place, then block where they keep their stack --------------------

def ip_first(ch):
    return ch.receive()


def ip_plain(ch, i, log):
    return ch.receive()


def ip_sorted(ch, i, log):
    try:
        keys = []
        sorted([0], key=lambda x: keys.append(ch.receive()))
        return keys[0]
    finally:
        log.append(("second finally", i))


def ip_body(ch, i, second, log):
    try:
        v = ip_first(ch)  # dropped here (most of them)
        w = second(ch, i, log)  # called by the frame that went on in place
        log.append(("done", i, v, w))
    finally:
        log.append(("body finally", i))


@pytest.mark.parametrize("second", ["plain", "sorted"])
@in_fresh_thread
def test_tasklets_whose_frames_went_on_in_place_are_pickled_killed_and_collected(second):
    # Each first blocks where its stack is dropped; once woken, its frames go on in place (the
    # woken frame an entry frame of the chain), and it blocks again, now on a stack that it
    # keeps (the woken ones are few, or it is blocked under sorted()). Then it is pickled,
    # killed, collected or woken.
    count = 600
    fn = ip_plain if second == "plain" else ip_sorted
    chs = [stackless.channel() for _ in range(count)]
    log = []
    ts = [stackless.tasklet(ip_body)(chs[i], i, fn, log) for i in range(count)]
    before = stats()
    stackless.run()
    assert stats_delta(before)["stacks_discarded"] >= count - SLOTS
    woken = range(count - 200, count)  # (all of them had dropped their stacks)
    for i in woken:
        chs[i].send(("first", i))
    assert all(ts[i].blocked for i in woken)
    copies = {}
    for i in woken:
        t = ts[i]
        names = []
        f = t.frame
        while f is not None:
            names.append(f.f_code.co_name)
            f = f.f_back
        if second == "plain":
            assert names == ["ip_plain", "ip_body"]
            if i % 4 == 0:
                copies[i] = pickle.loads(pickle.dumps((t, chs[i], log)))
        else:
            assert names[0] == "<lambda>" and names[-2:] == ["ip_sorted", "ip_body"]
    for i in woken:
        if i % 4 == 1:
            ts[i].kill()
        elif i % 4 == 2:
            chs[i].send(("second", i))
    for i, (t2, ch2, log2) in copies.items():
        ch2.send(("copy", i))
        assert log2 == [("done", i, ("first", i), ("copy", i)), ("body finally", i)]
        assert not t2.alive
    for i in woken:
        if i % 4 in (0, 3):
            chs[i].send(("second", i))
    # the others, still blocked in ip_first, are left to the garbage collector: unreachable,
    # they are killed
    del ts[:], chs[:], t, copies
    gc.collect()
    assert stackless.getruncount() == 1
    expected = collections.Counter()
    for i in range(count):
        expected[("body finally", i)] = 1
        if i in woken and i % 4 != 1:
            expected[("done", i, ("first", i), ("second", i))] = 1
        if second == "sorted" and i in woken:
            expected[("second finally", i)] = 1
    assert collections.Counter(log) == expected


# --- preemption ------------------------------------------------------------------------------

PRE_LONG = 250 if QUICK else 50  # (under valgrind, each long one waits for a slow interrupt)


def pre_leaf(i, k, acc, state):
    if i % PRE_LONG == 0 and k == 0:
        # every PRE_LONG-th tasklet computes, in its first round, until a timed run() has
        # returned since it started: until it (or another) was interrupted
        seen, n = state["interrupts"], 0
        while state["interrupts"] == seen:
            acc = (acc * 31 + n + k) % 1_000_003
            n += 1
        state["iterations"][i] = n
    else:
        for n in range(200):
            acc = (acc * 31 + n + k) % 1_000_003
    stackless.schedule()
    return acc


def pre_mid(i, k, acc, state):
    return pre_leaf(i, k, acc, state)


def pre_body(i, rounds, state):
    acc = i
    for k in range(rounds):
        acc = pre_mid(i, k, acc, state)
    state["results"][i] = acc


def pre_expected(i, rounds, iterations):
    acc = i
    for k in range(rounds):
        for n in range(iterations if i % PRE_LONG == 0 and k == 0 else 200):
            acc = (acc * 31 + n + k) % 1_000_003
    return acc


@in_fresh_thread
def test_run_with_a_timeout_interrupts_tasklets_among_soft_switched_ones():
    # Interrupted tasklets keep their stacks (they are not in a blocking call); the others
    # soft-switch. (A budget above half a millisecond: with smaller ones every tasklet is traced
    # to be interrupted, and the tasklets then take slots of their own, up to 4,096, instead.)
    count, rounds = 1000, 8
    state = {"interrupts": 0, "iterations": {}, "results": {}}
    ts = [stackless.tasklet(pre_body)(i, rounds, state) for i in range(count)]
    before = stats()
    while stackless.getruncount() > 1 or any(t.alive and not t.scheduled for t in ts):
        t = stackless.run(100_000)
        if t is not None:
            state["interrupts"] += 1
            t.insert()
    delta = stats_delta(before)
    assert state["results"] == {
        i: pre_expected(i, rounds, state["iterations"].get(i)) for i in range(count)}
    assert state["interrupts"] >= count // PRE_LONG  # one at least while each long one computed
    assert delta["stacks_discarded"] >= (rounds - 1) * (count - SLOTS)


# --- iterating over channels -----------------------------------------------------------------

def it_consume(ch, i, out):
    got = []
    for value in ch:  # FOR_ITER over the channel: dropped and resumed at that instruction
        got.append(value)
        if value[1] == "last":
            break
        if len(got) % 2 == 0:
            got.append(it_nested(ch))  # a receive one level deeper in between
    out.append((i, got))


def it_nested(ch):
    return ("nested", ch.receive())


def it_body(ch, i, out):
    it_consume(ch, i, out)


def it_sender(ch, count, values):
    for v in values:
        for i in range(count):
            ch.send((i, v))


@in_fresh_thread
def test_tasklets_iterating_over_a_channel_drop_their_stacks_again_and_again():
    count = 800
    values = ["a", "b", "c", "d", "e", "last"]
    ch, out = stackless.channel(), []
    ts = [stackless.tasklet(it_body)(ch, i, out) for i in range(count)]
    before = stats()
    stackless.run()
    stackless.tasklet(it_sender)(ch, count, values)  # soft-switched too, at every send
    stackless.run()
    assert stats_delta(before)["stacks_discarded"] >= len(values) * (count - SLOTS)
    assert ch.balance == 0
    assert all(not t.alive for t in ts)
    # per tasklet, in the order the channel delivered: a b (nested c) d e (nested last)...
    expected = {}
    for i in range(count):
        got, it = [], iter(values)
        for v in it:
            got.append((i, v))
            if v == "last":
                break
            if len(got) % 2 == 0:
                got.append(("nested", (i, next(it))))
                if got[-1][1][1] == "last":
                    break
        expected[i] = got
    assert dict(out) == expected
    assert [i for i, _ in out] == list(range(count))


# --- trace functions, atomic ------------------------------------------------------------------

def tr_leaf(ch):
    return ch.receive()


def tr_body(ch, i, out):
    got = []
    for r in range(3):
        got.append(tr_leaf(ch))
    out.append((i, got, sys.gettrace() is not None))


def tr_run(count):
    ch, out, events = stackless.channel(), [], []
    ts = [stackless.tasklet(tr_body)(ch, i, out) for i in range(count)]
    before = stats()
    stackless.run()
    for i in range(count):
        ch.send((0, i))

    def tracer(frame, event, arg):
        events.append((frame.f_code.co_name, event, frame.f_lineno))
        return tracer

    traced = ts[count - 1]  # one of the last to start: its stack was dropped
    traced.trace_function = tracer
    for r in (1, 2):
        for i in range(count):
            ch.send((r, i))
    assert ch.balance == 0
    assert sorted(out) == [(i, [(0, i), (1, i), (2, i)], i == count - 1) for i in range(count)]
    return events, stats_delta(before)


@in_fresh_thread
def test_a_trace_function_given_to_a_soft_switched_tasklet_traces_as_with_hard_switching(
        hard_switching):
    count = 600
    hard_events, hard_delta = tr_run(count)
    assert hard_delta["stacks_discarded"] == 0
    stackless.enable_softswitch(True)
    soft_events, soft_delta = tr_run(count)
    assert soft_delta["stacks_discarded"] > 2 * (count - SLOTS)
    # the new call of tr_leaf was traced (its call, lines and return), as with hard switching
    assert ("tr_leaf", "call", tr_leaf.__code__.co_firstlineno) in soft_events
    assert soft_events == hard_events


def at_leaf(ch):
    return ch.receive(), stackless.current.atomic


def at_body(ch, i, out):
    got = []
    for r in range(3):
        if i % 2:
            with stackless.atomic():
                got.append(at_leaf(ch))
        else:
            got.append(at_leaf(ch))
        got.append(stackless.current.atomic)
    out.append((i, got))


@in_fresh_thread
def test_the_atomic_flag_survives_drops():
    count = 600
    ch, out = stackless.channel(), []
    ts = [stackless.tasklet(at_body)(ch, i, out) for i in range(count)]
    before = stats()
    stackless.run()
    for r in range(3):
        assert [t.atomic for t in ts] == [bool(i % 2) for i in range(count)]
        for i in range(count):
            ch.send(r)
    assert stats_delta(before)["stacks_discarded"] >= 3 * (count - SLOTS)
    assert out == [(i, sum(([(r, bool(i % 2)), False] for r in range(3)), []))
                   for i in range(count)]


# --- recursion depth -------------------------------------------------------------------------

RC_ROUNDS = 30


def rc_down(box, k):
    box[0] = k
    rc_down(box, k + 1)


def rc_probe():
    """How many more frames fit below the caller before RecursionError."""
    box = [0]
    try:
        rc_down(box, 1)
    except RecursionError:
        pass
    return box[0]


def rc_dive(ch, n, out, i):
    if n:
        return rc_dive(ch, n - 1, out, i)
    for _ in range(RC_ROUNDS):
        if ch is not None:
            ch.receive()  # resumed in place, at the bottom, RC_ROUNDS times
        else:
            rc_dive_schedule()
    out.append((i, rc_probe()))


def rc_dive_schedule():
    stackless.schedule()


@pytest.mark.parametrize("where", ["100 deep", "near the limit"])
@in_fresh_thread
def test_recursion_limit_is_the_same_after_many_drops(where):
    limit = sys.getrecursionlimit()
    depth = 100 if where == "100 deep" else limit - 60
    # the plain reference: a tasklet at the same depth that never switches
    plain = []
    stackless.tasklet(rc_dive)(None, depth, plain, -1)
    stackless.run()
    reference = plain[0][1]
    assert limit - depth - 20 <= reference <= limit - depth

    # half of them block in receive, half switch in schedule(): more than the slots, each
    count = 800 if where == "100 deep" else 600
    ch, out = stackless.channel(), []
    for i in range(count):
        stackless.tasklet(rc_dive)(ch if i % 2 else None, depth, out, i)
    before = stats()
    stackless.run()
    for _ in range(RC_ROUNDS):
        for _ in range(count // 2):
            ch.send(None)
        stackless.run()
    assert stats_delta(before)["stacks_discarded"] >= RC_ROUNDS * (count // 2 - SLOTS)
    assert len(out) == count  # none raised RecursionError before its probe
    depths = {d for _, d in out}
    # after RC_ROUNDS resumptions in place, each goes as deep as the reference (exactly, so
    # far; a frame or two of tolerance)
    assert all(abs(d - reference) <= 2 for d in depths), (reference, sorted(depths))


# --- context variables and exception state ---------------------------------------------------

cv = contextvars.ContextVar("soft_switching", default="default")


def cv_leaf(ch):
    return ch.receive()


def cv_mid(ch):
    before = cv.get()
    v = cv_leaf(ch)
    return v, before, cv.get()


def cv_body(ch, i, rounds, out):
    cv.set(("t", i))
    for r in range(rounds):
        v, before, after = cv_mid(ch)
        out.append((i, r, v, before, after))
        cv.set(("t", i, r))
    out.append((i, "end", cv.get()))


@in_fresh_thread
def test_context_variables_survive_drops():
    count, rounds = 800, 4
    ch, out = stackless.channel(), []
    ts = [stackless.tasklet(cv_body)(ch, i, rounds, out) for i in range(count)]
    before = stats()
    stackless.run()
    for r in range(rounds):
        # read and changed from outside while the tasklets are blocked without their stacks
        for i, t in enumerate(ts):
            expected = ("t", i) if r == 0 else ("t", i, r - 1)
            assert t.context_run(cv.get) == expected
        if r == rounds - 1:
            for i, t in enumerate(ts):
                t.context_run(cv.set, ("outside", i))
        assert cv.get() == "default"
        for i in range(count):
            ch.send(r)
    assert stats_delta(before)["stacks_discarded"] >= rounds * (count - SLOTS)
    assert cv.get() == "default"
    expected = []
    for r in range(rounds):
        for i in range(count):
            prev = ("t", i) if r == 0 else ("t", i, r - 1)
            after = ("outside", i) if r == rounds - 1 else prev
            expected.append((i, r, r, prev, after))
    expected += [(i, "end", ("t", i, rounds - 1)) for i in range(count)]
    assert sorted(out, key=repr) == sorted(expected, key=repr)
    assert [x for x in out if x[1] == "end"] == [(i, "end", ("t", i, rounds - 1))
                                                 for i in range(count)]


def ei_leaf(ch):
    v = ch.receive()
    # the handled exception of the caller's except block is seen here too
    return v, sys.exc_info()[1]


def ei_body(ch, i, rounds, out):
    try:
        raise KeyError(i)
    except KeyError as outer:
        for r in range(rounds):
            v, seen_in_callee = ei_leaf(ch)
            out.append((i, r, v, seen_in_callee is outer, sys.exc_info()[1] is outer))
        try:
            raise  # re-raises the exception being handled, after the drops
        except KeyError as again:
            out.append((i, "reraised", again is outer, again.args))
        try:
            raise ValueError(i)  # chained to the exception being handled
        except ValueError as new:
            out.append((i, "context", new.__context__ is outer))
    out.append((i, "after", sys.exc_info()))


@in_fresh_thread
def test_exception_state_survives_drops():
    count, rounds = 800, 4
    ch, out = stackless.channel(), []
    for i in range(count):
        stackless.tasklet(ei_body)(ch, i, rounds, out)
    before = stats()
    stackless.run()
    for r in range(rounds):
        for i in range(count):
            ch.send(r)
        assert sys.exc_info() == (None, None, None)  # main's own state is untouched
    assert stats_delta(before)["stacks_discarded"] >= rounds * (count - SLOTS)
    expected = [(i, r, r, True, True) for r in range(rounds - 1) for i in range(count)]
    for i in range(count):
        expected += [(i, rounds - 1, rounds - 1, True, True), (i, "reraised", True, (i,)),
                     (i, "context", True), (i, "after", (None, None, None))]
    assert out == expected


# --- 100,000 tasklets ------------------------------------------------------------------------

HUNDRED_K = 5_000 if QUICK else 100_000


def hk_step(value):
    return stackless.schedule(value)


def hk_leaf(ch):
    return ch.receive()


def hk_body(i, ch, order, fin, out):
    try:
        order.append(i)
        a = hk_step(i * 2)
        order.append(i)
        b = hk_step(i * 2 + 1)
        try:
            v = hk_leaf(ch)
        except ValueError as e:
            v = ("caught", e.args[0], tb_names(e)[-1])
        out[i] = (a, b, v)
    finally:
        fin[i] += 1


@in_fresh_thread
def test_a_hundred_thousand_tasklets_switch_block_and_are_killed():
    start = time.monotonic()
    rss0 = rss()
    ch = stackless.channel()
    order, fin, out = [], [0] * HUNDRED_K, [None] * HUNDRED_K
    ts = [stackless.tasklet(hk_body)(i, ch, order, fin, out) for i in range(HUNDRED_K)]
    before = stats()
    stackless.run()
    delta = stats_delta(before)
    assert order == list(range(HUNDRED_K)) * 2
    assert ch.balance == -HUNDRED_K
    assert delta["stacks_discarded"] >= 3 * (HUNDRED_K - SLOTS) - 16  # (see the round-robin test)
    assert delta["stacks_saved"] == 0
    peak = rss()
    # The channel's queue is in tasklet order, and everything before i was served or taken
    # off it: tasklet i is the first receiver at its turn.
    for i, t in enumerate(ts):
        kind = i % 10
        if kind == 3:
            t.kill()
        elif kind == 4:
            t.kill(pending=True)
        elif kind == 5:
            ch.send_exception(ValueError, i)
        elif kind == 6:
            t.throw(ValueError(i))
        elif kind == 7:
            t.raise_exception(ValueError, i)
        else:
            ch.send(i * 3)
    stackless.run()
    assert ch.balance == 0
    for i in range(HUNDRED_K):
        kind = i % 10
        if kind in (3, 4):
            assert out[i] is None, i
        elif kind in (5, 6, 7):
            assert out[i] == (i * 2, i * 2 + 1, ("caught", i, "hk_leaf")), i
        else:
            assert out[i] == (i * 2, i * 2 + 1, i * 3), i
    assert fin == [1] * HUNDRED_K
    assert not any(t.alive for t in ts)
    assert peak - rss0 < 1024 ** 3, "resident memory grew by %d bytes" % (peak - rss0)
    elapsed = time.monotonic() - start
    assert elapsed < 30, elapsed


# --- leaks -----------------------------------------------------------------------------------

def lk_leaf(ch):
    return ch.receive()


def lk_body(i, ch, fin):
    try:
        hk_step(i)
        v = lk_leaf(ch)
        hk_step(v)
        if i % 7 == 0:
            lk_leaf(ch)  # killed here
    except ValueError:
        pass
    finally:
        fin[0] += 1


def lk_scenario(count):
    ch, fin = stackless.channel(), [0]
    ts = [stackless.tasklet(lk_body)(i, ch, fin) for i in range(count)]
    stackless.run()
    for i in range(count):
        if i % 5 == 0:
            ch.send_exception(ValueError, i)
        else:
            ch.send(i)
    stackless.run()
    for t in ts:
        if t.alive:
            t.kill()
    assert fin[0] == count
    assert ch.balance == 0


@in_fresh_thread
def test_soft_switching_tasklets_do_not_leak():
    count, reps = (1000, 3) if QUICK else (5000, 20)
    for _ in range(2):
        lk_scenario(count)
    gc.collect()
    rss0, objects0 = rss(), len(gc.get_objects())
    before = stats()
    for _ in range(reps):
        lk_scenario(count)
    gc.collect()
    assert stats_delta(before)["stacks_discarded"] >= reps * 2 * (count - SLOTS)
    objects_growth = len(gc.get_objects()) - objects0
    rss_growth = rss() - rss0
    # a leaked object per tasklet would be 100,000; 32 bytes per tasklet 3.2 MB
    assert objects_growth <= 100, objects_growth
    assert rss_growth <= 2 * 1024 * 1024, rss_growth
