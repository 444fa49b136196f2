"""Pickling of tasklets and channels for the `stackless` extension module (CPython 3.11).

The extension imports this module when it is imported and calls `_install(stackless)`. Here
lives what is easier to say in Python: the pickle format (tuples that name their format version
and the CPython minor version), the reducers Stackless registers with copyreg (code objects,
cells, modules) and functions pickled by value when they cannot be found by name
(_stackless_bytecode says where a frame can resume and what each of its value-stack slots must
hold there). Reading and writing interpreter frames is C++ (src/python/frame_*.cpp).

Unpickling runs code, as every pickle does: only load tasklets from sources you trust. What this
module guarantees is that a damaged pickle (flipped or missing bytes) raises an exception
instead of resuming a frame whose code or stack does not match, which could crash CPython.
"""
import copy
import copyreg
import dis
import gc
import importlib
import io
import marshal
import opcode
import pickle
import sys
import types
import weakref
import zlib

import _stackless_generators
from _stackless_bytecode import call_site as _call_site  # noqa: F401 (the extension reads it)
from _stackless_bytecode import instruction as _instruction
from _stackless_bytecode import keeps_self as _keeps_self  # noqa: F401 (the extension reads it)
from _stackless_bytecode import opcode_tables, slot_kinds  # noqa: F401 (the extension reads them)

FORMAT = 1  # bump when the layout of the tuples below changes
PYTHON = tuple(sys.version_info[:2])
TASKLET_TAG = "stackless.tasklet"
CHANNEL_TAG = "stackless.channel"

_stackless = None  # the extension module, set by _install()

# Frames whose code is one of these are not resumed by this implementation yet.
_UNSUPPORTED_CODE_FLAGS = (
    ("generator", 0x20), ("coroutine", 0x80), ("iterable coroutine", 0x100),
    ("async generator", 0x200))


# ---------------------------------------------------------------------------------------------
# copyreg reducers (what Stackless registers), and the functions their pickles call.

def _check_python(python):
    if tuple(python) != PYTHON:
        raise pickle.UnpicklingError(
            "stackless: this pickle was made by CPython %d.%d; code objects and frames only load "
            "in the CPython minor version that made them (this is %d.%d)"
            % (tuple(python) + PYTHON))


_code_cache = {}  # marshalled bytes -> code object: loading the same code twice reuses it


def _load_code(data, checksum, python):
    _check_python(python)
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad code object")
    code = _code_cache.get(data)  # holds only codes that passed the checks below
    if code is None:
        if zlib.crc32(data) != checksum:
            raise pickle.UnpicklingError("stackless: corrupt pickle: a code object's bytes do "
                                         "not match their checksum")
        code = marshal.loads(data)
        if not isinstance(code, types.CodeType):
            raise pickle.UnpicklingError("stackless: corrupt pickle: not a code object")
        if len(_code_cache) >= 1024:
            _code_cache.clear()
        _code_cache[data] = code
    return code


def _reduce_code(code):
    data = marshal.dumps(code)
    return _load_code, (data, zlib.crc32(data), PYTHON)


def _new_cell():
    return types.CellType()


def _set_cell(cell, state):
    if state:
        cell.cell_contents = state[0]
    return cell


def _reduce_cell(cell):
    try:
        state = (_by_value_if_needed(cell.cell_contents),)
    except ValueError:  # empty cell
        state = ()
    # Contents as state, not as an argument: a closure's cell may contain the function itself.
    return _new_cell, (), state, None, None, _set_cell


def _reduce_module(module):
    return importlib.import_module, (module.__name__,)


def _reduce_traceback(tb):
    frame = tb.tb_frame
    return _restore_traceback, (frame.f_code, _globals_ref(frame.f_globals), tb.tb_lasti,
                                tb.tb_lineno, tb.tb_next, (frame.f_lasti, frame.f_lineno))


def _restore_traceback(code, globals_ref, lasti, lineno, tb_next, frame_place=(-1, 0)):
    """A traceback entry with a frame object that shows where it was (its code, file and line,
    the next entry's frame called from it) but holds none of its locals: such frames never run
    again."""
    if not isinstance(code, types.CodeType):
        raise pickle.UnpicklingError("stackless: corrupt pickle: a traceback without code")
    if tb_next is not None and type(tb_next) is not types.TracebackType:
        raise pickle.UnpicklingError("stackless: corrupt pickle: a traceback's next entry")
    if not (isinstance(frame_place, tuple) and len(frame_place) == 2 and
            all(type(n) is int for n in frame_place)):
        frame_place = (-1, 0)
    frame = _stackless._new_frame(code, _resolve_globals(globals_ref), *frame_place)
    if tb_next is not None:
        try:
            _stackless._set_frame_back(tb_next.tb_frame, frame)
        except ValueError:
            pass  # (a frame shared by two tracebacks has its caller already)
    return types.TracebackType(tb_next, frame, lasti, lineno)


