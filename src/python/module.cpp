// The stackless module: scheduler functions, TaskletExit, bomb, and the module's set-up.
#include "binding.hpp"
#include "chunk_cache.hpp"
#include "coroutine_state.hpp"
#include "module_layout.hpp"

#include <structmember.h>

#include <cstdint>

namespace stackless::python {

PyObject* TaskletExit = nullptr;
PyObject* schedule_callback = nullptr;
PyObject* channel_callback = nullptr;
PyObject* error_handler = nullptr;
bool softswitch_enabled = true;

int notify_channel(PyObject* channel, int sending, int will_block) noexcept {
    PyObject* cb = channel_callback;
    py_tasklet* current = current_object();
    if (cb == nullptr || current == nullptr) return current == nullptr ? -1 : 0;
    Py_INCREF(cb);
    PyObject* r = PyObject_CallFunction(cb, "OOii", channel, current, sending, will_block);
    Py_DECREF(cb);
    if (r == nullptr) return -1;
    Py_DECREF(r);
    return 0;
}

namespace {

// ---------------------------------------------------------------------------------------------
// bomb: an exception in transit over a channel

struct py_bomb {
    PyObject_HEAD PyObject* type;
    PyObject* value;
    PyObject* traceback;
};

void bomb_dealloc(PyObject* o) {
    auto* b = reinterpret_cast<py_bomb*>(o);
    PyObject_GC_UnTrack(o);
    Py_CLEAR(b->type);
    Py_CLEAR(b->value);
    Py_CLEAR(b->traceback);
    Py_TYPE(o)->tp_free(o);
}

int bomb_traverse(PyObject* o, visitproc visit, void* arg) {
    auto* b = reinterpret_cast<py_bomb*>(o);
    Py_VISIT(b->type);
    Py_VISIT(b->value);
    Py_VISIT(b->traceback);
    return 0;
}

int bomb_clear(PyObject* o) {
    auto* b = reinterpret_cast<py_bomb*>(o);
    Py_CLEAR(b->type);
    Py_CLEAR(b->value);
    Py_CLEAR(b->traceback);
    return 0;
}

PyObject* bomb_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
    // Like Stackless, a single tuple argument is taken as (type, value, traceback).
    if (kwds == nullptr && PyTuple_GET_SIZE(args) == 1 && PyTuple_Check(PyTuple_GET_ITEM(args, 0)))
        args = PyTuple_GET_ITEM(args, 0);
    static const char* names[] = {"type", "value", "traceback", nullptr};
    PyObject *t = nullptr, *v = nullptr, *tb = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO:bomb", const_cast<char**>(names), &t, &v,
                                     &tb))
        return nullptr;
    auto* b = reinterpret_cast<py_bomb*>(type->tp_alloc(type, 0));
    if (b == nullptr) return nullptr;
    b->type = Py_XNewRef(t);
    b->value = Py_XNewRef(v);
    b->traceback = Py_XNewRef(tb);
    return reinterpret_cast<PyObject*>(b);
}

// Pickles as the bomb it is: its exception (and traceback: _stackless_pickle pickles those).
PyObject* bomb_reduce(PyObject* o, PyObject*) {
    auto* b = reinterpret_cast<py_bomb*>(o);
    return Py_BuildValue("(O(OOO))", Py_TYPE(o), b->type ? b->type : Py_None,
                         b->value ? b->value : Py_None, b->traceback ? b->traceback : Py_None);
}

PyMethodDef bomb_methods[] = {
    {"__reduce__", bomb_reduce, METH_NOARGS, "pickle support"},
    {nullptr, nullptr, 0, nullptr},
};

PyMemberDef bomb_members[] = {
    {"type", T_OBJECT, offsetof(py_bomb, type), READONLY, "the exception's class"},
    {"value", T_OBJECT, offsetof(py_bomb, value), READONLY, "the exception"},
    {"traceback", T_OBJECT, offsetof(py_bomb, traceback), READONLY, "its traceback"},
    {nullptr, 0, 0, 0, nullptr},
};

// ---------------------------------------------------------------------------------------------
// atomic: `with stackless.atomic():` marks the current tasklet atomic (never preempted)

struct py_atomic {
    PyObject_HEAD int saved;  // the flag before __enter__
};

PyObject* atomic_enter(PyObject* o, PyObject*) {
    py_tasklet* t = current_object();
    if (t == nullptr) return nullptr;
    reinterpret_cast<py_atomic*>(o)->saved = t->atomic;
    t->atomic = true;
    return Py_NewRef(o);
}

