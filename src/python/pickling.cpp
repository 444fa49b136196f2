// Pickling of tasklets and channels: the methods pickle calls (__reduce__, __setstate__) and the
// private module functions through which python/_stackless_pickle.py reads and restores the
// binding's state. Frames themselves are read and rebuilt in frame_state.cpp.

#include "binding.hpp"  // Python.h first

#include <cstring>
#include <initializer_list>
#include <memory>
#include <utility>
#include <vector>

#include "frame_state.hpp"

namespace stackless::python {

namespace {

PyObject* helper_module = nullptr;
PyObject* stackless_module = nullptr;
PyObject* slot_kinds = nullptr;    // _stackless_pickle.slot_kinds
PyObject* call_site = nullptr;     // _stackless_pickle._call_site
PyObject* keeps_self = nullptr;    // _stackless_pickle._keeps_self
constexpr long pickle_format = 1;  // _stackless_pickle.FORMAT

PyObject* helper(const char* name) {
    return PyObject_GetAttrString(helper_module, name);
}

PyObject* call_helper(const char* name, PyObject* a, PyObject* b = nullptr) {
    PyObject* f = helper(name);
    if (f == nullptr) return nullptr;
    PyObject* r =
        b == nullptr ? PyObject_CallOneArg(f, a) : PyObject_CallFunctionObjArgs(f, a, b, nullptr);
    Py_DECREF(f);
    return r;
}

py_tasklet* as_tasklet(PyObject* o) {
    return reinterpret_cast<py_tasklet*>(o);
}

bool is_str(PyObject* o, const char* s) {
    return PyUnicode_Check(o) && PyUnicode_CompareWithASCIIString(o, s) == 0;
}

bool is_this_python(PyObject* o) {
    return PyTuple_Check(o) && PyTuple_GET_SIZE(o) == 2 &&
           PyLong_CheckExact(PyTuple_GET_ITEM(o, 0)) && PyLong_CheckExact(PyTuple_GET_ITEM(o, 1)) &&
           PyLong_AsLong(PyTuple_GET_ITEM(o, 0)) == PY_MAJOR_VERSION &&
           PyLong_AsLong(PyTuple_GET_ITEM(o, 1)) == PY_MINOR_VERSION;
}

bool is_one_of(const char* name, std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (std::strcmp(name, n) == 0) return true;
    return false;
}

// What the innermost frame's pending call returns when the tasklet resumes, if it is a stackless
// operation that switches.
std::optional<resume_op> classify(PyObject* callee, bool iteration) {
    if (iteration)
        return PyObject_TypeCheck(callee, &channel_type) ? std::optional(resume_op::receive)
                                                         : std::nullopt;
    const char* name = nullptr;
    PyTypeObject* owner = nullptr;
    if (PyCFunction_Check(callee)) {
        name = reinterpret_cast<PyCFunctionObject*>(callee)->m_ml->ml_name;
        PyObject* self = PyCFunction_GET_SELF(callee);
        if (self == stackless_module)
            return is_one_of(name, {"schedule", "schedule_remove"})
                       ? std::optional(resume_op::tempval)
                       : std::nullopt;
        if (self == nullptr) return std::nullopt;
        owner = Py_TYPE(self);
    } else if (Py_IS_TYPE(callee, &PyMethodDescr_Type)) {
        auto* descr = reinterpret_cast<PyMethodDescrObject*>(callee);
        name = descr->d_method->ml_name;
        owner = PyDescr_TYPE(descr);
    } else {
        return std::nullopt;
    }
    if (PyType_IsSubtype(owner, &channel_type)) {
        if (std::strcmp(name, "receive") == 0) return resume_op::receive;
        if (is_one_of(name, {"send", "send_exception", "send_throw"})) return resume_op::none;
    } else if (PyType_IsSubtype(owner, &tasklet_type)) {
        if (is_one_of(name, {"run", "switch", "kill", "throw", "raise_exception"}))
            return resume_op::none;
    }
    return std::nullopt;
}

int check_tasklet_arg(PyObject* o) {
    if (!PyObject_TypeCheck(o, &tasklet_type)) {
        PyErr_SetString(PyExc_TypeError, "expected a tasklet");
        return -1;
    }
    if (as_tasklet(o)->thread != this_thread) {
        PyErr_SetString(PyExc_RuntimeError, "tasklet belongs to another thread");
        return -1;
    }
    return 0;
}

// gc.callbacks entry: after a collection, the bytecode analysis of the call sites it met in
// tasklets' frames without knowing their stack depth (learn_call_site_depths).
PyObject* after_collection(PyObject*, PyObject* args) {
    PyObject *phase, *info;
    if (!PyArg_ParseTuple(args, "OO", &phase, &info)) return nullptr;
    if (is_str(phase, "stop") && call_site != nullptr && learn_call_site_depths(call_site) < 0)
        PyErr_WriteUnraisable(call_site);  // (those sites stay unknown: conservative)
    Py_RETURN_NONE;
}

PyMethodDef after_collection_def = {"_after_collection", after_collection, METH_VARARGS,
                                    "learns the stack depths of call sites in tasklets' frames"};

int install_collector_callback(PyObject* module) {
    PyObject* gc = PyImport_ImportModule("gc");
    PyObject* callbacks = gc != nullptr ? PyObject_GetAttrString(gc, "callbacks") : nullptr;
    PyObject* callback =
        callbacks != nullptr ? PyCFunction_New(&after_collection_def, module) : nullptr;
    int r =
        callback != nullptr && PyList_Check(callbacks) ? PyList_Append(callbacks, callback) : -1;
    Py_XDECREF(callback);
    Py_XDECREF(callbacks);
    Py_XDECREF(gc);
    return r;
}

}  // namespace

int install_pickling(PyObject* module) {
    helper_module = PyImport_ImportModule("_stackless_pickle");
    if (helper_module == nullptr) return -1;
    stackless_module = Py_NewRef(module);
    PyObject* r = call_helper("_install", module);
    if (r == nullptr) return -1;
    Py_DECREF(r);
    if (install_pickle_dumps(helper_module) < 0) return -1;
    // channel.send_sequence is Python code (_stackless_pickle.send_sequence), so that a tasklet
    // blocked in it resumes from a pickle.
    PyObject* send_sequence = helper("send_sequence");
    if (send_sequence == nullptr ||
        PyDict_SetItemString(channel_type.tp_dict, "send_sequence", send_sequence) < 0) {
        Py_XDECREF(send_sequence);
        return -1;
    }
    Py_DECREF(send_sequence);
    PyType_Modified(&channel_type);
    slot_kinds = helper("slot_kinds");
    call_site = helper("_call_site");
    keeps_self = helper("_keeps_self");
    if (slot_kinds == nullptr || call_site == nullptr || keeps_self == nullptr) return -1;
    if (install_collector_callback(module) < 0) return -1;
    PyObject* tables = PyObject_CallMethod(helper_module, "opcode_tables", nullptr);
    if (tables == nullptr) return -1;
    int set = PyTuple_Check(tables) && PyTuple_GET_SIZE(tables) == 2
                  ? set_opcode_tables(PyTuple_GET_ITEM(tables, 0), PyTuple_GET_ITEM(tables, 1))
                  : -1;
    Py_DECREF(tables);
    if (set < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "stackless: bad opcode tables");
        return -1;
    }
    PyObject* format = helper("FORMAT");
    long version = format != nullptr ? PyLong_AsLong(format) : -1;
    Py_XDECREF(format);
    if (version != pickle_format) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ImportError,
                         "stackless: _stackless_pickle.py writes format %ld, the extension reads "
                         "format %ld: they come from different builds",
                         version, pickle_format);
        return -1;
    }
    return 0;
}

