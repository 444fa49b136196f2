"""Structured damage to pickled frames: no frame record may crash the interpreter or raise
SystemError when it is loaded and run.

    ./stackless tests/python/fuzz_frames.py [--cases N] [--stride K] [--seed S] [--jobs J]

Takes the states of tasklets blocked in many shapes of frames (frame_shapes.py and
pickle_subjects.py: comprehensions, `*` and `**` calls, displays, except*, with, handlers,
f-strings, loops, generators driven by for loops and yield from, special methods) and changes
their frame records one field at a time, systematically:

- slots: every local and value-stack slot of every frame, replaced by each of a set of values
  of other kinds, or marked empty (NULL);
- resume points: every instruction index of every frame's code (and a few outside it), with the
  value stack resized to what the code has there, filled with fitting and with unfitting values,
  under each way an innermost frame can go on (after a call, interrupted, receiving);
- code swaps: every frame's code replaced by every other code object of the corpus (including a
  class body's, a module's, a generator's, a coroutine's), with the stack resized likewise;
- the exception a frame handles, the generator a frame drives, the resume point for when that
  generator returns;
- the same for created and suspended generators and a coroutine, restored on their own.

Then each damaged state is loaded (`tasklet.__setstate__`) and, if it loads, run (inserted, or
sent a value where it waits to receive) under `run(timeout)` and killed. The systematic cases
come first; past them, cases combine two or three damages chosen by a seeded generator, up to
--cases. --stride K runs every K-th case only (make test runs a stride of the systematic
cases). Cases run in child processes: a child that dies is a crash, reported with what
reproduces it, and SystemError counts as a failure too; the script exits 1 on either.
"""
import argparse
import os
import pathlib
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CASES_PER_CHILD = 20_000


def _subjects():
    import pickle_subjects as S
    import frame_shapes as F
    shapes = list(F.SHAPES)
    shapes += [S.blocked_three_deep, S.counter_with_closure, S.in_with_and_finally,
               S.handling_an_exception, S.calls_with_star, S.through_special_methods,
               S.make_returns_from_init]
    shapes += [lambda ch, log, S=S: S.consume(ch, log, S.delegating),
               lambda ch, log, S=S: S.consume(ch, log, S.pipeline)]
    return shapes


def corpus():
    """(tasklet states, code objects): every state in which a subject blocks, as it runs to its
    end (a value sent each time it waits), and every code object met."""
    import stackless
    import frame_shapes as F
    states, codes = [], []
    for subject in _subjects():
        ch, log = stackless.channel(), []
        t = stackless.tasklet(subject)(ch, log)
        stackless.run()
        for step in range(6):
            if not t.alive or not t.blocked:
                break
            cls, args, state = t.__reduce__()
            if state[3] == "frames":
                states.append((cls, args, state))
            try:
                ch.send(step + 1)
            except Exception:  # (some subjects end in an exception: that is their shape)
                break
        if t.alive:
            t.kill()
    states += generator_states()
    seen = set()
    for _, _, state in states:
        for record in state[4][0]:
            record = _plain_record(record)
            code = record[0]
            if id(code) not in seen:
                seen.add(id(code))
                codes.append(code)
    codes += F.extra_codes()
    return states, codes


def _generators():
    import pickle_subjects as S

    def handler(n):
        try:
            raise KeyError(n)
        except KeyError:
            x = yield n
            yield [x, *(yield)]

    async def awaiting(aw):
        return await aw

    class Later:
        def __await__(self):
            return (yield "later")

    made = [S.counting(3), (x * 2 for x in range(4)), handler(1), awaiting(Later())]
    steps = [[None, 4], [None], [None, 5], [None]]
    return made, steps


def generator_states():
    """Created and suspended generators (and a coroutine), as tasklet-like states: (None,
    (restore function, its arguments), (.., .., .., "frames", ((record,), state, exception)))."""
    import copyreg
    out = []
    made, steps = _generators()
    for gen, sends in zip(made, steps):
        for value in [None] + sends:
            reduce = copyreg.dispatch_table[type(gen)]
            func, args = reduce(gen)[:2]
            if args[3] in ("created", "suspended"):
                out.append((None, (func, args), (None, None, None, "frames",
                                                 ((args[8],), args[3], args[9]))))
            try:
                gen.send(value)
            except (StopIteration, TypeError):
                break
    return out


def run_generator(restore, args, state):
    """Restores a generator from its damaged state and drives it a few steps."""
    frames, gen_state, exc = state[4]
    if gen_state not in ("created", "suspended"):  # what a damage to the op becomes here
        gen_state = ("created", "suspended", "running")[len(str(gen_state)) % 3]
    args = args[:3] + (gen_state,) + args[4:8] + (frames[0], exc) + args[10:]
    try:
        gen = restore(*args)
    except SystemError:
        raise
    except Exception as e:
        return "refused:" + type(e).__name__
    try:
        for value in (None, 1, None):
            gen.send(value)
        return "ran"
    except SystemError:
        raise
    except BaseException as e:
        return "ran:" + type(e).__name__
    finally:
        try:
            gen.close()
        except SystemError:
            raise
        except BaseException:
            pass


