"""Random tasklet traffic across Python threads, from a seed (argv[1]): short-lived threads run
tasklets (some blocked or paused when the thread ends), hand tasklet objects, their main
tasklet's included, to other threads, which read their attributes, try operations on them and
drop them. Run by test_stress.py in subprocesses: the process must end normally, printing
"ok SEED", with every ended thread gone from stackless.threads."""
import gc
import queue
import random
import sys
import threading

import stackless

seed = int(sys.argv[1])
rng = random.Random(seed)
shared = queue.Queue()  # tasklet objects in transit between threads
ATTRIBUTES = ("alive", "blocked", "paused", "scheduled", "thread_id", "next", "prev", "is_main")
OPERATIONS = ("insert", "remove", "kill", "run", "switch")
# Why an operation on another thread's tasklet may fail: Stackless's reasons.
EXPECTED_REFUSALS = ("different thread", "Target thread isn't initialised", "blocked", "dead",
                     "current tasklet", "main tasklet", "no thread")
failures = []  # exceptions that escaped a worker thread
threading.excepthook = lambda args: failures.append("%s: %s" % (args.exc_type.__name__,
                                                                 args.exc_value))


def worker(worker_seed):
    r = random.Random(worker_seed)
    ch = stackless.channel()

    def body(k):
        for _ in range(k):
            stackless.schedule()
        if k % 3 == 0:
            ch.receive()  # blocks for good: nobody sends
        if k % 5 == 0:
            stackless.schedule_remove()  # paused for good

    mine = [stackless.tasklet(body)(r.randrange(10)) for _ in range(r.randrange(1, 30))]
    for _ in range(r.randrange(3)):
        try:
            stackless.run()
        except RuntimeError:
            pass  # a kill or an insert from another thread may have failed here
    for t in r.sample(mine, min(len(mine), 3)):
        shared.put(t)
    if r.random() < 0.5:
        shared.put(stackless.getcurrent())
    for _ in range(3):
        try:
            t = shared.get_nowait()
        except queue.Empty:
            break
        for name in ATTRIBUTES:
            getattr(t, name)  # readable from any thread
        for name in OPERATIONS:
            if r.random() < 0.3:
                try:
                    getattr(t, name)()  # carried out in its thread (switch: refused)
                except RuntimeError as e:
                    if t.thread_id != threading.get_ident():
                        assert any(why in str(e) for why in EXPECTED_REFUSALS), e
        if r.random() < 0.5:
            shared.put(t)
        del t
    del mine
    if r.random() < 0.5:
        gc.collect()


for _ in range(40):
    threads = [threading.Thread(target=worker, args=(rng.random(),))
               for _ in range(rng.randrange(1, 5))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
        assert not th.is_alive(), "a worker thread hangs"
    if rng.random() < 0.3:
        while not shared.empty():
            shared.get()
        gc.collect()
while not shared.empty():
    shared.get()
gc.collect()
assert not failures, failures
assert stackless.threads == [threading.get_ident()], stackless.threads
print("ok %d" % seed)
