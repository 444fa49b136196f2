"""Random channel traffic between Python threads, from a seed (argv[1]): short-lived threads run
tasklets that send, receive, send exceptions, close and reopen, change preferences on channels
that all threads share, while their threads kill some of them, drop channels others wait on,
and end with tasklets still waiting (or handed over by another thread and not yet run). Run by
test_stress.py in subprocesses: the process must end normally, printing "ok SEED", with no
message received twice or more than were sent."""
import gc
import random
import sys
import threading

import stackless

seed = int(sys.argv[1])
sys.setswitchinterval(1e-5)  # threads take turns with the GIL often: messages cross
rng = random.Random(seed)
channels = [stackless.channel() for _ in range(4)]
lock = threading.Lock()  # (only for the counters: channel operations hold the GIL)
sent = set()
received = []
failures = []
threading.excepthook = lambda args: failures.append("%s: %s" % (args.exc_type.__name__,
                                                                 args.exc_value))
EXPECTED = (ValueError, RuntimeError, KeyError)  # closed channel, deadlock, a sent exception


def body(k, name):
    r = random.Random(k)
    for step in range(r.randrange(30)):
        ch = r.choice(channels)
        op = r.random()
        try:
            if op < 0.4:
                message = (name, step)
                with lock:
                    sent.add(message)
                ch.send(message)
            elif op < 0.8:
                value = ch.receive()
                with lock:
                    received.append((value, name[0]))
            elif op < 0.85:
                ch.send_exception(KeyError, "sent")
            elif op < 0.9:
                stackless.schedule()
            elif op < 0.93:
                ch.preference = r.choice((-1, 0, 1))
            elif op < 0.95:
                ch.schedule_all = not ch.schedule_all
            elif op < 0.97:
                ch.close()
            else:
                ch.open()
        except EXPECTED:
            pass


def worker(worker_seed, start):
    r = random.Random(worker_seed)
    mine = [stackless.tasklet(body)(r.random(), (worker_seed, i)) for i in range(r.randrange(1, 25))]
    start.wait()
    for _ in range(r.randrange(1, 5)):
        try:
            stackless.run()
        except EXPECTED:
            pass
        for t in r.sample(mine, min(len(mine), r.randrange(3))):
            if t.alive and r.random() < 0.5:
                t.kill()  # blocked, runnable, or handed over by another thread
        if r.random() < 0.2:
            with lock:
                channels[r.randrange(len(channels))] = stackless.channel()  # waiters keep it
    if r.random() < 0.3:
        gc.collect()
    # The thread ends: what is left of its tasklets is killed and taken off the channels.


for round_ in range(30):
    n = rng.randrange(1, 5)
    start = threading.Barrier(n)
    threads = [threading.Thread(target=worker, args=(rng.random(), start)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
        assert not th.is_alive(), "a worker thread hangs"
    for ch in channels:
        ch.open()
gc.collect()
assert not failures, failures
messages = [m for m, _ in received]
assert len(messages) == len(set(messages)), "a message was received twice"
assert set(messages) <= sent, "a message was received that nobody sent"
crossed = sum(m[0][0] != receiver for m, receiver in received)
print("%d messages, %d across threads" % (len(messages), crossed), file=sys.stderr)
assert all(ch.balance == 0 for ch in channels), [ch.balance for ch in channels]
assert stackless.threads == [threading.get_ident()], stackless.threads
print("ok %d" % seed)
