// stackless.tasklet's methods that schedule it or raise in it: insert, remove, run, switch,
// throw, raise_exception, kill, bind_thread, and its flags and context.
#include <utility>

#include "tasklet_internal.hpp"

namespace stackless::python {

// ---------------------------------------------------------------------------------------------
// Scheduling

// insert() on a tasklet of another thread appends it to that thread's run queue and wakes the
// thread (Stackless); it runs there.
PyObject* tasklet_insert(PyObject* o, PyObject*) {
    py_tasklet* self = as_tasklet(o);
    if (self->thread != this_thread) [[unlikely]] {
        if (check_remote_thread(self) < 0) return nullptr;
        if (!run_core([&] { self->core.insert_remote(); })) return nullptr;
        return Py_NewRef(o);
    }
    try {
        self->core.insert();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    return Py_NewRef(o);
}

PyObject* tasklet_remove(PyObject* o, PyObject*) {
    py_tasklet* self = as_tasklet(o);
    if (self->thread != this_thread) [[unlikely]] {
        // (Stackless: removing a tasklet whose thread has ended does nothing.)
        if (of_ended_thread(self)) return Py_NewRef(o);
        if (check_remote_thread(self) < 0) return nullptr;
        if (!run_core([&] { self->core.remove_remote(); })) return nullptr;
        return Py_NewRef(o);
    }
    if (!run_core([&] { self->core.remove(); })) return nullptr;
    return Py_NewRef(o);
}

// Whether switching to `self` would switch at all (it is not the running tasklet).
// What a switching call returns when the caller runs again: its tempval, which the tasklet that
// switched back may have set (Stackless's tempval protocol); a bomb there explodes.
PyObject* take_tempval(py_tasklet* caller) {
    PyObject* value = std::exchange(caller->tempval, nullptr);
    if (value == nullptr) Py_RETURN_NONE;
    if (explode_if_bomb(value)) return nullptr;
    return value;
}

// The errors that make run() and switch() impossible, in Stackless's order: before the switch
// trap is asked.
int check_switch_target(py_tasklet* self, const char* what) {
    try {
        auto st =
            self->thread == this_thread ? self->core.status() : self->core.status_from_any_thread();
        if (st.blocked) {
            PyErr_Format(PyExc_RuntimeError, "tasklet.%s: you cannot %s a blocked tasklet", what,
                         what);
            return -1;
        }
        if (!st.alive) {
            PyErr_Format(PyExc_RuntimeError, "tasklet.%s: you cannot %s a dead tasklet", what,
                         what);
            return -1;
        }
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    return 0;
}

// run() on a tasklet of another thread makes it run next there, after that thread's running
// tasklet, and wakes the thread; the caller runs on (Stackless: no switch on this thread, and so
// no switch trap).
PyObject* run_remote(py_tasklet* self) {
    if (check_remote_thread(self) < 0 || check_switch_target(self, "run") < 0) return nullptr;
    py_tasklet* caller = current_object();
    if (caller == nullptr) return nullptr;
    if (!run_core([&] { self->core.run_remote(); })) return nullptr;
    return take_tempval(caller);
}

PyObject* tasklet_run(PyObject* o, PyObject*) {
    py_tasklet* self = as_tasklet(o);
    if (self->thread != this_thread) [[unlikely]]
        return run_remote(self);
    if (check_switch_target(self, "run") < 0) return nullptr;
    if (!is_running(self) && refuse_if_trapped() < 0) return nullptr;
    py_tasklet* caller = current_object();
    if (caller == nullptr) return nullptr;
    if (!run_core([&] { self->core.run(); })) return nullptr;
    return take_tempval(caller);
}

PyObject* tasklet_switch(PyObject* o, PyObject*) {
    py_tasklet* self = as_tasklet(o);
    // switch() pauses the caller and runs the target in its place, on this thread: a tasklet of
    // another thread runs only there (Stackless refuses too, in these words).
    if (self->thread != this_thread) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError, "can't switch to a different thread.");
        return nullptr;
    }
    if (check_switch_target(self, "switch") < 0) return nullptr;
    if (!is_running(self) && refuse_if_trapped() < 0) return nullptr;
    py_tasklet* caller = current_object();
    if (caller == nullptr) return nullptr;
    if (!run_core([&] { self->core.switch_to(); })) return nullptr;
    return take_tempval(caller);
}

// Raises (type, value, tb) in the tasklet: at once if it is the current one, else through the
// core, which switches to it unless `pending`.
// A tasklet of another thread gets the exception when it runs next there: it is unblocked and
// appended to its thread's run queue, pending or not, and the caller runs on (Stackless).
PyObject* throw_into(py_tasklet* self, PyObject* type, PyObject* value, PyObject* tb,
                     bool pending) {
    const bool remote = self->thread != this_thread;
    if (remote && !of_ended_thread(self) && check_remote_thread(self) < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return nullptr;
    }
    // (A tasklet whose thread ended was killed or dropped then; its thread's scheduler may be
    // going away right now, without the GIL: it must not be touched.)
    bool alive = false;
    try {
        if (!of_ended_thread(self))
            alive = remote ? self->core.status_from_any_thread().alive : self->core.alive();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return raise_from_cxx();
    }
    if (!alive) {
        bool is_exit =
            PyType_Check(type) && PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(type),
                                                   reinterpret_cast<PyTypeObject*>(TaskletExit));
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        // Ending an ended tasklet is no error; one dropped alive with its thread has no thread
        // to run the exception in (Stackless: kill() passes, throw() raises).
        if (is_exit && !dropped_alive(self)) Py_RETURN_NONE;
        PyErr_SetString(PyExc_RuntimeError, of_ended_thread(self)
                                                ? "tasklet has no thread"
                                                : "You cannot throw to a dead tasklet");
        return nullptr;
    }
    if (remote) {
        if (!run_core([&] {
                self->core.throw_remote(std::make_exception_ptr(python_error(type, value, tb)));
            }))
            return nullptr;
        Py_RETURN_NONE;
    }
    if (!pending && !is_running(self) && refuse_if_trapped() < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return nullptr;
    }
    if (!run_core([&] {
            self->core.throw_exception(std::make_exception_ptr(python_error(type, value, tb)),
                                       pending);
        }))
        return nullptr;
    Py_RETURN_NONE;
}

