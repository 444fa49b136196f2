"""Channels: rendezvous, balance, preference and schedule_all, close/open, iteration,
send_sequence, send_exception/send_throw, queue, block_trap, subclassing (channels.rst)."""
import sys
import traceback

import pytest

import stackless


def test_sender_blocks_until_a_receiver_comes():
    # channels.rst, channel.send example
    ch = stackless.channel()
    s = stackless.tasklet(ch.send)(5)
    assert ch.balance == 0
    stackless.run()
    assert ch.balance == 1
    assert s.blocked is True
    assert ch.receive() == 5
    assert ch.balance == 0
    assert s.blocked is False
    assert s.scheduled is True  # runnable again, not yet run
    assert s.alive is True
    stackless.run()
    assert s.alive is False


def test_receiver_blocks_until_a_sender_comes():
    # channels.rst, channel.receive example
    log = []
    ch = stackless.channel()
    r = stackless.tasklet(lambda: log.append("got %r" % (ch.receive(),)))()
    stackless.run()
    assert ch.balance == -1
    assert r.blocked is True
    assert ch.send(5) is None
    log.append("sent")
    # preference -1: the receiver ran at once; it ended and main continued
    assert log == ["got 5", "sent"]
    assert ch.balance == 0
    assert r.alive is False


def test_sender_stays_runnable_and_runs_when_the_receiver_yields():
    log = []
    ch = stackless.channel()

    def r():
        log.append("R got %d" % ch.receive())
        stackless.schedule()
        log.append("R resumed")

    stackless.tasklet(r)()
    stackless.run()
    ch.send(1)  # R runs at once; when it yields, main (still in the queue) goes on
    log.append("sent")
    assert stackless.getruncount() == 2
    stackless.run()
    assert log == ["R got 1", "sent", "R resumed"]


def test_a_blocking_tasklet_leaves_the_run_queue():
    ch = stackless.channel()
    counts = []

    def t_body():
        counts.append(stackless.getruncount())
        ch.receive()
        counts.append(stackless.getruncount())

    t = stackless.tasklet(t_body)()
    stackless.tasklet(lambda: counts.append(stackless.getruncount()))()
    stackless.schedule()  # t blocks, the other ends, main is back
    assert counts == [3, 2]
    assert stackless.getruncount() == 1
    assert t.blocked is True
    assert stackless.getmain().next is stackless.getmain()
    ch.send(0)
    assert counts == [3, 2, 2]  # t and main


def test_balance_counts_waiting_senders_in_fifo_order():
    ch = stackless.channel()
    for i in range(4):
        stackless.tasklet(ch.send)(i * 10)
    stackless.run()
    assert ch.balance == 4
    got = []
    for expected_balance in (3, 2, 1, 0):
        got.append(ch.receive())
        assert ch.balance == expected_balance
    assert got == [0, 10, 20, 30]
    assert stackless.getruncount() == 5  # the four senders are runnable again
    stackless.run()


def test_balance_counts_waiting_receivers_in_fifo_order():
    log = []
    ch = stackless.channel()

    def r(i):
        log.append("r%d got %d" % (i, ch.receive()))

    for i in range(3):
        stackless.tasklet(r)(i)
    stackless.run()
    assert ch.balance == -3
    for v in (1, 2, 3):
        ch.send(v)
        log.append("sent %d" % v)
        assert ch.balance == v - 3
    assert log == ["r0 got 1", "sent 1", "r1 got 2", "sent 2", "r2 got 3", "sent 3"]


def test_ping_pong_between_two_tasklets():
    ping, pong = stackless.channel(), stackless.channel()
    replies, last = [], []

    def a():
        for i in range(1000):
            ping.send(i)
            replies.append(pong.receive() == i + 1)

    def b():
        for i in range(1000):
            v = ping.receive()
            last[:] = [v]
            pong.send(v + 1)

    stackless.tasklet(a)()
    stackless.tasklet(b)()
    stackless.run()
    assert last == [999]
    assert len(replies) == 1000 and all(replies)
    assert (ping.balance, pong.balance) == (0, 0)


