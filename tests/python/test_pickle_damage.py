"""Damaged and hand-made frame records are refused with an exception, never resumed into a crash;
valid ones of the shapes they damage still load and run (frame_shapes.py)."""
import dis
import os
import pathlib
import pickle
import subprocess

import pytest
import stackless

import frame_shapes as F

HERE = pathlib.Path(__file__).resolve().parent
LAUNCHER = os.environ.get("STACKLESS_LAUNCHER", str(HERE.parents[1] / "stackless"))


def blocked_state(shape):
    """(class, args, state) of a tasklet running `shape`, blocked in its first receive."""
    ch, log = stackless.channel(), []
    t = stackless.tasklet(shape)(ch, log)
    stackless.run()
    data = pickle.dumps(t.__reduce__())  # a copy: the state shares its values with the frames
    t.kill()
    return pickle.loads(data)


def innermost(state):
    record = state[4][0][-1]
    return record[1] if len(record) == 3 else record


def with_innermost(state, record, op=None):
    frames, old_op, exc = state[4]
    last = frames[-1]
    if len(last) == 3:
        record = (last[0], record, last[2])
    return state[:4] + ((frames[:-1] + (record,), op or old_op, exc),) + state[5:]


def slot_of_kind(record, kind):
    """The index among a record's values of the first stack slot the analysis says holds `kind`
    (_stackless_bytecode's letters), or None."""
    import _stackless_bytecode as B
    kinds = B.slot_kinds(record[0]).get(record[2], "")
    nlocals = stackless._code_nlocalsplus(record[0])
    return next((nlocals + i for i, k in enumerate(kinds[:-1]) if k == kind), None)


def refused(cls, args, state):
    with pytest.raises(pickle.UnpicklingError) as info:
        cls(*args).__setstate__(state)
    return str(info.value)


@pytest.mark.parametrize("shape", F.SHAPES, ids=lambda f: f.__name__)
def test_each_shape_resumes_from_its_pickle(shape):
    def run(ch, log, t):
        for value in range(1, 8):
            if not t.alive:
                break
            if ch.balance < 0:
                ch.send(value)
            else:
                stackless.run()
        assert not t.alive

    ch, log = stackless.channel(), []
    t = stackless.tasklet(shape)(ch, log)
    stackless.run()
    data = pickle.dumps((t, ch, log))
    run(ch, log, t)
    t2, ch2, log2 = pickle.loads(data)
    run(ch2, log2, t2)
    assert log2 == log and log


def test_a_comprehension_list_replaced_by_a_dict_is_refused():
    # One flipped bit in a pickle (`]` -> `}`) makes the list LIST_APPEND appends to a dict.
    cls, args, state = blocked_state(F.list_comprehension)
    record = innermost(state)
    i = slot_of_kind(record, "L")
    values = record[3][:i] + ({},) + record[3][i + 1:]
    message = refused(cls, args, with_innermost(state, record[:3] + (values,) + record[4:]))
    assert "value stack" in message


@pytest.mark.parametrize("shape, kind, other", [
    (F.dict_comprehension, "D", list), (F.set_comprehension, "S", dict),
    (F.star_call, "L", tuple), (F.double_star_call, "D", list), (F.displays, "L", set)])
def test_a_collection_an_instruction_fills_must_be_of_its_type(shape, kind, other):
    cls, args, state = blocked_state(shape)
    frames = state[4][0]
    # The frame that holds the collection on its value stack (the caller of wait()).
    for n, record in enumerate(frames):
        record = record[1] if len(record) == 3 else record
        slot = slot_of_kind(record, kind)
        if slot is not None:
            break
    values = list(record[3])
    values[slot] = other()
    damaged = state[:4] + ((frames[:n] + (record[:3] + (tuple(values),) + record[4:],) +
                            frames[n + 1:], state[4][1], state[4][2]),) + state[5:]
    assert "value stack" in refused(cls, args, damaged)


def test_a_comprehension_iterator_must_be_an_iterator():
    cls, args, state = blocked_state(F.list_comprehension)
    record = innermost(state)
    on_stack = slot_of_kind(record, "i")
    local = list(record[0].co_varnames).index(".0")
    for i, message in ((on_stack, "value stack"), (local, "no iterator")):
        values = record[3][:i] + (5,) + record[3][i + 1:]
        assert message in refused(cls, args,
                                  with_innermost(state, record[:3] + (values,) + record[4:]))


def test_the_exceptions_an_except_star_collects_must_be_exceptions():
    cls, args, state = blocked_state(F.except_star)
    record = innermost(state)
    i = slot_of_kind(record, "g")
    for bad in ([1], {}, (None,)):
        values = record[3][:i] + (bad,) + record[3][i + 1:]
        assert "value stack" in refused(
            cls, args, with_innermost(state, record[:3] + (values,) + record[4:]))