PyObject* tasklet_throw(PyObject* o, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"exc", "val", "tb", "pending", nullptr};
    PyObject *exc, *val = Py_None, *tb = Py_None;
    int pending = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOp:throw", const_cast<char**>(names), &exc,
                                     &val, &tb, &pending))
        return nullptr;
    PyObject* type;
    PyObject* value;
    if (PyExceptionInstance_Check(exc)) {
        if (val != Py_None) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return nullptr;
        }
        type = Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(exc)));
        value = Py_NewRef(exc);
    } else if (PyExceptionClass_Check(exc)) {
        type = Py_NewRef(exc);
        value = Py_NewRef(val);
    } else {
        PyErr_Format(PyExc_TypeError, "exceptions must be classes, or instances, not %.200s",
                     Py_TYPE(exc)->tp_name);
        return nullptr;
    }
    PyObject* traceback = tb != Py_None ? Py_NewRef(tb) : nullptr;
    if (traceback != nullptr && !PyTraceBack_Check(traceback)) {
        Py_DECREF(type);
        Py_DECREF(value);
        Py_DECREF(traceback);
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback object");
        return nullptr;
    }
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != nullptr) PyException_SetTraceback(value, traceback);
    return throw_into(as_tasklet(o), type, value, traceback, pending != 0);
}

PyObject* tasklet_raise_exception(PyObject* o, PyObject* args) {
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "raise_exception() takes an exception class");
        return nullptr;
    }
    PyObject* cls = PyTuple_GET_ITEM(args, 0);
    if (!PyExceptionClass_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "raise_exception() needs an exception class");
        return nullptr;
    }
    PyObject* rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == nullptr) return nullptr;
    PyObject* value = PyObject_Call(cls, rest, nullptr);
    Py_DECREF(rest);
    if (value == nullptr) return nullptr;
    return throw_into(as_tasklet(o), Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(value))), value,
                      nullptr, false);
}

PyObject* tasklet_kill(PyObject* o, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"pending", nullptr};
    int pending = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:kill", const_cast<char**>(names), &pending))
        return nullptr;
    py_tasklet* self = as_tasklet(o);
    if (self->is_main) {
        PyErr_SetString(PyExc_RuntimeError, "the main tasklet cannot be killed");
        return nullptr;
    }
    // A tasklet of another thread is killed there, when it runs next (see throw_into).
    if (self->thread != this_thread) [[unlikely]] {
        if (of_ended_thread(self)) Py_RETURN_NONE;  // killed when its thread ended
        if (check_remote_thread(self) < 0) return nullptr;
        if (!run_core([&] { self->core.kill_remote(); })) return nullptr;
        Py_RETURN_NONE;
    }
    bool alive = false;
    if (!run_core([&] { alive = self->core.alive(); })) return nullptr;
    if (!pending && alive && !is_running(self) && refuse_if_trapped() < 0) return nullptr;
    if (!run_core([&] { self->core.kill(pending != 0); })) return nullptr;
    Py_RETURN_NONE;
}

// set_context(context): the contextvars context the tasklet runs in from now on.
PyObject* tasklet_set_context(PyObject* o, PyObject* context) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    if (!PyContext_CheckExact(context)) {
        PyErr_SetString(PyExc_TypeError, "set_context() needs a contextvars.Context");
        return nullptr;
    }
    if (is_running(self)) {
        PyThreadState* ts = self->tstate;
        Py_XSETREF(ts->context, Py_NewRef(context));
        ts->context_ver++;
    } else if (self->python_started) {
        Py_XSETREF(self->saved.context, Py_NewRef(context));
    } else {
        Py_XSETREF(self->context, Py_NewRef(context));
    }
    return Py_NewRef(o);
}

