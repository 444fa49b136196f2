// Relies on CPython 3.11's _PyInterpreterFrame (Include/internal/pycore_frame.h): the specials
// f_func, f_locals, f_code and frame_obj are strong references, localsplus holds the fast locals
// (co_nlocalsplus of them) then the value stack up to stacktop, previous links to the caller, and
// is_entry marks the first frame of an evaluation loop invocation.
//
// stacktop is only up to date for a frame that called a Python function inside the same
// evaluation loop. The innermost frame called a C function (the blocking operation): when that
// call came from the evaluation loop, its arguments are on the frame's value stack and end at its
// top (the loop passes a pointer into the stack: stack_hint). Otherwise, and for a frame whose
// callee is an entry frame (it called a C function that called back into Python), only locals are
// visited: missing a reference only makes the collector more conservative, while visiting a slot
// that holds no reference could free a live object.
#define Py_BUILD_CORE 1
#include "frame_traverse.hpp"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

#include <internal/pycore_frame.h>

namespace stackless::python {

void record_stack_hint(PyThreadState* ts, PyObject* const* args, Py_ssize_t n,
                       stack_hint& hint) noexcept {
    _PyInterpreterFrame* frame = ts->cframe->current_frame;
    hint.frame = nullptr;
    if (frame == nullptr) return;
    PyCodeObject* code = frame->f_code;
    PyObject** stack = frame->localsplus + code->co_nlocalsplus;
    PyObject** end = stack + code->co_stacksize;
    PyObject* const* top = args + n;
    if (args < stack || top > end) return;  // not called from this frame's evaluation
    hint.frame = frame;
    hint.instr = frame->prev_instr;
    hint.depth = static_cast<int>(top - frame->localsplus);
}

PyObject* record_iteration_hint(PyThreadState* ts, stack_hint& hint) noexcept {
    _PyInterpreterFrame* frame = ts->cframe->current_frame;
    hint.frame = frame;
    if (frame == nullptr) return nullptr;
    hint.instr = frame->prev_instr;
    hint.depth = -1;
    return reinterpret_cast<PyObject*>(frame->f_code);
}

int traverse_frames(_PyInterpreterFrame* frame, const stack_hint& hint, visitproc visit,
                    void* arg) {
    // The innermost frame's value stack is known only through the hint; a caller's, from its
    // stacktop when it called within the same evaluation loop.
    int known_top = frame != nullptr && hint.frame == frame && hint.instr == frame->prev_instr
                        ? hint.depth
                        : -1;
    while (frame != nullptr) {
        Py_VISIT(reinterpret_cast<PyObject*>(frame->frame_obj));
        Py_VISIT(reinterpret_cast<PyObject*>(frame->f_func));
        Py_VISIT(frame->f_locals);
        Py_VISIT(reinterpret_cast<PyObject*>(frame->f_code));
        int n = frame->f_code->co_nlocalsplus;
        if (known_top > n) n = known_top;
        for (int i = 0; i < n; ++i) Py_VISIT(frame->localsplus[i]);
        // The caller's stacktop is valid if this frame was entered from it by the same loop.
        known_top = !frame->is_entry && frame->previous != nullptr ? frame->previous->stacktop : -1;
        frame = frame->previous;
    }
    return 0;
}

}  // namespace stackless::python