PyObject* tasklet_reduce(PyObject* self, PyObject*) {
    return call_helper("reduce_tasklet", self);
}

// Stackless's restorable: the tasklet has no C state a pickle cannot rebuild (nesting level 0).
PyObject* tasklet_get_restorable(PyObject* self, void*) {
    PyObject* level = PyObject_GetAttrString(self, "nesting_level");
    if (level == nullptr) return nullptr;
    long n = PyLong_AsLong(level);
    Py_DECREF(level);
    if (n == -1 && PyErr_Occurred()) return nullptr;
    return PyBool_FromLong(n == 0);
}

PyObject* channel_reduce(PyObject* self, PyObject*) {
    return call_helper("reduce_channel", self);
}

namespace {
int restore_channel(PyObject* o, int preference, int schedule_all, int closing, PyObject* queue);
}  // namespace

// channel.__setstate__: the common case (no attributes of its own) without Python code; the
// others, and the wording of errors, in _stackless_pickle.setstate_channel.
PyObject* channel_setstate(PyObject* self, PyObject* state) {
    if (PyTuple_Check(state) && PyTuple_GET_SIZE(state) == 8 &&
        is_str(PyTuple_GET_ITEM(state, 0), "stackless.channel") &&
        PyLong_CheckExact(PyTuple_GET_ITEM(state, 1)) &&
        PyLong_AsLong(PyTuple_GET_ITEM(state, 1)) == pickle_format &&
        is_this_python(PyTuple_GET_ITEM(state, 2)) &&
        PyLong_CheckExact(PyTuple_GET_ITEM(state, 3)) && PyTuple_GET_ITEM(state, 7) == Py_None &&
        PyTuple_Check(PyTuple_GET_ITEM(state, 6))) {
        long preference = PyLong_AsLong(PyTuple_GET_ITEM(state, 3));
        int schedule_all = PyObject_IsTrue(PyTuple_GET_ITEM(state, 4));
        int closing = PyObject_IsTrue(PyTuple_GET_ITEM(state, 5));
        if (schedule_all < 0 || closing < 0) return nullptr;
        if (preference >= -1 && preference <= 1) {
            if (restore_channel(self, static_cast<int>(preference), schedule_all, closing,
                                PyTuple_GET_ITEM(state, 6)) < 0)
                return nullptr;
            Py_RETURN_NONE;
        }
    }
    PyErr_Clear();
    return call_helper("setstate_channel", self, state);
}

