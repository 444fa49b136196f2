// stackless.channel: a Python object around a core channel of owned references. Exceptions
// travel as bombs (stackless.bomb), which the receiving side raises.
#include "binding.hpp"

namespace stackless::python {

namespace {

py_channel* as_channel(PyObject* o) {
    return reinterpret_cast<py_channel*>(o);
}

PyObject* channel_new(PyTypeObject* type, PyObject*, PyObject*) {
    if (thread_main() == nullptr) return nullptr;
    auto* c = reinterpret_cast<py_channel*>(type->tp_alloc(type, 0));
    if (c == nullptr) return nullptr;
    try {
        // Operations hold the GIL, so a channel becomes shared safely when two threads meet.
        new (&c->ch)
            stackless::channel<py_ref>(stackless::detail::channel_core::sharing::share_on_contact);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        Py_DECREF(c);
        return raise_from_cxx();
    }
    c->ch.set_payload(c);  // what a blocked tasklet reports as its channel (pickling)
    return reinterpret_cast<PyObject*>(c);
}

PyObject* refuse_switch() {
    refuse_if_trapped();
    return nullptr;
}

// Whether a send (dir > 0) or receive (dir < 0) would switch tasklets: it blocks, or it finds
// a partner that the channel's preference runs first.
bool would_switch(py_channel* self, int dir) {
    const auto& ch = self->ch;
    bool partner = dir > 0 ? ch.balance() < 0 : ch.balance() > 0;
    if (!partner) return true;
    if (!ch.schedule_all() && ch.preference() != -dir) return false;
    // A partner of another thread is woken there: the caller runs on.
    try {
        return ch.queue().thread_id() == stackless::getcurrent().thread_id();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return true;
    }
}

// The channel callback of a send: the sender's tempval holds the value sent meanwhile (where
// Stackless keeps it on its way).
__attribute__((noinline)) int notify_sending(PyObject* o, PyObject* value, bool will_block) {
    py_tasklet* current = current_object();
    if (current == nullptr) return -1;
    PyObject* saved = std::exchange(current->tempval, Py_NewRef(value));
    int r = notify_channel(o, 1, will_block);
    Py_XSETREF(current->tempval, saved);
    return r;
}

// Sends an owned reference (a value or a bomb).
PyObject* send_owned(py_channel* self, PyObject* owned) {
    PyObject* o = reinterpret_cast<PyObject*>(self);
    if (switch_trap_level() > 0 && would_switch(self, +1)) [[unlikely]] {
        Py_DECREF(owned);
        return refuse_switch();
    }
    if (channel_callback != nullptr && notify_sending(o, owned, self->ch.balance() >= 0) < 0)
        [[unlikely]] {
        Py_DECREF(owned);
        return nullptr;
    }
    if (!run_core([&] { self->ch.send(py_ref(owned)); })) return nullptr;
    Py_RETURN_NONE;
}

PyObject* channel_send(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "send() takes exactly one argument (%zd given)", nargs);
        return nullptr;
    }
    // Will it block (no receiver waiting)? Then let the collector see the caller's stack.
    if (as_channel(o)->ch.balance() < 0) return send_owned(as_channel(o), Py_NewRef(args[0]));
    py_tasklet* self = note_blocking_call(args, nargs, resume_op::none);
    PyObject* r = send_owned(as_channel(o), Py_NewRef(args[0]));
    if (self != nullptr) self->in_blocking_call = false;
    return r;
}

PyObject* receive(py_channel* self);

PyObject* channel_receive(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 0) {
        PyErr_Format(PyExc_TypeError, "receive() takes no arguments (%zd given)", nargs);
        return nullptr;
    }
    if (as_channel(o)->ch.balance() > 0) return receive(as_channel(o));  // a sender waits
    py_tasklet* self = note_blocking_call(args, nargs, resume_op::receive);
    PyObject* r = receive(as_channel(o));
    if (self != nullptr) self->in_blocking_call = false;
    return r;
}

