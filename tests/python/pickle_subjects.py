"""Tasklet functions for test_pickle.py, in a module of their own so that a child process can
import them by name when it unpickles a tasklet that runs them. Each one reports what it sees
through the list or channel it is given, and blocks somewhere interesting."""
import stackless


def blocked_three_deep(ch, log):
    log.append("start")
    value = outer(ch, 10)
    log.append(("done", value))
    return value


def outer(ch, base):
    local = base * 2
    got = middle(ch, local)
    return got + local


def middle(ch, x):
    return Box(x).wait(ch) + 1


class Box:
    def __init__(self, x):
        self.x = x

    def wait(self, ch):
        received = ch.receive()
        return received * self.x


def counter_with_closure(ch, log):
    count = 0

    def bump(by):
        nonlocal count
        count += by
        return count

    while True:
        step = ch.receive()
        if step is None:
            break
        log.append(bump(step))
    return count


def star_arguments(ch, log, *values, scale=1, **options):
    total = sum(values) * scale
    log.append(("before", total, sorted(options.items())))
    extra = ch.receive()
    log.append(("after", total + extra, values, options))


def calls_with_star(ch, log):
    args = (ch, log, 1, 2, 3)
    return star_arguments(*args, scale=10, colour="red")


def loops(ch, log):
    data = {"a": 1, "b": 2}
    for i in range(2):
        for x in [10, 20]:
            for y in (100,):
                for k in data.keys():
                    for v in data.values():
                        for kv in data.items():
                            for n, z in enumerate(zip("pq", reversed([7, 8]))):
                                log.append((i, x, y, k, v, kv, n, z))
                                stackless.schedule()
    return len(log)


def in_with_and_finally(ch, log):
    manager = Manager(log)
    try:
        with manager as entered:
            log.append(("entered", entered))
            ch.receive()
            log.append("after receive")
    finally:
        log.append("finally")


class Manager:
    def __init__(self, log):
        self.log = log

    def __enter__(self):
        return "token"

    def __exit__(self, kind, value, tb):
        self.log.append(("exit", kind.__name__ if kind else None))
        return False


class Blocking:
    """Each special method blocks on the channel: a tasklet pickled there resumes through the
    C-level call that ran it (type.__call__ for __init__, BEFORE_WITH, WITH_EXCEPT_START, an
    instance's __call__)."""

    def __init__(self, ch, log):
        self.ch, self.log = ch, log
        log.append(("init", ch.receive()))

    def __enter__(self):
        self.log.append(("enter", self.ch.receive()))
        return self

    def __exit__(self, kind, value, tb):
        self.log.append(("exit", kind.__name__ if kind else None, self.ch.receive()))
        return kind is KeyError

    def __call__(self, x):
        return x * self.ch.receive()


def through_special_methods(ch, log):
    b = Blocking(ch, log)
    with b as entered:
        log.append(("same", entered is b))
        log.append(("called", b(21)))
    with b:
        raise KeyError("swallowed")
    log.append("end")


class ReturnsFromInit:
    def __init__(self, ch):
        return ch.receive()  # a TypeError once it returns what is not None


def make_returns_from_init(ch, log):
    log.append(ReturnsFromInit(ch))


def handling_an_exception(ch, log):
    import sys
    try:
        raise KeyError("original")
    except KeyError as e:
        log.append(("caught", repr(e)))
        ch.receive()
        log.append(("still handling", repr(sys.exc_info()[1])))
    log.append(("after except", sys.exc_info()[1]))


def sender(ch, value, log):
    ch.send(value)
    log.append(("sent", value))


def receiver(ch, log, name):
    log.append((name, ch.receive()))


def schedule_loop(log, n):
    for i in range(n):
        log.append(i)
        stackless.schedule()
    return n


def with_sorted_key(ch, log):
    def key(x):
        ch.receive()
        return -x
    return sorted([1, 2, 3], key=key)


def doubled(ch):
    """A generator blocked in receive() while a for loop or yield from drives it."""
    try:
        while True:
            v = ch.receive()
            if v is None:
                return "end"
            yield v * 2
    finally:
        doubled.closed = getattr(doubled, "closed", 0) + 1


def delegating(ch):
    result = yield from doubled(ch)
    yield ("returned", result)


def pipeline(ch):
    for v in doubled(ch):
        yield v + 1
    yield "pipeline end"


def consume(ch, log, source):
    for x in source(ch):
        log.append(x)
    log.append("done")


def sum_of_genexpr(ch, log):
    return sum(ch.receive() for _ in range(2))


async def coroutine(ch):
    return ch.receive()


def drive_coroutine(ch, log):
    c = coroutine(ch)
    try:
        c.send(None)
    except StopIteration as e:
        log.append(e.value)


def counting(start):
    total = start
    try:
        while True:
            total += (yield total) or 0
    except KeyError:
        yield ("handling", total)


class Worker(stackless.tasklet):
    """A tasklet subclass with attributes of its own (as stacklesslib makes them)."""

    def __init__(self, func, name):
        super().__init__(func)
        self.name = name