// _tasklet_info(t) -> (state, func, args, kwargs, tempval, atomic, ignore_nesting, block_trap,
// channel, direction, exc_value); state: main, current, dead, bound, new, frames, restored.
// A tasklet whose thread has ended reduces as a dead one (Stackless: as one without a thread): it
// was killed then, or dropped without running again.
PyObject* mod_tasklet_info(PyObject*, PyObject* o) {
    const bool ended = PyObject_TypeCheck(o, &tasklet_type) && of_ended_thread(as_tasklet(o));
    if (!ended && check_tasklet_arg(o) < 0) return nullptr;
    py_tasklet* t = as_tasklet(o);
    stackless::tasklet::status_flags st{};
    stackless::tasklet::blocking blocked{nullptr, 0};
    bool block_trap;
    try {
        if (!ended) {
            st = t->core.status();
            blocked = t->core.blocked_on();
        }
        block_trap = t->core.block_trap_from_any_thread();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    const char* state;
    PyObject* exc_value = Py_None;
    if (t->is_main)
        state = "main";
    else if (st.current)
        state = "current";
    else if (st.started)
        state = "frames";
    else if (t->plan != nullptr || t->awaiting_plan)
        state = "restored";
    else if (st.alive)
        state = "new";
    else if (t->func != nullptr)
        state = "bound";
    else
        state = "dead";
    // The exception its own frames handle: the bottom of its exception stack (the generators
    // running in it each pickle their own with their frame).
    if (st.started && t->exc_base.exc_value != nullptr && t->exc_base.exc_value != Py_None)
        exc_value = t->exc_base.exc_value;
    PyObject* channel = static_cast<PyObject*>(blocked.channel_payload);
    return Py_BuildValue("(sOOOOOOOOiO)", state, t->func ? t->func : Py_None,
                         t->args ? t->args : Py_None, t->kwargs ? t->kwargs : Py_None,
                         t->tempval ? t->tempval : Py_None, t->atomic ? Py_True : Py_False,
                         t->ignore_nesting ? Py_True : Py_False, block_trap ? Py_True : Py_False,
                         channel ? channel : Py_None, blocked.direction, exc_value);
}

// _tasklet_locals(t, by_value): the frames of a switched-out tasklet with their locals only, for
// a pickle that cannot resume (frame_state.hpp capture_locals).
PyObject* mod_tasklet_locals(PyObject*, PyObject* args) {
    PyObject *o, *by_value;
    if (!PyArg_ParseTuple(args, "OO:_tasklet_locals", &o, &by_value)) return nullptr;
    if (check_tasklet_arg(o) < 0) return nullptr;
    py_tasklet* t = as_tasklet(o);
    try {
        auto st = t->core.status();
        if (!st.started || st.current || t->is_main || !t->python_started || t->python_finished) {
            PyErr_SetString(PyExc_RuntimeError, "the tasklet has no frames switched out");
            return nullptr;
        }
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    ++switch_trap_level_slow();
    PyObject* records = capture_locals(t->saved.current_frame, by_value);
    --switch_trap_level_slow();
    return records;
}

// _tasklet_restore_invalid(t, records, reason, exc_value): an unpickled tasklet whose frames had
// C state when they were pickled: running it raises RuntimeError(reason), as in Stackless.
PyObject* mod_tasklet_restore_invalid(PyObject*, PyObject* args) {
    PyObject *o, *records, *exc_value;
    PyObject* reason;
    if (!PyArg_ParseTuple(args, "OO!UO:_tasklet_restore_invalid", &o, &PyTuple_Type, &records,
                          &reason, &exc_value))
        return nullptr;
    if (check_tasklet_arg(o) < 0) return nullptr;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(records); ++i) {
        PyObject* r = PyTuple_GET_ITEM(records, i);
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 5 ||
            !PyCode_Check(PyTuple_GET_ITEM(r, 0))) {
            PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad frame record");
            return nullptr;
        }
    }
    if (exc_value != Py_None && !PyExceptionInstance_Check(exc_value)) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: corrupt pickle: the exception being handled is no exception");
        return nullptr;
    }
    auto plan = std::make_unique<restore_plan>();
    plan->source = Py_NewRef(records);
    plan->invalid = Py_NewRef(reason);
    plan->exc_value = exc_value != Py_None ? Py_NewRef(exc_value) : nullptr;
    if (restore_tasklet(as_tasklet(o), plan.get()) < 0) return nullptr;
    plan.release();
    Py_RETURN_NONE;
}

