"""Tasklet functions blocked in frames of many shapes, for fuzz_frames.py: each holds on its value
stack something that CPython's evaluation loop later uses without looking at its type (a
comprehension's list, dict or set and its iterator, the list of a `*` call, the dict of a `**`
call, the exceptions of an except* statement, a with statement's __exit__, a handler's
exception, a loop's iterator) while it waits in `ch.receive()`. Each takes (ch, log)."""


def wait(ch):
    return [ch.receive()]


def wait_dict(ch):
    return {"k": ch.receive()}


def collect(*args, **kwargs):
    return args, kwargs


def list_comprehension(ch, log):
    log.append([ch.receive() + i for i in range(3)])


def dict_comprehension(ch, log):
    log.append({i: ch.receive() for i in range(2)})


def set_comprehension(ch, log):
    log.append({ch.receive() for i in range(2)})


def generator_expression(ch, log):
    for v in (ch.receive() * 2 for _ in range(2)):
        log.append(v)


def nested_comprehension(ch, log):
    log.append([[ch.receive() for _ in range(1)] for _ in range(2)])


def star_call(ch, log):
    log.append(collect(*[1, 2], *wait(ch)))


def double_star_call(ch, log):
    log.append(collect(**{"a": 1}, **wait_dict(ch)))


def keyword_and_double_star_call(ch, log):
    log.append(collect(1, x=2, **wait_dict(ch)))


def displays(ch, log):
    log.append([*range(2), *wait(ch)])
    log.append({*range(2), *wait(ch)})
    log.append({**{"a": 1}, **wait_dict(ch)})
    log.append((*range(2), *wait(ch)))


def except_star(ch, log):
    try:
        raise ExceptionGroup("eg", [ValueError(1), TypeError(2)])
    except* ValueError as group:
        log.append(("value", len(group.exceptions), ch.receive()))
    except* TypeError:
        log.append("type")


def except_star_reraising(ch, log):
    try:
        try:
            raise ExceptionGroup("eg", [KeyError(1), OSError(2)])
        except* KeyError:
            log.append(ch.receive())
            raise
    except BaseException as e:
        log.append(type(e).__name__)


class Manager:
    def __init__(self, log):
        self.log = log

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.log.append(("exit", exc[0].__name__ if exc[0] else None))
        return False


def with_and_handler(ch, log):
    with Manager(log):
        try:
            raise KeyError("k")
        except KeyError as e:
            log.append((repr(e), ch.receive()))
            try:
                raise ValueError("inner")
            except ValueError:
                log.append(ch.receive())
            finally:
                log.append("finally")


def formatted(ch, log):
    a = 7
    log.append(f"{a!r:>4}-{ch.receive()}-{a}")


def defaults_made_after_a_call(ch, log):
    x = 5

    def inner(a=ch.receive(), *, b=x):
        return a + b + x

    log.append(inner())


def loops_over_iterators(ch, log):
    total = 0
    for k, v in {"a": 1}.items():
        for i in reversed(range(2)):
            while total < 100:
                total += ch.receive() + v + i
                break
    log.append((k, total))


def method_with_keywords(ch, log):
    log.append(sorted([3, 1, 2], key=None, reverse=bool(ch.receive())))


def matching(ch, log):
    match ch.receive():
        case {"x": x}:
            log.append(("map", x))
        case [a, b]:
            log.append(("seq", a, b))
        case int(n):
            log.append(("int", n))
        case _:
            log.append("other")


def unpacking(ch, log):
    a, *rest = (ch.receive(), 2, 3)
    b, c = divmod(ch.receive(), 2)
    log.append((a, rest, b, c))


def delegating_generator(ch, log):
    def inner():
        yield ch.receive()
        return "done"

    def outer():
        result = yield from inner()
        yield result

    for v in outer():
        log.append(v)


SHAPES = [list_comprehension, dict_comprehension, set_comprehension, generator_expression,
          nested_comprehension, star_call, double_star_call, keyword_and_double_star_call,
          displays, except_star, except_star_reraising, with_and_handler, formatted,
          defaults_made_after_a_call, loops_over_iterators, method_with_keywords, matching,
          unpacking, delegating_generator]


def _class_body_code():
    return compile("class C:\n    a = 1\n    b = a + 1\n", "<class body>", "exec").co_consts[0]


def _module_code():
    return compile("x = 1\ny = [x]\n", "<module>", "exec")


def extra_codes():
    """Codes no tasklet frame may run: a class body, a module, a generator's, a coroutine's, a
    lambda's."""
    async def coroutine():
        return 1

    def generator():
        yield 1

    return [_class_body_code(), _module_code(), generator.__code__, coroutine.__code__,
            (lambda: 0).__code__]
