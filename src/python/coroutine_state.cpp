// The state of coroutines, asynchronous generators and the awaitables around them, read and set
// for pickling (python/_stackless_generators.py). Their frames are read and set as generators'
// are (frame_capture.cpp, frame_check.cpp); this file covers the rest.
//
// Relies on CPython 3.11: the fields of _PyGenObject_HEAD (Include/cpython/genobject.h):
// cr_origin_or_finalizer (a coroutine's origin, an async generator's finalizer), ag_hooks_inited,
// ag_closed, ag_running_async; and on the private structs of Objects/genobject.c, mirrored below:
// PyAsyncGenASend {ags_gen, ags_sendval, ags_state}, PyAsyncGenAThrow {agt_gen, agt_args,
// agt_state} and PyCoroWrapper {cw_coroutine}, with the awaitable states INIT, ITER, CLOSED as an
// int enum. check_layouts() verifies them on objects made by CPython before anything uses them.
#include "coroutine_state.hpp"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

#include <string_view>
#include <utility>

namespace stackless::python {

namespace {

enum awaitable_state : int { state_init, state_iter, state_closed };

struct asend_layout {
    PyObject_HEAD PyAsyncGenObject* gen;
    PyObject* sendval;  // NULL for __anext__()
    awaitable_state state;
};

struct athrow_layout {
    PyObject_HEAD PyAsyncGenObject* gen;
    PyObject* args;  // NULL for aclose()
    awaitable_state state;
};

struct wrapper_layout {
    PyObject_HEAD PyCoroObject* coroutine;
};

PyAsyncGenObject* as_agen(PyObject* o) {
    return reinterpret_cast<PyAsyncGenObject*>(o);
}

int layouts_ok = -1;  // unknown until checked

// Makes one object of each kind from a throwaway async generator and coroutine and checks that
// the fields sit where the structs above say. 0 if they do; -1 with an exception if not.
int check_layouts() {
    if (layouts_ok >= 0) {
        if (layouts_ok) return 0;
        PyErr_SetString(PyExc_SystemError,
                        "stackless: this CPython's async generator objects are not laid out as "
                        "this module expects; they cannot be pickled");
        return -1;
    }
    layouts_ok = 0;
    PyObject* globals = PyDict_New();
    if (globals == nullptr) return -1;
    if (PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) < 0) {
        Py_DECREF(globals);
        return -1;
    }
    PyObject* r = PyRun_String(
        "async def ag():\n    yield 1\n"
        "async def co():\n    pass\n"
        "a = ag(); c = co(); w = c.__await__()\n"
        "c.close()\n",
        Py_file_input, globals, globals);
    Py_XDECREF(r);
    PyObject* ag = r != nullptr ? PyDict_GetItemString(globals, "a") : nullptr;
    PyObject* coro = r != nullptr ? PyDict_GetItemString(globals, "c") : nullptr;
    PyObject* w = r != nullptr ? PyDict_GetItemString(globals, "w") : nullptr;
    bool ok = ag != nullptr && coro != nullptr && w != nullptr && PyAsyncGen_CheckExact(ag);
    PyObject *asend_obj = nullptr, *athrow_obj = nullptr;
    if (ok) {
        // (Its hooks marked initialised: making the awaitables must call no firstiter hook.)
        as_agen(ag)->ag_hooks_inited = 1;
        asend_obj = PyObject_CallMethod(ag, "asend", "i", 7);
        athrow_obj =
            asend_obj != nullptr ? PyObject_CallMethod(ag, "athrow", "O", PyExc_KeyError) : nullptr;
        ok = athrow_obj != nullptr;
    }
    if (ok) {
        auto* asend = reinterpret_cast<asend_layout*>(asend_obj);
        auto* athrow = reinterpret_cast<athrow_layout*>(athrow_obj);
        auto* wrapper = reinterpret_cast<wrapper_layout*>(w);
        ok = Py_IS_TYPE(asend, &_PyAsyncGenASend_Type) &&
             reinterpret_cast<PyObject*>(asend->gen) == ag && asend->sendval != nullptr &&
             PyLong_CheckExact(asend->sendval) && PyLong_AsLong(asend->sendval) == 7 &&
             asend->state == state_init && Py_IS_TYPE(athrow, &_PyAsyncGenAThrow_Type) &&
             reinterpret_cast<PyObject*>(athrow->gen) == ag && athrow->args != nullptr &&
             PyTuple_Check(athrow->args) && athrow->state == state_init &&
             Py_IS_TYPE(wrapper, &_PyCoroWrapper_Type) &&
             reinterpret_cast<PyObject*>(wrapper->coroutine) == coro;
    }
    Py_XDECREF(asend_obj);
    Py_XDECREF(athrow_obj);
    Py_DECREF(globals);
    if (PyErr_Occurred()) return -1;
    layouts_ok = ok ? 1 : 0;
    return check_layouts();
}

// Calls a method of an async generator that makes an awaitable without letting it initialise the
// generator's hooks (an unpickled generator's hooks are what its pickle says).
PyObject* call_without_hooks(PyObject* ag, const char* method, PyObject* args) {
    PyAsyncGenObject* g = as_agen(ag);
    char inited = std::exchange(g->ag_hooks_inited, 1);
    PyObject* callable = PyObject_GetAttrString(ag, method);
    PyObject* r = callable != nullptr ? PyObject_Call(callable, args, nullptr) : nullptr;
    Py_XDECREF(callable);
    g->ag_hooks_inited = inited;
    return r;
}

int check_state_value(int state) {
    if (state < state_init || state > state_closed) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: corrupt pickle: an awaitable's state is out of range");
        return -1;
    }
    return 0;
}

}  // namespace