// _tasklet_plan(t) -> (frames, resume_op, exc_value, invalid reason or None): what an unpickled
// tasklet that has not run yet resumes (to pickle it again as it was).
PyObject* mod_tasklet_plan(PyObject*, PyObject* o) {
    if (check_tasklet_arg(o) < 0) return nullptr;
    restore_plan* plan = as_tasklet(o)->plan;
    if (plan == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "the tasklet has no unpickled frames");
        return nullptr;
    }
    return Py_BuildValue("(OsOO)", plan->source, resume_op_name(plan->op),
                         plan->exc_value != nullptr ? plan->exc_value : Py_None,
                         plan->invalid != nullptr ? plan->invalid : Py_None);
}

// _tasklet_frames(t, call_site, by_value): the frames of a switched-out tasklet as pickle
// records, or why they cannot be pickled (frame_state.hpp).
PyObject* mod_tasklet_frames(PyObject*, PyObject* args) {
    PyObject *o, *site, *by_value;
    if (!PyArg_ParseTuple(args, "OOO:_tasklet_frames", &o, &site, &by_value)) return nullptr;
    if (check_tasklet_arg(o) < 0) return nullptr;
    py_tasklet* t = as_tasklet(o);
    bool started;
    try {
        auto st = t->core.status();
        started = st.started && !st.current && t->python_started && !t->python_finished;
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    if (!started || t->is_main) {
        PyErr_SetString(PyExc_RuntimeError, "the tasklet has no frames switched out");
        return nullptr;
    }
    // The frames are read in place while Python code runs (the analysis, by_value): no tasklet
    // may switch meanwhile, or the frames could change under our feet.
    ++switch_trap_level_slow();
    PyObject* frames = capture_frames(t->saved.current_frame,
                                      {site, by_value, &classify, keeps_self, t->interrupted});
    --switch_trap_level_slow();
    return frames;
}

namespace {

// Gives a new (or channel-queued) tasklet the frames it resumes when it runs; `frames` are
// capture_frames() records, outermost first. -1 with an exception on failure.
int restore_frames(py_tasklet* t, PyObject* frames, PyObject* op_name, PyObject* exc_value) {
    auto plan = std::make_unique<restore_plan>();
    if (!PyTuple_Check(frames) || !PyUnicode_Check(op_name)) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad tasklet frames");
        return -1;
    }
    std::optional<resume_op> op = resume_op_named(op_name);
    if (!op) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: unknown resume operation");
        return -1;
    }
    plan->op = *op;
    if (exc_value != Py_None && !PyExceptionInstance_Check(exc_value)) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: corrupt pickle: the exception being handled is no exception");
        return -1;
    }
    if (PyTuple_GET_SIZE(frames) == 0) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: a tasklet without frames");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(frames);
    for (Py_ssize_t i = 0; i < n; ++i)
        if (add_restored_frame(*plan, PyTuple_GET_ITEM(frames, i), slot_kinds,
                               i == n - 1 && plan->op == resume_op::at_instruction) < 0)
            return -1;
    plan->exc_value = exc_value != Py_None ? Py_NewRef(exc_value) : nullptr;
    plan->source = Py_NewRef(frames);
    if (restore_tasklet(t, plan.get()) < 0) return -1;
    plan.release();
    return 0;
}