PyObject* receive(py_channel* self) {
    PyObject* o = reinterpret_cast<PyObject*>(self);
    if (switch_trap_level() > 0 && would_switch(self, -1)) return refuse_switch();
    if (channel_callback != nullptr && notify_channel(o, 0, self->ch.balance() <= 0) < 0)
        [[unlikely]]
        return nullptr;
    PyObject* value;
    if (!run_core([&] { value = self->ch.receive().release(); })) return nullptr;
    if (explode_if_bomb(value)) return nullptr;
    return value;
}

PyObject* channel_send_exception(PyObject* o, PyObject* args) {
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "send_exception() takes at least 1 argument");
        return nullptr;
    }
    PyObject* cls = PyTuple_GET_ITEM(args, 0);
    if (!PyExceptionClass_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "send_exception() needs an exception class");
        return nullptr;
    }
    PyObject* rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == nullptr) return nullptr;
    PyObject* value = PyObject_Call(cls, rest, nullptr);
    Py_DECREF(rest);
    if (value == nullptr) return nullptr;
    PyObject* bomb = new_bomb(reinterpret_cast<PyObject*>(Py_TYPE(value)), value, nullptr);
    Py_DECREF(value);
    if (bomb == nullptr) return nullptr;
    return send_owned(as_channel(o), bomb);
}

PyObject* channel_send_throw(PyObject* o, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"exc", "val", "tb", nullptr};
    PyObject *exc, *val = Py_None, *tb = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO:send_throw", const_cast<char**>(names), &exc,
                                     &val, &tb))
        return nullptr;
    PyObject* type;
    PyObject* value;
    if (PyExceptionInstance_Check(exc)) {
        type = Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(exc)));
        value = Py_NewRef(exc);
    } else if (PyExceptionClass_Check(exc)) {
        type = Py_NewRef(exc);
        value = Py_NewRef(val);
    } else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
        return nullptr;
    }
    PyObject* traceback = tb != Py_None ? Py_NewRef(tb) : nullptr;
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != nullptr) PyException_SetTraceback(value, traceback);
    PyObject* bomb = new_bomb(type, value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    if (bomb == nullptr) return nullptr;
    return send_owned(as_channel(o), bomb);
}

PyObject* channel_iternext(PyObject* o) {
    py_channel* self = as_channel(o);
    if (self->ch.closing() && self->ch.balance() <= 0) {
        PyErr_SetNone(PyExc_StopIteration);
        return nullptr;
    }
    if (self->ch.balance() > 0) return receive(self);  // a sender waits: no blocking
    py_tasklet* t = note_blocking_iteration();
    PyObject* r = receive(self);
    if (t != nullptr) t->in_blocking_call = false;
    return r;
}

PyObject* channel_close(PyObject* o, PyObject*) {
    as_channel(o)->ch.close();
    Py_RETURN_NONE;
}

PyObject* channel_open(PyObject* o, PyObject*) {
    as_channel(o)->ch.open();
    Py_RETURN_NONE;
}

PyObject* get_balance(PyObject* o, void*) {
    return PyLong_FromLong(as_channel(o)->ch.balance());
}
PyObject* get_closing(PyObject* o, void*) {
    return PyBool_FromLong(as_channel(o)->ch.closing());
}
PyObject* get_closed(PyObject* o, void*) {
    return PyBool_FromLong(as_channel(o)->ch.closed());
}
PyObject* get_preference(PyObject* o, void*) {
    return PyLong_FromLong(as_channel(o)->ch.preference());
}
// Stackless takes any integer and keeps its sign.
int set_preference(PyObject* o, PyObject* value, void*) {
    if (value == nullptr) {
        PyErr_SetString(PyExc_AttributeError, "can't delete preference");
        return -1;
    }
    if (!PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "preference must be set to an integer");
        return -1;
    }
    int sign = _PyLong_Sign(value);
    try {
        as_channel(o)->ch.set_preference(sign);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx_int();
    }
    return 0;
}
PyObject* get_schedule_all(PyObject* o, void*) {
    return PyLong_FromLong(as_channel(o)->ch.schedule_all());
}
int set_schedule_all(PyObject* o, PyObject* value, void*) {
    if (value == nullptr) {
        PyErr_SetString(PyExc_AttributeError, "can't delete schedule_all");
        return -1;
    }
    if (!PyLong_Check(value)) {  // (a bool is an int)
        PyErr_SetString(PyExc_TypeError, "schedule_all must be set to a bool or integer");
        return -1;
    }
    as_channel(o)->ch.set_schedule_all(_PyLong_Sign(value) != 0);
    return 0;
}
PyObject* get_queue(PyObject* o, void*) {
    try {
        return new_ref_or_none(as_channel(o)->ch.queue());
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return raise_from_cxx();
    }
}

