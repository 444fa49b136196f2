// Relies on CPython 3.11's _PyInterpreterFrame (Include/internal/pycore_frame.h): the specials
// f_func, f_locals, f_code and frame_obj are strong references, localsplus holds the fast locals
// (co_nlocalsplus of them) then the value stack up to stacktop, previous links to the caller, and
// is_entry marks the first frame of an evaluation loop invocation.
//
// stacktop is only up to date for a frame that called a Python function inside the same
// evaluation loop. The innermost frame called a C function (the blocking operation): when that
// call came from the evaluation loop, its arguments are on the frame's value stack and end at its
// top (the loop passes a pointer into the stack: stack_hint). Otherwise, and for a frame whose
// callee is an entry frame (it called a C function that called back into Python), the frame is
// inside an instruction: for those whose operands are alive whatever runs inside them (see
// learn_call_site_depths), the bytecode analysis that pickling uses (_call_site) knows how deep
// the stack is there, and its answers are kept by instruction. Elsewhere, and until it has
// answered, only locals are visited: missing a reference only makes the collector more
// conservative, while visiting a slot that holds no reference could free a live object.
// (References that the C functions themselves hold stay invisible: whatever they lead to stays
// alive, and with it the tasklet if they lead to it.)
#define Py_BUILD_CORE 1
#include "frame_traverse.hpp"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

#include <internal/pycore_frame.h>

#include <map>
#include <utility>
#include <vector>

