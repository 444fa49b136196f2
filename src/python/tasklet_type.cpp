// stackless.tasklet: a Python object around a core tasklet.
//
// Lifetime: the object holds a core handle; the core holds the object's payload pointer. While
// the tasklet is scheduled (in the run queue or blocked on a channel) the object holds a
// reference to itself, so the scheduler keeps it alive, as in Stackless; a paused tasklet lives
// only by the references Python code holds, and when the last one goes it is killed.
#include <cstddef>
#include <memory>

#include "tasklet_internal.hpp"

namespace stackless::python {

namespace {

// ---------------------------------------------------------------------------------------------
// Creation and binding

PyObject* tasklet_new(PyTypeObject* type, PyObject*, PyObject*) {
    if (thread_main() == nullptr) return nullptr;
    auto* t = reinterpret_cast<py_tasklet*>(type->tp_alloc(type, 0));
    if (t == nullptr) return nullptr;
    try {
        new (&t->core) stackless::tasklet();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        Py_DECREF(t);
        return raise_from_cxx();
    }
    t->tstate = PyThreadState_Get();
    t->thread = this_thread;
    ++this_thread->objects;
    t->core.set_hooks(&tasklet_switch_hooks, t);
    t->core.set_function_takes_pending(true);  // (run_body raises it: see there)
    return reinterpret_cast<PyObject*>(t);
}

}  // namespace

// A tasklet about to get something to run runs it in a copy of the running code's contextvars
// context (as an asyncio task does), unless it was given one (set_context()); if the running
// code never used one, it gets none, and CPython makes an empty one when needed.
int take_creator_context(py_tasklet* t) {
    if (t->context != nullptr || t->tstate->context == nullptr) return 0;
    t->context = PyContext_CopyCurrent();
    return t->context != nullptr ? 0 : -1;
}

// Binds function and arguments (Stackless's tasklet.bind); `insert` as setup() does.

namespace {

// A tasklet of another thread is bound there, under the GIL (Stackless binds it for its own
// thread: setup() from another thread runs it there). One whose thread has ended takes a function
// (or None) but no arguments: nothing could run it (Stackless's words).
int bind_for_ended_thread(py_tasklet* self, PyObject* func, PyObject* args, PyObject* kwargs) {
    if (dropped_alive(self)) {
        PyErr_SetString(PyExc_RuntimeError, "tasklet has C state on its stack");
        return -1;
    }
    if ((args != nullptr && args != Py_None) || (kwargs != nullptr && kwargs != Py_None)) {
        PyErr_SetString(PyExc_RuntimeError, "tasklet has no thread");
        return -1;
    }
    if (func != nullptr && func != Py_None)
        Py_XSETREF(self->func, Py_NewRef(func));
    else
        Py_CLEAR(self->func);
    Py_CLEAR(self->args);
    Py_CLEAR(self->kwargs);
    return 0;
}

int bind(py_tasklet* self, PyObject* func, PyObject* args, PyObject* kwargs) {
    const bool remote = self->thread != this_thread;
    // (In Stackless's order of checks.)
    if (func != nullptr && func != Py_None && !PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "tasklet function must be a callable");
        return -1;
    }
    if (remote && of_ended_thread(self)) return bind_for_ended_thread(self, func, args, kwargs);
    if (remote && check_remote_thread(self) < 0) return -1;
    stackless::tasklet::status_flags st;
    try {
        st = remote ? self->core.status_from_any_thread() : self->core.status();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    if (st.current) {
        PyErr_SetString(PyExc_RuntimeError, "can't (re)bind the current tasklet");
        return -1;
    }
    if (self->is_main) {
        // Stackless can rebind a main tasklet whose thread runs no C code below it; here a main
        // tasklet's frames always stand on its thread's C stack.
        PyErr_SetString(PyExc_RuntimeError, func == nullptr || func == Py_None
                                                ? "can't unbind the main tasklet"
                                                : "can't rebind the main tasklet");
        return -1;
    }
    if (st.scheduled) {
        PyErr_SetString(PyExc_RuntimeError, "tasklet is scheduled");
        return -1;
    }
    if (st.started && remote) {
        // (Its frames are for its own thread to drop.)
        PyErr_SetString(PyExc_RuntimeError,
                        "tasklet has C state on its stack (it cannot be rebound from another "
                        "thread; kill it first)");
        return -1;
    }
    if (st.started) {
        // A paused tasklet without C state drops its frames (their finally blocks do not run),
        // as in Stackless; one with C state keeps them.
        int dropped = drop_paused_frames(self);
        if (dropped < 0) return -1;
        if (dropped > 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "tasklet has C state on its stack (it cannot be rebound; kill it "
                            "first)");
            return -1;
        }
    }
    if (args != nullptr && args != Py_None && !PyTuple_Check(args)) {
        args = PySequence_Tuple(args);
        if (args == nullptr) return -1;
    } else {
        Py_XINCREF(args);
    }
    if (kwargs != nullptr && kwargs != Py_None && !PyDict_Check(kwargs)) {
        Py_XDECREF(args);
        PyErr_SetString(PyExc_TypeError, "tasklet kwargs must be a dict");
        return -1;
    }
    bool unbind = (func == nullptr || func == Py_None) && (args == nullptr || args == Py_None) &&
                  (kwargs == nullptr || kwargs == Py_None);
    if (func != nullptr && func != Py_None) Py_XSETREF(self->func, Py_NewRef(func));
    if (unbind) Py_CLEAR(self->func);
    Py_CLEAR(self->args);
    Py_CLEAR(self->kwargs);
    bool with_args =
        (args != nullptr && args != Py_None) || (kwargs != nullptr && kwargs != Py_None);
    if (with_args) {
        if (self->func == nullptr) {
            Py_XDECREF(args);
            PyErr_SetString(PyExc_RuntimeError, "the tasklet was not bound to a function");
            return -1;
        }
        if (args != nullptr && args != Py_None) {
            self->args = args;  // the reference taken above
        } else {
            Py_XDECREF(args);
            self->args = PyTuple_New(0);
            if (self->args == nullptr) return -1;
        }
        self->kwargs = (kwargs != nullptr && kwargs != Py_None) ? Py_NewRef(kwargs) : nullptr;
        if (take_creator_context(self) < 0) return -1;
    } else {
        Py_XDECREF(args);
    }
    self->python_started = false;
    delete std::exchange(self->plan, nullptr);  // an unpickled tasklet bound to something else
    self->awaiting_plan = false;
    try {
        if (remote) {
            if (with_args)
                self->core.bind_remote(&run_body, self);
            else if (st.alive)
                self->core.bind_remote(&run_body);
        } else if (with_args) {
            self->core.bind(&run_body, self);
        } else if (self->core.alive()) {
            self->core.bind(&run_body);  // no longer runnable
        }
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    return 0;
}

int tasklet_init(PyObject* o, PyObject* args, PyObject* kwds) {
    if (kwds == nullptr && PyTuple_GET_SIZE(args) == 1)  // tasklet(func): the common case
        return bind(as_tasklet(o), PyTuple_GET_ITEM(args, 0), nullptr, nullptr);
    static const char* names[] = {"func", "args", "kwargs", nullptr};
    PyObject *func = nullptr, *fargs = nullptr, *fkwargs = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO:tasklet", const_cast<char**>(names), &func,
                                     &fargs, &fkwargs))
        return -1;
    if (func == nullptr && fargs == nullptr && fkwargs == nullptr) return 0;
    return bind(as_tasklet(o), func, fargs, fkwargs);
}

