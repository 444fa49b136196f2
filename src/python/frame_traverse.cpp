// Relies on CPython 3.11's _PyInterpreterFrame (Include/internal/pycore_frame.h): the specials
// f_func, f_locals, f_code and frame_obj are strong references, localsplus holds the fast locals
// (co_nlocalsplus of them) then the value stack up to stacktop, previous links to the caller, and
// is_entry marks the first frame of an evaluation loop invocation.
//
// stacktop is only up to date for a frame that called a Python function inside the same
// evaluation loop. The innermost frame (it called a C function: the blocking operation) and a
// frame whose callee is an entry frame (it called a C function that called back into Python)
// hold value-stack entries this function cannot delimit; only their locals are visited. Missing
// a reference only makes the collector more conservative; it never frees a live object.
#define Py_BUILD_CORE 1
#include "frame_traverse.hpp"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

#include <internal/pycore_frame.h>

namespace stackless::python {

int traverse_frames(_PyInterpreterFrame* frame, visitproc visit, void* arg) {
    bool stack_known = false;  // the innermost frame's value stack is not delimited
    while (frame != nullptr) {
        Py_VISIT(reinterpret_cast<PyObject*>(frame->frame_obj));
        Py_VISIT(reinterpret_cast<PyObject*>(frame->f_func));
        Py_VISIT(frame->f_locals);
        Py_VISIT(reinterpret_cast<PyObject*>(frame->f_code));
        int n = frame->f_code->co_nlocalsplus;
        if (stack_known && frame->stacktop > n) n = frame->stacktop;
        for (int i = 0; i < n; ++i) Py_VISIT(frame->localsplus[i]);
        // The caller's stacktop is valid if this frame was entered from it by the same loop.
        stack_known = !frame->is_entry;
        frame = frame->previous;
    }
    return 0;
}

}  // namespace stackless::python
