// Building frames from checked records and resuming them; resuming in place the frames of a
// tasklet whose C stack was dropped.
#include "frame_layout.hpp"

#include <internal/pycore_pyerrors.h>  // _PyErr_ChainStackItem (exported)
#include <opcode.h>                    // EXTENDED_ARG, PRECALL, CALL

#include <cstring>
#include <utility>
#include <vector>

namespace stackless::python {

namespace {

// Takes over a finished frame whose frame object outlives it (a traceback or sys._getframe()
// kept it): the object gets its own copy of the frame, as CPython's take_ownership() does.
void hand_frame_to_object(PyFrameObject* f, _PyInterpreterFrame* frame) {
    auto size =
        static_cast<std::size_t>(reinterpret_cast<char*>(&frame->localsplus[frame->stacktop]) -
                                 reinterpret_cast<char*>(frame));
    std::memcpy(f->_f_frame_data, frame, size);
    auto* owned = reinterpret_cast<_PyInterpreterFrame*>(f->_f_frame_data);
    f->f_frame = owned;
    owned->owner = FRAME_OWNED_BY_FRAME_OBJECT;
    if (owned->previous != nullptr && f->f_back == nullptr) {
        // The caller's frame object (made now if needed): CPython keeps f_back that way.
        // (An exception may be on its way out of the finished frame: keep it.)
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject* back = frame_object_of(owned->previous);
        if (back != nullptr && PyFrame_Check(back))
            f->f_back = reinterpret_cast<PyFrameObject*>(back);
        else
            Py_XDECREF(back);
        PyErr_Clear();  // no memory for the caller's frame object: f_back stays None
        PyErr_Restore(type, value, tb);
    }
    owned->previous = nullptr;
    if (!PyObject_GC_IsTracked(reinterpret_cast<PyObject*>(f)))
        PyObject_GC_Track(reinterpret_cast<PyObject*>(f));
}

}  // namespace

// What _PyFrame_Clear does for a frame owned by the thread.
void clear_frame(_PyInterpreterFrame* frame) {
    if (PyFrameObject* f = frame->frame_obj) {
        frame->frame_obj = nullptr;
        if (Py_REFCNT(f) > 1) {
            hand_frame_to_object(f, frame);
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

namespace {

// Pops a finished frame as _PyThreadState_PopFrame does, giving back a chunk it began.
void pop_frame(PyThreadState* ts, _PyInterpreterFrame* frame) {
    auto** base = reinterpret_cast<PyObject**>(frame);
    _PyStackChunk* chunk = ts->datastack_chunk;
    if (base == &chunk->data[0] && chunk->previous != nullptr) {
        _PyStackChunk* previous = chunk->previous;
        ts->datastack_chunk = previous;
        ts->datastack_top = &previous->data[previous->top];
        ts->datastack_limit =
            reinterpret_cast<PyObject**>(reinterpret_cast<char*>(previous) + previous->size);
        PyObjectArenaAllocator arena;
        PyObject_GetArenaAllocator(&arena);
        arena.free(arena.ctx, chunk, chunk->size);
        return;
    }
    ts->datastack_top = base;
}

// Runs `frame`, resumed (its call's result pushed, or the current exception to raise in it if
// `raising`), to its end as the callee of `caller`, `depth` frames above the outermost; then
// clears and pops it. Returns what it returned, or nullptr with an exception.
PyObject* run_to_end(PyThreadState* ts, _PyCFrame* root, _PyInterpreterFrame* frame,
                     _PyInterpreterFrame* caller, int depth, bool raising) {
    root->current_frame = caller;
    ts->recursion_remaining = ts->recursion_limit - depth;
    PyObject* result = _PyEval_EvalFrameDefault(ts, frame, raising ? 1 : 0);
    root->current_frame = caller;
    clear_frame(frame);
    pop_frame(ts, frame);
    return result;
}

// The other way on of a FOR_ITER or SEND once the generator `frame` drove has returned: the
// generator leaves its stack, and it continues at rf.alt_resume.
void take_other_way(_PyInterpreterFrame* frame, const restored_frame& rf) {
    Py_XDECREF(frame->localsplus[--frame->stacktop]);
    frame->prev_instr = _PyCode_CODE(frame->f_code) + rf.alt_resume - 1;
}

// Resumes a restored generator's frame as CPython's gen_send_ex2 does, with `value` (owned)
// pushed if `push`, or with the current exception raised in it if `value` is nullptr. Returns
// what it yields or returns (*returned tells which), or nullptr with an exception. (Not through
// gen.send(): the other way on after a FOR_ITER over a generator that returned pushes nothing.)
PyObject* run_generator(PyGenObject* gen, PyObject* value, bool push, bool* returned) {
    *returned = false;
    PyThreadState* ts = PyThreadState_Get();
    _PyInterpreterFrame* frame = frame_of(gen);
    bool raising = value == nullptr;
    if (!raising) {
        if (push)
            frame->localsplus[frame->stacktop++] = value;
        else
            Py_DECREF(value);
    }
    frame->previous = ts->cframe->current_frame;
    gen->gi_exc_state.previous_item = ts->exc_info;
    ts->exc_info = &gen->gi_exc_state;
    if (raising) _PyErr_ChainStackItem(nullptr);
    gen->gi_frame_state = FRAME_EXECUTING;
    PyObject* result = _PyEval_EvalFrameDefault(ts, frame, raising ? 1 : 0);
    ts->exc_info = gen->gi_exc_state.previous_item;
    gen->gi_exc_state.previous_item = nullptr;
    frame->previous = nullptr;
    if (result != nullptr && gen->gi_frame_state == FRAME_SUSPENDED) return result;  // yielded
    if (result == nullptr && PyErr_ExceptionMatches(PyExc_StopIteration)) {          // PEP 479
        const char* what = PyCoro_CheckExact(gen)       ? "coroutine raised StopIteration"
                           : PyAsyncGen_CheckExact(gen) ? "async generator raised StopIteration"
                                                        : "generator raised StopIteration";
        _PyErr_FormatFromCause(PyExc_RuntimeError, "%s", what);
    } else if (result == nullptr && PyAsyncGen_CheckExact(gen) &&
               PyErr_ExceptionMatches(PyExc_StopAsyncIteration)) {
        _PyErr_FormatFromCause(PyExc_RuntimeError, "async generator raised StopAsyncIteration");
    }
    // It ended: it cannot run again, so its frame goes.
    Py_CLEAR(gen->gi_exc_state.exc_value);
    gen->gi_frame_state = FRAME_CLEARED;
    clear_frame(frame);
    *returned = result != nullptr;
    return result;
}

// Resumes the generator of a restored frame, first making sure nothing ran it since it was
// unpickled. `callee_returned`: the generator it drives returned (it takes its other way on).
PyObject* resume_generator(const restored_frame& rf, PyObject* value, bool callee_returned,
                           bool push_value, bool* returned) {
    *returned = false;
    auto* gen = reinterpret_cast<PyGenObject*>(rf.generator);
    _PyInterpreterFrame* frame = frame_of(gen);
    if (gen->gi_frame_state != FRAME_SUSPENDED || frame->prev_instr != rf.generator_at) {
        Py_XDECREF(value);
        PyErr_Format(PyExc_RuntimeError,
                     "stackless: the unpickled generator %U was run before its tasklet",
                     gen->gi_qualname);
        return nullptr;
    }
    bool push = push_value;  // (false: interrupted between two instructions, nothing to push)
    if (value != nullptr && callee_returned && rf.alt_resume > 0) {
        take_other_way(frame, rf);
        push = rf.alt_push;
    } else if (value != nullptr && callee_returned) {
        _PyGen_SetStopIterationValue(value);  // it drove a generator by a call (see there)
        Py_CLEAR(value);
    }
    return run_generator(gen, value, push, returned);
}

// What a class call whose __init__ frame returned `value` (owned; nullptr: it raised) returns:
// the instance `self` (owned), as type.__call__ does.
PyObject* init_result(PyObject* value, PyObject* self) {
    if (value != nullptr && value != Py_None) {
        PyErr_Format(PyExc_TypeError, "__init__() should return None, not '%.200s'",
                     Py_TYPE(value)->tp_name);
        Py_CLEAR(value);
    }
    if (value == nullptr) {
        Py_DECREF(self);
        return nullptr;
    }
    Py_DECREF(value);
    return self;
}

}  // namespace

PyObject* resume_frames(PyThreadState* ts, _PyCFrame* root, restore_plan& plan, PyObject* value) {
    std::vector<_PyInterpreterFrame*> built;
    built.reserve(plan.frames.size());
    for (restored_frame& rf : plan.frames) {
        if (rf.generator != nullptr) {  // its frame lives in the generator
            built.push_back(frame_of(reinterpret_cast<PyGenObject*>(rf.generator)));
            continue;
        }
        auto* func = reinterpret_cast<PyFunctionObject*>(std::exchange(rf.func, nullptr));
        auto* code = reinterpret_cast<PyCodeObject*>(func->func_code);
        auto* frame = reinterpret_cast<_PyInterpreterFrame*>(ts->datastack_top);
        ts->datastack_top +=
            frame_words(code);  // the root chunk was sized for every frame (chunk_bytes)
        _PyFrame_InitializeSpecials(frame, func, nullptr, code->co_nlocalsplus);
        copy_values(rf.values, rf.nulls, frame->localsplus);
        frame->stacktop = static_cast<int>(PyTuple_GET_SIZE(rf.values));
        frame->prev_instr = _PyCode_CODE(code) + rf.resume - 1;
        frame->previous = built.empty() ? nullptr : built.back();
        built.push_back(frame);
    }
    bool generator_returned = false;  // the frame just resumed was a generator that returned
    bool push = plan.op != resume_op::at_instruction;  // (for the innermost frame)
    for (std::size_t i = built.size(); i-- > 0;) {
        restored_frame& rf = plan.frames[i];
        _PyInterpreterFrame* frame = built[i];
        _PyInterpreterFrame* caller = i > 0 ? built[i - 1] : nullptr;
        if (rf.generator != nullptr) {
            root->current_frame = caller;
            ts->recursion_remaining = ts->recursion_limit - static_cast<int>(i);
            value = resume_generator(rf, value, generator_returned, push, &generator_returned);
            root->current_frame = caller;
            push = true;
            continue;
        }
        bool raising = value == nullptr;
        if (!raising && generator_returned && rf.alt_resume <= 0) {
            // The generator it drove by a call (send, next) returned: the call raises
            // StopIteration with what it returned.
            _PyGen_SetStopIterationValue(value);
            Py_CLEAR(value);
            raising = true;
        }
        if (!raising && !push) {
            Py_DECREF(value);  // interrupted between two instructions: nothing to push
        } else if (!raising) {
            if (generator_returned && rf.alt_resume > 0) {
                take_other_way(frame, rf);
                if (rf.alt_push)
                    frame->localsplus[frame->stacktop++] = value;
                else
                    Py_DECREF(value);
            } else {
                frame->localsplus[frame->stacktop++] = value;
            }
        }
        generator_returned = false;
        push = true;
        value = run_to_end(ts, root, frame, caller, static_cast<int>(i), raising);
        if (PyObject* self = std::exchange(rf.self, nullptr)) value = init_result(value, self);
    }
    root->current_frame = nullptr;
    return value;
}

namespace {

// What CPython's _PyOpcode_Deopt and _PyOpcode_Caches say (not exported; their definitions in
// pycore_opcode.h are C99 only): the base instruction of each specialised one, and the inline
// cache entries after each base instruction. Filled from the `opcode` and `dis` modules
// (set_opcode_tables); until then nothing resumes in place.
unsigned char deopt_table[256];
unsigned char cache_table[256];
bool have_opcode_tables = false;

// The call instruction a frame inside a C call is at (PRECALL or CALL, specialised or not), its
// argument, and where the frame goes on once the call returns; false for anything else.
bool call_at(_PyInterpreterFrame* f, int* oparg, int* resume) {
    if (!have_opcode_tables) return false;
    const unsigned char* _PyOpcode_Deopt = deopt_table;
    const unsigned char* _PyOpcode_Caches = cache_table;
    _Py_CODEUNIT* first = _PyCode_CODE(f->f_code);
    int index = static_cast<int>(f->prev_instr - first);
    if (index < 0 || index >= code_units(f->f_code)) return false;
    int op = _PyOpcode_Deopt[_Py_OPCODE(first[index])];
    int arg = _Py_OPARG(first[index]);
    for (int i = index - 1, shift = 8;
         i >= 0 && _PyOpcode_Deopt[_Py_OPCODE(first[i])] == EXTENDED_ARG; --i, shift += 8)
        arg |= _Py_OPARG(first[i]) << shift;
    int next = index + 1 + _PyOpcode_Caches[op];
    if (op == PRECALL) {
        if (next >= code_units(f->f_code) || _PyOpcode_Deopt[_Py_OPCODE(first[next])] != CALL)
            return false;
        next += 1 + _PyOpcode_Caches[CALL];
    } else if (op != CALL) {
        return false;
    }
    *oparg = arg;
    *resume = next;
    return next < code_units(f->f_code);
}

}  // namespace

int set_opcode_tables(PyObject* deopt, PyObject* caches) {
    if (!PyBytes_Check(deopt) || !PyBytes_Check(caches) || PyBytes_GET_SIZE(deopt) != 256 ||
        PyBytes_GET_SIZE(caches) != 256) {
        PyErr_SetString(PyExc_ValueError, "stackless: bad opcode tables");
        return -1;
    }
    std::memcpy(deopt_table, PyBytes_AS_STRING(deopt), 256);
    std::memcpy(cache_table, PyBytes_AS_STRING(caches), 256);
    have_opcode_tables = true;
    return 0;
}

namespace {

// Entries of localsplus in use while a frame is in the FOR_ITER at its prev_instr (its iterator
// on top), from the bytecode analysis if its code has one already; -1 otherwise. Reads only.
int iteration_top(_PyInterpreterFrame* f) {
    if (!have_opcode_tables || code_extra_index < 0) return -1;
    _Py_CODEUNIT* first = _PyCode_CODE(f->f_code);
    int index = static_cast<int>(f->prev_instr - first);
    if (index < 0 || index >= code_units(f->f_code) ||
        deopt_table[_Py_OPCODE(first[index])] != FOR_ITER)
        return -1;
    void* extra = nullptr;
    if (_PyCode_GetExtra(reinterpret_cast<PyObject*>(f->f_code), code_extra_index, &extra) < 0 ||
        extra == nullptr) {
        PyErr_Clear();
        return -1;
    }
    PyObject* kinds = kinds_at(static_cast<PyObject*>(extra), index);
    if (kinds == nullptr || !PyUnicode_Check(kinds)) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t depth = PyUnicode_GET_LENGTH(kinds);
    if (depth < 1 || depth > f->f_code->co_stacksize) return -1;
    int top = f->f_code->co_nlocalsplus + static_cast<int>(depth);
    PyObject* iterator = f->localsplus[top - 1];
    return iterator != nullptr && PyIter_Check(iterator) ? top : -1;
}

// The entries of localsplus in use while `f`, the frame the hint is for, is blocked in a stackless
// operation: a call's hint says where its arguments end; for a FOR_ITER (hint.depth -1) the
// analysis says (-1 if it cannot).
int blocked_top(_PyInterpreterFrame* f, const stack_hint& hint) {
    return hint.depth >= 0 ? hint.depth : iteration_top(f);
}

// Where the innermost frame of a tasklet blocked in a stackless operation stands (the hint is
// for it): the entries of localsplus in use during the operation, how many of them the
// operation consumes, and where the frame goes on. False if it is neither in a call nor in a
// FOR_ITER.
bool blocked_at(_PyInterpreterFrame* f, const stack_hint& hint, int* top, int* consumed,
                int* resume) {
    *top = blocked_top(f, hint);
    if (hint.depth < 0) {
        *consumed = 0;  // the iterator stays; the value goes on top of it
        *resume = static_cast<int>(f->prev_instr - _PyCode_CODE(f->f_code)) + 1;
        return *top > 0;
    }
    int oparg;
    if (!call_at(f, &oparg, resume)) return false;
    *consumed = oparg + 2;
    return *top - *consumed >= f->f_code->co_nlocalsplus;
}

}  // namespace

int prepare_iteration_analysis(PyObject* code, PyObject* slot_kinds) {
    if (!PyCode_Check(code)) return 0;
    return code_cache(reinterpret_cast<PyCodeObject*>(code), slot_kinds) != nullptr ? 0 : -1;
}

bool can_resume_in_place(_PyInterpreterFrame* innermost, stack_hint& hint, PyObject* func,
                         in_place_state& state) {
    if (innermost == nullptr) return true;  // the operation was the tasklet's function itself
    if (hint.frame != innermost || hint.instr != innermost->prev_instr) return false;
    if (innermost == state.running && hint.accepted)
        // A loop that blocks at the same call again, in the frame its frames went on from last
        // time: that frame has not returned since (the resume would have gone on to its caller)
        // and so neither have its callers: they are the frames accepted last time, and
        // state.resume and consumed still hold.
        return true;
    int top, consumed, resume;
    if (!blocked_at(innermost, hint, &top, &consumed, &resume)) return false;
    _PyInterpreterFrame* f = innermost;
    for (; f->previous != nullptr; f = f->previous) {
        if (f->owner != FRAME_OWNED_BY_THREAD) return false;  // a generator's
        if (f->is_entry && f != state.running) return false;  // called from C
        if (f->f_code->co_flags & (CO_GENERATOR | code_flags_not_resumable)) return false;
    }
    // The outermost frame: the tasklet's own call of its function (a plain Python function).
    if (!(f->is_entry && f->owner == FRAME_OWNED_BY_THREAD && PyFunction_Check(func) &&
          PyFunction_GET_CODE(func) == reinterpret_cast<PyObject*>(f->f_code) &&
          !(f->f_code->co_flags & (CO_GENERATOR | code_flags_not_resumable))))
        return false;
    state.resume = resume;
    state.consumed = consumed;
    hint.accepted = true;
    return true;
}

PyObject* resume_in_place(PyThreadState* ts, _PyCFrame* root, _PyInterpreterFrame* innermost,
                          const stack_hint& hint, in_place_state& state, PyObject* value) {
    if (innermost == nullptr) return value;
    // The innermost frame: what its evaluation loop does once the operation returns. A call's
    // callable and arguments leave the stack, and the result takes their place; FOR_ITER
    // pushes the value above its iterator. It goes on after the instruction.
    const int top = blocked_top(innermost, hint);  // (as can_resume_in_place found it)
    const int base = top - state.consumed;
    for (int i = base; i < top; ++i) Py_CLEAR(innermost->localsplus[i]);
    innermost->stacktop = base;
    innermost->prev_instr = _PyCode_CODE(innermost->f_code) + state.resume - 1;
    int depth = 0;
    for (_PyInterpreterFrame* f = innermost->previous; f != nullptr; f = f->previous) ++depth;
    // The callers called inline: their stacktop and prev_instr are what RETURN_VALUE expects.
    // Each runs as an entry frame once its callee returned (the callee's `previous` is read
    // before it runs: entering the loop rewrites it).
    for (_PyInterpreterFrame* frame = innermost; frame != nullptr; --depth) {
        _PyInterpreterFrame* caller = frame->previous;
        bool raising = value == nullptr;
        if (!raising) frame->localsplus[frame->stacktop++] = value;
        state.running = frame;
        value = run_to_end(ts, root, frame, caller, depth, raising);
        frame = caller;
    }
    state.running = nullptr;
    root->current_frame = nullptr;
    return value;
}

}  // namespace stackless::python

namespace stackless::python {

void drop_frames(_PyInterpreterFrame* innermost, const std::vector<int>& tops, _PyStackChunk* chunk,
                 _PyStackChunk* root_chunk) {
    std::size_t i = 0;
    for (_PyInterpreterFrame* f = innermost; f != nullptr; ++i) {
        _PyInterpreterFrame* outer = f->previous;
        f->stacktop = tops[i];
        if (PyGenObject* gen = generator_of(f)) {
            // The generator ends without running again, as if its frame had returned.
            gen->gi_frame_state = FRAME_CLEARED;
            Py_CLEAR(gen->gi_exc_state.exc_value);
            gen->gi_exc_state.previous_item = nullptr;
            f->previous = nullptr;
        }
        clear_frame(f);  // (a frame object that outlives it gets its own copy, f_back included)
        f = outer;
    }
    PyObjectArenaAllocator arena;
    PyObject_GetArenaAllocator(&arena);
    while (chunk != nullptr && chunk != root_chunk) {
        _PyStackChunk* previous = chunk->previous;
        arena.free(arena.ctx, chunk, chunk->size);
        chunk = previous;
    }
}

}  // namespace stackless::python