// stackless.tasklet(func): the common way to make one, without building an argument tuple.
// Other calls, and subclasses (their __init__ may differ), take the ordinary path.
PyObject* tasklet_vectorcall(PyObject* type, PyObject* const* args, size_t nargsf,
                             PyObject* kwnames) {
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames == nullptr && n == 1 && type == reinterpret_cast<PyObject*>(&tasklet_type)) {
        PyObject* o = tasklet_new(&tasklet_type, nullptr, nullptr);
        if (o == nullptr) return nullptr;
        // A new tasklet is unbound and unscheduled: binding only records the function (what
        // bind() would conclude after checking that).
        if (args[0] != Py_None && PyCallable_Check(args[0])) {
            as_tasklet(o)->func = Py_NewRef(args[0]);
            return o;
        }
        if (bind(as_tasklet(o), args[0], nullptr, nullptr) < 0) Py_CLEAR(o);
        return o;
    }
    PyObject* tuple = PyTuple_New(n);
    if (tuple == nullptr) return nullptr;
    for (Py_ssize_t i = 0; i < n; ++i) PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    PyObject* kwargs = nullptr;
    if (kwnames != nullptr) {
        kwargs = PyDict_New();
        for (Py_ssize_t i = 0; kwargs != nullptr && i < PyTuple_GET_SIZE(kwnames); ++i) {
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0)
                Py_CLEAR(kwargs);
        }
        if (kwargs == nullptr) {
            Py_DECREF(tuple);
            return nullptr;
        }
    }
    PyObject* result = PyType_Type.tp_call(type, tuple, kwargs);
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return result;
}

}  // namespace