// tasklet.__setstate__ for the common case, a tasklet with frames and no attributes of its own
// (the format of _stackless_pickle.reduce_tasklet): no Python code runs. Returns 1 if it was
// not that case (_stackless_pickle.setstate_tasklet then handles it, and words its errors).
int setstate_frames_fast(py_tasklet* t, PyObject* state) {
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 9) return 1;
    PyObject* format = PyTuple_GET_ITEM(state, 1);
    PyObject* body = PyTuple_GET_ITEM(state, 4);
    PyObject* flags = PyTuple_GET_ITEM(state, 5);
    PyObject* blocked = PyTuple_GET_ITEM(state, 7);
    if (!is_str(PyTuple_GET_ITEM(state, 0), "stackless.tasklet") || !PyLong_CheckExact(format) ||
        PyLong_AsLong(format) != pickle_format || !is_this_python(PyTuple_GET_ITEM(state, 2)) ||
        !is_str(PyTuple_GET_ITEM(state, 3), "frames") || PyTuple_GET_ITEM(state, 8) != Py_None ||
        !PyTuple_Check(body) || PyTuple_GET_SIZE(body) != 3 || !PyTuple_Check(flags) ||
        PyTuple_GET_SIZE(flags) != 3 ||
        !(blocked == Py_None || (PyTuple_Check(blocked) && PyTuple_GET_SIZE(blocked) == 2))) {
        PyErr_Clear();  // (a PyLong_AsLong overflow)
        return 1;
    }
    int atomic = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 0));
    int ignore_nesting = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 1));
    int block_trap = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 2));
    if (atomic < 0 || ignore_nesting < 0 || block_trap < 0) return -1;
    if (restore_frames(t, PyTuple_GET_ITEM(body, 0), PyTuple_GET_ITEM(body, 1),
                       PyTuple_GET_ITEM(body, 2)) < 0)
        return -1;
    Py_XSETREF(t->tempval, Py_NewRef(PyTuple_GET_ITEM(state, 6)));
    t->atomic = atomic != 0;
    t->ignore_nesting = ignore_nesting != 0;
    try {
        t->core.set_block_trap(block_trap != 0);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    return 0;
}

}  // namespace