PyObject* atomic_exit(PyObject* o, PyObject*) {
    py_tasklet* t = current_object();
    if (t == nullptr) return nullptr;
    t->atomic = reinterpret_cast<py_atomic*>(o)->saved != 0;
    Py_RETURN_FALSE;
}

PyMethodDef atomic_methods[] = {
    {"__enter__", atomic_enter, METH_NOARGS, nullptr},
    {"__exit__", atomic_exit, METH_VARARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyTypeObject atomic_type = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "stackless.atomic";
    t.tp_basicsize = sizeof(py_atomic);
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
    t.tp_doc = "with stackless.atomic(): the current tasklet is atomic inside the block";
    t.tp_new = PyType_GenericNew;
    t.tp_methods = atomic_methods;
    return t;
}();

// ---------------------------------------------------------------------------------------------
// Scheduler functions

PyObject* mod_getcurrent(PyObject*, PyObject*) {
    py_tasklet* t = current_object();
    if (t == nullptr) return nullptr;
    return Py_NewRef(reinterpret_cast<PyObject*>(t));
}

PyObject* mod_getmain(PyObject*, PyObject*) {
    py_tasklet* t = thread_main();
    if (t == nullptr) return nullptr;
    return Py_NewRef(reinterpret_cast<PyObject*>(t));
}

PyObject* mod_getruncount(PyObject*, PyObject*) {
    if (thread_main() == nullptr) return nullptr;
    return PyLong_FromLong(stackless::getruncount());
}

// schedule(retval=current) and schedule_remove(retval=current) return `retval`, or what another
// tasklet put in the current tasklet's tempval meanwhile (Stackless's tempval protocol).
PyObject* schedule_impl(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, bool remove) {
    PyObject* given = nargs == 1 ? args[0] : nullptr;
    Py_ssize_t nkw = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 || nkw == 1) [[unlikely]] {
        // (CPython's own wording for these errors)
        const char* name = remove ? "schedule_remove" : "schedule";
        if (nargs > 1) {
            PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument (%zd given)", name,
                         nargs + nkw);
            return nullptr;
        }
        for (Py_ssize_t i = 0; i < nkw; ++i)
            if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "retval")) {
                PyErr_Format(PyExc_TypeError, "'%U' is an invalid keyword argument for %s()",
                             PyTuple_GET_ITEM(kwnames, i), name);
                return nullptr;
            }
        if (nargs + nkw > 1) {
            PyErr_Format(PyExc_TypeError,
                         "argument for %s() given by name ('retval') and "
                         "position (1)",
                         name);
            return nullptr;
        }
        given = args[0];
    }
    py_tasklet* self = current_object();
    if (self == nullptr) return nullptr;
    // Where the frame's value stack ends: a tasklet paused by schedule_remove() may become
    // garbage (the collector then sees its stack), and either may go on without its C stack
    // (discard_stack), schedule() once this thread's stacks ran short (schedule_hints).
    if (remove || this_thread->schedule_hints) {
        note_blocking_call(args, nargs + nkw, resume_op::tempval);
    } else {
        self->in_blocking_call = true;  // (an older hint of this call site is as good)
        self->blocked_op = resume_op::tempval;
    }
    if (switch_trap_level() > 0) [[unlikely]] {
        bool alone = stackless::getruncount() <= 1;
        if (!(alone && (!remove || self->is_main)) && refuse_if_trapped() < 0) return nullptr;
    }
    PyObject* retval = given != nullptr ? given : reinterpret_cast<PyObject*>(self);
    Py_XSETREF(self->tempval, Py_NewRef(retval));
    bool ok = run_core([&] {
        if (remove)
            stackless::schedule_remove();
        else
            stackless::schedule();
    });
    self->in_blocking_call = false;
    if (!ok) return nullptr;
    PyObject* result = self->tempval;
    self->tempval = nullptr;
    if (result == nullptr) Py_RETURN_NONE;
    if (explode_if_bomb(result)) return nullptr;
    return result;
}

PyObject* mod_schedule(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return schedule_impl(args, PyVectorcall_NARGS(nargs), kwnames, false);
}

PyObject* mod_schedule_remove(PyObject*, PyObject* const* args, Py_ssize_t nargs,
                              PyObject* kwnames) {
    return schedule_impl(args, PyVectorcall_NARGS(nargs), kwnames, true);
}