namespace stackless::python {

namespace {

// Value-stack depths at call sites, by (code object, instruction index); -1: not a call the
// frame can be inside of, or the analysis failed. The code objects are held (they are not
// tracked by the collector, so taking a reference during a traversal is harmless), so that an
// address is not reused while its entry stands.
struct call_site_key {
    PyCodeObject* code;
    int index;
    auto operator<=>(const call_site_key&) const = default;
};
std::map<call_site_key, int> known_depths;
std::vector<call_site_key> wanted_depths;  // met by the collector, not known yet (code held)
constexpr std::size_t max_known_depths = 4096;

// The depth of the value stack of `frame`, stopped inside a C call, or -1 if not known (yet).
int depth_inside_c_call(_PyInterpreterFrame* frame) noexcept {
    PyCodeObject* code = frame->f_code;
    const call_site_key key{code, static_cast<int>(frame->prev_instr - _PyCode_CODE(code))};
    if (auto it = known_depths.find(key); it != known_depths.end()) return it->second;
    if (wanted_depths.size() < max_known_depths) {
        for (const call_site_key& w : wanted_depths)
            if (w == key) return -1;
        Py_INCREF(code);
        wanted_depths.push_back(key);
    }
    return -1;
}

}  // namespace

int learn_call_site_depths(PyObject* call_site_analysis) {
    if (wanted_depths.empty()) return 0;
    if (known_depths.size() + wanted_depths.size() > max_known_depths) {
        for (auto& [key, depth] : known_depths) Py_DECREF(key.code);
        known_depths.clear();
    }
    std::vector<call_site_key> wanted = std::move(wanted_depths);
    wanted_depths.clear();
    int status = 0;
    for (const call_site_key& key : wanted) {
        int depth = -1;
        PyObject* site = status == 0
                             ? PyObject_CallFunction(call_site_analysis, "Oi", key.code, key.index)
                             : nullptr;
        if (site == nullptr) {
            status = -1;
        } else {
            int mode = 0;
            // (depth, mode, ...). Only FOR_ITER, BEFORE_WITH and WITH_EXCEPT_START (modes 3, 5,
            // 6): whatever Python code runs inside them, their operands on the stack are alive
            // (the callee runs, or the exhausted iterator is being finalized, untracked, by that
            // very code). Not the calls (modes 1 and 2): CPython 3.11 also runs Python code
            // inside a call instruction after the call has returned, when the operands are
            // released (a finalizer of an argument, after the callable was released) and after
            // the result replaced them (a signal handler at the eval breaker), and the frame
            // looks the same as during the call: the slots may then hold freed objects. Nor SEND
            // (mode 4): a finished receiver's finalizer runs after the value sent was released.
            if (PyTuple_Check(site) && PyTuple_GET_SIZE(site) >= 2) {
                depth = static_cast<int>(PyLong_AsLong(PyTuple_GET_ITEM(site, 0)));
                mode = static_cast<int>(PyLong_AsLong(PyTuple_GET_ITEM(site, 1)));
            }
            Py_DECREF(site);
            if (PyErr_Occurred()) status = -1;
            const bool operands_alive = mode == 3 || mode == 5 || mode == 6;
            if (!operands_alive || depth < 0 || depth > key.code->co_stacksize) depth = -1;
        }
        auto [it, added] = known_depths.emplace(key, status == 0 ? depth : -1);
        if (!added) Py_DECREF(key.code);  // (known already: this reference is not needed)
    }
    return status;
}

namespace {

// Points the hint at `frame` (nullptr: no valid hint) and its current instruction, with `depth`.
// What can_resume_in_place accepted holds only at the same frame and instruction (where the
// depth is the same too).
void place_hint(stack_hint& hint, _PyInterpreterFrame* frame, int depth) noexcept {
    const void* instr = frame != nullptr ? frame->prev_instr : nullptr;
    hint.accepted = hint.accepted && frame != nullptr && hint.frame == frame && hint.instr == instr;
    hint.frame = frame;
    hint.instr = instr;
    hint.depth = depth;
}

}  // namespace

void record_stack_hint(PyThreadState* ts, PyObject* const* args, Py_ssize_t n,
                       stack_hint& hint) noexcept {
    _PyInterpreterFrame* frame = ts->cframe->current_frame;
    if (frame == nullptr) return place_hint(hint, nullptr, 0);
    PyCodeObject* code = frame->f_code;
    PyObject** stack = frame->localsplus + code->co_nlocalsplus;
    PyObject** end = stack + code->co_stacksize;
    PyObject* const* top = args + n;
    if (args < stack || top > end)  // not called from this frame's evaluation
        return place_hint(hint, nullptr, 0);
    place_hint(hint, frame, static_cast<int>(top - frame->localsplus));
}

PyObject* record_iteration_hint(PyThreadState* ts, stack_hint& hint) noexcept {
    _PyInterpreterFrame* frame = ts->cframe->current_frame;
    place_hint(hint, frame, -1);
    return frame != nullptr ? reinterpret_cast<PyObject*>(frame->f_code) : nullptr;
}

int traverse_frames(_PyInterpreterFrame* frame, const stack_hint& hint, visitproc visit,
                    void* arg) {
    constexpr int inside_c_call = -2;  // (for known_top: the frame's callee is an entry frame)
    // The innermost frame's value stack is known only through the hint; a caller's, from its
    // stacktop when it called within the same evaluation loop.
    int known_top = frame != nullptr && hint.frame == frame && hint.instr == frame->prev_instr
                        ? hint.depth
                        : -1;
    for (bool innermost = true; frame != nullptr; innermost = false) {
        // Inside a C call: the innermost frame whose blocking call did not come from its own
        // evaluation (no hint), or one whose callee was called from C (an entry frame).
        if (known_top < 0 && (innermost || known_top == inside_c_call)) {
            const int depth = depth_inside_c_call(frame);
            if (depth >= 0) known_top = frame->f_code->co_nlocalsplus + depth;
        }
        Py_VISIT(reinterpret_cast<PyObject*>(frame->frame_obj));
        Py_VISIT(reinterpret_cast<PyObject*>(frame->f_func));
        Py_VISIT(frame->f_locals);
        Py_VISIT(reinterpret_cast<PyObject*>(frame->f_code));
        int n = frame->f_code->co_nlocalsplus;
        if (known_top > n) n = known_top;
        for (int i = 0; i < n; ++i) Py_VISIT(frame->localsplus[i]);
        // The caller's stacktop is valid if this frame was entered from it by the same loop.
        known_top = frame->is_entry              ? inside_c_call
                    : frame->previous != nullptr ? frame->previous->stacktop
                                                 : -1;
        frame = frame->previous;
    }
    return 0;
}

}  // namespace stackless::python