// _tasklet_restore(t, frames, resume_op, exc_value): see restore_frames.
PyObject* mod_tasklet_restore(PyObject*, PyObject* args) {
    PyObject *o, *frames, *op, *exc_value;
    if (!PyArg_ParseTuple(args, "OOOO:_tasklet_restore", &o, &frames, &op, &exc_value))
        return nullptr;
    if (check_tasklet_arg(o) < 0) return nullptr;
    if (restore_frames(as_tasklet(o), frames, op, exc_value) < 0) return nullptr;
    Py_RETURN_NONE;
}

int nesting_level(py_tasklet* t) {
    if (call_site == nullptr) return 0;
    _PyInterpreterFrame* innermost;
    try {
        auto st = t->core.status();
        if (!t->python_started || t->python_finished || (!st.started && !t->is_main)) return 0;
        innermost =
            st.current ? PyThreadState_Get()->cframe->current_frame : t->saved.current_frame;
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    // The frames are read in place while the analysis (Python code) runs: no switching.
    ++switch_trap_level_slow();
    bool current = innermost == PyThreadState_Get()->cframe->current_frame;
    int depth = c_state_depth(innermost, {call_site, nullptr, &classify, keeps_self, false},
                              !current, t->is_main ? nullptr : t->func, t->restored_body);
    --switch_trap_level_slow();
    return depth;
}

long frame_count(py_tasklet* t) {
    // Unpickled and not run yet: the frames it will resume (Stackless has them already).
    if (t->plan != nullptr) {
        const restore_plan& plan = *t->plan;
        if (plan.invalid != nullptr && plan.source != nullptr && PyTuple_Check(plan.source))
            return static_cast<long>(PyTuple_GET_SIZE(plan.source));  // (frames that cannot run)
        return static_cast<long>(plan.frames.size());
    }
    _PyInterpreterFrame* f;
    try {
        auto st = t->core.status();
        if (!t->python_started || t->python_finished || (!st.started && !t->is_main)) return 0;
        f = st.current ? PyThreadState_Get()->cframe->current_frame : t->saved.current_frame;
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return 0;
    }
    return frames_from(f);
}

PyObject* tasklet_frame_object(py_tasklet* t) {
    _PyInterpreterFrame* f;
    try {
        auto st = t->core.status();
        if (!t->python_started || t->python_finished || (!st.started && !t->is_main))
            Py_RETURN_NONE;
        f = st.current ? PyThreadState_Get()->cframe->current_frame : t->saved.current_frame;
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    return frame_object_of(f);
}

int drop_paused_frames(py_tasklet* t) {
    if (!softswitch_enabled || t->is_main || !t->python_started || t->python_finished ||
        t->restored_body || t->func == nullptr || call_site == nullptr)
        return 1;
    _PyInterpreterFrame* innermost = t->saved.current_frame;
    if (innermost == nullptr) return 1;
    std::vector<int> tops;
    ++switch_trap_level_slow();
    int droppable = droppable_frames(innermost, {call_site, nullptr, &classify, keeps_self, false},
                                     t->func, tops);
    --switch_trap_level_slow();
    if (droppable <= 0) return droppable < 0 ? -1 : 1;
    try {
        t->core.abandon();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    greenlet_state_dropped(t);  // its greenlets' stacks went with its C stack
    drop_frames(innermost, tops, t->saved.datastack_chunk, t->root_chunk);
    // What it handled and where it stood are gone; its context and trace functions stay its own.
    Py_CLEAR(t->exc_base.exc_value);
    if (t->context == nullptr) t->context = std::exchange(t->saved.context, nullptr);
    t->saved.current_frame = nullptr;
    t->saved.cframe = nullptr;
    t->saved.datastack_chunk = nullptr;
    t->saved.exc_info = nullptr;
    t->saved.recursion_depth = 0;
    t->python_started = false;
    t->stack_discarded = false;
    t->in_blocking_call = false;
    t->interrupted = false;
    t->hint = {};
    return 0;
}

int prepare_iteration(PyObject* code) {
    return slot_kinds != nullptr ? prepare_iteration_analysis(code, slot_kinds) : 0;
}

// _generator_info(gen, by_value): see generator_info (frame_state.hpp).
PyObject* mod_generator_info(PyObject*, PyObject* args) {
    PyObject *gen, *by_value;
    if (!PyArg_ParseTuple(args, "OO:_generator_info", &gen, &by_value)) return nullptr;
    return generator_info(gen, by_value);
}

// _generator_set_frame(gen, record, state, exc_value): a new generator gets its pickled frame.
PyObject* mod_generator_set_frame(PyObject*, PyObject* args) {
    PyObject *gen, *record, *exc_value;
    const char* state;
    if (!PyArg_ParseTuple(args, "OOsO:_generator_set_frame", &gen, &record, &state, &exc_value))
        return nullptr;
    bool created = std::strcmp(state, "created") == 0;
    if (!created && std::strcmp(state, "suspended") != 0) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad generator state");
        return nullptr;
    }
    if (set_generator_frame(gen, record, created, exc_value, slot_kinds) < 0) return nullptr;
    Py_RETURN_NONE;
}

// _new_frame(code, globals, lasti=-1, lineno=0, back=None): a frame object that never runs,
// for an unpickled traceback.
PyObject* mod_new_frame(PyObject*, PyObject* args) {
    PyObject *code, *globals, *back = Py_None;
    int lasti = -1, lineno = 0;
    if (!PyArg_ParseTuple(args, "O!O!|iiO:_new_frame", &PyCode_Type, &code, &PyDict_Type, &globals,
                          &lasti, &lineno, &back))
        return nullptr;
    return new_frame_object(code, globals, lasti, lineno, back != Py_None ? back : nullptr);
}

// _set_frame_back(frame, back): an unpickled traceback's frame gets its caller's frame.
PyObject* mod_set_frame_back(PyObject*, PyObject* args) {
    PyObject *frame, *back;
    if (!PyArg_ParseTuple(args, "OO:_set_frame_back", &frame, &back)) return nullptr;
    if (set_frame_back(frame, back) < 0) return nullptr;
    Py_RETURN_NONE;
}

PyObject* mod_code_nlocalsplus(PyObject*, PyObject* code) {
    int n = code_nlocalsplus(code);
    if (n < 0) {
        PyErr_SetString(PyExc_TypeError, "expected a code object");
        return nullptr;
    }
    return PyLong_FromLong(n);
}

// _channel_info(ch) -> (preference, schedule_all, closing, ((tasklet, direction, value), ...))
PyObject* mod_channel_info(PyObject*, PyObject* o) {
    if (!PyObject_TypeCheck(o, &channel_type)) {
        PyErr_SetString(PyExc_TypeError, "expected a channel");
        return nullptr;
    }
    auto& ch = reinterpret_cast<py_channel*>(o)->ch;
    PyObject* queue = nullptr;
    try {
        std::vector<stackless::tasklet> waiting = ch.waiting();
        int direction = ch.balance() > 0 ? 1 : -1;
        queue = PyTuple_New(static_cast<Py_ssize_t>(waiting.size()));
        if (queue == nullptr) return nullptr;
        for (std::size_t i = 0; i < waiting.size(); ++i) {
            py_tasklet* t = object_of(waiting[i]);
            if (t == nullptr) {
                Py_DECREF(queue);
                PyErr_SetString(PyExc_RuntimeError,
                                "a tasklet without a Python object waits "
                                "on the channel");
                return nullptr;
            }
            const py_ref* value = direction > 0 ? ch.offered_by(waiting[i]) : nullptr;
            PyObject* item =
                Py_BuildValue("(OiO)", t, direction,
                              value != nullptr && value->get() != nullptr ? value->get() : Py_None);
            if (item == nullptr) {
                Py_DECREF(queue);
                return nullptr;
            }
            PyTuple_SET_ITEM(queue, static_cast<Py_ssize_t>(i), item);
        }
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        Py_XDECREF(queue);
        return raise_from_cxx();
    }
    PyObject* r = Py_BuildValue("(iOOO)", ch.preference(), ch.schedule_all() ? Py_True : Py_False,
                                ch.closing() ? Py_True : Py_False, queue);
    Py_DECREF(queue);
    return r;
}

namespace {

int restore_channel(PyObject* o, int preference, int schedule_all, int closing, PyObject* queue) {
    if (!PyObject_TypeCheck(o, &channel_type) || !PyTuple_Check(queue)) {
        PyErr_SetString(PyExc_TypeError, "expected a channel and a tuple");
        return -1;
    }
    auto& ch = reinterpret_cast<py_channel*>(o)->ch;
    if (ch.balance() != 0) {
        PyErr_SetString(PyExc_RuntimeError, "stackless: the channel has tasklets waiting already");
        return -1;
    }
    try {
        ch.set_preference(preference);
        ch.set_schedule_all(schedule_all != 0);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(queue); ++i) {
            PyObject* item = PyTuple_GET_ITEM(queue, i);
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3 ||
                !PyLong_Check(PyTuple_GET_ITEM(item, 1))) {
                PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad channel queue");
                return -1;
            }
            PyObject* t = PyTuple_GET_ITEM(item, 0);
            long direction = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
            if (direction == -1 && PyErr_Occurred()) return -1;
            if (check_tasklet_arg(t) < 0) return -1;
            if (prepare_restored_waiter(as_tasklet(t)) < 0) return -1;
            ch.restore_waiting(as_tasklet(t)->core, static_cast<int>(direction),
                               py_ref(Py_NewRef(PyTuple_GET_ITEM(item, 2))));
            Py_XSETREF(as_tasklet(t)->waiting_on, Py_NewRef(o));
        }
        if (closing) ch.close();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    return 0;
}

}  // namespace

// _channel_restore(ch, preference, schedule_all, closing, queue): a new channel gets its
// settings and its waiting tasklets back, in order.
PyObject* mod_channel_restore(PyObject*, PyObject* args) {
    PyObject *o, *queue;
    int preference, schedule_all, closing;
    if (!PyArg_ParseTuple(args, "OippO:_channel_restore", &o, &preference, &schedule_all, &closing,
                          &queue))
        return nullptr;
    if (restore_channel(o, preference, schedule_all, closing, queue) < 0) return nullptr;
    Py_RETURN_NONE;
}

PyObject* tasklet_setstate(PyObject* self, PyObject* state) {
    if (check_tasklet_arg(self) < 0) return nullptr;
    int fast = setstate_frames_fast(as_tasklet(self), state);
    if (fast < 0) {
        // A corrupt pickle says so as the unpickler's error.
        if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyObject* pickle = PyImport_ImportModule("pickle");
            PyObject* error =
                pickle != nullptr ? PyObject_GetAttrString(pickle, "UnpicklingError") : nullptr;
            if (error != nullptr) {
                PyErr_NormalizeException(&type, &value, &tb);
                PyObject* message = PyObject_Str(value);
                if (message != nullptr) PyErr_SetObject(error, message);
                Py_XDECREF(message);
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            } else {
                PyErr_Restore(type, value, tb);
            }
            Py_XDECREF(error);
            Py_XDECREF(pickle);
        }
        return nullptr;
    }
    if (fast == 0) Py_RETURN_NONE;
    return call_helper("setstate_tasklet", self, state);
}

}  // namespace stackless::python