int prepare_restored_waiter(py_tasklet* t) {
    stackless::tasklet::status_flags st;
    try {
        st = t->core.status();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    if (t->awaiting_plan || t->plan != nullptr) {
        if (!st.started) return 0;  // bound for this already (and maybe queued by a channel)
    } else if (!t->is_main && !st.alive && !st.scheduled && t->func == nullptr) {
        // A fresh tasklet from the unpickler: it resumes its frames in a copy of the context
        // of the code unpickling it.
        if (take_creator_context(t) < 0) return -1;
        try {
            t->core.bind(&run_restored, t);
            t->core.set_function_takes_pending(true);
        } catch (abi::__forced_unwind&) {
            throw;
        } catch (...) {
            return raise_from_cxx_int();
        }
        t->python_started = false;
        t->awaiting_plan = true;
        return 0;
    }
    PyErr_SetString(PyExc_RuntimeError,
                    "stackless: only a new tasklet made by the unpickler can take unpickled "
                    "frames (this one is bound, scheduled or has run)");
    return -1;
}

int restore_tasklet(py_tasklet* t, restore_plan* plan) {
    if (t->plan != nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "stackless: the tasklet has its frames already");
        return -1;
    }
    if (prepare_restored_waiter(t) < 0) return -1;
    t->plan = plan;
    t->awaiting_plan = false;
    return 0;
}

namespace {

PyObject* tasklet_bind(PyObject* o, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"func", "args", "kwargs", nullptr};
    PyObject *func = nullptr, *fargs = nullptr, *fkwargs = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO:bind", const_cast<char**>(names), &func,
                                     &fargs, &fkwargs))
        return nullptr;
    if (bind(as_tasklet(o), func != nullptr ? func : Py_None, fargs, fkwargs) < 0) return nullptr;
    return Py_NewRef(o);
}

// setup() of a tasklet of another thread binds the arguments and appends it to that thread's run
// queue, where it runs (Stackless).
PyObject* tasklet_setup(PyObject* o, PyObject* args, PyObject* kwds) {
    py_tasklet* self = as_tasklet(o);
    const bool remote = self->thread != this_thread;
    if (remote && (of_ended_thread(self) || check_remote_thread(self) < 0)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "tasklet has no thread");
        return nullptr;
    }
    try {
        if (remote ? self->core.status_from_any_thread().alive : self->core.alive()) {
            PyErr_SetString(PyExc_RuntimeError, "tasklet is alive");
            return nullptr;
        }
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    if (self->func == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "the tasklet was not bound to a function");
        return nullptr;
    }
    if (bind(self, nullptr, args, kwds != nullptr ? kwds : Py_None) < 0) return nullptr;
    try {
        if (remote)
            self->core.insert_remote();
        else
            self->core.insert();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    return Py_NewRef(o);
}

// ---------------------------------------------------------------------------------------------
// Object protocol