def _dict_of_view(view):
    """The dict behind a keys, values or items view (its one referent)."""
    return gc.get_referents(view)[0]


def _dict_keys(d):
    return dict.keys(d)


def _dict_values(d):
    return dict.values(d)


def _dict_items(d):
    return dict.items(d)


_DICT_VIEWS = {type({}.keys()): _dict_keys, type({}.values()): _dict_values,
               type({}.items()): _dict_items}


def _reduce_dict_view(view):
    """Dict views pickle (as in Stackless) as the view of their dict, pickled with them."""
    return _DICT_VIEWS[type(view)], (_dict_of_view(view),)


def _copy_traceback(tb):
    """copy.copy of a traceback: a new entry of the same frame, place and next entry."""
    return types.TracebackType(tb.tb_next, tb.tb_frame, tb.tb_lasti, tb.tb_lineno)


def _copy_cell(cell, memo=None):
    """copy.copy and copy.deepcopy of a cell (their _reconstruct takes no state setter)."""
    new = types.CellType()
    try:
        contents = cell.cell_contents
    except ValueError:  # an empty cell
        return new
    if memo is not None:
        memo[id(cell)] = new
        contents = copy.deepcopy(contents, memo)
    new.cell_contents = contents
    return new


def _module_dict(name):
    """The globals of a frame that ran in module `name`."""
    return importlib.import_module(name).__dict__


class _FunctionByValue:
    """Stands for a function that pickle cannot find by name (a lambda, a nested function):
    pickled as its code, module, name, defaults and closure. CPython's pickler always saves
    functions by name, so the frames' contents (locals, stack, cells) are wrapped in this."""

    __slots__ = ("function",)

    def __init__(self, function):
        self.function = function

    def __reduce__(self):
        f = self.function
        closure = f.__closure__
        return _make_function, (f.__code__, _globals_ref(f.__globals__), f.__name__,
                                f.__qualname__, f.__defaults__, f.__kwdefaults__, closure,
                                f.__dict__ or None)


def _make_function(code, globals_ref, name, qualname, defaults, kwdefaults, closure, attrs):
    if not isinstance(code, types.CodeType):
        raise pickle.UnpicklingError("stackless: corrupt pickle: a function without code")
    f = types.FunctionType(code, _resolve_globals(globals_ref), name, defaults, closure)
    f.__qualname__ = qualname
    if kwdefaults:
        f.__kwdefaults__ = kwdefaults
    if attrs:
        f.__dict__.update(attrs)
    return f


def _findable_by_name(f):
    module = sys.modules.get(getattr(f, "__module__", None) or "")
    if module is None:
        return False
    obj = module
    for part in f.__qualname__.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return obj is f


def _by_value_if_needed(value):
    if type(value) is types.FunctionType and not _findable_by_name(value):
        return _FunctionByValue(value)
    return value


class _ByValuePickler(pickle.Pickler):
    """CPython's C pickler, but functions that it cannot find by name are pickled by value."""

    def reducer_override(self, obj):
        if type(obj) is types.FunctionType and not _findable_by_name(obj):
            return _FunctionByValue(obj).__reduce__()
        return NotImplemented


def _dumps_by_value(obj, protocol=None, *, fix_imports=True, buffer_callback=None):
    """pickle.dumps's second try (pickle_functions.cpp): functions by value where needed."""
    f = io.BytesIO()
    _ByValuePickler(f, protocol, fix_imports=fix_imports,
                    buffer_callback=buffer_callback).dump(obj)
    return f.getvalue()


class _WriteRecorder:
    """A file's write method that notes whether it was called."""
    __slots__ = ("write_to", "wrote")

    def __init__(self, file):
        self.write_to = file.write
        self.wrote = False

    def write(self, data):
        self.wrote = True
        return self.write_to(data)


_c_dump = pickle.dump


