// Pickling of tasklets and channels: the methods pickle calls (__reduce__, __setstate__) and the
// private module functions through which python/_stackless_pickle.py reads and restores the
// binding's state. Frames themselves are read and rebuilt in frame_state.cpp.

#include <cstring>
#include <initializer_list>
#include <memory>

#include "binding.hpp"
#include "frame_state.hpp"

namespace stackless::python {

namespace {

PyObject* helper_module = nullptr;
PyObject* stackless_module = nullptr;

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

bool is_one_of(const char* name, std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (std::strcmp(name, n) == 0) return true;
    return false;
}

// What the innermost frame's pending call returns when the tasklet resumes, if it is a stackless
// operation that switches: the name of a resume_op.
const char* classify(PyObject* callee, bool iteration) {
    if (iteration) return PyObject_TypeCheck(callee, &channel_type) ? "receive" : nullptr;
    const char* name = nullptr;
    PyTypeObject* owner = nullptr;
    if (PyCFunction_Check(callee)) {
        name = reinterpret_cast<PyCFunctionObject*>(callee)->m_ml->ml_name;
        PyObject* self = PyCFunction_GET_SELF(callee);
        if (self == stackless_module)
            return is_one_of(name, {"schedule", "schedule_remove"}) ? "tempval" : nullptr;
        if (self == nullptr) return nullptr;
        owner = Py_TYPE(self);
    } else if (Py_IS_TYPE(callee, &PyMethodDescr_Type)) {
        auto* descr = reinterpret_cast<PyMethodDescrObject*>(callee);
        name = descr->d_method->ml_name;
        owner = PyDescr_TYPE(descr);
    } else {
        return nullptr;
    }
    if (PyType_IsSubtype(owner, &channel_type)) {
        if (std::strcmp(name, "receive") == 0) return "receive";
        return is_one_of(name, {"send", "send_exception", "send_throw"}) ? "none" : nullptr;
    }
    if (PyType_IsSubtype(owner, &tasklet_type))
        return is_one_of(name, {"run", "switch", "kill", "throw", "raise_exception"}) ? "none"
                                                                                      : nullptr;
    return nullptr;
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

}  // namespace

int install_pickling(PyObject* module) {
    helper_module = PyImport_ImportModule("_stackless_pickle");
    if (helper_module == nullptr) return -1;
    stackless_module = Py_NewRef(module);
    PyObject* r = call_helper("_install", module);
    if (r == nullptr) return -1;
    Py_DECREF(r);
    return 0;
}

PyObject* tasklet_reduce(PyObject* self, PyObject*) {
    return call_helper("reduce_tasklet", self);
}

PyObject* tasklet_reduce_ex(PyObject* self, PyObject*) {
    return call_helper("reduce_tasklet", self);
}

PyObject* tasklet_setstate(PyObject* self, PyObject* state) {
    return call_helper("setstate_tasklet", self, state);
}

PyObject* tasklet_get_restorable(PyObject* self, void*) {
    return call_helper("is_restorable", self);
}

PyObject* channel_reduce(PyObject* self, PyObject*) {
    return call_helper("reduce_channel", self);
}

PyObject* channel_setstate(PyObject* self, PyObject* state) {
    return call_helper("setstate_channel", self, state);
}

// _tasklet_info(t) -> (state, func, args, kwargs, tempval, atomic, ignore_nesting, block_trap,
// channel, direction, exc_value); state: main, current, dead, bound, new, frames, restored.
PyObject* mod_tasklet_info(PyObject*, PyObject* o) {
    if (check_tasklet_arg(o) < 0) return nullptr;
    py_tasklet* t = as_tasklet(o);
    stackless::tasklet::status_flags st;
    stackless::tasklet::blocking blocked;
    bool block_trap;
    try {
        st = t->core.status();
        blocked = t->core.blocked_on();
        block_trap = t->core.block_trap();
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
    if (st.started && t->saved.exc_info != nullptr && t->saved.exc_info->exc_value != nullptr)
        exc_value = t->saved.exc_info->exc_value;
    PyObject* channel = static_cast<PyObject*>(blocked.channel_payload);
    return Py_BuildValue("(sOOOOOOOOiO)", state, t->func ? t->func : Py_None,
                         t->args ? t->args : Py_None, t->kwargs ? t->kwargs : Py_None,
                         t->tempval ? t->tempval : Py_None, t->atomic ? Py_True : Py_False,
                         t->ignore_nesting ? Py_True : Py_False, block_trap ? Py_True : Py_False,
                         channel ? channel : Py_None, blocked.direction, exc_value);
}

// _tasklet_plan(t) -> (frames, resume_op, exc_value): what an unpickled tasklet that has not run
// yet resumes (to pickle it again as it was).
PyObject* mod_tasklet_plan(PyObject*, PyObject* o) {
    if (check_tasklet_arg(o) < 0) return nullptr;
    restore_plan* plan = as_tasklet(o)->plan;
    if (plan == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "the tasklet has no unpickled frames");
        return nullptr;
    }
    const char* op = plan->op == resume_op::tempval ? "tempval"
                     : plan->op == resume_op::none  ? "none"
                                                    : "receive";
    return Py_BuildValue("(OsO)", plan->source, op,
                         plan->exc_value != nullptr ? plan->exc_value : Py_None);
}

// _tasklet_frames(t, call_site): the frames of a switched-out tasklet (frame_state.hpp).
PyObject* mod_tasklet_frames(PyObject*, PyObject* args) {
    PyObject *o, *call_site;
    if (!PyArg_ParseTuple(args, "OO:_tasklet_frames", &o, &call_site)) return nullptr;
    if (check_tasklet_arg(o) < 0) return nullptr;
    py_tasklet* t = as_tasklet(o);
    bool started;
    try {
        auto st = t->core.status();
        started = st.started && !st.current && t->python_started && !t->python_finished;
    } catch (...) {
        return raise_from_cxx();
    }
    if (!started || t->is_main) {
        PyErr_SetString(PyExc_RuntimeError, "the tasklet has no frames switched out");
        return nullptr;
    }
    return capture_frames(t->saved.current_frame, call_site, &classify);
}

// _tasklet_restore(t, frames, resume_op, exc_value, source): gives a new (or channel-queued)
// tasklet the frames it resumes when it runs. `frames`: (code, globals, resume, kinds, locals,
// local_nulls, stack, stack_nulls) tuples, outermost first.
PyObject* mod_tasklet_restore(PyObject*, PyObject* args) {
    PyObject *o, *frames, *exc_value, *source;
    const char* op;
    if (!PyArg_ParseTuple(args, "OO!sOO:_tasklet_restore", &o, &PyTuple_Type, &frames, &op,
                          &exc_value, &source))
        return nullptr;
    if (check_tasklet_arg(o) < 0) return nullptr;
    py_tasklet* t = as_tasklet(o);
    auto plan = std::make_unique<restore_plan>();
    if (std::strcmp(op, "tempval") == 0)
        plan->op = resume_op::tempval;
    else if (std::strcmp(op, "none") == 0)
        plan->op = resume_op::none;
    else if (std::strcmp(op, "receive") == 0)
        plan->op = resume_op::receive;
    else {
        PyErr_Format(PyExc_ValueError, "stackless: corrupt pickle: unknown resume operation %s",
                     op);
        return nullptr;
    }
    if (exc_value != Py_None && !PyExceptionInstance_Check(exc_value)) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: corrupt pickle: the exception being handled is no exception");
        return nullptr;
    }
    if (PyTuple_GET_SIZE(frames) == 0) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: a tasklet without frames");
        return nullptr;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(frames); ++i) {
        PyObject *code, *globals, *kinds, *locals, *local_nulls, *stack, *stack_nulls;
        int resume;
        PyObject* record = PyTuple_GET_ITEM(frames, i);
        if (!PyTuple_Check(record) ||
            !PyArg_ParseTuple(record, "OOiOOOOO", &code, &globals, &resume, &kinds, &locals,
                              &local_nulls, &stack, &stack_nulls)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad frame record");
            return nullptr;
        }
        if (add_restored_frame(*plan, code, globals, resume, kinds, locals, local_nulls, stack,
                               stack_nulls) < 0)
            return nullptr;
    }
    plan->exc_value = exc_value != Py_None ? Py_NewRef(exc_value) : nullptr;
    plan->source = Py_NewRef(source);
    if (restore_tasklet(t, plan.get()) < 0) return nullptr;
    plan.release();
    Py_RETURN_NONE;
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
    } catch (...) {
        Py_XDECREF(queue);
        return raise_from_cxx();
    }
    PyObject* r = Py_BuildValue("(iOOO)", ch.preference(), ch.schedule_all() ? Py_True : Py_False,
                                ch.closing() ? Py_True : Py_False, queue);
    Py_DECREF(queue);
    return r;
}

