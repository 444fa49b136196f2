"""Damaged tasklet pickles must raise, never crash the interpreter (issue 4).

    ./stackless tests/python/fuzz_pickle.py [--cases N] [--seed S] [--jobs J]

Makes valid pickles of tasklets blocked in several shapes of frames (nested calls, closures,
loops over iterators, with/finally, exception handlers, generators driven by for loops and
yield from, channels with waiting senders) and of a suspended generator, then
flips one to three bytes of one of them, or truncates it, loads the result and, when it loads,
runs what it holds (sends to its channels, runs its tasklets, kills what is left), N times. A
quarter of the cases change the frame records themselves instead (a value of another kind in a
stack slot or local, another resume point, a slot marked empty), which byte flips rarely reach
past the code objects' checksums.
The cases run in child processes of CASES_PER_CHILD each: a child that dies (a crash) is reported
with the seed and case range that reproduce it, and the script exits 1. test_pickle.py runs a
short version in `make test`; the long one (100,000 cases and more) is documented in
docs/pickling.md.
"""
import argparse
import os
import pathlib
import pickle
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CASES_PER_CHILD = 5000


def valid_pickles():
    import stackless
    import pickle_subjects as S

    pickles = []

    def blocked(func, *args):
        ch, log = stackless.channel(), []
        t = stackless.tasklet(func)(ch, log, *args)
        stackless.run()
        pickles.append(pickle.dumps((ch, log)))
        t.kill()

    blocked(S.blocked_three_deep)
    blocked(S.counter_with_closure)
    blocked(S.in_with_and_finally)
    blocked(S.handling_an_exception)
    blocked(S.calls_with_star)
    blocked(S.consume, S.delegating)
    blocked(S.consume, S.pipeline)
    g = S.counting(3)
    next(g)
    g.send(4)
    pickles.append(pickle.dumps((g, [])))
    log = []
    t = stackless.tasklet(S.loops)(None, log)
    for _ in range(9):
        t.run()
    pickles.append(pickle.dumps((t, log)))
    t.kill()
    ch, log = stackless.channel(), []
    for value in ("a", "b"):
        stackless.tasklet(S.sender)(ch, value, log)
    stackless.run()
    pickles.append(pickle.dumps((ch, log)))
    while ch.balance:
        ch.receive()
    return pickles


def tasklet_states(pickles):
    """(class, args, state) of the started tasklets in the valid pickles."""
    import stackless
    states = []
    # Fresh tasklets from the same pickles, captured before they run.
    for data in pickles:
        objects = pickle.loads(data)
        for o in objects:
            tasklets = []
            if isinstance(o, stackless.channel) and o.balance:
                tasklets = [o.queue]
            elif isinstance(o, stackless.tasklet):
                tasklets = [o]
            for t in tasklets:
                cls, args, state = t.__reduce__()
                if state[3] == "frames":
                    states.append((cls, args, state))
        exercise(objects, stackless)
    return states


JUNK = None


def structural_damage(states, rng):
    """A tasklet state whose frame records have one field replaced by something else: the
    checks that a pickle's frames fit their code must catch what byte flips rarely reach."""
    import stackless
    global JUNK
    if JUNK is None:
        JUNK = [None, 0, 7, -1, 10 ** 6, "s", (), [], ValueError("x"), KeyError, object(),
                stackless.channel(), len, 1.5]
    cls, args, state = rng.choice(states)
    frames, op, exc = state[4]
    frames = list(frames)
    i = rng.randrange(len(frames))
    wrapper = None
    if len(frames[i]) == 3:  # a generator's frame: (generator, record, exception)
        wrapper = frames[i]
        frames[i] = wrapper[1]
    record = list(frames[i])
    field = rng.choice((2, 3, 3, 3, 4))
    if field == 2:
        record[2] += rng.randint(-8, 8)
    elif field == 3:
        values = list(record[3])
        junk = rng.choice(JUNK + [iter([1, 2])])
        if values and rng.random() < 0.8:
            values[rng.randrange(len(values))] = junk
        else:
            values.insert(rng.randrange(len(values) + 1), junk)
        record[3] = tuple(values)
    else:
        record[4] = tuple(sorted(set(record[4]) | {rng.randrange(len(record[3]) + 2)}))
    frames[i] = tuple(record)
    if wrapper is not None:
        frames[i] = (wrapper[0], frames[i], wrapper[2])
    if rng.random() < 0.1:
        op = rng.choice(("tempval", "none", "receive", "bogus"))
    if rng.random() < 0.1:
        exc = rng.choice(JUNK)
    return cls, args, state[:4] + ((tuple(frames), op, exc),) + state[5:]