def test_many_producers_and_consumers():
    ch = stackless.channel()
    received = []

    def producer(p):
        for i in range(100):
            ch.send(p * 100 + i)
            if i % 7 == 0:
                stackless.schedule()

    def consumer():
        for i in range(100):
            received.append(ch.receive())
            if i % 5 == 0:
                stackless.schedule()

    for p in range(10):
        stackless.tasklet(producer)(p)
    for c in range(10):
        stackless.tasklet(consumer)()
    stackless.run()
    assert sorted(received) == list(range(1000))
    assert ch.balance == 0


def test_values_of_any_type_travel_unchanged():
    ch = stackless.channel()
    obj, big = object(), list(range(10000))
    values = [None, 0, "text", (1, 2), obj, big, stackless.getmain(), ch]
    got = []
    stackless.tasklet(lambda: [got.append(ch.receive()) for _ in values])()
    for v in values:
        ch.send(v)
    assert len(got) == len(values)
    assert all(a is b for a, b in zip(got, values))


# --- preference and schedule_all -----------------------------------------------------------

# (preference, schedule_all, order when main sends to a waiting receiver R while X is runnable,
#  order when main receives from a waiting sender S while X is runnable)
MODES = [
    # prefer the receiver (default): on send, R runs at once and main stays runnable (after X);
    # on receive, main continues and S goes to the end of the queue
    (-1, False, ["R got 1 (main runnable)", "X", "sent"], ["got 1", "X", "S resumed"]),
    # neither: the caller continues, the woken tasklet goes to the end of the queue
    (0, False, ["sent", "X", "R got 1 (main not runnable)"], ["got 1", "X", "S resumed"]),
    # prefer the sender: on send main continues; on receive S runs at once
    (1, False, ["sent", "X", "R got 1 (main not runnable)"], ["S resumed", "X", "got 1"]),
    # schedule_all: the woken tasklet goes to the end, the caller switches to its next
    (-1, True, ["X", "R got 1 (main runnable)", "sent"], ["X", "S resumed", "got 1"]),
    (1, True, ["X", "R got 1 (main runnable)", "sent"], ["X", "S resumed", "got 1"]),
]
MODE_IDS = ["prefer_receiver", "prefer_neither", "prefer_sender", "schedule_all_receiver",
            "schedule_all_sender"]


@pytest.mark.parametrize("preference, schedule_all, send_order, receive_order", MODES,
                         ids=MODE_IDS)
def test_send_to_a_waiting_receiver(preference, schedule_all, send_order, receive_order):
    log = []
    ch = stackless.channel()
    ch.preference = preference
    ch.schedule_all = schedule_all

    def r():
        v = ch.receive()
        log.append("R got %d (main %s)" % (
            v, "runnable" if stackless.getmain().scheduled else "not runnable"))

    stackless.tasklet(r)()
    stackless.run()  # R blocks
    assert ch.balance == -1
    stackless.tasklet(log.append)("X")  # queue: main, X
    ch.send(1)
    log.append("sent")
    assert ch.balance == 0
    stackless.run()
    assert log == send_order


@pytest.mark.parametrize("preference, schedule_all, send_order, receive_order", MODES,
                         ids=MODE_IDS)
def test_receive_from_a_waiting_sender(preference, schedule_all, send_order, receive_order):
    log = []
    ch = stackless.channel()
    ch.preference = preference
    ch.schedule_all = schedule_all

    def s():
        ch.send(1)
        log.append("S resumed")

    stackless.tasklet(s)()
    stackless.run()  # S blocks
    assert ch.balance == 1
    stackless.tasklet(log.append)("X")  # queue: main, X
    v = ch.receive()
    log.append("got %d" % v)
    assert ch.balance == 0
    stackless.run()
    assert log == receive_order