// A switched-out tasklet's frames, context and trace functions are its own references; a
// scheduled tasklet's reference to itself is not visited here but by the channel it waits on
// (channel_traverse) or not at all (the run queue is a root). So a blocked tasklet that nothing
// but an unreachable channel refers to is garbage, and the collector kills it (tasklet_finalize).
int tasklet_traverse(PyObject* o, visitproc visit, void* arg) {
    py_tasklet* self = as_tasklet(o);
    Py_VISIT(self->func);
    Py_VISIT(self->args);
    Py_VISIT(self->kwargs);
    Py_VISIT(self->tempval);
    Py_VISIT(self->context);
    Py_VISIT(self->waiting_on);
    if (self->plan != nullptr)
        if (int r = traverse_plan(*self->plan, visit, arg)) return r;
    bool suspended_in_python = false;  // switched out with frames of its own
    try {
        suspended_in_python = self->python_started && !self->is_main && this_thread != nullptr &&
                              this_thread->current != self && self->thread == this_thread &&
                              self->core.status().started;
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
    }
    if (suspended_in_python) {
        Py_VISIT(self->saved.context);
        Py_VISIT(self->saved.c_traceobj);
        Py_VISIT(self->saved.c_profileobj);
        if (int r = traverse_frames(self->saved.current_frame, self->hint, visit, arg)) return r;
    }
    return 0;  // a subclass's type is visited by CPython's subtype_traverse
}

int tasklet_clear(PyObject* o) {
    py_tasklet* self = as_tasklet(o);
    bool running_its_function = false;  // then run_body is using them
    try {
        running_its_function = self->python_started && !self->is_main &&
                               self->thread == this_thread && self->core.status().started;
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
    }
    if (!running_its_function) {
        Py_CLEAR(self->func);
        Py_CLEAR(self->args);
        Py_CLEAR(self->kwargs);
    }
    Py_CLEAR(self->tempval);
    Py_CLEAR(self->context);
    Py_CLEAR(self->waiting_on);
    delete std::exchange(self->plan, nullptr);
    return 0;
}

// PEP 442 finalizer: a started tasklet that nobody can reach any more is killed, running its
// finally blocks, as Stackless's finalizer does.
void tasklet_finalize(PyObject* o) {
    py_tasklet* self = as_tasklet(o);
    if (self->is_main || self->thread != this_thread) return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    try {
        // Called when its last reference goes (then it is paused: a scheduled tasklet holds one
        // to itself), or by the collector because it is unreachable (then it may be blocked on
        // an unreachable channel). A runnable one is never unreachable: the run queue is a root.
        stackless::tasklet::status_flags st = self->core.status();
        // An unpickled tasklet waiting on a channel has frames to unwind too.
        // (One a damaged pickle left queued on a channel without its frames goes too.)
        bool has_frames = st.started || self->plan != nullptr || self->awaiting_plan;
        if (has_frames && (!st.scheduled || st.blocked)) self->core.kill(false);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        raise_from_cxx();
        PyErr_WriteUnraisable(o);
    }
    flush_released();
    PyErr_Restore(type, value, tb);
}

void tasklet_dealloc(PyObject* o) {
    py_tasklet* self = as_tasklet(o);
    if (PyObject_CallFinalizerFromDealloc(o) < 0) return;  // resurrected
    PyObject_GC_UnTrack(o);
    if (self->weakreflist != nullptr) PyObject_ClearWeakRefs(o);
    // Started and not finished: its stack, and its thread's scheduler (which calls our hooks with
    // this object), still refer to it.
    bool started_alive = false;
    if (self->core && self->python_started && !self->python_finished && !self->is_main) {
        if (self->thread != this_thread) {
            started_alive = true;  // dropped on another thread: its owner may still run it
        } else {
            try {
                started_alive = self->core.alive();
            } catch (abi::__forced_unwind&) {
                throw;
            } catch (...) {
            }
        }
    }
    if (started_alive) {
        // It survived its kill (it caught TaskletExit and paused), or it was dropped on another
        // thread: the object must stay. Stackless puts such tasklets in gc.garbage.
        PyObject_GC_Track(o);
        Py_SET_REFCNT(o, 1);
        // A subclass's type is released by CPython's subtype_dealloc after this returns.
        if (Py_TYPE(o)->tp_flags & Py_TPFLAGS_HEAPTYPE) Py_INCREF(Py_TYPE(o));
        PyObject* gc = PyImport_ImportModule("gc");
        PyObject* garbage = gc != nullptr ? PyObject_GetAttrString(gc, "garbage") : nullptr;
        if (garbage == nullptr || PyList_Append(garbage, o) < 0) Py_INCREF(o);  // leak, safely
        Py_XDECREF(garbage);
        Py_XDECREF(gc);
        PyErr_Clear();
        Py_DECREF(o);
        return;
    }
    tasklet_clear(o);
    try {
        if (self->core && self->thread == this_thread) self->core.set_hooks(nullptr, nullptr);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        // its thread's scheduler is gone: nothing calls the hooks any more
    }
    self->core.~tasklet();
    if (self->root_chunk != nullptr) free_root_chunk(self->root_chunk);
    Py_XDECREF(self->saved.context);
    Py_XDECREF(self->saved.c_traceobj);
    Py_XDECREF(self->saved.c_profileobj);
    thread_data* thread = static_cast<thread_data*>(self->thread);
    Py_TYPE(o)->tp_free(o);  // a subclass's type is released by CPython's subtype_dealloc
    release_thread_data(thread);
}