def _plain_record(record):
    if len(record) == 3:  # a generator's: (generator, record, exception)
        return record[1]
    if len(record) == 2:  # an __init__'s: ("__init__", record)
        return record[1]
    return record


def _with_record(record, new):
    if len(record) == 3:
        return (record[0], new, record[2])
    if len(record) == 2:
        return (record[0], new)
    return new


JUNK = None
OPS = ("tempval", "none", "receive", "interrupted")


def _junk():
    global JUNK
    if JUNK is None:
        import stackless
        JUNK = [None, 0, -1, 10 ** 30, 1.5, "s", b"b", (), (1, 2), [], [1], {}, {1: 2}, set(),
                frozenset(), iter([]), iter([1, 2]), ValueError("x"), KeyError,
                ExceptionGroup("g", [ValueError(1)]), [ValueError(2), None], [1, 2],
                object(), len, stackless.channel(), (lambda: 0).__code__,
                type("Iterless", (), {})()]
    return JUNK


def _fitting(kind):
    """A value of each slot kind of _stackless_bytecode, or NULL (the marker _NULL)."""
    return {"o": 1, "n": _NULL, "i": iter([5]), "x": None, "e": ValueError("fit"), "l": 0,
            "L": [], "S": set(), "D": {}, "g": [], "!": 1}.get(kind, 1)


_NULL = object()


def _resized(record, code, resume, fill, interrupted):
    """`record` for `code` resuming at `resume`, its locals kept where they fit and its stack
    made as long as the code has it there; the slots filled by `fill(kind, i)`."""
    import _stackless_bytecode as B
    import stackless
    nlocals = stackless._code_nlocalsplus(code)
    kinds = B.slot_kinds(code).get(resume)
    if kinds is None:
        kinds = "o" * max(len(record[3]) - nlocals + 1, 1)
    depth = len(kinds) if interrupted else len(kinds) - 1
    old_locals = list(record[3][:nlocals])
    values = old_locals + [None] * (nlocals - len(old_locals))
    nulls = [i for i in record[4] if i < nlocals and i < len(old_locals)]
    nulls += list(range(len(old_locals), nlocals))
    for i in range(depth):
        v = fill(kinds[i], i)
        if v is _NULL:
            nulls.append(nlocals + i)
            v = None
        values.append(v)
    return (code, record[1], resume, tuple(values), tuple(sorted(set(nulls)))) + tuple(record[5:])


class Case:
    """One damaged state: (state index, frame index, what was done)."""

    def __init__(self, states, codes):
        self.states, self.codes = states, codes

    def systematic(self):
        """Every single structured damage, as (state index, function making the new state)."""
        import stackless
        junk = _junk()
        out = []
        for si, (_, _, state) in enumerate(self.states):
            frames, op, exc = state[4]
            for fi, wrapped in enumerate(frames):
                record = _plain_record(wrapped)
                code = record[0]
                n = len(record[3])
                for slot in range(n):
                    for ji in range(len(junk) + 1):
                        out.append((si, fi, "slot", slot, ji))
                units = len(code.co_code) // 2
                for resume in range(-1, units + 2):
                    for fill in ("fit", "junk", "null"):
                        for opi in range(len(OPS) if fi == len(frames) - 1 else 1):
                            out.append((si, fi, "resume", resume, fill, opi))
                for ci in range(len(self.codes)):
                    for fill in ("fit", "keep"):
                        out.append((si, fi, "code", ci, fill))
                if len(record) > 5:
                    for alt in range(-1, units + 1):
                        out.append((si, fi, "alt", alt))
                if len(wrapped) == 3:
                    for ji in range(len(junk)):
                        out.append((si, fi, "generator", ji))
                        out.append((si, fi, "generator-exception", ji))
            for ji in range(len(junk)):
                out.append((si, 0, "exception", ji))
        del stackless
        return out

    def apply(self, state, damage, rng):
        """`state` with one damage done to it."""
        junk = _junk()
        frames, op, exc = state[4]
        frames = list(frames)
        si, fi, what = damage[:3]
        fi = min(fi, len(frames) - 1)
        wrapped = frames[fi]
        record = _plain_record(wrapped)
        code = record[0]
        if what == "slot":
            slot, ji = damage[3] % max(len(record[3]), 1), damage[4]
            values = list(record[3])
            if not values:
                return state
            if ji == len(junk):  # marked empty
                record = record[:4] + (tuple(sorted(set(record[4]) | {slot})),) + record[5:]
                values[slot] = None
            else:
                values[slot] = junk[ji]
            record = record[:3] + (tuple(values),) + record[4:]
        elif what == "resume":
            resume, fill, opi = damage[3], damage[4], damage[5]
            op = OPS[opi] if opi else op
            fills = {"fit": lambda k, i: _fitting(k),
                     "junk": lambda k, i: junk[(i * 7 + resume) % len(junk)],
                     "null": lambda k, i: _NULL}
            record = _resized(record, code, resume, fills[fill], op == "interrupted")
        elif what == "code":
            new_code, fill = self.codes[damage[3]], damage[4]
            if fill == "keep":
                record = (new_code,) + record[1:]
            else:
                record = _resized(record, new_code, record[2], lambda k, i: _fitting(k),
                                  op == "interrupted" and fi == len(frames) - 1)
        elif what == "alt":
            if len(record) > 5:
                record = record[:5] + (damage[3],) + record[6:]
        elif what == "generator":
            if len(wrapped) == 3:
                wrapped = (junk[damage[3]],) + wrapped[1:]
        elif what == "generator-exception":
            if len(wrapped) == 3:
                wrapped = wrapped[:2] + (junk[damage[3]],)
        elif what == "exception":
            exc = junk[damage[3]]
        if what not in ("generator", "generator-exception", "exception"):
            wrapped = _with_record(wrapped, record)
        frames[fi] = wrapped
        return state[:4] + ((tuple(frames), op, exc),) + state[5:]