def test_preference_and_schedule_all_attributes():
    ch = stackless.channel()
    assert ch.preference == -1
    assert not ch.schedule_all
    ch.preference = 1
    assert ch.preference == 1
    ch.preference = 0
    assert ch.preference == 0
    for value, sign in ((2, 1), (-2, -1), (100, 1), (True, 1), (0, 0)):  # its sign (Stackless)
        ch.preference = value
        assert ch.preference == sign
    with pytest.raises(TypeError, match="integer"):
        ch.preference = "1"
    assert ch.preference == 0
    ch.schedule_all = True
    assert ch.schedule_all == 1
    ch.schedule_all = 5
    assert ch.schedule_all == 1
    ch.schedule_all = False
    assert ch.schedule_all == 0
    with pytest.raises(TypeError, match="bool or integer"):
        ch.schedule_all = "yes"
    assert ch.schedule_all == 0


def test_pumping_the_scheduler_with_prefer_sender():
    # scheduler.rst, "Pumping the scheduler": preference 1 lets a sender wake every waiting
    # receiver without blocking
    yield_channel = stackless.channel()
    yield_channel.preference = 1
    log = []

    def f(i):
        for step in range(2):
            log.append("t%d step %d" % (i, step))
            yield_channel.receive()  # custom yield outside the scheduler

    for i in range(3):
        stackless.tasklet(f)(i)
    stackless.run()
    assert log == ["t0 step 0", "t1 step 0", "t2 step 0"]
    assert yield_channel.balance == -3
    woken = 0
    while yield_channel.balance < 0:
        yield_channel.send(None)  # does not block, does not switch
        woken += 1
    assert woken == 3
    assert len(log) == 3
    assert stackless.getruncount() == 4
    stackless.run()
    assert log == ["t0 step 0", "t1 step 0", "t2 step 0", "t0 step 1", "t1 step 1",
                   "t2 step 1"]
    while yield_channel.balance < 0:
        yield_channel.send(None)
    stackless.run()


# --- close and open ------------------------------------------------------------------------


def test_an_empty_channel_closes_at_once():
    ch = stackless.channel()
    assert (ch.closing, ch.closed) == (False, False)
    assert ch.close() is None
    assert (ch.closing, ch.closed) == (True, True)
    # ValueError, not a deadlock: the closed channel is checked first
    with pytest.raises(ValueError):
        ch.receive()
    with pytest.raises(ValueError):
        ch.send(1)
    with pytest.raises(ValueError):
        ch.send_exception(RuntimeError, "x")
    assert ch.balance == 0


def test_open_reopens():
    ch = stackless.channel()
    ch.close()
    assert ch.open() is None
    assert (ch.closing, ch.closed) == (False, False)
    stackless.tasklet(ch.send)(9)
    assert ch.receive() == 9
    stackless.run()


def test_waiting_senders_still_deliver_after_close():
    ch = stackless.channel()
    stackless.tasklet(ch.send)(1)
    stackless.tasklet(ch.send)(2)
    stackless.run()
    assert ch.balance == 2
    ch.close()
    assert (ch.closing, ch.closed) == (True, False)
    assert ch.receive() == 1
    assert ch.closed is False
    assert ch.receive() == 2
    assert ch.closed is True
    with pytest.raises(ValueError):
        ch.receive()
    stackless.run()


def test_waiting_receivers_still_get_values_after_close():
    ch = stackless.channel()
    got = []
    stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.run()
    assert ch.balance == -2
    ch.close()
    assert ch.closing is True
    assert ch.closed is False
    # a blocked receiver stays blocked: close() does not wake it
    assert ch.balance == -2
    assert ch.queue.blocked is True
    ch.send(10)
    ch.send(20)
    assert ch.closed is True
    with pytest.raises(ValueError):
        ch.send(30)
    assert got == [10, 20]