def run_structural(states, rng, stackless):
    cls, args, state = structural_damage(states, rng)
    t = cls(*args)
    try:
        t.__setstate__(state)
    except Exception as e:
        return "state:" + type(e).__name__
    try:
        if state[4][1] == "receive":
            ch = stackless.channel()
            stackless._channel_restore(ch, -1, False, False, ((t, -1, None),))
            ch.send(rng.choice((1, None, "x")))
        else:
            t.insert()
        stackless.run()
        return "state-ran"
    except Exception as e:
        return "state-ran:" + type(e).__name__
    finally:
        try:
            t.kill()
        except Exception:
            pass


def damage(data, rng):
    b = bytearray(data)
    if rng.random() < 0.2:
        return bytes(b[:rng.randrange(len(b))])
    for _ in range(rng.choice((1, 1, 2, 3))):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def exercise(objects, stackless):
    """Runs what a damaged pickle held, as a program would."""
    items = objects if isinstance(objects, tuple) else (objects,)
    try:
        for o in items:
            if isinstance(o, stackless.channel):
                if o.balance < 0:
                    o.send(3)
                elif o.balance > 0:
                    o.receive()
            elif isinstance(o, stackless.tasklet) and o.alive and not o.scheduled:
                o.insert()
            elif type(o).__name__ == "generator":
                next(o, None)
                o.send(1)
        stackless.run()
        return "ran"
    except Exception as e:
        return "ran:" + type(e).__name__
    finally:
        for o in items:
            if isinstance(o, stackless.tasklet):
                try:
                    o.kill()
                except Exception:
                    pass


def child(seed, first, count):
    import resource
    import stackless
    # A damaged length field can make pickle allocate and fill gigabytes (plain pickle does that
    # too): cap the address space so that it raises MemoryError instead of meeting the OOM
    # killer. (Python threads reserve 2 GiB of address space for tasklet stacks.)
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    pickles = valid_pickles()
    states = tasklet_states(pickles)
    outcomes = {}
    sys.unraisablehook = lambda u: None  # finalizers of half-loaded objects may complain
    for case in range(first, first + count):
        rng = random.Random("%d:%d" % (seed, case))
        if case % 4 == 3:  # a quarter of the cases damage the frame records themselves
            outcome = run_structural(states, rng, stackless)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            continue
        data = damage(rng.choice(pickles), rng)
        try:
            objects = pickle.loads(data)
        except Exception as e:
            outcome = type(e).__name__
        else:
            outcome = exercise(objects, stackless)
            del objects
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(repr(sorted(outcomes.items())))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    chunks = [(first, min(CASES_PER_CHILD, args.cases - first))
              for first in range(0, args.cases, CASES_PER_CHILD)]

    def run(chunk):
        first, count = chunk
        return chunk, subprocess.run(
            [sys.executable, __file__, "--child", str(args.seed), str(first), str(count)],
            capture_output=True, text=True)

    totals, crashed = {}, []
    with ThreadPoolExecutor(args.jobs) as pool:
        for (first, count), r in pool.map(run, chunks):
            if r.returncode != 0:
                crashed.append((first, count, r.returncode, r.stderr[-2000:]))
                continue
            for outcome, n in eval(r.stdout.strip().splitlines()[-1]):
                totals[outcome] = totals.get(outcome, 0) + n
    done = sum(totals.values())
    print("fuzz_pickle: %d cases, seed %d: %s" % (done, args.seed, sorted(totals.items())))
    for first, count, status, stderr in crashed:
        print("CRASH (status %d) in cases %d..%d: reproduce with %s %s --child %d %d %d\n%s"
              % (status, first, first + count - 1, sys.executable, __file__, args.seed, first,
                 count, stderr))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
