"""Pickling of generators, coroutines, asynchronous generators and the awaitables around them
(async_generator_asend and _athrow, coroutine_wrapper), for the `stackless` extension module, as
Stackless Python pickles them: frames included. Installed by _stackless_pickle._install.

Their frames are read and set in C++ (frame_capture.cpp, frame_check.cpp); a generator that runs
inside a tasklet (its frame among the tasklet's) pickles with the tasklet, its frame in the
tasklet's pickle. The other state (an async generator's hooks, a coroutine's origin, the
awaitables' state) is read and set by coroutine_state.cpp.

stackless.pickle_flags() chooses what an async generator's pickle keeps of its hooks
(sys.set_asyncgen_hooks): PICKLEFLAGS_PRESERVE_AG_FINALIZER keeps its finalizer (dumped and
loaded with the flag), PICKLEFLAGS_RESET_AG_FINALIZER makes it forget them (its next __anext__
initialises them again); otherwise a generator whose hooks were initialised gets this thread's
hooks when it is loaded (firstiter is called then), as if it had started here.
"""
import copy
import copyreg
import pickle
import sys
import threading
import types
import weakref

import _stackless_pickle as _p

GENERATOR_TAG = "stackless.generator"
_stackless = None  # the extension module, set by _install()

_capturing = weakref.WeakSet()  # running generators whose frames a tasklet's pickle holds

KINDS = {types.GeneratorType: "generator", types.CoroutineType: "coroutine",
          types.AsyncGeneratorType: "async_generator"}
_CODE_FLAG = {"generator": 0x20, "coroutine": 0x80, "async_generator": 0x200}

# ---------------------------------------------------------------------------------------------
# pickle_flags

PICKLEFLAGS_PRESERVE_TRACING_STATE = 1
PICKLEFLAGS_PRESERVE_AG_FINALIZER = 2
PICKLEFLAGS_RESET_AG_FINALIZER = 4
_ALL_FLAGS = 7

_default_flags = 0


class _ThreadFlags(threading.local):
    def __init__(self):
        self.flags = _default_flags  # a thread starts with the default of the moment


_flags = _ThreadFlags()


def _update(old, new, mask):
    if new < -1 or (new & mask) > _ALL_FLAGS:
        raise ValueError("you must not set an undefined pickle-flag")
    return old if new == -1 else (old & ~mask) | (new & mask)


def pickle_flags(new_flags=-1, mask=-1):
    """pickle_flags(new_flags=-1, mask=-1) -> the flags before: this thread's pickle flags,
    the bits set in `mask` taken from `new_flags` (-1: only ask). Bit 0 (1): pickle a tasklet's
    trace and profile functions; bit 1 (2): keep an async generator's finalizer; bit 2 (4): make
    an async generator forget its hooks."""
    old = _flags.flags
    _flags.flags = _update(old, new_flags, mask)
    return old


def pickle_flags_default(new_default=-1, mask=-1):
    """pickle_flags_default(new_default=-1, mask=-1) -> the default before: the pickle flags a
    thread starts with (see pickle_flags)."""
    global _default_flags
    old = _default_flags
    _default_flags = _update(old, new_default, mask)
    return old


# ---------------------------------------------------------------------------------------------
# Generators, coroutines, async generators

def _reduce_generator(gen):
    state, code, globals_dict, name, qualname, record, exc_value = \
        _stackless._generator_info(gen, _p._by_value_if_needed)
    if state == "running" and gen not in _capturing:
        raise pickle.PicklingError(
            "stackless: cannot pickle the running %s %s on its own: it pickles with the "
            "tasklet it runs in (pickle that tasklet first)" % (KINDS[type(gen)], qualname))
    globals_ref = _p._globals_ref(globals_dict) if globals_dict is not None else None
    kind = KINDS[type(gen)]
    extra = None
    if kind == "coroutine":
        extra = (kind, gen.cr_origin)
    elif kind == "async_generator":
        inited, finalizer, closed, running_async = _stackless._agen_hooks(gen)
        flags = _flags.flags
        if flags & PICKLEFLAGS_RESET_AG_FINALIZER:
            inited = False
        if not inited or not flags & PICKLEFLAGS_PRESERVE_AG_FINALIZER:
            finalizer = None
        extra = (kind, inited, finalizer, closed, running_async)
    # A running generator's frame is in its tasklet's pickle (it resumes with the frames around
    # it); its own pickle only makes the generator that frame goes back into, and for that,
    # `record` holds its closure's cells.
    args = (GENERATOR_TAG, _p.FORMAT, _p.PYTHON, state, code, globals_ref, name, qualname, record,
            exc_value)
    return _restore_generator, args + ((extra,) if extra is not None else ())