def test_a_tasklet_that_would_block_on_a_closed_channel_gets_value_error():
    log = []
    ch = stackless.channel()
    ch.close()

    def f():
        try:
            ch.send(1)
            log.append("sent?")
        except ValueError:
            log.append("ValueError")
        log.append("still scheduled" if stackless.getcurrent().scheduled else "not scheduled")

    stackless.tasklet(f)()
    stackless.run()
    assert log == ["ValueError", "still scheduled"]
    assert ch.balance == 0


# --- iteration ---------------------------------------------------------------------------


def test_iteration_ends_with_stop_iteration_sent_by_send_exception():
    # channels.rst, channel.__iter__ example
    sequence = list(range(4))
    got = []

    def sender(channel):
        for value in sequence:
            channel.send(value)
        channel.send_exception(StopIteration)

    def receiver(channel):
        for value in channel:
            got.append(value)
        got.append("done")

    c = stackless.channel()
    stackless.tasklet(sender)(c)
    stackless.tasklet(receiver)(c)
    stackless.run()
    assert got == [0, 1, 2, 3, "done"]


def test_iteration_combined_with_send_sequence():
    got, counts = [], []

    def sender(channel, sequence):
        counts.append(channel.send_sequence(sequence))
        channel.send_exception(StopIteration)

    def receiver(channel):
        for value in channel:
            got.append(value)

    c = stackless.channel()
    stackless.tasklet(sender)(c, range(4))
    stackless.tasklet(receiver)(c)
    stackless.run()
    assert got == [0, 1, 2, 3]
    assert counts == [4]


def test_channel_is_its_own_iterator():
    ch = stackless.channel()
    assert iter(ch) is ch
    stackless.tasklet(ch.send)("x")
    assert next(ch) == "x"
    stackless.run()


def test_iterating_a_closed_channel_without_senders_ends_at_once():
    ch = stackless.channel()
    ch.close()
    assert list(ch) == []
    with pytest.raises(StopIteration):
        next(ch)


def test_iteration_receives_until_closing_and_empty():
    ch = stackless.channel()
    for i in range(3):
        stackless.tasklet(ch.send)(i)
    stackless.run()
    assert ch.balance == 3
    ch.close()
    assert list(ch) == [0, 1, 2]
    assert ch.closed is True
    stackless.run()


def test_iteration_over_a_producer_that_closes_when_done():
    ch = stackless.channel()
    ch.preference = 1  # the producer keeps running when it wakes the consumer
    sent = []

    def producer():
        sent.append(ch.send_sequence([1, 2, 3]))
        ch.close()

    stackless.tasklet(producer)()
    got = [v for v in ch]
    assert got == [1, 2, 3]
    assert sent == [3]
    assert ch.closed is True


# --- send_sequence ---------------------------------------------------------------------------


def test_send_sequence_sends_in_order_and_returns_the_count():
    ch = stackless.channel()
    got = []
    stackless.tasklet(lambda: [got.append(ch.receive()) for _ in range(4)])()
    assert ch.send_sequence(iter(["a", "b", "c", "d"])) == 4
    stackless.run()
    assert got == ["a", "b", "c", "d"]
    assert ch.send_sequence([]) == 0


def test_send_sequence_from_a_generator_to_a_receiving_tasklet():
    # channels.rst, send_sequence example
    ch = stackless.channel()
    sequence = [0, 1, 2, 3]
    got, counts = [], []
    stackless.tasklet(lambda: counts.append(ch.send_sequence(x for x in sequence)))()

    def receiver():
        while len(got) < len(sequence):
            got.append(ch.receive())

    stackless.tasklet(receiver)()
    stackless.run()
    assert got == sequence
    assert counts == [4]


def test_send_sequence_propagates_the_error_of_the_iterable():
    ch = stackless.channel()
    ch.preference = 1
    got = []

    def gen():
        yield 1
        raise KeyError("from the generator")

    stackless.tasklet(lambda: [got.append(ch.receive()) for _ in range(2)])()
    stackless.run()
    with pytest.raises(KeyError):
        ch.send_sequence(gen())
    assert got == []  # preference 1: the receiver has not run yet
    stackless.run()
    assert got == [1]
    ch.send(2)  # the second receive()
    stackless.run()
    assert got == [1, 2]