// context_run(callable, *args, **kwargs): calls it in the tasklet's context (Context.run of
// that context; in the running tasklet's own context, just a call).
PyObject* tasklet_context_run(PyObject* o, PyObject* const* args, size_t nargsf,
                              PyObject* kwnames) {
    py_tasklet* self = as_tasklet(o);
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n < 1) {
        PyErr_SetString(PyExc_TypeError, "context_run() takes a callable");
        return nullptr;
    }
    if (check_thread(self) < 0) return nullptr;
    if (is_running(self)) return PyObject_Vectorcall(args[0], args + 1, n - 1, kwnames);
    PyObject*& slot = self->python_started ? self->saved.context : self->context;
    if (slot == nullptr) {
        slot = PyContext_New();
        if (slot == nullptr) return nullptr;
    }
    PyObject* run = PyObject_GetAttrString(slot, "run");
    if (run == nullptr) return nullptr;
    PyObject* result = PyObject_Vectorcall(run, args, n, kwnames);
    Py_DECREF(run);
    return result;
}

PyObject* tasklet_set_atomic(PyObject* o, PyObject* flag) {
    py_tasklet* self = as_tasklet(o);
    int on = PyObject_IsTrue(flag);
    if (on < 0) return nullptr;
    bool old = self->atomic;
    self->atomic = on != 0;
    return PyBool_FromLong(old);
}

// bind_thread(thread_id=None): moves a tasklet that has not run yet (just made, or just
// unpickled) to this thread, or to the thread with that id, where it will run (Stackless's
// bind_thread). Only such tasklets can move: a started one has its C stack on its thread.
PyObject* tasklet_bind_thread(PyObject* o, PyObject* args) {
    py_tasklet* self = as_tasklet(o);
    PyObject* id = Py_None;
    if (!PyArg_ParseTuple(args, "|O:bind_thread", &id)) return nullptr;
    // Stackless's checks, in its order and words: already here; runnable; started (Stackless
    // moves a started tasklet without C state; ours keep their C stacks, which cannot move).
    if (id == Py_None && self->thread == this_thread) Py_RETURN_NONE;
    if (!of_ended_thread(self)) {
        try {
            auto st = self->core.status_from_any_thread();
            if (st.scheduled && !st.blocked) {
                PyErr_SetString(PyExc_RuntimeError,
                                "bind_thread: can't (re)bind a runnable tasklet");
                return nullptr;
            }
        } catch (abi::__forced_unwind&) {
            throw;
        } catch (...) {
            return raise_from_cxx();
        }
    }
    if (self->is_main || self->python_started) {
        PyErr_SetString(PyExc_RuntimeError,
                        "bind_thread: tasklet has C state on its stack (a tasklet that has run "
                        "keeps its C stack, which cannot move to another thread)");
        return nullptr;
    }
    unsigned long ident = PyThread_get_thread_ident();
    if (id != Py_None) {
        ident = PyLong_AsUnsignedLong(id);
        if (ident == static_cast<unsigned long>(-1) && PyErr_Occurred()) return nullptr;
    }
    thread_data* target;
    if (ident == PyThread_get_thread_ident()) {
        if (thread_main() == nullptr) return nullptr;
        target = this_thread;
    } else {
        auto found = all_threads().find(ident);
        if (found == all_threads().end() || found->second->ended ||
            found->second->main_object == nullptr) {
            PyErr_Format(PyExc_ValueError, "bind_thread: no thread with id %lu runs stackless",
                         ident);
            return nullptr;
        }
        target = found->second;
    }
    auto* from = static_cast<thread_data*>(self->thread);
    if (target == from) Py_RETURN_NONE;
    // A tasklet whose thread has ended moves if it never ran (Stackless: a fresh one may be
    // rebound); the core checks that, and that its old scheduler is gone if it is not ours.
    if (from != nullptr && from->ended && from != this_thread && self->core.owner_runcount() >= 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "bind_thread: the tasklet's thread is ending; try again once it ended");
        return nullptr;
    }
    try {
        self->core.move_to_thread_of(target->main_object->core);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
    self->tstate = target->main_object->tstate;
    self->thread = target;
    ++target->objects;
    release_thread_data(from);
    Py_RETURN_NONE;
}

PyObject* tasklet_set_ignore_nesting(PyObject* o, PyObject* flag) {
    py_tasklet* self = as_tasklet(o);
    int on = PyObject_IsTrue(flag);
    if (on < 0) return nullptr;
    bool old = self->ignore_nesting;
    self->ignore_nesting = on != 0;
    return PyBool_FromLong(old);
}

}  // namespace stackless::python