PyObject* tasklet_repr(PyObject* o) {
    return PyUnicode_FromFormat("<%s object at %p>", Py_TYPE(o)->tp_name, o);
}

PyMethodDef tasklet_methods[] = {
    {"bind", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_bind)),
     METH_VARARGS | METH_KEYWORDS, "bind(func=None, args=None, kwargs=None)"},
    {"setup", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_setup)),
     METH_VARARGS | METH_KEYWORDS, "setup(*args, **kwargs): bind arguments and insert"},
    {"insert", tasklet_insert, METH_NOARGS, "insert at the end of the run queue"},
    {"remove", tasklet_remove, METH_NOARGS, "remove from the run queue"},
    {"run", tasklet_run, METH_NOARGS, "switch to this tasklet now; the caller stays runnable"},
    {"switch", tasklet_switch, METH_NOARGS, "switch to this tasklet now; the caller is paused"},
    {"throw", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_throw)),
     METH_VARARGS | METH_KEYWORDS, "throw(exc=None, val=None, tb=None, pending=False)"},
    {"raise_exception", tasklet_raise_exception, METH_VARARGS, "raise_exception(exc_class, *args)"},
    {"kill", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_kill)),
     METH_VARARGS | METH_KEYWORDS, "kill(pending=False): raise TaskletExit in the tasklet"},
    {"set_atomic", tasklet_set_atomic, METH_O, "set_atomic(flag) -> old flag"},
    {"set_context", tasklet_set_context, METH_O,
     "set_context(context): the contextvars context it runs in from now on; returns it"},
    {"context_run",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_context_run)),
     METH_FASTCALL | METH_KEYWORDS, "context_run(callable, *args, **kwargs) in its context"},
    {"set_ignore_nesting", tasklet_set_ignore_nesting, METH_O,
     "set_ignore_nesting(flag) -> old flag"},
    {"bind_thread", tasklet_bind_thread, METH_VARARGS,
     "bind_thread(thread_id=None): move a tasklet that has not run yet to this or that thread"},
    {"__reduce__", tasklet_reduce, METH_NOARGS, "pickle support"},
    {"__reduce_ex__", tasklet_reduce, METH_O, "pickle support"},
    {"__setstate__", tasklet_setstate, METH_O, "unpickle support"},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

PyTypeObject tasklet_type = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "stackless.tasklet";
    t.tp_basicsize = sizeof(py_tasklet);
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC;
    t.tp_doc = "tasklet(func=None, args=None, kwargs=None): a lightweight thread";
    t.tp_new = tasklet_new;
    t.tp_init = tasklet_init;
    t.tp_vectorcall = tasklet_vectorcall;
    t.tp_dealloc = tasklet_dealloc;
    t.tp_finalize = tasklet_finalize;
    t.tp_traverse = tasklet_traverse;
    t.tp_clear = tasklet_clear;
    t.tp_call = tasklet_setup;
    t.tp_repr = tasklet_repr;
    t.tp_methods = tasklet_methods;
    t.tp_getset = tasklet_getset;
    t.tp_weaklistoffset = offsetof(py_tasklet, weakreflist);
    return t;
}();

}  // namespace stackless::python
