// stackless.tasklet's attributes.
#include "tasklet_internal.hpp"

namespace stackless::python {

namespace {

template <bool (stackless::tasklet::*query)() const,
          bool (*from_flags)(const stackless::tasklet::status_flags&)>
PyObject* get_flag(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (of_ended_thread(self)) Py_RETURN_FALSE;  // it can never run again
    try {
        if (self->thread != this_thread) [[unlikely]]  // (the GIL keeps its thread still)
            return PyBool_FromLong(from_flags(self->core.status_from_any_thread()));
        return PyBool_FromLong(((self->core).*query)());
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
}

using flags = stackless::tasklet::status_flags;
bool alive_flag(const flags& f) {
    return f.alive;
}
bool paused_flag(const flags& f) {
    return f.alive && !f.scheduled;
}
bool blocked_flag(const flags& f) {
    return f.blocked;
}
bool scheduled_flag(const flags& f) {
    return f.scheduled;
}
bool current_flag(const flags& f) {
    return f.current;
}

PyObject* get_next(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (of_ended_thread(self)) Py_RETURN_NONE;
    try {
        if (self->thread != this_thread) [[unlikely]]  // (the GIL keeps its thread still)
            return new_ref_or_none(self->core.next_from_any_thread());
        return new_ref_or_none(self->core.next());
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
}

PyObject* get_prev(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (of_ended_thread(self)) Py_RETURN_NONE;
    try {
        if (self->thread != this_thread) [[unlikely]]  // (the GIL keeps its thread still)
            return new_ref_or_none(self->core.prev_from_any_thread());
        return new_ref_or_none(self->core.prev());
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
}

PyObject* get_tempval(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (self->tempval != nullptr) return Py_NewRef(self->tempval);
    // A tasklet bound to a function without arguments (not alive yet) shows it there, where
    // Stackless keeps it until setup() gives it its arguments.
    if (self->func != nullptr && self->args == nullptr && !self->python_started && !self->is_main)
        return Py_NewRef(self->func);
    Py_RETURN_NONE;
}

int set_tempval(PyObject* o, PyObject* value, void*) {
    py_tasklet* self = as_tasklet(o);
    Py_XSETREF(self->tempval, Py_XNewRef(value));
    return 0;
}

// (A flag of the tasklet: read and set from any thread, under the GIL.)
PyObject* get_block_trap(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    try {
        return PyBool_FromLong(self->core.block_trap_from_any_thread());
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
}

int set_block_trap(PyObject* o, PyObject* value, void*) {
    py_tasklet* self = as_tasklet(o);
    int on = value != nullptr ? PyObject_IsTrue(value) : 0;
    if (on < 0) return -1;
    try {
        self->core.set_block_trap_from_any_thread(on != 0);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    return 0;
}

PyObject* get_atomic(PyObject* o, void*) {
    return PyBool_FromLong(as_tasklet(o)->atomic);
}
PyObject* get_ignore_nesting(PyObject* o, void*) {
    return PyBool_FromLong(as_tasklet(o)->ignore_nesting);
}
PyObject* get_is_main(PyObject* o, void*) {
    return PyBool_FromLong(as_tasklet(o)->is_main);
}
PyObject* get_thread_id(PyObject* o, void*) {
    py_tasklet* t = as_tasklet(o);
    if (of_ended_thread(t)) return PyLong_FromLong(-1);  // as Stackless reports
    return PyLong_FromUnsignedLong(static_cast<const thread_data*>(t->thread)->ident);
}
// Stackless's nesting level: how many C-level calls of the interpreter in the tasklet hold state
// that a pickle cannot rebuild (calls through C functions other than those pickling resumes:
// calls of functions, methods, instances' __call__, classes' __init__, __enter__/__exit__ and
// iteration over generators). Without soft switching every frame is bound to the tasklet's C
// stack, and each counts (Stackless then recurses in C for every call): a main tasklet's
// outermost frame excepted, as there.
PyObject* get_nesting_level(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    // (One dropped alive at its thread's end still holds its C-level calls: at least one.)
    if (of_ended_thread(self)) return PyLong_FromLong(dropped_alive(self) ? 1 : 0);
    if (check_thread(self) < 0) return PyLong_FromLong(0);
    if (!softswitch_enabled) {
        long frames = frame_count(self);
        if (self->is_main && frames > 0) --frames;
        return PyLong_FromLong(frames);
    }
    int depth = nesting_level(self);
    if (depth < 0) return nullptr;
    return PyLong_FromLong(depth);
}

// Stackless's recursion_depth: how deep the tasklet's Python calls are, its Python frames
// (Stackless counts those; CPython's own recursion counter counts some C calls too).
PyObject* get_recursion_depth(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (of_ended_thread(self) || check_thread(self) < 0) return PyLong_FromLong(0);
    return PyLong_FromLong(frame_count(self));
}

// Stackless's frame: the innermost frame the tasklet runs in (None if it has not started, or has
// ended; for one unpickled and not run yet, None too: its frames are built when it runs).
PyObject* get_frame(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (of_ended_thread(self) || check_thread(self) < 0) Py_RETURN_NONE;
    return tasklet_frame_object(self);
}

bool alive_here(py_tasklet* self) {
    if (of_ended_thread(self) || self->thread != this_thread) return false;
    try {
        return self->core.alive();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return false;
    }
}

// trace_function / profile_function: the tasklet's own (Stackless: tracing is per tasklet).
template <bool trace>
PyObject* get_hook_function(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    Py_tracefunc func;
    PyObject* obj;
    if (!self->is_main && !alive_here(self)) Py_RETURN_NONE;  // (what it traced ended with it)
    if (is_running(self)) {
        func = trace ? self->tstate->c_tracefunc : self->tstate->c_profilefunc;
        obj = trace ? self->tstate->c_traceobj : self->tstate->c_profileobj;
    } else {
        func = trace ? self->saved.c_tracefunc : self->saved.c_profilefunc;
        obj = trace ? self->saved.c_traceobj : self->saved.c_profileobj;
    }
    Py_tracefunc python = trace ? python_trace_trampoline : python_profile_trampoline;
    return Py_NewRef(func == python && obj != nullptr ? obj : Py_None);
}

template <bool trace>
int set_hook_function(PyObject* o, PyObject* value, void*) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return -1;
    if (value == nullptr) value = Py_None;
    if (value != Py_None && !PyCallable_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "the trace or profile function must be callable");
        return -1;
    }
    if (!self->is_main && !alive_here(self)) {
        PyErr_SetString(PyExc_RuntimeError, "tasklet is not alive");
        return -1;
    }
    if (is_running(self)) {
        PyObject* r = PySys_GetObject(trace ? "settrace" : "setprofile");  // borrowed
        if (r == nullptr) {
            PyErr_SetString(PyExc_RuntimeError, "sys.settrace is missing");
            return -1;
        }
        PyObject* done = PyObject_CallOneArg(r, value);
        if (done == nullptr) return -1;
        Py_DECREF(done);
        return 0;
    }
    Py_tracefunc python = trace ? python_trace_trampoline : python_profile_trampoline;
    Py_tracefunc& func = trace ? self->saved.c_tracefunc : self->saved.c_profilefunc;
    PyObject*& obj = trace ? self->saved.c_traceobj : self->saved.c_profileobj;
    func = value == Py_None ? nullptr : python;
    Py_XSETREF(obj, value == Py_None ? nullptr : Py_NewRef(value));
    return 0;
}

PyObject* get_context(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (self->context != nullptr) return Py_NewRef(self->context);
    if (self->saved.context != nullptr) return Py_NewRef(self->saved.context);
    try {
        if (self->core.is_current()) return PyContext_CopyCurrent();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    Py_RETURN_NONE;
}

}  // namespace

PyGetSetDef tasklet_getset[] = {
    {"alive", get_flag<&stackless::tasklet::alive, alive_flag>, nullptr, "running or runnable",
     nullptr},
    {"paused", get_flag<&stackless::tasklet::paused, paused_flag>, nullptr, "alive, not scheduled",
     nullptr},
    {"blocked", get_flag<&stackless::tasklet::blocked, blocked_flag>, nullptr,
     "blocked on a channel", nullptr},
    {"scheduled", get_flag<&stackless::tasklet::scheduled, scheduled_flag>, nullptr,
     "in the run queue or blocked", nullptr},
    {"is_current", get_flag<&stackless::tasklet::is_current, current_flag>, nullptr,
     "the running tasklet", nullptr},
    {"is_main", get_is_main, nullptr, "the thread's main tasklet", nullptr},
    {"next", get_next, nullptr, "next tasklet in its chain", nullptr},
    {"prev", get_prev, nullptr, "previous tasklet in its chain", nullptr},
    {"tempval", get_tempval, set_tempval, "value passed by schedule()", nullptr},
    {"block_trap", get_block_trap, set_block_trap, "refuse to block on a channel", nullptr},
    {"atomic", get_atomic, nullptr, "inside set_atomic(True)", nullptr},
    {"ignore_nesting", get_ignore_nesting, nullptr, "inside set_ignore_nesting(True)", nullptr},
    {"thread_id", get_thread_id, nullptr, "id of the thread it belongs to", nullptr},
    {"restorable", tasklet_get_restorable, nullptr, "can be pickled and restored", nullptr},
    {"nesting_level", get_nesting_level, nullptr, "interpreter nesting level", nullptr},
    {"recursion_depth", get_recursion_depth, nullptr, "depth of its Python calls", nullptr},
    {"frame", get_frame, nullptr, "the innermost frame it runs in", nullptr},
    {"context", get_context, nullptr, "its contextvars context", nullptr},
    {"trace_function", get_hook_function<true>, set_hook_function<true>,
     "the tasklet's trace function (sys.settrace in that tasklet)", nullptr},
    {"profile_function", get_hook_function<false>, set_hook_function<false>,
     "the tasklet's profile function (sys.setprofile in that tasklet)", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace stackless::python