PyObject* mod_run(PyObject*, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"timeout",        "threadblock",  "soft",
                                  "ignore_nesting", "totaltimeout", nullptr};
    long timeout = 0;
    int threadblock = 0, soft = 0, ignore_nesting = 0, totaltimeout = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|lpppp:run", const_cast<char**>(names), &timeout,
                                     &threadblock, &soft, &ignore_nesting, &totaltimeout))
        return nullptr;
    if (thread_main() == nullptr) return nullptr;
    if (stackless::getruncount() > 1 && refuse_if_trapped() < 0) return nullptr;
    this_thread->called_run = true;  // (thread_main() made it)
    if (timeout > 0)
        return run_with_timeout(timeout, threadblock != 0, soft != 0, totaltimeout != 0);
    if (!run_scheduler(threadblock != 0)) return nullptr;
    Py_RETURN_NONE;
}

}  // namespace

// Rewrites this thread's watchdog list (if anyone asked for it) from the core's run() callers,
// plus the current tasklet if it is about to enter run().
void refresh_watchdog_list(bool entering) noexcept {
    PyObject* list = this_thread != nullptr ? this_thread->watchdog_list : nullptr;
    if (list == nullptr) return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);  // (an error of run() stays as it was)
    PyObject* fresh = PyList_New(0);
    if (fresh == nullptr) {
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return;
    }
    py_tasklet* timed = timed_run_caller();
    PyList_Append(fresh, timed != nullptr ? reinterpret_cast<PyObject*>(timed) : Py_None);
    for (const stackless::tasklet& t : stackless::run_callers())
        PyList_Append(fresh, reinterpret_cast<PyObject*>(object_of(t)));
    if (entering) PyList_Append(fresh, reinterpret_cast<PyObject*>(this_thread->current));
    if (PyList_SetSlice(list, 0, PyList_GET_SIZE(list), fresh) < 0) PyErr_Clear();
    Py_DECREF(fresh);
    PyErr_Restore(type, value, tb);
}

bool run_scheduler(bool threadblock) {
    refresh_watchdog_list(true);
    bool ok = run_core([&] { stackless::run(threadblock); });
    refresh_watchdog_list(false);
    return ok;
}

