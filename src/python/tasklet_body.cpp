// What runs on a tasklet's own C stack: its bound Python callable (run_body), the frames of an
// unpickled tasklet (run_restored) or of one whose stack was dropped while it was blocked
// (resume_without_stack), and the end of its function. And the core's switch hooks, which move
// the interpreter state in and out with the tasklet.
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <utility>

#include "tasklet_internal.hpp"

namespace stackless::python {

namespace {

void switched_out(void* payload) noexcept {
    auto* t = static_cast<py_tasklet*>(payload);
    save_interp_state(t->tstate, t->saved);
    greenlet_switched_out(t);
    drop_interrupt_trace(t->saved);  // (run(timeout)'s: it belongs to the slice, not the tasklet)
}

// Stackless's schedule callback, cb(prev, next), run in the incoming tasklet once its interpreter
// state is in place. It must not switch; what it raises is reported as unraisable.
void call_schedule_callback(py_tasklet* next) noexcept {
    PyObject* cb = schedule_callback;
    if (cb == nullptr) return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    Py_INCREF(cb);
    PyObject* prev = reinterpret_cast<PyObject*>(this_thread->previous);
    bool was_in = std::exchange(this_thread->in_schedule_callback, true);
    PyObject* r = PyObject_CallFunctionObjArgs(cb, prev != nullptr ? prev : Py_None,
                                               reinterpret_cast<PyObject*>(next), nullptr);
    this_thread->in_schedule_callback = was_in;
    schedule_callback_returned();
    if (r == nullptr) PyErr_WriteUnraisable(cb);
    Py_XDECREF(r);
    Py_DECREF(cb);
    PyErr_Restore(type, value, tb);
}

void switched_in(void* payload) noexcept {
    auto* t = static_cast<py_tasklet*>(payload);
    this_thread->previous = this_thread->current;
    this_thread->current = t;
    count_switch();
    greenlet_switched_in(t);
    // A tasklet that has not started yet sets up its state on its own stack (run_body), and so
    // does one whose stack was dropped (its saved C frame chain went with it).
    if (t->python_started && !t->stack_discarded) {
        restore_interp_state(t->tstate, t->saved);
        if (counting_run) [[unlikely]]
            counting_switched_in(t);
        if (schedule_callback != nullptr) [[unlikely]]
            call_schedule_callback(t);
    }
}

void scheduled_changed(void* payload, bool scheduled) noexcept {
    auto* t = static_cast<py_tasklet*>(payload);
    if (scheduled) {
        if (!t->self_ref) {
            Py_INCREF(t);
            t->self_ref = true;
        }
    } else if (t->self_ref) {
        t->self_ref = false;
        this_thread_data().released.push_back(reinterpret_cast<PyObject*>(t));
    }
}

// Is `func`, a tasklet's function, the blocking operation itself (a channel's send or receive,
// or schedule_remove), called by run_body with nothing of Python in between?
bool is_blocking_operation(PyObject* func) {
    if (!PyCFunction_Check(func)) return false;
    const char* name = reinterpret_cast<PyCFunctionObject*>(func)->m_ml->ml_name;
    PyObject* self = PyCFunction_GET_SELF(func);
    if (self != nullptr && PyObject_TypeCheck(self, &channel_type))
        return std::strcmp(name, "receive") == 0 || std::strcmp(name, "send") == 0;
    return self != nullptr && PyModule_Check(self) && std::strcmp(name, "schedule_remove") == 0;
}

// tasklet_hooks::discard_stack: a blocked tasklet whose C stack holds nothing but the way from
// its function down to the blocking operation (see can_resume_in_place) can go on without it:
// run_body resumes its frames in place when it runs again. Reads fields only (it runs during a
// switch).
bool discard_stack(void* payload) noexcept {
    auto* t = static_cast<py_tasklet*>(payload);
    if (!softswitch_enabled) return false;  // hard switching: every tasklet keeps its stack
    // An unpickled tasklet's frames wait for each other on its C stack (run_restored); one whose
    // frames go on in place after a drop can drop its stack again.
    if (t->restored_body && t->in_place.running == nullptr) return false;
    if (!t->in_blocking_call || !t->python_started || t->python_finished || t->is_main ||
        t->stack_discarded || t->func == nullptr || t->kwargs != nullptr || t->args == nullptr ||
        holds_greenlet_state(t))
        return false;
    // Tracing changes what the evaluation loop keeps on the C stack; a generator's exception
    // state would be in the chain.
    if (t->saved.c_tracefunc != nullptr || t->saved.c_profilefunc != nullptr ||
        t->saved.tracing != 0 || t->saved.exc_info != &t->exc_base)
        return false;
    _PyInterpreterFrame* innermost = t->saved.current_frame;
    if (innermost == nullptr) {
        if (!is_blocking_operation(t->func)) return false;
    } else {
        PyObject* func = t->func;
        // A bound method's call passes its arguments through a small array on the C stack.
        if (PyMethod_Check(func) && PyTuple_GET_SIZE(t->args) <= 4)
            func = PyMethod_GET_FUNCTION(func);
        if (!can_resume_in_place(innermost, t->hint, func, t->in_place)) {
            // Stacks run short here: schedule() records its call sites from now on.
            if (t->blocked_op == resume_op::tempval) this_thread->schedule_hints = true;
            return false;
        }
    }
    t->stack_discarded = true;
    return true;
}

// may_catch_exit: Python code may catch TaskletExit and end normally, as in Stackless.
}  // namespace

const stackless::tasklet_hooks tasklet_switch_hooks{&switched_out, &switched_in, &scheduled_changed,
                                                    true, &discard_stack};

namespace {

void finish_body(py_tasklet* self, PyThreadState* ts, PyObject* result);

void resume_without_stack(py_tasklet* self);

// A tasklet's first Python code on its fresh C stack: `root` (a frame of that stack) starts the
// C frame chain, frames go to its root chunk, its exception stack and recursion depth start
// empty, it runs in its context (nullptr: CPython makes an empty one when needed), with the
// trace functions it was given; the schedule callback hears of it.
void enter_python(py_tasklet* self, _PyCFrame* root) {
    PyObject* context = std::exchange(self->context, nullptr);
    start_interp_state(self->tstate, root, self->root_chunk, &self->exc_base, context);
    self->python_started = true;
    install_hook_functions(self->tstate, self->saved);
    if (counting_run) [[unlikely]]
        counting_switched_in(self);
    if (schedule_callback != nullptr) [[unlikely]]
        call_schedule_callback(self);
}

void raise_python(const std::exception_ptr& pending) noexcept;

}  // namespace

// A tasklet's function begins on a new C stack: it gets its thread's next C-stack serial number
// (get_thread_info's flag 1 << 30, as Stackless numbers its C stacks).
void note_new_cstack(py_tasklet* self) noexcept {
    // (A tasklet runs on a thread that has its data: this_thread is set.)
    self->cstack_serial = static_cast<std::uint32_t>(++this_thread->cstack_serial);
}

void run_body(py_tasklet* self) {
    note_new_cstack(self);
    if (self->stack_discarded) {
        resume_without_stack(self);
        return;
    }
    PyThreadState* ts = self->tstate;
    _PyCFrame root;
    if (self->root_chunk == nullptr) {
        self->root_chunk = new_root_chunk(self->func);
        if (self->root_chunk == nullptr) {
            PyErr_NoMemory();
            throw python_error();
        }
    }
    enter_python(self, &root);
    // The function and its arguments stay referenced by the tasklet while it runs, not by this C
    // frame, so that the garbage collector sees those references (tasklet_traverse); a running
    // tasklet's tasklet_clear leaves them alone.
    // A bomb left in its tempval explodes before its function runs (Stackless's protocol).
    PyObject* tempval = self->tempval;
    self->tempval = nullptr;
    PyObject* result = nullptr;
    // An exception thrown into it before it ran (it takes those itself: set in tasklet_new) is
    // raised here, in its own interpreter state, so that the error handler runs in it.
    if (std::exception_ptr pending = stackless::take_pending_exception()) {
        Py_XDECREF(tempval);
        raise_python(pending);
    } else if (tempval == nullptr || !explode_if_bomb(tempval)) {
        Py_XDECREF(tempval);
        // Without keywords, a vectorcall: fewer C frames on the tasklet's stack, which is what a
        // blocked tasklet keeps (bind() always sets args).
        result =
            self->kwargs == nullptr
                ? PyObject_Vectorcall(self->func, &PyTuple_GET_ITEM(self->args, 0),
                                      static_cast<size_t>(PyTuple_GET_SIZE(self->args)), nullptr)
                : PyObject_Call(self->func, self->args, self->kwargs);
    }
    finish_body(self, ts, result);
}

namespace {

PyObject* resume_value(py_tasklet* self, resume_op op);

// Makes an exception thrown into a tasklet before it ran (the core left it for the function:
// take_pending_exception) the current Python error, to be raised in its frames.
void raise_python(const std::exception_ptr& pending) noexcept {
    try {
        std::rethrow_exception(pending);
    } catch (...) {  // (an exception_ptr never holds a forced unwind)
        raise_from_cxx();
    }
}

// A tasklet whose C stack was dropped while it was blocked (discard_stack) runs again: its
// interpreter state goes back in place (switched_in left it) with a C frame chain that starts
// here, and its frames go on in place with what the blocking operation returns.
void resume_without_stack(py_tasklet* self) {
    PyThreadState* ts = self->tstate;
    _PyCFrame root;
    self->stack_discarded = false;
    self->restored_body = true;  // (its frames now wait for each other as an unpickled one's do)
    resume_interp_state(ts, &root, self->saved);
    if (counting_run) [[unlikely]]
        counting_switched_in(self);
    if (schedule_callback != nullptr) [[unlikely]]
        call_schedule_callback(self);
    self->in_blocking_call = false;
    PyObject* value = nullptr;
    if (std::exception_ptr pending = stackless::take_pending_exception()) {
        raise_python(pending);
    } else {
        value = resume_value(self, self->blocked_op);
    }
    flush_released();
    PyObject* result =
        resume_in_place(ts, &root, self->saved.current_frame, self->hint, self->in_place, value);
    finish_body(self, ts, result);
}

// The value the blocking call an unpickled tasklet was pickled in returns now that it resumes
// (nullptr with an exception set: raise that in its innermost frame instead).
PyObject* resume_value(py_tasklet* self, resume_op op) {
    switch (op) {
        case resume_op::tempval: {
            PyObject* value = self->tempval;  // schedule()'s protocol
            self->tempval = nullptr;
            if (value == nullptr) Py_RETURN_NONE;
            if (explode_if_bomb(value)) return nullptr;
            return value;
        }
        case resume_op::none:
        case resume_op::at_instruction:
            Py_RETURN_NONE;
        case resume_op::receive:
            try {
                std::optional<py_ref> received = stackless::channel<py_ref>::take_delivered();
                if (!received) {
                    PyErr_SetString(PyExc_RuntimeError,
                                    "stackless: this unpickled tasklet was blocked receiving on a "
                                    "channel and was run without being sent a value");
                    return nullptr;
                }
                PyObject* value = received->release();
                if (explode_if_bomb(value)) return nullptr;
                return value;
            } catch (abi::__forced_unwind&) {
                throw;
            } catch (...) {
                return raise_from_cxx();
            }
    }
    Py_RETURN_NONE;
}

}  // namespace

// The core function of an unpickled tasklet: rebuilds its frames on its own C stack and resumes
// them where they were pickled (frame_state.cpp).
void run_restored(py_tasklet* self) {
    note_new_cstack(self);
    self->restored_body = true;
    Py_CLEAR(self->waiting_on);  // woken (or killed): the frames hold what they need
    PyThreadState* ts = self->tstate;
    _PyCFrame root;
    std::unique_ptr<restore_plan> plan(std::exchange(self->plan, nullptr));
    self->awaiting_plan = false;
    std::size_t frame_bytes = plan != nullptr ? plan->chunk_bytes : 0;
    if (self->root_chunk != nullptr) free_root_chunk(self->root_chunk);
    self->root_chunk =
        new_root_chunk_of(offsetof(_PyStackChunk, data) + sizeof(PyObject*) * 32 + frame_bytes);
    if (self->root_chunk == nullptr) {
        PyErr_NoMemory();
        throw python_error();
    }
    enter_python(self, &root);
    PyObject* value = nullptr;
    std::exception_ptr pending = stackless::take_pending_exception();
    if (plan != nullptr && plan->invalid != nullptr && !pending) {
        PyErr_SetObject(PyExc_RuntimeError, plan->invalid);
        plan.reset();  // (its frames never run)
    } else if (plan == nullptr && !pending) {
        PyErr_SetString(PyExc_RuntimeError,
                        "stackless: this tasklet was unpickled without its frames (a channel's "
                        "pickle queued it, but the tasklet's own state never came)");
    } else if (pending) {  // (without frames, a kill just ends it)
        raise_python(pending);
    } else {
        value = resume_value(self, plan->op);
    }
    PyObject* result = nullptr;
    if (plan != nullptr) {
        self->exc_base.exc_value = std::exchange(plan->exc_value, nullptr);
        result = resume_frames(ts, &root, *plan, value);
        plan.reset();
    }
    finish_body(self, ts, result);
}

namespace {

// Whether the pending exception is an exception group of TaskletExits alone: what a tasklet killed
// inside an except* clause ends with (the clause wraps what it raises in a group).
bool only_tasklet_exits() {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    bool only_exits = false;
    if (value != nullptr &&
        PyObject_TypeCheck(value, reinterpret_cast<PyTypeObject*>(PyExc_BaseExceptionGroup))) {
        PyObject* split = PyObject_CallMethod(value, "split", "O", TaskletExit);
        // (match, rest): nothing is left once the TaskletExits are taken out.
        only_exits = split != nullptr && PyTuple_Check(split) && PyTuple_GET_SIZE(split) == 2 &&
                     PyTuple_GET_ITEM(split, 1) == Py_None;
        Py_XDECREF(split);
        PyErr_Clear();
    }
    if (tb != nullptr && value != nullptr) PyException_SetTraceback(value, tb);
    PyErr_Restore(type, value, tb);
    return only_exits;
}

// The end of a tasklet's core function. A normal end, or TaskletExit, ends the tasklet silently;
// any other exception goes to the main tasklet as python_error.
void finish_body(py_tasklet* self, PyThreadState* ts, PyObject* result) {
    recycle_greenlet_state(self);
    // An ended tasklet holds on to nothing; and `root` dies with this function, so the thread
    // state must not point to it when the final switch saves the state.
    ts->cframe = &ts->root_cframe;
    Py_CLEAR(self->exc_base.exc_value);
    self->python_finished = true;
    Py_CLEAR(self->args);
    Py_CLEAR(self->kwargs);
    Py_CLEAR(self->func);
    if (result != nullptr) {
        Py_DECREF(result);
        return;
    }
    if (PyErr_ExceptionMatches(TaskletExit) || only_tasklet_exits()) {
        PyErr_Clear();
        return;
    }
    if (PyObject* handler = error_handler) {
        // Stackless's error handler takes the exception in the ending tasklet; what it raises
        // goes to the main tasklet instead.
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        Py_INCREF(handler);
        PyObject* r =
            PyObject_CallFunctionObjArgs(handler, type, value != nullptr ? value : Py_None,
                                         tb != nullptr ? tb : Py_None, nullptr);
        Py_DECREF(handler);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        if (r != nullptr) {
            Py_DECREF(r);
            return;
        }
    }
    throw python_error();
}

}  // namespace

}  // namespace stackless::python
