// The interpreter state that belongs to a tasklet rather than to its thread: which frame runs,
// the C-level frame chain, the frame data stack, the exception being handled, the recursion depth
// and the contextvars context. CPython keeps all of it in the PyThreadState; a switch saves the
// outgoing tasklet's copy and installs the incoming one's (interp_state.cpp, CPython 3.11 only).
#pragma once

#include <Python.h>

#include <cstdint>

namespace stackless::python {

struct interp_state {
    _PyCFrame* cframe = nullptr;                          // on the tasklet's own C stack
    struct _PyInterpreterFrame* current_frame = nullptr;  // copy, readable while switched out
    int recursion_depth = 0;
    int trash_delete_nesting = 0;
    int tracing = 0;  // > 0 inside a trace or profile function
    _PyStackChunk* datastack_chunk = nullptr;
    PyObject** datastack_top = nullptr;
    _PyErr_StackItem* exc_info = nullptr;  // top of the tasklet's exception stack
    PyObject* context = nullptr;           // owned
    // Trace and profile functions are per tasklet, as in Stackless (sys.settrace in a tasklet
    // traces that tasklet). The objects are owned.
    Py_tracefunc c_tracefunc = nullptr;
    PyObject* c_traceobj = nullptr;
    Py_tracefunc c_profilefunc = nullptr;
    PyObject* c_profileobj = nullptr;
};

// The C function sys.settrace()/sys.setprofile() install for a Python-level function; found once
// at module initialisation (it is static in CPython's sysmodule.c).
extern Py_tracefunc python_trace_trampoline;
extern Py_tracefunc python_profile_trampoline;
// Installs trace/profile functions given to a tasklet before it started (moves the references).
void install_hook_functions(PyThreadState* ts, interp_state& from) noexcept;
// Finds them (call once, with the GIL); returns -1 with an exception set on failure.
int find_trace_trampolines() noexcept;

// Gives the running tasklet (its state in the thread state) the C trace function `f`, with no
// object, if it has no trace or profile function: PyEval_SetTrace without its audit event
// (called during a switch, where no Python code may run).
void give_trace_if_none(PyThreadState* ts, Py_tracefunc f) noexcept;

// Moves the running tasklet's state out of the thread state into `into`.
void save_interp_state(PyThreadState* ts, interp_state& into) noexcept;
// Installs `from` into the thread state (ownership of the context moves back too).
void restore_interp_state(PyThreadState* ts, interp_state& from) noexcept;
// Installs `from` for a tasklet whose C stack was dropped while it was switched out: its C frame
// chain starts afresh at `root` (a frame of its new stack) with no frame running, and its
// recursion depth at 0 (its frames, resumed from there, count themselves again).
void resume_interp_state(PyThreadState* ts, _PyCFrame* root, interp_state& from) noexcept;

// A tasklet's own small root chunk for its interpreter frames. CPython never frees a root chunk
// (a chunk without a previous one); deeper frames spill into chunks CPython allocates itself.
// Sized for `func`'s frame plus a little (a C callable gets the minimum).
_PyStackChunk* new_root_chunk(PyObject* func);
_PyStackChunk* new_root_chunk_of(std::size_t bytes);
void free_root_chunk(_PyStackChunk* chunk) noexcept;

// Prepares the thread state for a tasklet that starts on a fresh C stack: `root` (a frame of the
// new stack) becomes the C frame chain's start, frames go to `chunk`, the exception stack starts
// at `exc_base`, recursion depth is 0 and `context` (a new reference) is current.
void start_interp_state(PyThreadState* ts, _PyCFrame* root, _PyStackChunk* chunk,
                        _PyErr_StackItem* exc_base, PyObject* context) noexcept;

}  // namespace stackless::python
