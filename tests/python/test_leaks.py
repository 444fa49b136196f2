"""Leak checks: scenarios repeated many times must leave the process's resident memory
(/proc/self/statm) and the number of objects tracked by the garbage collector flat."""
import gc
import os
import time

import stackless

PAGE = os.sysconf("SC_PAGE_SIZE")
ITERATIONS = 100_000  # the issue asks for 100,000 repetitions
WARMUP = 2000
RSS_TOLERANCE = 2 * 1024 * 1024  # bytes; one leaked 100-byte object per iteration is 2 MB
OBJECTS_TOLERANCE = 200  # one leaked tracked object per iteration would be 20,000


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def measure(scenario):
    for i in range(WARMUP):
        scenario(i)
    gc.collect()
    rss0, objects0 = rss(), len(gc.get_objects())
    start = time.monotonic()
    for i in range(ITERATIONS):
        scenario(i)
    elapsed = time.monotonic() - start
    gc.collect()
    return rss() - rss0, len(gc.get_objects()) - objects0, elapsed


def check(scenario):
    rss_growth, objects_growth, elapsed = measure(scenario)
    assert stackless.getruncount() == 1
    assert objects_growth <= OBJECTS_TOLERANCE, \
        "%d more gc-tracked objects after %d iterations" % (objects_growth, ITERATIONS)
    assert rss_growth <= RSS_TOLERANCE, \
        "resident memory grew by %d bytes over %d iterations" % (rss_growth, ITERATIONS)
    return elapsed


def receiver(ch, out):
    out.append(ch.receive())


def pauser():
    try:
        stackless.schedule_remove(None)
    finally:
        pass


def raiser(i):
    raise ValueError(i)


def test_create_run_kill_and_channel_traffic_do_not_leak():
    ch = stackless.channel()
    out = []

    def scenario(i):
        # a receiver that blocks, then gets a value (preference -1: it runs at once)
        stackless.tasklet(receiver)(ch, out)
        # a tasklet that pauses itself, then is killed
        p = stackless.tasklet(pauser)()
        # a tasklet killed before it ever runs
        n = stackless.tasklet(receiver)(ch, out)
        n.kill()
        stackless.run()
        ch.send(i)
        p.kill()
        # a sender blocked on the channel, released by main's receive
        stackless.tasklet(ch.send)(i)
        stackless.run()
        ch.receive()
        stackless.run()
        del out[:]

    elapsed = check(scenario)
    assert elapsed < 30


def test_exceptions_through_tasklets_and_channels_do_not_leak():
    ch = stackless.channel()

    def catcher(ch):
        try:
            ch.receive()
        except KeyError:
            pass

    def scenario(i):
        # an exception escaping a tasklet to main
        stackless.tasklet(raiser)(i)
        try:
            stackless.run()
        except ValueError:
            pass
        # an exception sent over a channel
        stackless.tasklet(catcher)(ch)
        stackless.run()
        ch.send_exception(KeyError, i)
        # an exception thrown into a blocked tasklet
        t = stackless.tasklet(catcher)(ch)
        stackless.run()
        t.raise_exception(KeyError, i)

    elapsed = check(scenario)
    assert elapsed < 30


def test_threads_that_use_stackless_and_end_do_not_leak():
    # Each thread gets its own scheduler, main tasklet object and binding data; all of it must
    # go when the thread ends, including a tasklet left blocked (killed then).
    import threading

    def worker():
        stackless.tasklet(lambda: None)()
        stackless.run()  # the main tasklet leaves the run queue and comes back
        stackless.tasklet(stackless.channel().receive)()
        stackless.run()  # the receiver stays blocked until the thread ends

    def scenario(i):
        th = threading.Thread(target=worker)
        th.start()
        th.join()

    threads = 5000  # a leaked object per thread would be 5,000; 650 bytes would be 3.2 MB
    for i in range(500):
        scenario(i)
    gc.collect()
    rss0, objects0 = rss(), len(gc.get_objects())
    for i in range(threads):
        scenario(i)
    gc.collect()
    assert len(gc.get_objects()) - objects0 <= OBJECTS_TOLERANCE
    assert rss() - rss0 <= RSS_TOLERANCE
    assert stackless.threads == [threading.get_ident()]  # the ended threads are gone


def test_threads_that_overlap_do_not_grow_the_tasklet_state_pool():
    # A thread that makes its first tasklet while another thread is still alive finds no free
    # states handed over yet and carves a new chunk of them (16 KiB). That memory must be reused
    # by later threads, not added again at every such overlap.
    import threading

    def run_a_tasklet():
        stackless.tasklet(lambda: None)()
        stackless.run()

    def overlapping_pair():
        second_made_its_tasklet = threading.Event()

        def first():
            run_a_tasklet()
            second_made_its_tasklet.wait(30)

        def second():
            run_a_tasklet()
            second_made_its_tasklet.set()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    for _ in range(200):
        overlapping_pair()
    gc.collect()
    rss0 = rss()
    pairs = 2000  # a chunk per overlap would be 32 MB
    for _ in range(pairs):
        overlapping_pair()
    gc.collect()
    assert rss() - rss0 <= 4 * 1024 * 1024


def _pickled_worker(ch, out):
    for value in _source(ch):
        out.append(value)


def _source(ch):
    try:
        while True:
            v = ch.receive()
            if v is None:
                return
            yield v
    finally:
        pass


def test_pickling_resuming_and_killing_tasklets_does_not_leak():
    import pickle
    ch, out = stackless.channel(), []
    t = stackless.tasklet(_pickled_worker)(ch, out)
    stackless.run()
    data = pickle.dumps((t, ch, out))
    t.kill()

    def scenario(i):
        t2, ch2, out2 = pickle.loads(data)
        if i % 2:
            ch2.send(i)  # resumes inside the generator, then blocks again
            ch2.send(None)
            assert out2 == [i] and not t2.alive
        else:
            pickle.dumps(t2)  # an unpickled tasklet that has not run pickles again
            t2.kill()  # unwinds the generator and the loop
            assert not t2.alive

    check(scenario)


def test_unreachable_tasklets_blocked_under_a_c_iterator_are_killed_and_collected():
    # The tasklet blocks in a function that map() calls for a for loop: the loop's frame is
    # inside FOR_ITER, with the map object on its value stack. Once the tasklet and its channel
    # are dropped, the collector must still find them unreachable (it sees that stack through
    # the bytecode analysis of the instruction) and kill the tasklet, which unwinds map() too.
    unwound = [0]

    def scenario(i):
        ch = stackless.channel()

        def key(x):
            return ch.receive()

        def body():
            try:
                for _ in map(key, [i, i + 1]):
                    pass
            finally:
                unwound[0] += 1

        t = stackless.tasklet(body)()
        stackless.run()
        assert t.blocked

    check(scenario)
    gc.collect()
    assert unwound[0] >= WARMUP + ITERATIONS - OBJECTS_TOLERANCE