namespace {

PyObject* mod_enable_softswitch(PyObject*, PyObject* flag) {
    PyObject* old = PyBool_FromLong(softswitch_enabled);
    if (flag == Py_None) return old;
    int on = PyObject_IsTrue(flag);
    if (on < 0) {
        Py_DECREF(old);
        return nullptr;
    }
    softswitch_enabled = on != 0;
    return old;
}

// get_thread_info(thread_id=-1, flags=0) -> (main, current, runcount) of a Python thread: -1 (or
// None) is the calling thread; a thread that never used stackless has (None, None, 0). Flags, as
// Stackless's undocumented argument: 1 << 30 appends (serial, serial_last_jump, initial_stub):
// how many C stacks the thread's tasklets have begun, the serial of the running tasklet's
// (0: the thread's own stack), and None (Stackless's C-stack object, which does not exist here);
// 1 << 31 appends the watchdog list (see thread_data), or None for another thread that has none.
// Other bits are reserved, as in Stackless, and ignored.
PyObject* mod_get_thread_info(PyObject*, PyObject* const* args, Py_ssize_t nargs,
                              PyObject* kwnames) {
    static const char* const names[] = {"thread_id", "flags", nullptr};
    static _PyArg_Parser parser = {"|Ok:get_thread_info", names, nullptr};
    PyObject* id_obj = Py_None;
    unsigned long flags = 0;
    if (!_PyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &id_obj, &flags))
        return nullptr;
    unsigned long id = PyThread_get_thread_ident();
    if (id_obj != Py_None) {
        int overflow = 0;
        long v = PyLong_AsLongAndOverflow(id_obj, &overflow);
        if (v == -1 && PyErr_Occurred()) return nullptr;
        if (overflow != 0 || v != -1) {
            id = PyLong_AsUnsignedLong(id_obj);
            if (id == static_cast<unsigned long>(-1) && PyErr_Occurred()) return nullptr;
        }
    }
    if (thread_main() == nullptr) return nullptr;
    py_tasklet* main;
    py_tasklet* current;
    int runcount;
    PyObject* info = nullptr;
    if (thread_info(id, &main, &current, &runcount)) {
        info = Py_BuildValue("(OOi)", main, current, runcount);
    } else {
        for (PyThreadState* ts = PyInterpreterState_ThreadHead(PyThreadState_Get()->interp);
             ts != nullptr && info == nullptr; ts = PyThreadState_Next(ts))
            if (ts->thread_id == id) info = Py_BuildValue("(OOi)", Py_None, Py_None, 0);
        if (info == nullptr) {
            PyErr_SetString(PyExc_RuntimeError, "Thread id not found");
            return nullptr;
        }
        current = nullptr;
    }
    if (info == nullptr || (flags & ((1ul << 30) | (1ul << 31))) == 0) return info;
    const thread_data* d = thread_data_of(id);
    PyObject* extra = PyList_New(0);
    if (extra == nullptr) {
        Py_DECREF(info);
        return nullptr;
    }
    auto append = [&](PyObject* item) {  // steals `item`
        if (item == nullptr || PyList_Append(extra, item) < 0) {
            Py_XDECREF(item);
            return false;
        }
        Py_DECREF(item);
        return true;
    };
    bool ok = true;
    if (flags & (1ul << 30)) {
        ok = append(PyLong_FromUnsignedLongLong(d != nullptr ? d->cstack_serial : 0)) &&
             append(PyLong_FromUnsignedLong(
                 current != nullptr && !current->is_main ? current->cstack_serial : 0)) &&
             append(Py_NewRef(Py_None));
    }
    if (ok && (flags & (1ul << 31))) {
        // The watchdog list: this thread's, made now if needed and kept up to date by run()
        // from then on; another thread's if it has one.
        PyObject* list = Py_None;
        if (d != nullptr && d == this_thread && d->called_run) {
            if (this_thread->watchdog_list == nullptr) {
                this_thread->watchdog_list = PyList_New(0);
                if (this_thread->watchdog_list != nullptr) refresh_watchdog_list(false);
            }
            list = this_thread->watchdog_list;
        } else if (d != nullptr && d->watchdog_list != nullptr) {
            list = d->watchdog_list;
        }
        ok = list != nullptr && append(Py_NewRef(list));
    }
    PyObject* tail = ok ? PyList_AsTuple(extra) : nullptr;
    Py_DECREF(extra);
    PyObject* result = tail != nullptr ? PySequence_Concat(info, tail) : nullptr;
    Py_XDECREF(tail);
    Py_DECREF(info);
    return result;
}

// set_error_handler(handler) -> the previous one: handler(type, value, traceback) is called in a
// tasklet that ends with an exception, instead of raising that in the main tasklet; if the
// handler raises, that goes to the main tasklet. None: the default.
PyObject* mod_set_error_handler(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "set_error_handler() takes at most 1 argument (%zd given)",
                     nargs);
        return nullptr;
    }
    PyObject* handler = nargs == 1 ? args[0] : Py_None;
    PyObject* old = error_handler != nullptr ? error_handler : Py_NewRef(Py_None);
    error_handler = handler == Py_None ? nullptr : Py_NewRef(handler);
    return old;
}

// set_schedule_callback(cb) / set_channel_callback(cb): install (None removes); return the old.
PyObject* set_callback(PyObject*& slot, PyObject* cb) {
    if (cb != Py_None && !PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "the callback must be callable or None");
        return nullptr;
    }
    PyObject* old = slot;
    slot = cb == Py_None ? nullptr : Py_NewRef(cb);
    return old != nullptr ? old : Py_NewRef(Py_None);
}
PyObject* mod_set_schedule_callback(PyObject*, PyObject* cb) {
    return set_callback(schedule_callback, cb);
}
PyObject* mod_get_schedule_callback(PyObject*, PyObject*) {
    return Py_NewRef(schedule_callback != nullptr ? schedule_callback : Py_None);
}
PyObject* mod_set_channel_callback(PyObject*, PyObject* cb) {
    return set_callback(channel_callback, cb);
}
PyObject* mod_get_channel_callback(PyObject*, PyObject*) {
    return Py_NewRef(channel_callback != nullptr ? channel_callback : Py_None);
}

PyObject* mod_switch_trap(PyObject*, PyObject* delta) {
    long d = PyLong_AsLong(delta);
    if (d == -1 && PyErr_Occurred()) return nullptr;
    int& level = switch_trap_level_slow();
    int old = level;
    level += static_cast<int>(d);
    return PyLong_FromLong(old);
}