PyObject* coroutine_of_wrapper(PyObject* o) noexcept {
    if (!Py_IS_TYPE(o, &_PyCoroWrapper_Type)) return nullptr;
    if (layouts_ok < 0 && check_layouts() < 0) PyErr_Clear();
    if (layouts_ok != 1) return nullptr;
    return reinterpret_cast<PyObject*>(reinterpret_cast<wrapper_layout*>(o)->coroutine);
}

// _agen_hooks(ag) -> (hooks_inited, finalizer or None, closed, running_async)
PyObject* mod_agen_hooks(PyObject*, PyObject* ag) {
    if (!PyAsyncGen_CheckExact(ag)) {
        PyErr_SetString(PyExc_TypeError, "expected an async generator");
        return nullptr;
    }
    PyAsyncGenObject* g = as_agen(ag);
    PyObject* finalizer = g->ag_origin_or_finalizer;
    return Py_BuildValue("(OOOO)", g->ag_hooks_inited ? Py_True : Py_False,
                         finalizer != nullptr ? finalizer : Py_None,
                         g->ag_closed ? Py_True : Py_False,
                         g->ag_running_async ? Py_True : Py_False);
}

// _agen_set_hooks(ag, mode, finalizer, closed, running_async): mode "none" leaves the hooks
// uninitialised (the next __anext__ initialises them), "keep" sets `finalizer`, "now"
// initialises them with this thread's hooks at once (sys.set_asyncgen_hooks: firstiter is
// called), as __anext__ would have.
PyObject* mod_agen_set_hooks(PyObject*, PyObject* args) {
    PyObject *ag, *finalizer;
    const char* mode;
    int closed, running_async;
    if (!PyArg_ParseTuple(args, "O!sOpp:_agen_set_hooks", &PyAsyncGen_Type, &ag, &mode, &finalizer,
                          &closed, &running_async))
        return nullptr;
    PyAsyncGenObject* g = as_agen(ag);
    g->ag_closed = static_cast<char>(closed);
    g->ag_running_async = static_cast<char>(running_async);
    std::string_view m(mode);
    if (m == "none") {
        g->ag_hooks_inited = 0;
        Py_CLEAR(g->ag_origin_or_finalizer);
    } else if (m == "keep") {
        g->ag_hooks_inited = 1;
        Py_XSETREF(g->ag_origin_or_finalizer,
                   finalizer != Py_None ? Py_NewRef(finalizer) : nullptr);
    } else if (m == "now") {
        g->ag_hooks_inited = 1;
        PyThreadState* ts = PyThreadState_Get();
        Py_XSETREF(g->ag_origin_or_finalizer, Py_XNewRef(ts->async_gen_finalizer));
        if (PyObject* firstiter = ts->async_gen_firstiter) {
            Py_INCREF(firstiter);
            PyObject* r = PyObject_CallOneArg(firstiter, ag);
            Py_DECREF(firstiter);
            if (r == nullptr) return nullptr;
            Py_DECREF(r);
        }
    } else {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad async generator hooks");
        return nullptr;
    }
    Py_RETURN_NONE;
}

// _coro_set_origin(coro, origin): a coroutine's cr_origin (None: not tracked).
PyObject* mod_coro_set_origin(PyObject*, PyObject* args) {
    PyObject *coro, *origin;
    if (!PyArg_ParseTuple(args, "O!O:_coro_set_origin", &PyCoro_Type, &coro, &origin))
        return nullptr;
    if (origin != Py_None && !PyTuple_Check(origin)) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: a coroutine's origin");
        return nullptr;
    }
    auto* c = reinterpret_cast<PyCoroObject*>(coro);
    Py_XSETREF(c->cr_origin_or_finalizer, origin != Py_None ? Py_NewRef(origin) : nullptr);
    Py_RETURN_NONE;
}

// _asend_info(o) -> (async generator, value sent or None, state, whether a value is sent)
PyObject* mod_asend_info(PyObject*, PyObject* o) {
    if (check_layouts() < 0) return nullptr;
    if (!Py_IS_TYPE(o, &_PyAsyncGenASend_Type)) {
        PyErr_SetString(PyExc_TypeError, "expected an async_generator_asend");
        return nullptr;
    }
    auto* a = reinterpret_cast<asend_layout*>(o);
    return Py_BuildValue("(OOiO)", a->gen, a->sendval != nullptr ? a->sendval : Py_None,
                         static_cast<int>(a->state), a->sendval != nullptr ? Py_True : Py_False);
}

