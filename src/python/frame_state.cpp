// Relies on CPython 3.11's frames (Include/internal/pycore_frame.h): _PyInterpreterFrame's
// layout (specials, previous, prev_instr, stacktop, is_entry, owner, localsplus),
// _PyFrame_InitializeSpecials, PyFrameObject's _f_frame_data, and on how 3.11's evaluation loop
// resumes a frame: _PyEval_EvalFrameDefault(ts, frame, throwflag) marks the frame as an entry
// frame, links it to ts->cframe->current_frame and continues at prev_instr + 1 with the value
// stack up to stacktop, as it does for a generator; with throwflag it raises the current
// exception at prev_instr instead. An entry frame returns to its C caller, which clears it and
// pops it from the frame data stack (what _PyEvalFrameClearAndPop does inside ceval.c; the
// functions it uses are not exported, so clear_frame() below does the same).
//
// A frame that made an inline Python call has stacktop up to date and prev_instr on the call's
// last inline cache entry; a frame inside a C call has neither: its stack depth comes from the
// bytecode analysis in _stackless_pickle.py, and while the call runs its value stack still holds
// the callable and arguments.
#define Py_BUILD_CORE 1
#include "frame_state.hpp"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

#include <internal/pycore_frame.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace stackless::python {

namespace {

constexpr unsigned char fast_cell = 0x40;  // CO_FAST_CELL in 3.11's pycore_code.h
constexpr unsigned char fast_free = 0x80;  // CO_FAST_FREE

int code_units(PyCodeObject* code) {
    return static_cast<int>(Py_SIZE(code));
}

// A tuple of `n` values starting at `values`, with None for NULL, and the NULLs' indices.
bool values_tuple(PyObject* const* values, int n, PyObject** out, PyObject** nulls) {
    *out = PyTuple_New(n);
    if (*out == nullptr) return false;
    int null_count = 0;
    for (int i = 0; i < n; ++i) {
        PyObject* v = values[i];
        if (v == nullptr) ++null_count;
        PyTuple_SET_ITEM(*out, i, Py_NewRef(v != nullptr ? v : Py_None));
    }
    *nulls = PyTuple_New(null_count);
    if (*nulls == nullptr) {
        Py_CLEAR(*out);
        return false;
    }
    for (int i = 0, j = 0; i < n; ++i) {
        if (values[i] != nullptr) continue;
        PyObject* index = PyLong_FromLong(i);
        if (index == nullptr) {
            Py_CLEAR(*out);
            Py_CLEAR(*nulls);
            return false;
        }
        PyTuple_SET_ITEM(*nulls, j++, index);
    }
    return true;
}

// Is `callee` the function whose frame `next` is (called directly by the evaluation loop)?
bool calls_frame(PyObject* callee, _PyInterpreterFrame* next) {
    if (callee == nullptr || next == nullptr) return false;
    if (PyMethod_Check(callee)) callee = PyMethod_GET_FUNCTION(callee);
    return PyFunction_Check(callee) &&
           PyFunction_GET_CODE(callee) == reinterpret_cast<PyObject*>(next->f_code);
}

// What the frame's pending C call is: ("python", callee) when it calls the next frame's
// function; (kind, callee) for the innermost frame's stackless operation (kind None if it is
// not one). `mode` and `position` come from the bytecode analysis (see _call_site).
PyObject* pending_call(PyObject* const* stack, int depth, int mode, int position,
                       _PyInterpreterFrame* next, classify_call classify) {
    PyObject* callee = nullptr;
    bool iteration = false;
    if (mode == 1 && position >= 0 && position + 1 < depth) {  // [NULL|method, callable|self]
        callee = stack[position] != nullptr ? stack[position] : stack[position + 1];
    } else if ((mode == 2 || mode == 3) && position >= 0 && position < depth) {
        callee = stack[position];
        iteration = mode == 3;
    }
    const char* kind = nullptr;
    if (next != nullptr)
        kind = !iteration && calls_frame(callee, next) ? "python" : nullptr;
    else if (callee != nullptr)
        kind = classify(callee, iteration);
    return Py_BuildValue("(zO)", kind, callee != nullptr ? callee : Py_None);
}

PyObject* capture_one(_PyInterpreterFrame* f, _PyInterpreterFrame* next, PyObject* call_site,
                      classify_call classify) {
    PyCodeObject* code = f->f_code;
    int nlocals = code->co_nlocalsplus;
    int index = static_cast<int>(f->prev_instr - _PyCode_CODE(code));
    bool in_c_call = next == nullptr || next->is_entry;
    PyObject *locals = nullptr, *local_nulls = nullptr;
    if (!values_tuple(f->localsplus, nlocals, &locals, &local_nulls)) return nullptr;
    PyObject *stack = Py_NewRef(Py_None), *stack_nulls = PyTuple_New(0);
    PyObject* pending = Py_NewRef(Py_None);
    PyObject* result = nullptr;
    if (stack_nulls == nullptr) goto done;
    if (!in_c_call) {
        int depth = f->stacktop - nlocals;
        if (depth < 0 || depth > code->co_stacksize) {
            PyErr_SetString(PyExc_SystemError, "stackless: a frame's stack top is out of range");
            goto done;
        }
        Py_CLEAR(stack);
        Py_CLEAR(stack_nulls);
        if (!values_tuple(f->localsplus + nlocals, depth, &stack, &stack_nulls)) goto done;
    } else {
        PyObject* site = PyObject_CallFunction(call_site, "Oi", code, index);
        int depth = -1, mode = 0, position = -1;
        if (site == nullptr) goto done;
        if (!PyArg_ParseTuple(site, "iii", &depth, &mode, &position)) {
            Py_DECREF(site);
            goto done;
        }
        Py_DECREF(site);
        if (depth >= 0 && depth <= code->co_stacksize) {
            PyObject* const* values = f->localsplus + nlocals;
            Py_CLEAR(stack);
            Py_CLEAR(stack_nulls);
            if (!values_tuple(values, depth, &stack, &stack_nulls)) goto done;
            Py_SETREF(pending, pending_call(values, depth, mode, position,
                                            next != nullptr ? next : nullptr, classify));
            if (pending == nullptr) goto done;
        }
    }
    result = Py_BuildValue("(OOiOOOOOO)", code, f->f_globals, index, in_c_call ? Py_True : Py_False,
                           locals, local_nulls, stack,
                           stack_nulls != nullptr ? stack_nulls : Py_None, pending);
done:
    Py_XDECREF(locals);
    Py_XDECREF(local_nulls);
    Py_XDECREF(stack);
    Py_XDECREF(stack_nulls);
    Py_XDECREF(pending);
    return result;
}

// The values of a pickled tuple with the listed indices made NULL; new references.
bool take_values(PyObject* values, PyObject* nulls, Py_ssize_t expected_size, const char* what,
                 std::vector<PyObject*>& out) {
    if (!PyTuple_Check(values) || !PyTuple_Check(nulls) ||
        (expected_size >= 0 && PyTuple_GET_SIZE(values) != expected_size)) {
        PyErr_Format(PyExc_ValueError,
                     "stackless: corrupt pickle: a frame's %s do not match its code", what);
        return false;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(values);
    std::vector<bool> is_null(static_cast<std::size_t>(n), false);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(nulls); ++j) {
        PyObject* index = PyTuple_GET_ITEM(nulls, j);
        Py_ssize_t i = PyLong_Check(index) ? PyLong_AsSsize_t(index) : -1;
        if (i < 0 || i >= n || PyTuple_GET_ITEM(values, i) != Py_None) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError,
                         "stackless: corrupt pickle: bad empty-slot index in "
                         "a frame's %s",
                         what);
            return false;
        }
        is_null[static_cast<std::size_t>(i)] = true;
    }
    out.reserve(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i)
        out.push_back(is_null[static_cast<std::size_t>(i)]
                          ? nullptr
                          : Py_NewRef(PyTuple_GET_ITEM(values, i)));
    return true;
}