// _configure_stacks(stack_slots, runnable_slots): the stack slots of this thread's scheduler,
// before it exists (tests and tuning; docs/scaling.md says what they do).
PyObject* mod_configure_stacks(PyObject*, PyObject* args) {
    Py_ssize_t slots, runnable;
    if (!PyArg_ParseTuple(args, "nn:_configure_stacks", &slots, &runnable)) return nullptr;
    if (slots < 0 || runnable < 0) {
        PyErr_SetString(PyExc_ValueError, "stackless._configure_stacks: negative slot count");
        return nullptr;
    }
    if (configure_this_thread_stacks(static_cast<std::size_t>(slots),
                                     static_cast<std::size_t>(runnable)) < 0)
        return nullptr;
    Py_RETURN_NONE;
}

// The core's counters for this thread (tests and benchmarks): a dict.
PyObject* mod_stats(PyObject*, PyObject*) {
    if (thread_main() == nullptr) return nullptr;
    stackless::scheduler_stats s = stackless::stats();
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:n,s:n,s:n,s:K}", "switches",
                         static_cast<unsigned long long>(s.switches), "stacks_saved",
                         static_cast<unsigned long long>(s.stacks_saved), "stacks_restored",
                         static_cast<unsigned long long>(s.stacks_restored), "stacks_discarded",
                         static_cast<unsigned long long>(s.stacks_discarded), "saved_stack_bytes",
                         static_cast<Py_ssize_t>(s.saved_stack_bytes), "slots_mapped",
                         static_cast<Py_ssize_t>(s.slots_mapped), "live_tasklets",
                         static_cast<Py_ssize_t>(s.live_tasklets), "frame_chunks_reused",
                         chunk_cache_hits());
}

// getcurrentid(): a number for the running tasklet, the thread's id for a main tasklet (so that it
// is the same before and after the thread first uses stackless), as Stackless computes it.
PyObject* mod_getcurrentid(PyObject*, PyObject*) {
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    if (t == nullptr || t->is_main) return PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    auto address = reinterpret_cast<std::uintptr_t>(t);
    return PyLong_FromUnsignedLong(static_cast<unsigned long>(address ^ (address >> 32)));
}

PyObject* mod_getthreads(PyObject*, PyObject*) {
    if (thread_main() == nullptr) return nullptr;
    return thread_idents();
}

// getdebug(): whether this is a debug build (Stackless: compiled with _DEBUG).
PyObject* mod_getdebug(PyObject*, PyObject*) {
#ifdef NDEBUG
    Py_RETURN_FALSE;
#else
    Py_RETURN_TRUE;
#endif
}

// getuncollectables(): the tasklets that could not be killed and freed (they caught TaskletExit
// when their last reference went, or were dropped on another thread) and so live in gc.garbage.
PyObject* mod_getuncollectables(PyObject*, PyObject*) {
    PyObject* result = PyList_New(0);
    PyObject* gc = result != nullptr ? PyImport_ImportModule("gc") : nullptr;
    PyObject* garbage = gc != nullptr ? PyObject_GetAttrString(gc, "garbage") : nullptr;
    Py_XDECREF(gc);
    if (garbage == nullptr || !PyList_Check(garbage)) {
        Py_XDECREF(garbage);
        Py_XDECREF(result);
        return nullptr;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(garbage); ++i) {
        PyObject* o = PyList_GET_ITEM(garbage, i);
        if (PyObject_TypeCheck(o, &tasklet_type) && PyList_Append(result, o) < 0) {
            Py_DECREF(garbage);
            Py_DECREF(result);
            return nullptr;
        }
    }
    Py_DECREF(garbage);
    return result;
}

PyObject* mod_atexit(PyObject*, PyObject*) {
    shutdown_main_thread();
    Py_RETURN_NONE;
}

// The module's attributes current, main and runcount are computed on access. A module-level
// __getattr__ would do, but it makes every lookup of `stackless.schedule` and the like take the
// slow path. Instead the module is of a ModuleType subclass with these properties, and its lookup
// tries the module's dict first (one dict lookup for the functions and types).
PyObject* module_getattro(PyObject* m, PyObject* name) {
    if (PyObject* dict = module_dict(m)) {
        if (PyObject* v = PyDict_GetItemWithError(dict, name)) return Py_NewRef(v);
        if (PyErr_Occurred()) return nullptr;
    }
    return PyModule_Type.tp_getattro(m, name);
}