def test_the_exceptions_an_except_star_collects_are_copied_when_it_loads():
    # The list is the frame's own: nothing else in the pickle can add to it what PREP_RERAISE_STAR
    # cannot take.
    cls, args, state = blocked_state(F.except_star)
    record = innermost(state)
    i = slot_of_kind(record, "g")
    shared = []
    values = record[3][:i] + (shared,) + record[3][i + 1:]
    t = cls(*args)
    t.__setstate__(with_innermost(state, record[:3] + (values,) + record[4:]))
    shared.append(42)
    ch = stackless.channel()
    stackless._channel_restore(ch, -1, False, False, ((t, -1, None),))
    ch.send(1)  # except* ends; the 42 is not among what it re-raises
    assert not t.alive


def resume_points(code):
    instructions = list(dis.get_instructions(code))
    return {i.offset // 2: i for i in instructions}, instructions


def test_resume_points_must_follow_a_call():
    cls, args, state = blocked_state(F.defaults_made_after_a_call)
    record = innermost(state)
    by_index, instructions = resume_points(record[0])
    make_function = next(i.offset // 2 for i in instructions if i.opname == "MAKE_FUNCTION")
    for op in (None, "interrupted"):
        message = refused(cls, args, with_innermost(state, record[:2] + (make_function,) +
                                                    record[3:], op))
        assert "resumes" in message or "value stack" in message or "locals" in message


def test_no_resume_point_after_an_extended_arg_prefix():
    source = "def f(ch):\n    x = 0\n" + "".join("    x += %d\n" % i for i in range(300)) + \
             "    return ch.receive() + x\n"
    namespace = {}
    exec(compile(source, "<extended>", "exec"), namespace)
    code = namespace["f"].__code__
    by_index, instructions = resume_points(code)
    after_prefix = [instructions[n + 1].offset // 2 for n, i in enumerate(instructions)
                    if i.opname == "EXTENDED_ARG"]
    assert after_prefix
    ch = stackless.channel()
    t = stackless.tasklet(namespace["f"])(ch)
    stackless.run()
    cls, args, state = t.__reduce__()
    t.kill()
    record = innermost(state)
    import _stackless_bytecode as B
    kinds = B.slot_kinds(code)
    for index in after_prefix:
        depth = len(kinds[index])
        nlocals = stackless._code_nlocalsplus(code)
        values = record[3][:nlocals] + (1,) * depth
        damaged = with_innermost(state, record[:2] + (index, values) + record[4:], "interrupted")
        assert "inside an instruction" in refused(cls, args, damaged)


def test_code_without_a_function_scope_is_refused():
    cls, args, state = blocked_state(F.list_comprehension)
    record = innermost(state)
    for code in F.extra_codes()[:2]:  # a class body's and a module's
        assert "function scope" in refused(cls, args,
                                           with_innermost(state, (code,) + record[1:]))


def test_generator_code_in_a_plain_frame_is_refused():
    cls, args, state = blocked_state(F.list_comprehension)
    record = innermost(state)
    generator_code = F.extra_codes()[2]
    assert "generator's code" in refused(cls, args,
                                         with_innermost(state, (generator_code,) + record[1:]))


def test_kill_inside_an_except_star_clause_ends_the_tasklet_quietly():
    log = []

    def body(ch):
        try:
            raise ExceptionGroup("g", [ValueError(1)])
        except* ValueError:
            try:
                ch.receive()
            finally:
                log.append("finally")

    ch = stackless.channel()
    t = stackless.tasklet(body)(ch)
    stackless.run()
    t.kill()  # TaskletExit, which except* wraps in a group: still no error in the caller
    assert log == ["finally"] and not t.alive


def test_other_exceptions_from_an_except_star_clause_still_reach_the_caller():
    def body():
        try:
            raise ExceptionGroup("g", [ValueError(1)])
        except* ValueError:
            raise KeyError("k")

    stackless.tasklet(body)()
    with pytest.raises(BaseExceptionGroup) as info:
        stackless.run()
    assert isinstance(info.value.exceptions[0], KeyError)


def test_structured_damage_to_frames_never_crashes():
    # Every systematic damage of fuzz_frames.py (slots, resume points, code swaps of every frame
    # of every shape); the million-case run with combined damages is in docs/pickling.md.
    r = subprocess.run([LAUNCHER, str(HERE / "fuzz_frames.py"), "--jobs", "2"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    assert r.stdout.startswith("fuzz_frames: ")
    counts = dict(eval(r.stdout.split(": ", 2)[2].splitlines()[0]))
    assert counts.get("ran", 0) > 1000 and counts.get("refused:UnpicklingError", 0) > 10000


def counting_generator(n):
    i = 0
    while i < n:
        i += 1
        yield i


def sums_a_generator(log):
    total = 0
    for v in counting_generator(200_000):
        total += v
    log.append(total)


def test_a_tasklet_interrupted_inside_a_generator_loads_and_finishes():
    # The innermost frame is the generator's, stopped between two instructions: it resumes there.
    log = []
    t = stackless.tasklet(sums_a_generator)(log)
    for _ in range(10_000):
        assert stackless.run(500) is t
        if t.frame.f_code is counting_generator.__code__:
            break
        t.insert()
    assert t.frame.f_code is counting_generator.__code__
    t2, log2 = pickle.loads(pickle.dumps((t, log)))
    t.kill()
    t2.insert()
    stackless.run()
    assert log2 == [200_000 * 200_001 // 2]