void release_values(std::vector<PyObject*>& values) noexcept {
    for (PyObject* v : values) Py_XDECREF(v);
    values.clear();
}

// Does `value` fit a slot of kind `kind` (see _stackless_pickle.slot_kinds)?
bool fits(char kind, PyObject* value, PyCodeObject* code) {
    switch (kind) {
        case 'n':
            return true;
        case 'o':
            return value != nullptr;
        case 'i':
            return value != nullptr && PyIter_Check(value);
        case 'x':
            return value != nullptr && (value == Py_None || PyExceptionInstance_Check(value));
        case 'e':
            return value != nullptr && PyExceptionInstance_Check(value);
        case 'l': {
            if (value == nullptr || !PyLong_CheckExact(value)) return false;
            long offset = PyLong_AsLong(value);
            if (offset == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                return false;
            }
            return offset >= 0 && offset < code_units(code);
        }
        default:
            return false;
    }
}

// Takes over a finished frame whose frame object outlives it (a traceback or sys._getframe()
// kept it): the object gets its own copy of the frame, as CPython's take_ownership() does.
void hand_frame_to_object(PyThreadState* ts, PyFrameObject* f, _PyInterpreterFrame* frame) {
    auto size =
        static_cast<std::size_t>(reinterpret_cast<char*>(&frame->localsplus[frame->stacktop]) -
                                 reinterpret_cast<char*>(frame));
    std::memcpy(f->_f_frame_data, frame, size);
    auto* owned = reinterpret_cast<_PyInterpreterFrame*>(f->_f_frame_data);
    f->f_frame = owned;
    owned->owner = FRAME_OWNED_BY_FRAME_OBJECT;
    if (owned->previous != nullptr && f->f_back == nullptr) {
        // The caller's frame object (made now if needed): CPython keeps f_back that way. The
        // caller is the thread state's current frame at this point.
        // (An exception may be on its way out of the finished frame: keep it.)
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyFrameObject* back = PyEval_GetFrame();  // borrowed
        if (back != nullptr) f->f_back = reinterpret_cast<PyFrameObject*>(Py_NewRef(back));
        PyErr_Clear();  // no memory for the caller's frame object: f_back stays None
        PyErr_Restore(type, value, tb);
    }
    (void)ts;
    owned->previous = nullptr;
    if (!PyObject_GC_IsTracked(reinterpret_cast<PyObject*>(f)))
        PyObject_GC_Track(reinterpret_cast<PyObject*>(f));
}