def run_state(cls, args, state, stackless):
    """Loads a state into a new tasklet (or generator) and runs it; returns the outcome's name."""
    if cls is None:
        return run_generator(args[0], args[1], state)
    t = cls(*args)
    try:
        t.__setstate__(state)
    except SystemError:
        raise
    except Exception as e:
        return "refused:" + type(e).__name__
    try:
        if state[4][1] == "receive":
            ch = stackless.channel()
            stackless._channel_restore(ch, -1, False, False, ((t, -1, None),))
            ch.send(3)
        elif not t.scheduled:
            t.insert()
        for _ in range(3):
            stackless.run(200_000)
        return "ran"
    except SystemError:
        raise
    except Exception as e:
        return "ran:" + type(e).__name__
    finally:
        try:
            if t.alive:
                t.kill()
        except SystemError:
            raise
        except Exception:
            pass


def child(seed, first, count, stride):
    import resource
    import stackless
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    sys.setrecursionlimit(200)
    states, codes = corpus()
    cases = Case(states, codes)
    systematic = cases.systematic()
    outcomes, failures = {}, []
    trace = bool(os.environ.get("FUZZ_FRAMES_TRACE"))  # each case on stderr before it runs
    sys.unraisablehook = lambda u: None  # finalizers of half-made objects may complain
    for number in range(first, first + count, stride):
        rng = random.Random("%d:%d" % (seed, number))
        if number < len(systematic):
            damages = [systematic[number]]
            si = damages[0][0]
        else:  # two or three damages at once
            damages = [rng.choice(systematic) for _ in range(rng.choice((2, 3)))]
            si = damages[0][0]
        if trace:
            print(number, damages, file=sys.stderr, flush=True)
        cls, args, state = states[si]
        for damage in damages:
            state = cases.apply(state, damage, rng)
        try:
            outcome = run_state(cls, args, state, stackless)
        except SystemError as e:
            outcome = "SystemError"
            failures.append((number, damages, str(e)))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # Leave no tasklet behind for the next case.
        while stackless.getruncount() > 1:
            stackless.getcurrent().next.kill()
    print(repr((sorted(outcomes.items()), len(systematic), failures[:5])))


def systematic_count():
    r = subprocess.run([sys.executable, __file__, "--count"], capture_output=True, text=True)
    return int(r.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=0,
                        help="cases in all (default: the systematic ones)")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", nargs=4, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        states, codes = corpus()
        print(len(Case(states, codes).systematic()))
        return 0
    if args.child:
        child(*args.child)
        return 0
    total = args.cases or systematic_count()
    per_child = CASES_PER_CHILD * args.stride
    chunks = [(first, min(per_child, total - first)) for first in range(0, total, per_child)]

    def run(chunk):
        first, count = chunk
        return chunk, subprocess.run(
            [sys.executable, __file__, "--child", str(args.seed), str(first), str(count),
             str(args.stride)], capture_output=True, text=True)

    totals, crashed, failures, systematic = {}, [], [], None
    with ThreadPoolExecutor(args.jobs) as pool:
        for (first, count), r in pool.map(run, chunks):
            if r.returncode != 0:
                crashed.append((first, count, r.returncode, r.stderr[-2000:]))
                continue
            outcomes, systematic, some_failures = eval(r.stdout.strip().splitlines()[-1])
            failures += some_failures
            for outcome, n in outcomes:
                totals[outcome] = totals.get(outcome, 0) + n
    done = sum(totals.values())
    print("fuzz_frames: %d cases (%s systematic, stride %d), seed %d: %s"
          % (done, systematic, args.stride, args.seed, sorted(totals.items())))
    for number, damages, message in failures:
        print("SystemError in case %d %r: %s" % (number, damages, message))
    for first, count, status, stderr in crashed:
        print("CRASH (status %d) in cases %d..%d: reproduce with %s %s --child %d %d %d %d\n%s"
              % (status, first, first + count - 1, sys.executable, __file__, args.seed, first,
                 count, args.stride, stderr))
    return 1 if crashed or failures else 0


if __name__ == "__main__":
    sys.exit(main())
