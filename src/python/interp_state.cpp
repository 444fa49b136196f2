// Every use of CPython's internal thread-state layout lives here. CPython 3.11 only: the fields
// below are those of Include/cpython/pystate.h in 3.11 (recursion_remaining/recursion_limit,
// cframe, datastack_*, exc_info, context, trash_delete_nesting), and 3.12 rearranged them.
#include "interp_state.hpp"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

#include <cstddef>

namespace stackless::python {

namespace {

// What CPython's _PyThreadState_UpdateTracingState computes (an internal inline function).
std::uint8_t use_tracing(PyThreadState* ts) noexcept {
    return ts->tracing == 0 && (ts->c_tracefunc != nullptr || ts->c_profilefunc != nullptr) ? 255
                                                                                            : 0;
}

// A frame takes its code's locals and value stack plus 7 words of header (FRAME_SPECIALS_SIZE in
// 3.11's pycore_frame.h). The root chunk holds the tasklet function's frame and a little more;
// what goes deeper spills into CPython's own chunks (reused: chunk_cache.cpp). pymalloc serves up
// to 512 bytes.
constexpr std::size_t root_chunk_max = 512;
constexpr std::size_t root_chunk_min = 128;
constexpr std::size_t spare_words = 24;
constexpr std::size_t frame_header_words = 7;
}  // namespace

void save_interp_state(PyThreadState* ts, interp_state& into) noexcept {
    into.cframe = ts->cframe;
    into.current_frame = ts->cframe->current_frame;
    into.recursion_depth = ts->recursion_limit - ts->recursion_remaining;
    into.trash_delete_nesting = ts->trash_delete_nesting;
    into.tracing = ts->tracing;
    into.datastack_chunk = ts->datastack_chunk;
    into.datastack_top = ts->datastack_top;
    into.exc_info = ts->exc_info;
    into.context = ts->context;  // the reference moves with it
    ts->context = nullptr;
    into.c_tracefunc = ts->c_tracefunc;
    into.c_traceobj = ts->c_traceobj;
    into.c_profilefunc = ts->c_profilefunc;
    into.c_profileobj = ts->c_profileobj;
    ts->c_tracefunc = nullptr;
    ts->c_traceobj = nullptr;
    ts->c_profilefunc = nullptr;
    ts->c_profileobj = nullptr;
}

namespace {

// Installs `from` with the C frame chain at `cframe`, `recursion_depth` calls deep.
void install_interp_state(PyThreadState* ts, _PyCFrame* cframe, int recursion_depth,
                          interp_state& from) noexcept {
    ts->cframe = cframe;
    ts->tracing = from.tracing;
    ts->c_tracefunc = from.c_tracefunc;
    ts->c_traceobj = from.c_traceobj;  // the references move back
    ts->c_profilefunc = from.c_profilefunc;
    ts->c_profileobj = from.c_profileobj;
    from.c_traceobj = nullptr;
    from.c_profileobj = nullptr;
    // Trace and profile functions are per thread: a tasklet switched out while they changed
    // follows the change.
    ts->cframe->use_tracing = use_tracing(ts);
    ts->recursion_remaining = ts->recursion_limit - recursion_depth;
    ts->trash_delete_nesting = from.trash_delete_nesting;
    ts->datastack_chunk = from.datastack_chunk;
    ts->datastack_top = from.datastack_top;
    // (Not saved: every chunk ends where its size says, as _PyThreadState_PushFrame makes it.)
    ts->datastack_limit =
        from.datastack_chunk == nullptr
            ? nullptr
            : reinterpret_cast<PyObject**>(reinterpret_cast<char*>(from.datastack_chunk) +
                                           from.datastack_chunk->size);
    ts->exc_info = from.exc_info;
    Py_XSETREF(ts->context, from.context);
    from.context = nullptr;
    ts->context_ver++;
}

}  // namespace

void restore_interp_state(PyThreadState* ts, interp_state& from) noexcept {
    install_interp_state(ts, from.cframe, from.recursion_depth, from);
}

void resume_interp_state(PyThreadState* ts, _PyCFrame* root, interp_state& from) noexcept {
    root->current_frame = nullptr;
    root->previous = &ts->root_cframe;
    install_interp_state(ts, root, 0, from);
}

_PyStackChunk* new_root_chunk(PyObject* func) {
    std::size_t words = spare_words;
    if (PyFunction_Check(func)) {
        auto* code = reinterpret_cast<PyCodeObject*>(PyFunction_GET_CODE(func));
        words += frame_header_words + static_cast<std::size_t>(code->co_nlocalsplus) +
                 static_cast<std::size_t>(code->co_stacksize);
    }
    // The header, the skipped data[0] (see start_interp_state), then the frames.
    std::size_t bytes = offsetof(_PyStackChunk, data) + sizeof(PyObject*) * (1 + words);
    if (bytes < root_chunk_min) bytes = root_chunk_min;
    if (bytes > root_chunk_max) bytes = root_chunk_max;
    return new_root_chunk_of(bytes);
}

_PyStackChunk* new_root_chunk_of(std::size_t root_chunk_bytes) {
    // pymalloc (the GIL is held): it serves blocks up to 512 bytes without reaching malloc.
    auto* chunk = static_cast<_PyStackChunk*>(PyMem_Malloc(root_chunk_bytes));
    if (chunk == nullptr) return nullptr;
    chunk->previous = nullptr;
    chunk->size = root_chunk_bytes;
    chunk->top = 0;
    return chunk;
}

void free_root_chunk(_PyStackChunk* chunk) noexcept {
    PyMem_Free(chunk);
}

void install_hook_functions(PyThreadState* ts, interp_state& from) noexcept {
    if (from.c_tracefunc == nullptr && from.c_profilefunc == nullptr) return;
    ts->c_tracefunc = from.c_tracefunc;
    Py_XSETREF(ts->c_traceobj, from.c_traceobj);
    ts->c_profilefunc = from.c_profilefunc;
    Py_XSETREF(ts->c_profileobj, from.c_profileobj);
    from.c_traceobj = nullptr;
    from.c_profileobj = nullptr;
    ts->cframe->use_tracing = use_tracing(ts);
}

void give_trace_if_none(PyThreadState* ts, Py_tracefunc f) noexcept {
    if (ts->c_tracefunc != nullptr || ts->c_profilefunc != nullptr || ts->c_traceobj != nullptr)
        return;
    ts->c_tracefunc = f;
    ts->cframe->use_tracing = use_tracing(ts);
}

Py_tracefunc python_trace_trampoline = nullptr;
Py_tracefunc python_profile_trampoline = nullptr;

int find_trace_trampolines() noexcept {
    PyThreadState* ts = PyThreadState_Get();
    PyObject* sys = PyImport_ImportModule("sys");
    if (sys == nullptr) return -1;
    int result = -1;
    // Install a dummy function with sys.settrace/sys.setprofile, read the C function they put in
    // the thread state, then restore what was there.
    Py_tracefunc saved_trace = ts->c_tracefunc;
    PyObject* saved_traceobj = Py_XNewRef(ts->c_traceobj);
    Py_tracefunc saved_profile = ts->c_profilefunc;
    PyObject* saved_profileobj = Py_XNewRef(ts->c_profileobj);
    PyObject* dummy = PyObject_GetAttrString(sys, "getrecursionlimit");  // any callable
    if (dummy != nullptr) {
        PyObject* r1 = PyObject_CallMethod(sys, "settrace", "O", dummy);
        python_trace_trampoline = ts->c_tracefunc;
        PyObject* r2 = PyObject_CallMethod(sys, "setprofile", "O", dummy);
        python_profile_trampoline = ts->c_profilefunc;
        if (r1 != nullptr && r2 != nullptr) result = 0;
        Py_XDECREF(r1);
        Py_XDECREF(r2);
        Py_DECREF(dummy);
    }
    PyEval_SetTrace(saved_trace, saved_traceobj);
    PyEval_SetProfile(saved_profile, saved_profileobj);
    Py_XDECREF(saved_traceobj);
    Py_XDECREF(saved_profileobj);
    Py_DECREF(sys);
    return result;
}

void start_interp_state(PyThreadState* ts, _PyCFrame* root, _PyStackChunk* chunk,
                        _PyErr_StackItem* exc_base, PyObject* context) noexcept {
    ts->tracing = 0;
    // A new tasklet starts untraced (Stackless: tracing is per tasklet).
    ts->c_tracefunc = nullptr;
    ts->c_profilefunc = nullptr;
    Py_CLEAR(ts->c_traceobj);
    Py_CLEAR(ts->c_profileobj);
    root->use_tracing = use_tracing(ts);
    root->current_frame = nullptr;
    root->previous = &ts->root_cframe;
    ts->cframe = root;
    ts->recursion_remaining = ts->recursion_limit;
    ts->trash_delete_nesting = 0;
    ts->datastack_chunk = chunk;
    // Frames start at data[1]: CPython frees a chunk when its data[0] frame is popped, and it must
    // never free ours.
    ts->datastack_top = &chunk->data[1];
    ts->datastack_limit =
        reinterpret_cast<PyObject**>(reinterpret_cast<char*>(chunk) + chunk->size);
    exc_base->exc_value = nullptr;
    exc_base->previous_item = nullptr;
    ts->exc_info = exc_base;
    Py_XSETREF(ts->context, context);
    ts->context_ver++;
}

}  // namespace stackless::python