// What _PyFrame_Clear does for a frame owned by the thread.
void clear_frame(PyThreadState* ts, _PyInterpreterFrame* frame) {
    if (PyFrameObject* f = frame->frame_obj) {
        frame->frame_obj = nullptr;
        if (Py_REFCNT(f) > 1) {
            hand_frame_to_object(ts, f, frame);
            Py_DECREF(f);
            return;
        }
        Py_DECREF(f);
    }
    for (int i = 0; i < frame->stacktop; ++i) Py_XDECREF(frame->localsplus[i]);
    Py_XDECREF(frame->f_locals);
    Py_DECREF(frame->f_func);
    Py_DECREF(frame->f_code);
}

}  // namespace

PyObject* capture_frames(_PyInterpreterFrame* innermost, PyObject* call_site,
                         classify_call classify) {
    std::vector<_PyInterpreterFrame*> chain;
    for (_PyInterpreterFrame* f = innermost; f != nullptr; f = f->previous) chain.push_back(f);
    std::reverse(chain.begin(), chain.end());
    PyObject* list = PyList_New(0);
    if (list == nullptr) return nullptr;
    for (std::size_t i = 0; i < chain.size(); ++i) {
        _PyInterpreterFrame* next = i + 1 < chain.size() ? chain[i + 1] : nullptr;
        PyObject* item = capture_one(chain[i], next, call_site, classify);
        if (item == nullptr || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return nullptr;
        }
        Py_DECREF(item);
    }
    return list;
}

restore_plan::~restore_plan() {
    for (restored_frame& f : frames) {
        Py_XDECREF(f.func);
        release_values(f.locals);
        release_values(f.stack);
    }
    Py_XDECREF(exc_value);
    Py_XDECREF(source);
}