// _channel_restore(ch, preference, schedule_all, closing, queue): a new channel gets its
// settings and its waiting tasklets back, in order.
PyObject* mod_channel_restore(PyObject*, PyObject* args) {
    PyObject *o, *queue;
    int preference, schedule_all, closing;
    if (!PyArg_ParseTuple(args, "OippO!:_channel_restore", &o, &preference, &schedule_all, &closing,
                          &PyTuple_Type, &queue))
        return nullptr;
    if (!PyObject_TypeCheck(o, &channel_type)) {
        PyErr_SetString(PyExc_TypeError, "expected a channel");
        return nullptr;
    }
    auto& ch = reinterpret_cast<py_channel*>(o)->ch;
    if (ch.balance() != 0) {
        PyErr_SetString(PyExc_RuntimeError, "stackless: the channel has tasklets waiting already");
        return nullptr;
    }
    try {
        ch.set_preference(preference);
        ch.set_schedule_all(schedule_all != 0);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(queue); ++i) {
            PyObject *t, *value;
            int direction;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(queue, i), "OiO", &t, &direction, &value))
                return nullptr;
            if (check_tasklet_arg(t) < 0) return nullptr;
            if (prepare_restored_waiter(as_tasklet(t)) < 0) return nullptr;
            ch.restore_waiting(as_tasklet(t)->core, direction, py_ref(Py_NewRef(value)));
        }
        if (closing) ch.close();
    } catch (...) {
        return raise_from_cxx();
    }
    Py_RETURN_NONE;
}

}  // namespace stackless::python