# --- send_exception, send_throw ---------------------------------------------------------------


def test_send_exception_raises_in_the_waiting_receiver():
    log = []
    ch = stackless.channel()

    def receiver():
        try:
            ch.receive()
            log.append("no exception")
        except ValueError as e:
            log.append(("caught", type(e), e.args))

    stackless.tasklet(receiver)()
    stackless.run()
    assert ch.send_exception(ValueError, "xxx", 2) is None
    assert log == [("caught", ValueError, ("xxx", 2))]
    assert ch.balance == 0


def test_send_exception_uncaught_in_the_receiver_reaches_main():
    # channels.rst, send_exception example: the traceback ends in the receiver
    c = stackless.channel()

    def receiver(chan):
        chan.receive()

    stackless.tasklet(receiver)(c)
    stackless.run()
    with pytest.raises(Exception, match="xxx") as info:
        c.send_exception(Exception, "xxx")
    assert type(info.value) is Exception
    assert "receiver" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]


def test_send_exception_from_a_blocked_sender_raises_in_the_receiver():
    ch = stackless.channel()
    stackless.tasklet(ch.send_exception)(LookupError, "boom")
    # main stays in the run queue meanwhile (Stackless hands the exception of a tasklet that
    # blocks with it to a main that waits in run(); that corner is not tested here)
    stackless.schedule()
    assert ch.balance == 1
    with pytest.raises(LookupError, match="boom"):
        ch.receive()
    assert ch.balance == 0
    # the channel still works for values afterwards
    stackless.tasklet(ch.send)(3)
    assert ch.receive() == 3
    stackless.run()


def test_send_exception_needs_an_exception_class():
    ch = stackless.channel()
    stackless.tasklet(ch.receive)()
    stackless.run()
    with pytest.raises(TypeError):
        ch.send_exception(42)
    with pytest.raises(TypeError):
        ch.send_exception()
    assert ch.balance == -1
    ch.send(None)


def test_send_throw_sends_an_existing_exception_with_its_traceback():
    ch = stackless.channel()
    caught = []

    def receiver():
        try:
            ch.receive()
        except KeyError as e:
            caught.append(e)

    def original_raiser():
        raise KeyError("original")

    stackless.tasklet(receiver)()
    stackless.run()
    try:
        original_raiser()
    except KeyError:
        exc = sys.exc_info()[1]
        ch.send_throw(*sys.exc_info())
    assert len(caught) == 1
    assert caught[0] is exc
    names = [frame.name for frame in traceback.extract_tb(caught[0].__traceback__)]
    assert "original_raiser" in names


def test_send_throw_with_an_instance_or_a_class():
    ch = stackless.channel()
    caught = []

    def receiver():
        for _ in range(2):
            try:
                ch.receive()
            except ValueError as e:
                caught.append(e)

    stackless.tasklet(receiver)()
    stackless.run()
    instance = ValueError("instance")
    ch.send_throw(instance)
    ch.send_throw(ValueError, "from class")
    assert caught[0] is instance
    assert type(caught[1]) is ValueError and caught[1].args == ("from class",)


def test_sending_a_bomb_raises_in_the_receiver():
    # a bomb in a tasklet's tempval explodes when the tasklet is activated
    ch = stackless.channel()
    caught = []

    def receiver():
        try:
            ch.receive()
        except ZeroDivisionError as e:
            caught.append(e)

    stackless.tasklet(receiver)()
    stackless.run()
    try:
        1 / 0
    except ZeroDivisionError:
        b = stackless.bomb(*sys.exc_info())
    assert b.type is ZeroDivisionError
    assert isinstance(b.value, ZeroDivisionError)
    assert b.traceback is not None
    ch.send(b)
    assert len(caught) == 1 and caught[0] is b.value