int add_restored_frame(restore_plan& plan, PyObject* code_object, PyObject* globals, int resume,
                       PyObject* kinds, PyObject* locals, PyObject* local_nulls, PyObject* stack,
                       PyObject* stack_nulls) {
    if (!PyCode_Check(code_object) || !PyDict_Check(globals) || !PyUnicode_Check(kinds)) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad frame record");
        return -1;
    }
    auto* code = reinterpret_cast<PyCodeObject*>(code_object);
    if (code->co_flags &
        (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE)) {
        PyErr_Format(PyExc_ValueError,
                     "stackless: cannot restore a frame of %U: generator and coroutine frames are "
                     "not supported yet",
                     code->co_qualname);
        return -1;
    }
    Py_ssize_t nkinds = PyUnicode_GET_LENGTH(kinds);
    const char* kind = PyUnicode_AsUTF8(kinds);
    if (kind == nullptr) return -1;
    // The resumed frame gets the call's result pushed: its stack plus one slot is what the code
    // expects at `resume`.
    if (resume < 1 || resume >= code_units(code) || nkinds < 1 || nkinds > code->co_stacksize ||
        (kind[nkinds - 1] != 'o' && kind[nkinds - 1] != 'n')) {
        PyErr_Format(PyExc_ValueError,
                     "stackless: corrupt pickle: a frame of %U cannot resume at instruction %d",
                     code->co_qualname, resume);
        return -1;
    }
    restored_frame f;
    f.resume = resume;
    if (!take_values(locals, local_nulls, code->co_nlocalsplus, "locals", f.locals) ||
        !take_values(stack, stack_nulls, nkinds - 1, "value stack", f.stack)) {
        release_values(f.locals);
        release_values(f.stack);
        return -1;
    }
    const char* local_kinds = PyBytes_AS_STRING(code->co_localspluskinds);
    bool ok = true;
    for (std::size_t i = 0; ok && i < f.locals.size(); ++i) {
        auto k = static_cast<unsigned char>(local_kinds[i]);
        if (k & (fast_cell | fast_free)) ok = f.locals[i] != nullptr && PyCell_Check(f.locals[i]);
    }
    for (std::size_t i = 0; ok && i < f.stack.size(); ++i) ok = fits(kind[i], f.stack[i], code);
    if (ok) f.func = PyFunction_New(code_object, globals);
    if (f.func == nullptr) {
        if (!ok)
            PyErr_Format(PyExc_ValueError,
                         "stackless: corrupt pickle: a frame of %U holds values its code cannot "
                         "resume with",
                         code->co_qualname);
        release_values(f.locals);
        release_values(f.stack);
        return -1;
    }
    plan.chunk_bytes +=
        sizeof(PyObject*) * (FRAME_SPECIALS_SIZE + static_cast<std::size_t>(code->co_nlocalsplus) +
                             static_cast<std::size_t>(code->co_stacksize));
    plan.frames.push_back(std::move(f));
    return 0;
}

PyObject* resume_frames(PyThreadState* ts, _PyCFrame* root, restore_plan& plan, PyObject* value) {
    std::vector<_PyInterpreterFrame*> built;
    built.reserve(plan.frames.size());
    for (restored_frame& rf : plan.frames) {
        auto* func = reinterpret_cast<PyFunctionObject*>(std::exchange(rf.func, nullptr));
        auto* code = reinterpret_cast<PyCodeObject*>(func->func_code);
        std::size_t words = FRAME_SPECIALS_SIZE + static_cast<std::size_t>(code->co_nlocalsplus) +
                            static_cast<std::size_t>(code->co_stacksize);
        auto* frame = reinterpret_cast<_PyInterpreterFrame*>(ts->datastack_top);
        ts->datastack_top += words;  // the root chunk was sized for every frame (chunk_bytes)
        _PyFrame_InitializeSpecials(frame, func, nullptr, code->co_nlocalsplus);
        std::copy(rf.locals.begin(), rf.locals.end(), frame->localsplus);
        std::copy(rf.stack.begin(), rf.stack.end(), frame->localsplus + code->co_nlocalsplus);
        frame->stacktop = code->co_nlocalsplus + static_cast<int>(rf.stack.size());
        frame->prev_instr = _PyCode_CODE(code) + rf.resume - 1;
        frame->previous = built.empty() ? nullptr : built.back();
        rf.locals.clear();  // the frame owns them now
        rf.stack.clear();
        built.push_back(frame);
    }
    plan.frames.clear();
    for (std::size_t i = built.size(); i-- > 0;) {
        _PyInterpreterFrame* frame = built[i];
        _PyInterpreterFrame* caller = i > 0 ? built[i - 1] : nullptr;
        bool raising = value == nullptr;
        if (!raising) frame->localsplus[frame->stacktop++] = value;
        root->current_frame = caller;
        ts->recursion_remaining = ts->recursion_limit - static_cast<int>(i);
        value = _PyEval_EvalFrameDefault(ts, frame, raising ? 1 : 0);
        root->current_frame = caller;
        clear_frame(ts, frame);
        ts->datastack_top = reinterpret_cast<PyObject**>(frame);
    }
    root->current_frame = nullptr;
    return value;
}

int traverse_plan(const restore_plan& plan, visitproc visit, void* arg) {
    for (const restored_frame& f : plan.frames) {
        Py_VISIT(f.func);
        for (PyObject* v : f.locals) Py_VISIT(v);
        for (PyObject* v : f.stack) Py_VISIT(v);
    }
    Py_VISIT(plan.exc_value);
    Py_VISIT(plan.source);
    return 0;
}

}  // namespace stackless::python