def _dump(obj, file, protocol=None, *, fix_imports=True, buffer_callback=None):
    """pickle.dump, as pickle.dumps with stackless: functions pickle cannot find by name are
    pickled by value (a second try, if the first one wrote nothing)."""
    recorder = _WriteRecorder(file)
    try:
        _c_dump(obj, recorder, protocol, fix_imports=fix_imports,
                buffer_callback=buffer_callback)
    except (pickle.PicklingError, AttributeError):
        if recorder.wrote:
            raise
        try:
            data = _dumps_by_value(obj, protocol, fix_imports=fix_imports,
                                   buffer_callback=buffer_callback)
        except Exception:
            pass
        else:
            file.write(data)
            return
        raise


def _save_function(self, obj):
    """The Python pickler's (pickle._Pickler) saving of functions, as in Stackless: by name,
    else by value."""
    try:
        return self.save_global(obj)
    except (pickle.PicklingError, AttributeError):
        if _findable_by_name(obj):
            raise
    self.save_reduce(obj=obj, *_FunctionByValue(obj).__reduce__())


def _globals_ref(globals_dict):
    """A module's globals are pickled as the module's name; other dicts by value."""
    name = globals_dict.get("__name__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    if module is not None and getattr(module, "__dict__", None) is globals_dict:
        return name
    return globals_dict


def _resolve_globals(ref):
    if isinstance(ref, str):
        return _module_dict(ref)
    if isinstance(ref, dict):
        return ref
    raise pickle.UnpicklingError("stackless: corrupt pickle: a frame's globals are neither a "
                                 "module name nor a dict")


_ns_per_instruction = None


def ns_per_instruction():
    """How long one bytecode instruction takes here (the median of a few runs of a loop whose
    iterations are three instructions: FOR_ITER, STORE_FAST, JUMP_BACKWARD): the watchdog of
    stackless.run(timeout) turns its instruction budget into time with it. Measured once."""
    global _ns_per_instruction
    if _ns_per_instruction is None:
        import time

        def loop(n):
            for _ in range(n):
                pass

        runs = []
        for _ in range(5):
            start = time.perf_counter_ns()
            loop(100_000)
            runs.append((time.perf_counter_ns() - start) / 300_000)
        _ns_per_instruction = sorted(runs)[2]
    return _ns_per_instruction


# ---------------------------------------------------------------------------------------------
# Tasklets

def _where(code, index):
    line = None
    for start, end, lineno in code.co_lines():
        if start <= 2 * index < end:
            line = lineno
    return "%s (%s, line %s)" % (code.co_qualname, code.co_filename, line)


def _callable_name(obj):
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:
        name = type(obj).__qualname__ + " object"
    module = getattr(obj, "__module__", None)
    if isinstance(module, str) and module not in ("builtins",):
        name = module + "." + name
    return name


def _refuse(message):
    raise pickle.PicklingError("stackless: cannot pickle this tasklet: " + message)


def _why_not_resumable(result):
    """A refusal of _tasklet_frames in words: why the tasklet's frames cannot resume."""
    _, reason, code, index, callee, next_code = result
    where = _where(code, index)
    if reason == "blocked-in-c":
        return ("%s is blocked inside the C function %s, which switched tasklets from C code; "
                "C functions cannot be resumed" % (where, _callable_name(callee)))
    if reason == "c-between":
        return ("%s called the C function %s, which called the Python function %s; C functions "
                "cannot be resumed" % (where, _callable_name(callee), next_code.co_qualname))
    instr = _instruction(code, index)
    return ("%s is inside a C call (%s) that cannot be resumed"
            % (where, instr.opname if instr else "?"))


def _capture_frames(t):
    """The tasklet's frames as pickle records, innermost last, and how the innermost resumes
    (frame_capture.cpp makes them); or, for frames that had C state (Stackless's "invalid"
    frames: they pickle, but the unpickled tasklet cannot run), ("invalid", records with the
    frames' locals only, the reason in words)."""
    if not _stackless.enable_softswitch(None):
        reason = ("it was pickled without soft switching (enable_softswitch(False)), so its "
                  "frames had C state")
        return "invalid", _stackless._tasklet_locals(t, _by_value_if_needed), reason
    result = _stackless._tasklet_frames(t, _call_site, _by_value_if_needed)
    if result[0] != "refuse":
        for record in result[0]:
            if type(record[0]) in _stackless_generators.KINDS:  # (generator, record, exc)
                _stackless_generators._capturing.add(record[0])
        return result
    if result[1] == "generator":
        code = result[2]
        flags = [what for what, flag in _UNSUPPORTED_CODE_FLAGS if code.co_flags & flag]
        _refuse("%s runs a %s frame; pickling those is not supported yet"
                % (_where(code, result[3]), flags[0] if flags else "generator"))
    return "invalid", _stackless._tasklet_locals(t, _by_value_if_needed), \
        _why_not_resumable(result)


def _rewrap_record(record):
    """A frame record of an unpickled tasklet, ready to be pickled again: functions in its values
    that pickle cannot find by name are wrapped again, as when it was first pickled."""
    if len(record) == 2:  # ("__init__", record)
        return record[0], _rewrap_record(record[1])
    if len(record) == 3:  # (generator, record, exception)
        return record[0], _rewrap_record(record[1]), record[2]
    values = tuple(_by_value_if_needed(v) for v in record[3])
    return record[:3] + (values,) + record[4:]


_INVALID = ("stackless: cannot run this unpickled tasklet: its frames had C state when it was "
            "pickled, which cannot be restored (%s)")


def reduce_tasklet(t):
    info = _stackless._tasklet_info(t)
    (state, func, args, kwargs, tempval, atomic, ignore_nesting, block_trap, channel,
     direction, exc_value) = info
    if state == "main":
        _refuse("it is a main tasklet (Stackless cannot pickle those either)")
    if state == "current":
        raise RuntimeError("stackless: cannot pickle the current tasklet (Stackless cannot "
                           "either); pickle it from another one")
    if state in ("dead", "bound"):
        body = (_by_value_if_needed(func),) if state == "bound" else ()
    elif state == "new":
        body = (_by_value_if_needed(func), tuple(_by_value_if_needed(a) for a in args), kwargs)
    elif state == "restored":  # unpickled and not run since: the same frames again
        frames, resume_op, exc, invalid = _stackless._tasklet_plan(t)
        frames = tuple(_rewrap_record(r) for r in frames)
        if invalid is None:
            body, state = (frames, resume_op, exc), "frames"
        else:
            body, state = (frames, invalid, exc), "invalid"
    else:
        captured = _capture_frames(t)
        if captured[0] == "invalid":
            _, frames, reason = captured
            body, state = (frames, _INVALID % reason, exc_value), "invalid"
        else:
            frames, resume_op = captured
            body = (frames, resume_op, exc_value)
    blocked = (channel, direction) if channel is not None else None
    flags = (bool(atomic), bool(ignore_nesting), bool(block_trap))
    if _stackless_generators.pickle_flags() & _stackless_generators.PICKLEFLAGS_PRESERVE_TRACING_STATE:
        tracing = (t.trace_function, t.profile_function)
        if tracing != (None, None):  # its trace and profile functions (pickle_with_tracing_state)
            flags += tuple(_by_value_if_needed(f) for f in tracing)
    attrs = getattr(t, "__dict__", None) or None
    return (copyreg.__newobj__, (type(t),),
            (TASKLET_TAG, FORMAT, PYTHON, state, body, flags, tempval, blocked, attrs))


def _check_state(state, tag, size):
    if not isinstance(state, tuple) or len(state) != size or state[0] != tag:
        raise pickle.UnpicklingError("stackless: corrupt pickle: not a %s state" % tag)
    if state[1] != FORMAT:
        raise pickle.UnpicklingError(
            "stackless: this %s pickle has format %r; this stackless reads format %d"
            % (tag, state[1], FORMAT))
    _check_python(state[2])


def setstate_tasklet(t, state):
    _check_state(state, TASKLET_TAG, 9)
    _, _, _, kind, body, flags, tempval, blocked, attrs = state
    if not isinstance(body, tuple) or not isinstance(flags, tuple) or len(flags) not in (3, 5):
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad tasklet state")
    if kind == "dead":
        pass
    elif kind == "bound" and len(body) == 1:
        t.bind(body[0])
    elif kind == "new" and len(body) == 3:
        t.bind(body[0], body[1], body[2])
    elif kind == "frames" and len(body) == 3:
        frames, resume_op, exc_value = body
        if not isinstance(frames, tuple) or not isinstance(resume_op, str):
            raise pickle.UnpicklingError("stackless: corrupt pickle: bad tasklet frames")
        try:
            _stackless._tasklet_restore(t, frames, resume_op, exc_value)
        except ValueError as e:
            raise pickle.UnpicklingError(str(e)) from None
    elif kind == "invalid" and len(body) == 3:
        frames, reason, exc_value = body
        if not isinstance(frames, tuple) or not isinstance(reason, str):
            raise pickle.UnpicklingError("stackless: corrupt pickle: bad tasklet frames")
        try:
            _stackless._tasklet_restore_invalid(t, frames, reason, exc_value)
        except ValueError as e:
            raise pickle.UnpicklingError(str(e)) from None
    else:
        raise pickle.UnpicklingError("stackless: corrupt pickle: unknown tasklet state %r"
                                     % (kind,))
    t.tempval = tempval
    atomic, ignore_nesting, block_trap = flags[:3]
    if len(flags) == 5:
        trace, profile = flags[3:]
        if not all(f is None or callable(f) for f in (trace, profile)):
            raise pickle.UnpicklingError("stackless: corrupt pickle: bad trace functions")
        if t.alive:
            t.trace_function = trace
            t.profile_function = profile
    t.set_atomic(bool(atomic))
    t.set_ignore_nesting(bool(ignore_nesting))
    t.block_trap = bool(block_trap)
    if attrs:
        if not isinstance(attrs, dict) or not hasattr(t, "__dict__"):
            raise pickle.UnpicklingError("stackless: corrupt pickle: bad tasklet attributes")
        t.__dict__.update(attrs)
    # `blocked` only made the pickle carry the channel: the channel's own state queues the
    # tasklet again, in its place.
    if blocked is not None and not (isinstance(blocked, tuple) and len(blocked) == 2):
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad blocking state")




# ---------------------------------------------------------------------------------------------
# Channels

def send_sequence(self, seq):
    """send_sequence(seq) -> the number of items sent: sends every item of the iterable. (In
    Python, so that a tasklet blocked here pickles and resumes where it was, as in Stackless.)"""
    count = 0
    for item in seq:
        self.send(item)
        count += 1
    return count


def reduce_channel(ch):
    preference, schedule_all, closing, queue = _stackless._channel_info(ch)
    queue = tuple((t, d, _by_value_if_needed(v)) for t, d, v in queue)
    attrs = getattr(ch, "__dict__", None) or None
    return (copyreg.__newobj__, (type(ch),),
            (CHANNEL_TAG, FORMAT, PYTHON, preference, schedule_all, closing, queue, attrs))


def setstate_channel(ch, state):
    _check_state(state, CHANNEL_TAG, 8)
    _, _, _, preference, schedule_all, closing, queue, attrs = state
    if not isinstance(queue, tuple) or not all(isinstance(w, tuple) and len(w) == 3
                                               for w in queue):
        raise pickle.UnpicklingError("stackless: corrupt pickle: bad channel queue")
    _stackless._channel_restore(ch, preference, bool(schedule_all), bool(closing), queue)
    if attrs:
        if not isinstance(attrs, dict) or not hasattr(ch, "__dict__"):
            raise pickle.UnpicklingError("stackless: corrupt pickle: bad channel attributes")
        ch.__dict__.update(attrs)


# ---------------------------------------------------------------------------------------------

def _install(module):
    global _stackless
    _stackless = module
    copyreg.pickle(types.CodeType, _reduce_code)
    copyreg.pickle(types.CellType, _reduce_cell)
    copyreg.pickle(types.ModuleType, _reduce_module)
    copyreg.pickle(types.TracebackType, _reduce_traceback)
    copyreg.pickle(type(module), _reduce_module)  # the stackless module's own type
    for view_type in _DICT_VIEWS:
        copyreg.pickle(view_type, _reduce_dict_view)
    copy._copy_dispatch[types.CellType] = _copy_cell
    copy._deepcopy_dispatch[types.CellType] = _copy_cell
    copy._copy_dispatch[types.TracebackType] = _copy_traceback
    _stackless_generators._install(module)
    # Functions that pickle cannot find by name pickle by value (pickle.dumps: C++).
    pickle.dump = _dump
    pickle._Pickler.dispatch[types.FunctionType] = _save_function    # What pickles refer to, under the extension's name (pickle finds them as stackless._...).
    for f in (_load_code, _new_cell, _set_cell, _make_function, _restore_traceback, _dict_keys,
              _dict_values, _dict_items):
        f.__module__ = module.__name__
        setattr(module, f.__name__, f)