// The tasklets blocked on the channel: their references to themselves stand for the channel's,
// so a blocked tasklet is garbage exactly when its channel is.
int channel_traverse(PyObject* o, visitproc visit, void* arg) {
    py_channel* self = as_channel(o);
    int n = self->ch.balance() < 0 ? -self->ch.balance() : self->ch.balance();
    if (n == 0) return 0;
    try {
        stackless::tasklet t = self->ch.queue();
        for (int i = 0; i < n && t; ++i, t = t.next()) {
            py_tasklet* waiter = object_of(t);
            if (waiter != nullptr && waiter->self_ref)
                Py_VISIT(reinterpret_cast<PyObject*>(waiter));
        }
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        // tasklets of another thread: not ours to report
    }
    return 0;
}

void channel_dealloc(PyObject* o) {
    py_channel* self = as_channel(o);
    PyObject_GC_UnTrack(o);
    if (self->weakreflist != nullptr) PyObject_ClearWeakRefs(o);
    self->ch.set_payload(nullptr);  // tasklets may still wait on it
    self->ch.~channel();
    Py_TYPE(o)->tp_free(o);
}

PyMethodDef channel_methods[] = {
    {"send", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(channel_send)),
     METH_FASTCALL, "send(value): blocks until a receiver takes it"},
    {"receive", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(channel_receive)),
     METH_FASTCALL, "receive(): blocks until a sender provides one"},
    {"send_exception", channel_send_exception, METH_VARARGS,
     "send_exception(exc, *args): the receiver raises exc(*args)"},
    {"send_throw", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(channel_send_throw)),
     METH_VARARGS | METH_KEYWORDS, "send_throw(exc, val=None, tb=None)"},
    {"close", channel_close, METH_NOARGS, "refuse new blocking operations"},
    {"open", channel_open, METH_NOARGS, "undo close()"},
    {"__reduce__", channel_reduce, METH_NOARGS, "pickle support"},
    {"__reduce_ex__", channel_reduce, METH_O, "pickle support"},
    {"__setstate__", channel_setstate, METH_O, "unpickle support"},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef channel_getset[] = {
    {"balance", get_balance, nullptr, "senders (> 0) or receivers (< 0) waiting", nullptr},
    {"closing", get_closing, nullptr, "close() was called", nullptr},
    {"closed", get_closed, nullptr, "closing and empty", nullptr},
    {"preference", get_preference, set_preference, "-1 receiver, 1 sender, 0 neither", nullptr},
    {"schedule_all", get_schedule_all, set_schedule_all, "both sides through the queue", nullptr},
    {"queue", get_queue, nullptr, "first tasklet waiting on the channel", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace

PyTypeObject channel_type = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "stackless.channel";
    t.tp_basicsize = sizeof(py_channel);
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC;
    t.tp_doc = "channel(): synchronous communication between tasklets";
    t.tp_new = channel_new;
    t.tp_dealloc = channel_dealloc;
    t.tp_traverse = channel_traverse;
    t.tp_iter = PyObject_SelfIter;
    t.tp_iternext = channel_iternext;
    t.tp_methods = channel_methods;
    t.tp_getset = channel_getset;
    t.tp_weaklistoffset = offsetof(py_channel, weakreflist);
    return t;
}();

}  // namespace stackless::python