def _finished_generator():
    return
    yield


async def _finished_coroutine():
    pass


async def _finished_async_generator():
    return
    yield


def _finished(kind):
    """A generator, coroutine or async generator that has ended."""
    if kind == "generator":
        gen = _finished_generator()
        gen.close()
    elif kind == "coroutine":
        gen = _finished_coroutine()
        gen.close()
    else:
        gen = _finished_async_generator()
        _stackless._agen_set_hooks(gen, "keep", None, False, False)
        try:
            gen.__anext__().send(None)
        except StopAsyncIteration:
            pass
    return gen


def _new_generator(kind, code, globals_dict, closure):
    """A new generator, coroutine or async generator running `code` (created, not started), made
    by calling a function of that code with placeholder arguments: its frame is then
    overwritten."""
    if not isinstance(code, types.CodeType) or \
            code.co_flags & (0x20 | 0x80 | 0x200) != _CODE_FLAG[kind]:
        raise pickle.UnpicklingError("stackless: corrupt pickle: not a %s's code" % kind)
    f = types.FunctionType(code, globals_dict, code.co_name, None, closure)
    positional = [None] * code.co_argcount
    keywords = {name: None for name in
                code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]}
    gen = f(*positional, **keywords)
    if KINDS.get(type(gen)) != kind:
        raise pickle.UnpicklingError("stackless: corrupt pickle: not a %s" % kind)
    return gen


def _closure_of(code, record):
    """The closure cells a generator's frame record holds (its free variables come last among
    its locals; C++ checks them again when the frame is set)."""
    n = len(code.co_freevars)
    if not n:
        return None
    if not (isinstance(record, tuple) and len(record) == 5 and isinstance(record[3], tuple)):
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad generator frame")
    locals_count = _stackless._code_nlocalsplus(code)
    values = record[3]
    return tuple(values[locals_count - n:locals_count])


def _set_extra(gen, kind, extra):
    """A coroutine's origin, an async generator's hooks (see the module's doc)."""
    if extra is None:
        return
    if not isinstance(extra, tuple) or not extra or extra[0] != kind:
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad %s state" % kind)
    if kind == "coroutine" and len(extra) == 2:
        _stackless._coro_set_origin(gen, extra[1])
    elif kind == "async_generator" and len(extra) == 5:
        _, inited, finalizer, closed, running_async = extra
        flags = _flags.flags
        if not inited or flags & PICKLEFLAGS_RESET_AG_FINALIZER:
            mode = "none"
        elif finalizer is not None and flags & PICKLEFLAGS_PRESERVE_AG_FINALIZER:
            mode = "keep"
        else:
            mode = "now"
        _stackless._agen_set_hooks(gen, mode, finalizer, bool(closed), bool(running_async))
    else:
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad %s state" % kind)


def _restore_generator(tag, format, python, state, code, globals_ref, name, qualname, record,
                       exc_value, extra=None):
    _p._check_state((tag, format, python), GENERATOR_TAG, 3)
    kind = extra[0] if isinstance(extra, tuple) and extra else "generator"
    if kind not in _CODE_FLAG:
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad generator kind")
    if state == "done":
        gen = _finished(kind)
    elif state in ("created", "suspended", "running"):
        if not isinstance(code, types.CodeType):
            raise pickle.UnpicklingError("stackless: corrupt pickle: a generator without code")
        globals_dict = _p._resolve_globals(globals_ref)
        closure = record if state == "running" else _closure_of(code, record)
        try:
            gen = _new_generator(kind, code, globals_dict, closure)
            if state != "running":  # a running one gets its frame from its tasklet's pickle
                _stackless._generator_set_frame(gen, record, state, exc_value)
        except (ValueError, TypeError) as e:
            raise pickle.UnpicklingError(str(e)) from None
    else:
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad generator state")
    try:
        _set_extra(gen, kind, extra if state != "done" or kind != "async_generator" else None)
    except (ValueError, TypeError) as e:
        raise pickle.UnpicklingError(str(e)) from None
    if isinstance(name, str):
        gen.__name__ = name
    if isinstance(qualname, str):
        gen.__qualname__ = qualname
    return gen


# ---------------------------------------------------------------------------------------------
# The awaitables: stackless._wrap's types reduce them as Stackless does, to
# (type, (), (async generator, value or arguments, state, whether there is a value)).

