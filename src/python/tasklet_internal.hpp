// What the files behind stackless.tasklet share: tasklet_type.cpp (the type: creation, binding,
// the object protocol), tasklet_body.cpp (what runs on a tasklet's own C stack, and the switch
// hooks), tasklet_ops.cpp (scheduling and exceptions), tasklet_attrs.cpp (attributes) and
// thread_registry.cpp (the binding's data per Python thread).
#pragma once

#include <unordered_map>

#include "binding.hpp"

namespace stackless::python {

inline py_tasklet* as_tasklet(PyObject* o) {
    return reinterpret_cast<py_tasklet*>(o);
}

// -1 with RuntimeError if the tasklet belongs to another thread than the calling one.
inline int check_thread(py_tasklet* t) {
    if (t->thread != this_thread) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError, "tasklet belongs to another thread");
        return -1;
    }
    return 0;
}

// Stackless carries out scheduling operations on a tasklet of another thread in that thread
// (docs/threads.md): they change its thread's run queue through the core's *_remote operations,
// under the GIL, which keeps that thread from using its scheduler meanwhile; the tasklet runs
// there. -1 with RuntimeError (Stackless's words) if that thread has ended, or is ending; else
// makes the calling thread's scheduler too, as Stackless does.
inline int check_remote_thread(const py_tasklet* t) {
    auto* thread = static_cast<const thread_data*>(t->thread);
    if (thread == nullptr || thread->ended || thread->main_object == nullptr) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError, "Target thread isn't initialised");
        return -1;
    }
    return thread_main() != nullptr ? 0 : -1;
}

// Whether `self` is the running tasklet (switching to it would not switch).
inline bool is_running(py_tasklet* self) {
    return stackless::tasklet::current_payload() == self;
}

// --- thread_registry.cpp
// Every Python thread that used stackless, by thread ident (guarded by the GIL).
std::unordered_map<unsigned long, thread_data*>& all_threads();
// This thread's data, made on first use.
thread_data& this_thread_data();
// A tasklet object of thread `d` is gone: the data goes with the last one once its thread ended.
void release_thread_data(thread_data* d) noexcept;

// --- tasklet_body.cpp
// The core hooks of every Python tasklet (its interpreter state follows it in and out).
extern const stackless::tasklet_hooks tasklet_switch_hooks;
// A tasklet's core function: runs its bound Python callable.
void run_body(py_tasklet* self);
// The core function of an unpickled tasklet: rebuilds its frames and resumes them.
void run_restored(py_tasklet* self);

// --- tasklet_type.cpp
// A tasklet about to get something to run takes a copy of the running code's context.
int take_creator_context(py_tasklet* t);

// --- tasklet_ops.cpp (methods)
PyObject* tasklet_insert(PyObject* o, PyObject*);
PyObject* tasklet_remove(PyObject* o, PyObject*);
PyObject* tasklet_run(PyObject* o, PyObject*);
PyObject* tasklet_switch(PyObject* o, PyObject*);
PyObject* tasklet_throw(PyObject* o, PyObject* args, PyObject* kwds);
PyObject* tasklet_raise_exception(PyObject* o, PyObject* args);
PyObject* tasklet_kill(PyObject* o, PyObject* args, PyObject* kwds);
PyObject* tasklet_set_context(PyObject* o, PyObject* context);
PyObject* tasklet_context_run(PyObject* o, PyObject* const* args, size_t nargsf, PyObject* kwnames);
PyObject* tasklet_set_atomic(PyObject* o, PyObject* flag);
PyObject* tasklet_bind_thread(PyObject* o, PyObject* args);
PyObject* tasklet_set_ignore_nesting(PyObject* o, PyObject* flag);

// --- tasklet_attrs.cpp
extern PyGetSetDef tasklet_getset[];

}  // namespace stackless::python
