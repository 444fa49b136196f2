"""Random sequences of tasklet and channel operations, from a seed (argv[1]): tasklets that send,
receive, schedule, kill, insert, switch, close channels and change their preference while main
runs (with and without a watchdog timeout), kills, throws into, removes, drops, pickles and
unpickles them. With 700 tasklets (one seed in three), more block than there are stack slots
(256), so some drop their C stacks; with 3,000 (seeds 10, 20, ...: a third argument overrides
the count), more run than keep their stacks (1,024), and most switches are soft (the next
tasklet starts on the stack the running one leaves). Each
tasklet makes its operations 0 to 2 plain Python calls deep (by its ident), so that stacks are
dropped and frames go on in place along different chains. Run by test_stress.py in
subprocesses: the process must end normally whatever the sequence, printing "ok SEED"."""
import random, sys, gc, pickle, stackless

seed = int(sys.argv[1])
rng = random.Random(seed)
channels = [stackless.channel() for _ in range(4)]
tasklets = []

def body(ident, steps):
    r = random.Random(seed * 1000 + ident)
    try:
        for _ in range(steps):
            op = r.randrange(14)
            ch = r.choice(channels)
            if ident % 3 == 0: operation(op, ch, r, ident)
            elif ident % 3 == 1: one_deep(op, ch, r, ident)
            else: two_deep(op, ch, r, ident)
    finally:
        pass

def two_deep(op, ch, r, ident):
    local = (op, ident)
    one_deep(op, ch, r, ident)
    assert local == (op, ident)

def one_deep(op, ch, r, ident):
    try:
        operation(op, ch, r, ident)
    finally:
        pass

def operation(op, ch, r, ident):
    try:
        if op == 0: ch.send(ident)
        elif op == 1: ch.receive()
        elif op == 2: stackless.schedule()
        elif op == 3: stackless.schedule_remove()
        elif op == 4: ch.send_exception(ValueError, "x")
        elif op == 5:
            t = r.choice(tasklets) if tasklets else None
            if t is not None and t is not stackless.current: t.kill(pending=r.random() < 0.5)
        elif op == 6:
            t = r.choice(tasklets) if tasklets else None
            if t is not None and t.alive and not t.blocked and not t.scheduled: t.insert()
        elif op == 7: gc.collect(0)
        elif op == 8:
            with stackless.atomic():
                stackless.tasklet(body)(ident * 10 + 1, 3)
        elif op == 9: ch.close() if r.random() < 0.3 else ch.open()
        elif op == 10: ch.preference = r.choice((-1, 0, 1))
        elif op == 11: ch.schedule_all = r.random() < 0.3
        elif op == 12:
            t = r.choice(tasklets) if tasklets else None
            if t is not None and t.alive and not t.blocked and t is not stackless.current: t.switch()
        elif op == 13:
            for x in ch:
                if r.random() < 0.5: break
    except (ValueError, RuntimeError):
        pass

if len(sys.argv) > 2: count = int(sys.argv[2])
elif seed % 10 == 0: count = 3000
elif seed % 3 == 0: count = 700
else: count = None
for i in range(rng.randrange(5, 40) if count is None else count):
    tasklets.append(stackless.tasklet(body)(i, rng.randrange(1, 80)))

for _ in range(200 if count is None or count < 3000 else 1000):
    op = rng.randrange(15)
    try:
        if op < 4:
            stackless.run()
        elif op == 4:
            t = rng.choice(tasklets)
            if t.alive and not t.is_current: t.kill(pending=rng.random() < 0.5)
        elif op == 5:
            t = rng.choice(tasklets)
            if t.alive and not t.scheduled: t.insert()
        elif op == 6:
            t = rng.choice(tasklets)
            if t.alive and not t.blocked: t.run()
        elif op == 7:
            ch = rng.choice(channels)
            # (with thousands of tasklets, main wakes many at a time)
            for _ in range(1 if count is None or count < 3000 else 100):
                if ch.balance < 0: ch.send("from main")
                elif ch.balance > 0: ch.receive()
                else: break
        elif op == 8:
            t = rng.choice(tasklets)
            if t.alive: t.throw(KeyError("k"), pending=True)
        elif op == 9:
            del tasklets[rng.randrange(len(tasklets))]
            gc.collect()
            if not tasklets: tasklets.append(stackless.tasklet(body)(99, 5))
        elif op == 10:
            t = rng.choice(tasklets)
            if t.alive and t.scheduled and not t.blocked and not t.is_current: t.remove()
        elif op == 11:
            t = rng.choice(tasklets)
            if t.alive and not t.blocked: t.switch()
        elif op == 12:
            t = rng.choice(tasklets)
            t.raise_exception(ZeroDivisionError, "z")
        elif op == 13:
            t = rng.choice(tasklets)
            try:
                copy = pickle.loads(pickle.dumps(t))
            except (pickle.PickleError, TypeError, AttributeError):
                copy = None
            if copy is not None:
                tasklets.append(copy)
                if copy.alive and not copy.scheduled and rng.random() < 0.5: copy.insert()
        elif op == 14:
            t = stackless.run(rng.choice((2000, 50000)))
            if t is not None and rng.random() < 0.7: t.insert()
    except (ValueError, RuntimeError, KeyError, ZeroDivisionError):
        pass
    except stackless.TaskletExit:
        pass
print("ok", seed)