def _make_coro_wrapper(coro):
    if type(coro) is not types.CoroutineType:
        raise pickle.UnpicklingError("stackless: corrupt pickle: a coroutine_wrapper without "
                                     "its coroutine")
    return coro.__await__()


def _reduce_coro_wrapper(wrapper):
    return _make_coro_wrapper, (_stackless._coro_wrapper_coroutine(wrapper),)


def _exhausted_async_generator():
    return _finished("async_generator")


def _check_awaitable_state(state, what):
    if not (isinstance(state, tuple) and len(state) == 4 and
            type(state[0]) is types.AsyncGeneratorType):
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad %s state" % what)


def _set_asend_state(obj, state):
    _check_awaitable_state(state, "async_generator_asend")
    ag, value, awaitable_state, has_value = state
    try:
        fresh = _stackless._asend_new(ag, value, awaitable_state, bool(has_value))
    except (ValueError, TypeError) as e:
        raise pickle.UnpicklingError(str(e)) from None
    _stackless._awaitable_take(obj, fresh)


def _set_athrow_state(obj, state):
    _check_awaitable_state(state, "async_generator_athrow")
    ag, args, awaitable_state, has_args = state
    try:
        fresh = _stackless._athrow_new(ag, args, awaitable_state, bool(has_args))
    except (ValueError, TypeError) as e:
        raise pickle.UnpicklingError(str(e)) from None
    _stackless._awaitable_take(obj, fresh)


def _make_wrap_module():
    """stackless._wrap: the names Stackless's pickles of these awaitables use."""
    wrap = types.ModuleType("stackless._wrap", "Stackless's pickle wrappers of the awaitables "
                            "of async generators")

    class async_generator_asend:
        """Unpickles an async_generator_asend (an async generator's asend() or __anext__())."""

        def __new__(cls):
            # Made first and given its state once the pickle has loaded the generator.
            return _stackless._asend_new(_exhausted_async_generator(), None, 2, False)

        def __reduce__(obj):
            return (async_generator_asend, (), _stackless._asend_info(obj), None, None,
                    _set_asend_state)

    class async_generator_athrow:
        """Unpickles an async_generator_athrow (an async generator's athrow() or aclose())."""

        def __new__(cls):
            return _stackless._athrow_new(_exhausted_async_generator(), None, 2, False)

        def __reduce__(obj):
            return (async_generator_athrow, (), _stackless._athrow_info(obj), None, None,
                    _set_athrow_state)

    for cls in (async_generator_asend, async_generator_athrow):
        cls.__module__ = wrap.__name__
        cls.__qualname__ = cls.__name__
        setattr(wrap, cls.__name__, cls)
    return wrap


def _install(module):
    global _stackless
    _stackless = module
    copyreg.pickle(types.GeneratorType, _reduce_generator)
    copyreg.pickle(types.CoroutineType, _reduce_generator)
    copyreg.pickle(types.AsyncGeneratorType, _reduce_generator)

    co = _finished_coroutine()
    wrapper_type = type(co.__await__())
    co.close()
    ag = _exhausted_async_generator()  # (its hooks marked initialised: no firstiter call)
    asend_type, athrow_type = type(ag.asend(None)), type(ag.athrow(GeneratorExit))
    wrap = _make_wrap_module()
    copyreg.pickle(asend_type, wrap.async_generator_asend.__reduce__)
    copyreg.pickle(athrow_type, wrap.async_generator_athrow.__reduce__)
    copyreg.pickle(wrapper_type, _reduce_coro_wrapper)
    # copy.copy: the same generator, value and state (copy's _reconstruct takes no state setter).
    copy._copy_dispatch[asend_type] = lambda o: _stackless._asend_new(*_stackless._asend_info(o))
    copy._copy_dispatch[athrow_type] = \
        lambda o: _stackless._athrow_new(*_stackless._athrow_info(o))
    module._wrap = wrap
    sys.modules[wrap.__name__] = wrap
    for name in ("PICKLEFLAGS_PRESERVE_TRACING_STATE", "PICKLEFLAGS_PRESERVE_AG_FINALIZER",
                 "PICKLEFLAGS_RESET_AG_FINALIZER"):
        setattr(module, name, globals()[name])
    for f in (pickle_flags, pickle_flags_default):
        f.__module__ = module.__name__
        setattr(module, f.__name__, f)
    for f in (_restore_generator, _make_coro_wrapper):
        f.__module__ = module.__name__
        setattr(module, f.__name__, f)