PyObject* get_current(PyObject*, void*) {
    return mod_getcurrent(nullptr, nullptr);
}
PyObject* get_main(PyObject*, void*) {
    return mod_getmain(nullptr, nullptr);
}
PyObject* get_runcount(PyObject*, void*) {
    return mod_getruncount(nullptr, nullptr);
}
PyObject* get_threads(PyObject*, void*) {
    return mod_getthreads(nullptr, nullptr);
}
// pickle_with_tracing_state: whether pickled tasklets keep their trace and profile functions
// (the PICKLEFLAGS_PRESERVE_TRACING_STATE bit of pickle_flags(); setting it sets the default for
// new threads too, as in Stackless).
PyObject* get_pickle_with_tracing_state(PyObject* m, void*) {
    PyObject* flags = PyObject_CallMethod(m, "pickle_flags", nullptr);
    if (flags == nullptr) return nullptr;
    long f = PyLong_AsLong(flags);
    Py_DECREF(flags);
    if (f == -1 && PyErr_Occurred()) return nullptr;
    return PyBool_FromLong(f & 1);
}
int set_pickle_with_tracing_state(PyObject* m, PyObject* value, void*) {
    int on = value != nullptr ? PyObject_IsTrue(value) : 0;
    if (on < 0) return -1;
    for (const char* name : {"pickle_flags", "pickle_flags_default"}) {
        PyObject* r = PyObject_CallMethod(m, name, "ii", on, 1);
        if (r == nullptr) return -1;
        Py_DECREF(r);
    }
    return 0;
}

PyObject* get_debug(PyObject*, void*) {
    return mod_getdebug(nullptr, nullptr);
}
PyObject* get_uncollectables(PyObject*, void*) {
    return mod_getuncollectables(nullptr, nullptr);
}