# --- queue --------------------------------------------------------------------------------


def test_queue_lists_the_blocked_tasklets_first_to_last():
    ch = stackless.channel()
    assert ch.queue is None
    receivers = [stackless.tasklet(ch.receive)() for _ in range(3)]
    stackless.run()
    assert ch.balance == -3
    assert ch.queue is receivers[0]
    assert receivers[0].next is receivers[1]
    assert receivers[1].next is receivers[2]
    assert receivers[1].prev is receivers[0]
    assert receivers[2].prev is receivers[1]
    ch.send(1)
    assert ch.queue is receivers[1]
    ch.send(2)
    ch.send(3)
    assert ch.queue is None


def test_queue_walk_from_the_docs():
    # channels.rst, channel.queue: follow t.next until None
    ch = stackless.channel()
    senders = [stackless.tasklet(ch.send)(i) for i in range(3)]
    stackless.run()
    walked = []
    t = ch.queue
    while t is not None and len(walked) < 10:
        walked.append(t)
        t = t.next
    assert walked == senders
    assert [ch.receive() for _ in range(3)] == [0, 1, 2]
    stackless.run()


# --- block_trap ----------------------------------------------------------------------------


def test_a_tasklet_with_block_trap_gets_runtime_error_instead_of_blocking():
    log = []
    ch = stackless.channel()

    def f():
        stackless.getcurrent().block_trap = True
        try:
            ch.receive()
            log.append("received?")
        except RuntimeError as e:
            log.append("deadlock?" if "deadlock" in str(e).lower() else "RuntimeError")
        cur = stackless.getcurrent()
        log.append("runnable" if cur.scheduled and not cur.blocked else "not runnable")
        try:
            ch.send(1)
        except RuntimeError:
            log.append("RuntimeError")

    t = stackless.tasklet(f)()
    stackless.run()
    assert log == ["RuntimeError", "runnable", "RuntimeError"]
    assert t.block_trap is True
    assert t.alive is False
    assert ch.balance == 0


def test_block_trap_allows_channel_actions_that_do_not_block():
    # channels.rst: "verified receiving without blocking"
    ch = stackless.channel()
    for i in (1, 2, 3):
        stackless.tasklet(ch.send)(i)
    stackless.run()
    assert ch.balance == 3
    me = stackless.getcurrent()
    me.block_trap = True
    try:
        total = 0
        while ch.balance > 0:
            total += ch.receive()
        assert total == 6
        assert stackless.getruncount() == 4  # the senders are runnable again
        with pytest.raises(RuntimeError) as info:
            ch.receive()  # raises at once, before any switch
        assert "deadlock" not in str(info.value).lower()
        assert stackless.getruncount() == 4
        assert me.blocked is False
        assert ch.balance == 0
    finally:
        me.block_trap = False
    stackless.run()


# --- subclassing, lifetime -------------------------------------------------------------------


class LoggingChannel(stackless.channel):
    def __init__(self, name):
        super().__init__()
        self.name = name
        self.log = []

    def send(self, value):
        self.log.append((self.name, "send", value))
        return super().send(value)

    def receive(self):
        value = super().receive()
        self.log.append((self.name, "receive", value))
        return value


def test_channel_subclass_with_its_own_init_attributes_and_methods():
    ch = LoggingChannel("logged")
    assert isinstance(ch, stackless.channel)
    assert ch.balance == 0 and ch.preference == -1
    stackless.tasklet(ch.send)("v")
    assert ch.receive() == "v"
    stackless.run()
    assert ch.log == [("logged", "send", "v"), ("logged", "receive", "v")]
    assert ch.name == "logged"


def test_a_channel_local_to_a_blocked_tasklet_that_is_killed():
    log = []

    def f():
        mine = stackless.channel()
        try:
            mine.receive()
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.blocked is True
    t.kill()
    assert log == ["finally"]
    assert t.alive is False