// _asend_new(ag, value, state, has_value): the awaitable of ag.asend(value), or of
// ag.__anext__() if not has_value, in that state.
PyObject* mod_asend_new(PyObject*, PyObject* args) {
    PyObject *ag, *value;
    int state, has_value;
    if (!PyArg_ParseTuple(args, "O!Oip:_asend_new", &PyAsyncGen_Type, &ag, &value, &state,
                          &has_value))
        return nullptr;
    if (check_layouts() < 0 || check_state_value(state) < 0) return nullptr;
    PyObject* call_args = has_value ? PyTuple_Pack(1, value) : PyTuple_New(0);
    if (call_args == nullptr) return nullptr;
    PyObject* o = call_without_hooks(ag, has_value ? "asend" : "__anext__", call_args);
    Py_DECREF(call_args);
    if (o == nullptr) return nullptr;
    if (!Py_IS_TYPE(o, &_PyAsyncGenASend_Type)) {
        Py_DECREF(o);
        PyErr_SetString(PyExc_TypeError, "stackless: asend() made no async_generator_asend");
        return nullptr;
    }
    reinterpret_cast<asend_layout*>(o)->state = static_cast<awaitable_state>(state);
    return o;
}

// _athrow_info(o) -> (async generator, arguments or None, state, whether there are arguments)
PyObject* mod_athrow_info(PyObject*, PyObject* o) {
    if (check_layouts() < 0) return nullptr;
    if (!Py_IS_TYPE(o, &_PyAsyncGenAThrow_Type)) {
        PyErr_SetString(PyExc_TypeError, "expected an async_generator_athrow");
        return nullptr;
    }
    auto* a = reinterpret_cast<athrow_layout*>(o);
    return Py_BuildValue("(OOiO)", a->gen, a->args != nullptr ? a->args : Py_None,
                         static_cast<int>(a->state), a->args != nullptr ? Py_True : Py_False);
}

// _athrow_new(ag, args, state, has_args): the awaitable of ag.athrow(*args), or of ag.aclose()
// if not has_args, in that state.
PyObject* mod_athrow_new(PyObject*, PyObject* args) {
    PyObject *ag, *throw_args;
    int state, has_args;
    if (!PyArg_ParseTuple(args, "O!Oip:_athrow_new", &PyAsyncGen_Type, &ag, &throw_args, &state,
                          &has_args))
        return nullptr;
    if (check_layouts() < 0 || check_state_value(state) < 0) return nullptr;
    if (has_args && !PyTuple_Check(throw_args)) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: corrupt pickle: athrow() arguments are not a tuple");
        return nullptr;
    }
    PyObject* empty = has_args ? nullptr : PyTuple_New(0);
    if (!has_args && empty == nullptr) return nullptr;
    PyObject* o =
        call_without_hooks(ag, has_args ? "athrow" : "aclose", has_args ? throw_args : empty);
    Py_XDECREF(empty);
    if (o == nullptr) return nullptr;
    if (!Py_IS_TYPE(o, &_PyAsyncGenAThrow_Type)) {
        Py_DECREF(o);
        PyErr_SetString(PyExc_TypeError, "stackless: athrow() made no async_generator_athrow");
        return nullptr;
    }
    reinterpret_cast<athrow_layout*>(o)->state = static_cast<awaitable_state>(state);
    return o;
}

// _awaitable_take(o, fresh): o, an async_generator_asend or _athrow, takes over the state of
// `fresh`, one of its kind (unpickling makes o before it has loaded o's async generator).
PyObject* mod_awaitable_take(PyObject*, PyObject* args) {
    PyObject *o, *fresh;
    if (!PyArg_ParseTuple(args, "OO:_awaitable_take", &o, &fresh)) return nullptr;
    if (check_layouts() < 0) return nullptr;
    if (Py_TYPE(o) != Py_TYPE(fresh) ||
        (!Py_IS_TYPE(o, &_PyAsyncGenASend_Type) && !Py_IS_TYPE(o, &_PyAsyncGenAThrow_Type))) {
        PyErr_SetString(PyExc_TypeError, "expected two awaitables of one kind");
        return nullptr;
    }
    // The two layouts agree: (gen, value or args, state).
    auto* to = reinterpret_cast<asend_layout*>(o);
    auto* from = reinterpret_cast<asend_layout*>(fresh);
    PyAsyncGenObject* old_gen = std::exchange(to->gen, from->gen);
    PyObject* old_value = std::exchange(to->sendval, from->sendval);
    Py_INCREF(to->gen);
    Py_XINCREF(to->sendval);
    to->state = from->state;
    Py_XDECREF(old_gen);
    Py_XDECREF(old_value);
    Py_RETURN_NONE;
}

// _coro_wrapper_coroutine(o) -> the coroutine whose __await__() made the wrapper o.
PyObject* mod_coro_wrapper_coroutine(PyObject*, PyObject* o) {
    if (check_layouts() < 0) return nullptr;
    PyObject* coro = coroutine_of_wrapper(o);
    if (coro == nullptr) {
        PyErr_SetString(PyExc_TypeError, "expected a coroutine_wrapper");
        return nullptr;
    }
    return Py_NewRef(coro);
}

}  // namespace stackless::python