PyGetSetDef module_getset[] = {
    {"current", get_current, nullptr, "the running tasklet", nullptr},
    {"main", get_main, nullptr, "the thread's main tasklet", nullptr},
    {"runcount", get_runcount, nullptr, "runnable tasklets, the current one included", nullptr},
    {"threads", get_threads, nullptr, "idents of the threads using stackless", nullptr},
    {"debug", get_debug, nullptr, "whether this is a debug build", nullptr},
    {"pickle_with_tracing_state", get_pickle_with_tracing_state, set_pickle_with_tracing_state,
     "whether pickled tasklets keep their trace and profile functions", nullptr},
    {"uncollectables", get_uncollectables, nullptr, "tasklets that could not be killed and freed",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyTypeObject module_type = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "stackless.module";
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
    t.tp_doc = "the stackless module";
    t.tp_getattro = module_getattro;
    t.tp_getset = module_getset;
    return t;
}();

PyMethodDef module_methods[] = {
    {"getcurrent", mod_getcurrent, METH_NOARGS, "the running tasklet"},
    {"getmain", mod_getmain, METH_NOARGS, "the thread's main tasklet"},
    {"getruncount", mod_getruncount, METH_NOARGS, "runnable tasklets, the current one included"},
    {"getcurrentid", mod_getcurrentid, METH_NOARGS, "a number for the running tasklet"},
    {"getthreads", mod_getthreads, METH_NOARGS, "idents of the threads using stackless"},
    {"getdebug", mod_getdebug, METH_NOARGS, "whether this is a debug build"},
    {"getuncollectables", mod_getuncollectables, METH_NOARGS,
     "tasklets that could not be killed and freed"},
    {"schedule", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(mod_schedule)),
     METH_FASTCALL | METH_KEYWORDS, "schedule(retval=current): let the next tasklet run"},
    {"schedule_remove",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(mod_schedule_remove)),
     METH_FASTCALL | METH_KEYWORDS,
     "schedule_remove(retval=current): leave the run queue and let others run"},
    {"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(mod_run)),
     METH_VARARGS | METH_KEYWORDS, "run(): run tasklets until none other is runnable"},
    {"enable_softswitch", mod_enable_softswitch, METH_O,
     "enable_softswitch(flag) -> old flag; None only asks"},
    {"get_thread_info",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(mod_get_thread_info)),
     METH_FASTCALL | METH_KEYWORDS,
     "get_thread_info(thread_id=-1) -> (main, current, runcount) of that thread"},
    {"set_error_handler",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(mod_set_error_handler)),
     METH_FASTCALL, "set_error_handler(handler) -> the previous handler"},
    {"set_schedule_callback", mod_set_schedule_callback, METH_O,
     "set_schedule_callback(cb(prev, next)) -> previous callback"},
    {"get_schedule_callback", mod_get_schedule_callback, METH_NOARGS, "the schedule callback"},
    {"set_channel_callback", mod_set_channel_callback, METH_O,
     "set_channel_callback(cb(channel, tasklet, sending, willblock)) -> previous callback"},
    {"get_channel_callback", mod_get_channel_callback, METH_NOARGS, "the channel callback"},
    {"switch_trap", mod_switch_trap, METH_O,
     "switch_trap(delta) -> old level: while above 0, switching raises RuntimeError"},
    {"_tasklet_info", mod_tasklet_info, METH_O, "pickling: a tasklet's state"},
    {"_tasklet_plan", mod_tasklet_plan, METH_O, "pickling: an unpickled tasklet's frames"},
    {"_tasklet_frames", mod_tasklet_frames, METH_VARARGS, "pickling: a tasklet's frames"},
    {"_tasklet_restore", mod_tasklet_restore, METH_VARARGS, "unpickling: frames to resume"},
    {"_tasklet_locals", mod_tasklet_locals, METH_VARARGS,
     "pickling: a tasklet's frames that cannot resume, with their locals"},
    {"_tasklet_restore_invalid", mod_tasklet_restore_invalid, METH_VARARGS,
     "unpickling: frames that cannot resume"},
    {"_channel_info", mod_channel_info, METH_O, "pickling: a channel's state"},
    {"_generator_info", mod_generator_info, METH_VARARGS, "pickling: a generator's state"},
    {"_generator_set_frame", mod_generator_set_frame, METH_VARARGS,
     "unpickling: a generator's frame"},
    {"_code_nlocalsplus", mod_code_nlocalsplus, METH_O, "unpickling: a code's frame size"},
    {"_new_frame", mod_new_frame, METH_VARARGS, "unpickling: a frame object for a traceback"},
    {"_set_frame_back", mod_set_frame_back, METH_VARARGS, "unpickling: a traceback frame's caller"},
    {"_channel_restore", mod_channel_restore, METH_VARARGS, "unpickling: a channel's state"},
    {"_agen_hooks", mod_agen_hooks, METH_O, "pickling: an async generator's hooks"},
    {"_agen_set_hooks", mod_agen_set_hooks, METH_VARARGS, "unpickling: an async generator's hooks"},
    {"_coro_set_origin", mod_coro_set_origin, METH_VARARGS, "unpickling: a coroutine's origin"},
    {"_asend_info", mod_asend_info, METH_O, "pickling: an async_generator_asend's state"},
    {"_asend_new", mod_asend_new, METH_VARARGS, "unpickling: an async_generator_asend"},
    {"_athrow_info", mod_athrow_info, METH_O, "pickling: an async_generator_athrow's state"},
    {"_athrow_new", mod_athrow_new, METH_VARARGS, "unpickling: an async_generator_athrow"},
    {"_awaitable_take", mod_awaitable_take, METH_VARARGS,
     "unpickling: an awaitable takes the state of another"},
    {"_coro_wrapper_coroutine", mod_coro_wrapper_coroutine, METH_O,
     "pickling: the coroutine of a coroutine_wrapper"},
    {"_stats", mod_stats, METH_NOARGS, "the core scheduler's counters for this thread"},
    {"_configure_stacks", mod_configure_stacks, METH_VARARGS,
     "_configure_stacks(stack_slots, runnable_slots): this thread's stack slots, before it "
     "uses tasklets"},
    {"_atexit", mod_atexit, METH_NOARGS, "kills the main thread's tasklets (interpreter exit)"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "stackless",
    "Stackless Python's tasklets, channels and scheduler on stock CPython 3.11.",
    -1,
    module_methods,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace

PyTypeObject bomb_type = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "stackless.bomb";
    t.tp_basicsize = sizeof(py_bomb);
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
    t.tp_doc = "bomb(type, value, traceback): an exception travelling over a channel";
    t.tp_new = bomb_new;
    t.tp_dealloc = bomb_dealloc;
    t.tp_traverse = bomb_traverse;
    t.tp_clear = bomb_clear;
    t.tp_members = bomb_members;
    t.tp_methods = bomb_methods;
    return t;
}();

PyObject* new_bomb(PyObject* type, PyObject* value, PyObject* tb) noexcept {
    auto* b = reinterpret_cast<py_bomb*>(bomb_type.tp_alloc(&bomb_type, 0));
    if (b == nullptr) return nullptr;
    b->type = Py_XNewRef(type);
    b->value = Py_XNewRef(value);
    b->traceback = Py_XNewRef(tb);
    return reinterpret_cast<PyObject*>(b);
}

