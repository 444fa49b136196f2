// What the frame files share (frame_capture.cpp reads a tasklet's frames for pickling,
// frame_check.cpp checks pickled frame records against their code, frame_resume.cpp builds and
// resumes frames): CPython 3.11's frame internals and a few helpers over them.
//
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
#pragma once

#define Py_BUILD_CORE 1
#include "frame_state.hpp"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

#include <internal/pycore_frame.h>

#include <cstddef>
#include <vector>

namespace stackless::python {

constexpr unsigned char fast_cell = 0x40;  // CO_FAST_CELL in 3.11's pycore_code.h
constexpr unsigned char fast_free = 0x80;  // CO_FAST_FREE

inline int code_units(PyCodeObject* code) {
    return static_cast<int>(Py_SIZE(code));
}

// Words of frame data a frame of `code` takes: its specials, locals and value stack.
inline std::size_t frame_words(PyCodeObject* code) {
    return FRAME_SPECIALS_SIZE + static_cast<std::size_t>(code->co_nlocalsplus) +
           static_cast<std::size_t>(code->co_stacksize);
}

// An array of `n` elements, on the C stack when it has at most N (frames rarely have more).
template <class T, std::size_t N>
class small_array {
  public:
    explicit small_array(std::size_t n) {
        if (n > N) {
            large_.resize(n);
            data_ = large_.data();
        }
    }
    small_array(const small_array&) = delete;
    small_array& operator=(const small_array&) = delete;
    T* data() noexcept { return data_; }
    T& operator[](std::size_t i) noexcept { return data_[i]; }

  private:
    T small_[N];
    std::vector<T> large_;
    T* data_ = small_;
};

// Code that runs only in a generator, a coroutine or an asynchronous generator (whose frame lives
// in that object: FRAME_OWNED_BY_GENERATOR), never in a plain frame.
constexpr int code_flags_of_generators =
    CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE;
constexpr int code_flags_not_resumable = CO_COROUTINE | CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE;

// A generator, a coroutine or an asynchronous generator: the three share PyGenObject's layout
// (_PyGenObject_HEAD in Include/cpython/genobject.h).
inline bool generator_like(PyObject* o) {
    return PyGen_CheckExact(o) || PyCoro_CheckExact(o) || PyAsyncGen_CheckExact(o);
}

inline PyGenObject* generator_of(_PyInterpreterFrame* f) {
    if (f->owner != FRAME_OWNED_BY_GENERATOR) return nullptr;
    return reinterpret_cast<PyGenObject*>(reinterpret_cast<char*>(f) -
                                          offsetof(PyGenObject, gi_iframe));
}

inline _PyInterpreterFrame* frame_of(PyGenObject* gen) {
    return reinterpret_cast<_PyInterpreterFrame*>(gen->gi_iframe);
}

// --- frame_capture.cpp
// A module's globals are pickled as the module's name; other dicts as themselves.
PyObject* globals_ref(PyObject* globals);
// A tuple of `n` values starting at `values`, with None for NULL, and the NULLs' indices;
// functions go through `by_value`.
bool values_tuple(PyObject* const* values, int n, PyObject* by_value, PyObject** out,
                  PyObject** nulls);

// --- frame_check.cpp
// The cache add_restored_frame keeps on a code object: [slot kinds by resume index, function].
extern Py_ssize_t code_extra_index;
PyObject* code_cache(PyCodeObject* code, PyObject* slot_kinds);
// The slot kinds of `code` before its instruction `resume` (borrowed); nullptr, without an
// exception, if the code cannot resume there.
PyObject* kinds_at(PyObject* cache, int resume);
// A new reference to each value of `values`, NULL at the indices in `nulls`, into `out`.
void copy_values(PyObject* values, PyObject* nulls, PyObject** out);

// --- frame_resume.cpp
// What _PyFrame_Clear does for a frame owned by the thread.
void clear_frame(_PyInterpreterFrame* frame);

}  // namespace stackless::python