bool explode_if_bomb(PyObject* obj) noexcept {
    if (!Py_IS_TYPE(obj, &bomb_type)) return false;
    auto* b = reinterpret_cast<py_bomb*>(obj);
    PyObject* type = Py_XNewRef(b->type);
    PyObject* value = Py_XNewRef(b->value);
    PyObject* tb = Py_XNewRef(b->traceback);
    Py_DECREF(obj);
    if (type == nullptr) {
        Py_XDECREF(value);
        Py_XDECREF(tb);
        PyErr_SetString(PyExc_TypeError, "received an empty bomb");
        return true;
    }
    PyErr_Restore(type, value, tb);
    return true;
}

}  // namespace stackless::python

using namespace stackless::python;

PyMODINIT_FUNC PyInit_stackless() {
    module_type.tp_base = &PyModule_Type;
    module_type.tp_basicsize = PyModule_Type.tp_basicsize;
    module_type.tp_traverse = PyModule_Type.tp_traverse;
    if (PyType_Ready(&tasklet_type) < 0 || PyType_Ready(&channel_type) < 0 ||
        PyType_Ready(&bomb_type) < 0 || PyType_Ready(&module_type) < 0 ||
        PyType_Ready(&atomic_type) < 0 || find_trace_trampolines() < 0)
        return nullptr;
    PyObject* m = PyModule_Create(&module_def);
    if (m == nullptr) return nullptr;
    Py_SET_TYPE(m, &module_type);
    install_chunk_cache();
    // Stackless makes TaskletExit a builtin (`except TaskletExit:` works without an import).
    TaskletExit = PyErr_NewExceptionWithDoc("builtins.TaskletExit",
                                            "Raised in a tasklet to end it; ends it silently.",
                                            PyExc_SystemExit, nullptr);
    if (TaskletExit == nullptr || PyModule_AddObjectRef(m, "TaskletExit", TaskletExit) < 0 ||
        PyDict_SetItemString(PyEval_GetBuiltins(), "TaskletExit", TaskletExit) < 0 ||
        PyModule_AddObjectRef(m, "stackless", m) < 0 ||  // Stackless's (deprecated) self-reference
        PyModule_AddObjectRef(m, "tasklet", reinterpret_cast<PyObject*>(&tasklet_type)) < 0 ||
        PyModule_AddObjectRef(m, "channel", reinterpret_cast<PyObject*>(&channel_type)) < 0 ||
        PyModule_AddObjectRef(m, "bomb", reinterpret_cast<PyObject*>(&bomb_type)) < 0 ||
        PyModule_AddObjectRef(m, "atomic", reinterpret_cast<PyObject*>(&atomic_type)) < 0) {
        Py_DECREF(m);
        return nullptr;
    }
    // What `from stackless import *` binds: Stackless's list (TaskletExit is a builtin).
    PyObject* all = Py_BuildValue(
        "[sssssssssssssssssssssss]", "atomic", "channel", "enable_softswitch",
        "get_channel_callback", "get_schedule_callback", "get_thread_info", "getcurrent",
        "getcurrentid", "getdebug", "getmain", "getruncount", "getthreads", "getuncollectables",
        "pickle_with_tracing_state", "run", "schedule", "schedule_remove", "set_channel_callback",
        "set_error_handler", "set_schedule_callback", "switch_trap", "tasklet", "stackless");
    if (all == nullptr || PyModule_AddObject(m, "__all__", all) < 0) {
        Py_XDECREF(all);
        Py_DECREF(m);
        return nullptr;
    }
    // Kill the main thread's tasklets at interpreter exit, while Python still runs, as Stackless
    // does; the C++ scheduler would otherwise try at thread exit, after the interpreter is gone.
    PyObject* atexit = PyImport_ImportModule("atexit");
    PyObject* hook = atexit != nullptr ? PyObject_GetAttrString(m, "_atexit") : nullptr;
    PyObject* r = hook != nullptr ? PyObject_CallMethod(atexit, "register", "O", hook) : nullptr;
    Py_XDECREF(r);
    Py_XDECREF(hook);
    Py_XDECREF(atexit);
    install_thread_hooks();
    if (r == nullptr || install_pickling(m) < 0 || install_greenlet_support() < 0) {
        Py_DECREF(m);
        return nullptr;
    }
    return m;
}
