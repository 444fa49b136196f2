// stackless.tasklet: a Python object around a core tasklet.
//
// Lifetime: the object holds a core handle; the core holds the object's payload pointer. While
// the tasklet is scheduled (in the run queue or blocked on a channel) the object holds a
// reference to itself, so the scheduler keeps it alive, as in Stackless; a paused tasklet lives
// only by the references Python code holds, and when the last one goes it is killed.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "binding.hpp"
#include "frame_traverse.hpp"

namespace stackless::python {

namespace {

// Per-thread state of the binding, reached through one initial-exec thread-local pointer (the
// general-dynamic model costs a __tls_get_addr call per access in a shared object).
// Every Python thread that used stackless, by thread ident (guarded by the GIL).
std::unordered_map<unsigned long, thread_data*>& all_threads() {
    static auto* map = new std::unordered_map<unsigned long, thread_data*>;
    return *map;
}

}  // namespace

__attribute__((tls_model("initial-exec"))) constinit thread_local thread_data* this_thread =
    nullptr;

namespace {

thread_data& data() {
    if (this_thread == nullptr) [[unlikely]] {
        this_thread = new thread_data;  // lives as long as the thread's tasklets may
        all_threads()[this_thread->ident] = this_thread;
    }
    return *this_thread;
}

void switched_out(void* payload) noexcept {
    auto* t = static_cast<py_tasklet*>(payload);
    save_interp_state(t->tstate, t->saved);
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
    PyObject* r = PyObject_CallFunctionObjArgs(cb, prev != nullptr ? prev : Py_None,
                                               reinterpret_cast<PyObject*>(next), nullptr);
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
    // A tasklet that has not started yet sets up its state on its own stack (run_body), and so
    // does one whose stack was dropped (its saved C frame chain went with it).
    if (t->python_started && !t->stack_discarded) {
        restore_interp_state(t->tstate, t->saved);
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
        data().released.push_back(reinterpret_cast<PyObject*>(t));
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
    if (!t->in_blocking_call || !t->python_started || t->python_finished || t->is_main ||
        t->restored_body || t->stack_discarded || t->func == nullptr || t->kwargs != nullptr ||
        t->args == nullptr)
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
        if (!can_resume_in_place(innermost, t->hint, func)) return false;
    }
    t->stack_discarded = true;
    return true;
}

// may_catch_exit: Python code may catch TaskletExit and end normally, as in Stackless.
const stackless::tasklet_hooks hooks{&switched_out, &switched_in, &scheduled_changed, true,
                                     &discard_stack};

// The body of every tasklet's core function: runs the bound Python callable on the tasklet's own
// C stack. A normal end, or TaskletExit, ends the tasklet silently; any other exception goes to
// the main tasklet as python_error.
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
    if (schedule_callback != nullptr) [[unlikely]]
        call_schedule_callback(self);
}

void raise_python(const std::exception_ptr& pending) noexcept;

void run_body(py_tasklet* self) {
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

PyObject* resume_value(py_tasklet* self, resume_op op);

// Makes an exception thrown into a tasklet before it ran (the core left it for the function:
// take_pending_exception) the current Python error, to be raised in its frames.
void raise_python(const std::exception_ptr& pending) noexcept {
    try {
        std::rethrow_exception(pending);
    } catch (...) {
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
    resume_interp_state(ts, &root, self->saved);
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
    PyObject* result = resume_in_place(ts, &root, self->saved.current_frame, self->hint, value);
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
            } catch (...) {
                return raise_from_cxx();
            }
    }
    Py_RETURN_NONE;
}

// The core function of an unpickled tasklet: rebuilds its frames on its own C stack and resumes
// them where they were pickled (frame_state.cpp).
void run_restored(py_tasklet* self) {
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
    if (plan == nullptr && !pending) {
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

// The end of a tasklet's core function. A normal end, or TaskletExit, ends the tasklet silently;
// any other exception goes to the main tasklet as python_error.
void finish_body(py_tasklet* self, PyThreadState* ts, PyObject* result) {
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
    if (PyErr_ExceptionMatches(TaskletExit)) {
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
        PyObject* r = PyObject_CallFunctionObjArgs(handler, type, value != nullptr ? value : Py_None,
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

py_tasklet* as_tasklet(PyObject* o) {
    return reinterpret_cast<py_tasklet*>(o);
}

int check_thread(py_tasklet* t) {
    if (t->thread != this_thread) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError, "tasklet belongs to another thread");
        return -1;
    }
    return 0;
}

}  // namespace

namespace {
int install_thread_sentinel();
}  // namespace

namespace {
// The id of this OS thread's Python thread state whose stackless data retire_thread() tore down
// (0: none). Code that CPython runs later while it clears that thread state (a __del__) must not
// start tasklets again: nothing would end them while Python can still run.
__attribute__((
    tls_model("initial-exec"))) constinit thread_local std::uint64_t retired_thread_state = 0;
}  // namespace

py_tasklet* thread_main() {
    if (this_thread == nullptr && retired_thread_state != 0 &&
        PyThreadState_GetID(PyThreadState_Get()) == retired_thread_state) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError,
                        "stackless: this thread is ending; it cannot run tasklets any more");
        return nullptr;
    }
    thread_data& d = data();
    if (d.main_object != nullptr) [[likely]]
        return d.main_object;
    try {
        // Python code recurses through C calls up to the recursion limit (1000 levels of up to
        // a few KiB each), so tasklets get stacks as large as a thread's; only the pages a
        // tasklet touches become resident.
        stackless::configure({8 * 1024 * 1024, 256});
    } catch (const stackless::error&) {
        // This thread's scheduler exists already (C++ code used it first): keep its stacks.
    }
    auto* t = reinterpret_cast<py_tasklet*>(tasklet_type.tp_alloc(&tasklet_type, 0));
    if (t == nullptr) return nullptr;
    try {
        new (&t->core) stackless::tasklet(stackless::getmain());
    } catch (...) {
        Py_DECREF(t);
        raise_from_cxx();
        return nullptr;
    }
    t->tstate = PyThreadState_Get();
    t->thread_ident = PyThread_get_thread_ident();
    t->thread = &d;
    ++d.objects;
    t->python_started = true;
    t->is_main = true;
    t->core.set_hooks(&hooks, t);
    d.main_object = t;
    d.current = t;
    if (install_thread_sentinel() < 0) PyErr_WriteUnraisable(nullptr);
    return t;
}

py_tasklet* object_of(const stackless::tasklet& t) noexcept {
    // (The collector may traverse a channel from another thread than its waiters': payload()
    // refuses a tasklet of another thread, and this must not throw.)
    try {
        return t ? static_cast<py_tasklet*>(t.payload()) : nullptr;
    } catch (...) {
        return nullptr;
    }
}

PyObject* new_ref_or_none(const stackless::tasklet& t) noexcept {
    py_tasklet* o = object_of(t);
    if (o == nullptr) Py_RETURN_NONE;
    return Py_NewRef(reinterpret_cast<PyObject*>(o));
}

py_tasklet* current_object_slow() {
    if (thread_main() == nullptr) return nullptr;
    return static_cast<py_tasklet*>(stackless::tasklet::current_payload());
}

PyObject* thread_idents() {
    PyObject* list = PyList_New(0);
    if (list == nullptr) return nullptr;
    for (const auto& [ident, data] : all_threads()) {
        if (data->main_object == nullptr || data->ended) continue;
        if (data->main_object->core.owner_runcount() < 0) continue;  // its thread has ended
        PyObject* id = PyLong_FromUnsignedLong(ident);
        if (id == nullptr || PyList_Append(list, id) < 0) {
            Py_XDECREF(id);
            Py_DECREF(list);
            return nullptr;
        }
        Py_DECREF(id);
    }
    return list;
}

bool thread_info(unsigned long ident, py_tasklet** main, py_tasklet** current, int* runcount) {
    auto it = all_threads().find(ident);
    if (it == all_threads().end() || it->second->main_object == nullptr) return false;
    *main = it->second->main_object;
    *current = it->second->current;
    *runcount = (*main)->core.owner_runcount();
    return *runcount >= 0;
}

int& switch_trap_level_slow() noexcept {
    return data().switch_trap;
}

int refuse_if_trapped() noexcept {
    if (this_thread == nullptr || this_thread->switch_trap <= 0) [[likely]]
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "switch_trap: switching tasklets is forbidden here");
    return -1;
}

void flush_released_slow() noexcept {
    thread_data* d = this_thread;
    // Not reentrant: a deallocation it causes may flush again; the outer loop carries on instead
    // of recursing once per released tasklet.
    if (d->flushing) return;
    d->flushing = true;
    while (!d->released.empty()) {
        PyObject* o = d->released.back();
        d->released.pop_back();
        Py_DECREF(o);
    }
    d->flushing = false;
}

void shutdown_thread() noexcept {
    if (this_thread == nullptr || this_thread->main_object == nullptr) return;
    if (this_thread->ended || _Py_IsFinalizing()) {
        // Killing runs Python code, which the interpreter may no longer be able to do. Whatever
        // was started meanwhile is dropped; the C++ scheduler must find nothing to resume.
        stackless::abandon_survivors();
        return;
    }
    this_thread->ended = true;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    try {
        stackless::kill_all();
    } catch (...) {
        raise_from_cxx();
    }
    if (PyErr_Occurred()) PyErr_WriteUnraisable(nullptr);
    // What survived its kills (it caught TaskletExit every time) is dropped without running:
    // the C++ scheduler must find nothing to resume once the thread's Python state is gone.
    stackless::abandon_survivors();
    flush_released();
    PyErr_Restore(type, value, tb);
}

void shutdown_main_thread() noexcept {
    shutdown_thread();
}

namespace {

void release_thread_data(thread_data* d) noexcept {
    if (d == nullptr || --d->objects > 0 || !d->ended || d->main_object != nullptr) return;
    // Its thread has ended: what it released was flushed then, and nothing adds to it since.
    for (PyObject* o : d->released) Py_DECREF(o);
    delete d;
}

// A Python thread other than the main one is ending (its tasklets are gone): it forgets its main
// tasklet, and its data goes with the last tasklet object of the thread.
void retire_thread() noexcept {
    thread_data* d = this_thread;
    if (d == nullptr || !d->ended || d->main_object == nullptr) return;
    auto& threads = all_threads();
    if (auto it = threads.find(d->ident); it != threads.end() && it->second == d) threads.erase(it);
    py_tasklet* main = d->main_object;
    d->main_object = nullptr;
    d->current = nullptr;
    d->previous = nullptr;
    // The C++ scheduler's end must call nothing of ours, whoever still holds the object.
    try {
        main->core.set_hooks(nullptr, nullptr);
    } catch (...) {
    }
    ++d->objects;          // d stays while the main object goes
    if (main->self_ref) {  // it is in the run queue, which holds it
        main->self_ref = false;
        Py_DECREF(reinterpret_cast<PyObject*>(main));
    }
    Py_DECREF(reinterpret_cast<PyObject*>(main));
    // The OS thread may outlive this thread state (a C thread that takes and releases thread
    // states with PyGILState_Ensure): if it uses stackless again, it starts afresh.
    this_thread = nullptr;
    retired_thread_state = PyThreadState_GetID(PyThreadState_Get());
    release_thread_data(d);
}

}  // namespace

namespace {

// Ends a Python thread's tasklets while its thread state still works: an object kept in the
// thread state's dict, which CPython clears (with the GIL held) just before the thread ends.
struct py_thread_sentinel {
    PyObject_HEAD
};

void sentinel_dealloc(PyObject* o) {
    shutdown_thread();
    retire_thread();
    Py_TYPE(o)->tp_free(o);
}

PyTypeObject sentinel_type = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "stackless._thread_sentinel";
    t.tp_basicsize = sizeof(py_thread_sentinel);
    t.tp_flags = Py_TPFLAGS_DEFAULT;
    t.tp_dealloc = sentinel_dealloc;
    return t;
}();

int install_thread_sentinel() {
    if (!(sentinel_type.tp_flags & Py_TPFLAGS_READY) && PyType_Ready(&sentinel_type) < 0) return -1;
    PyObject* dict = PyThreadState_GetDict();
    if (dict == nullptr) return 0;  // no thread state dict: nothing to hook
    PyObject* sentinel = PyType_GenericAlloc(&sentinel_type, 0);
    if (sentinel == nullptr) return -1;
    int r = PyDict_SetItemString(dict, "stackless.thread_sentinel", sentinel);
    Py_DECREF(sentinel);
    return r;
}

}  // namespace

namespace {

// ---------------------------------------------------------------------------------------------
// Creation and binding

PyObject* tasklet_new(PyTypeObject* type, PyObject*, PyObject*) {
    if (thread_main() == nullptr) return nullptr;
    auto* t = reinterpret_cast<py_tasklet*>(type->tp_alloc(type, 0));
    if (t == nullptr) return nullptr;
    try {
        new (&t->core) stackless::tasklet();
    } catch (...) {
        Py_DECREF(t);
        return raise_from_cxx();
    }
    t->tstate = PyThreadState_Get();
    t->thread_ident = this_thread->ident;
    t->thread = this_thread;
    ++this_thread->objects;
    t->core.set_hooks(&hooks, t);
    t->core.set_function_takes_pending(true);  // (run_body raises it: see there)
    return reinterpret_cast<PyObject*>(t);
}

// A tasklet about to get something to run runs it in a copy of the running code's contextvars
// context (as an asyncio task does), unless it was given one (set_context()); if the running
// code never used one, it gets none, and CPython makes an empty one when needed.
int take_creator_context(py_tasklet* t) {
    if (t->context != nullptr || t->tstate->context == nullptr) return 0;
    t->context = PyContext_CopyCurrent();
    return t->context != nullptr ? 0 : -1;
}

// Binds function and arguments (Stackless's tasklet.bind); `insert` as setup() does.
int bind(py_tasklet* self, PyObject* func, PyObject* args, PyObject* kwargs) {
    if (check_thread(self) < 0) return -1;
    if (self->is_main) {
        PyErr_SetString(PyExc_RuntimeError, "can't (re)bind the main tasklet");
        return -1;
    }
    stackless::tasklet::status_flags st;
    try {
        st = self->core.status();
    } catch (...) {
        return raise_from_cxx_int();
    }
    if (st.current) {
        PyErr_SetString(PyExc_RuntimeError, "can't (re)bind the current tasklet");
        return -1;
    }
    if (st.scheduled) {
        PyErr_SetString(PyExc_RuntimeError, "tasklet is scheduled");
        return -1;
    }
    if (st.started) {
        PyErr_SetString(PyExc_RuntimeError,
                        "tasklet has C state on its stack (it has started; kill it first)");
        return -1;
    }
    if (func != nullptr && func != Py_None && !PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "tasklet function must be a callable");
        return -1;
    }
    if (args != nullptr && args != Py_None && !PyTuple_Check(args)) {
        args = PySequence_Tuple(args);
        if (args == nullptr) return -1;
    } else {
        Py_XINCREF(args);
    }
    if (kwargs != nullptr && kwargs != Py_None && !PyDict_Check(kwargs)) {
        Py_XDECREF(args);
        PyErr_SetString(PyExc_TypeError, "tasklet kwargs must be a dict");
        return -1;
    }
    bool unbind = (func == nullptr || func == Py_None) && (args == nullptr || args == Py_None) &&
                  (kwargs == nullptr || kwargs == Py_None);
    if (func != nullptr && func != Py_None) Py_XSETREF(self->func, Py_NewRef(func));
    if (unbind) Py_CLEAR(self->func);
    Py_CLEAR(self->args);
    Py_CLEAR(self->kwargs);
    bool with_args =
        (args != nullptr && args != Py_None) || (kwargs != nullptr && kwargs != Py_None);
    if (with_args) {
        if (self->func == nullptr) {
            Py_XDECREF(args);
            PyErr_SetString(PyExc_RuntimeError, "the tasklet was not bound to a function");
            return -1;
        }
        if (args != nullptr && args != Py_None) {
            self->args = args;  // the reference taken above
        } else {
            Py_XDECREF(args);
            self->args = PyTuple_New(0);
            if (self->args == nullptr) return -1;
        }
        self->kwargs = (kwargs != nullptr && kwargs != Py_None) ? Py_NewRef(kwargs) : nullptr;
        if (take_creator_context(self) < 0) return -1;
    } else {
        Py_XDECREF(args);
    }
    self->python_started = false;
    delete std::exchange(self->plan, nullptr);  // an unpickled tasklet bound to something else
    self->awaiting_plan = false;
    try {
        if (with_args)
            self->core.bind(&run_body, self);
        else if (self->core.alive())
            self->core.bind(&run_body);  // no longer runnable
    } catch (...) {
        return raise_from_cxx_int();
    }
    return 0;
}

int tasklet_init(PyObject* o, PyObject* args, PyObject* kwds) {
    if (kwds == nullptr && PyTuple_GET_SIZE(args) == 1)  // tasklet(func): the common case
        return bind(as_tasklet(o), PyTuple_GET_ITEM(args, 0), nullptr, nullptr);
    static const char* names[] = {"func", "args", "kwargs", nullptr};
    PyObject *func = nullptr, *fargs = nullptr, *fkwargs = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO:tasklet", const_cast<char**>(names), &func,
                                     &fargs, &fkwargs))
        return -1;
    if (func == nullptr && fargs == nullptr && fkwargs == nullptr) return 0;
    return bind(as_tasklet(o), func, fargs, fkwargs);
}

// stackless.tasklet(func): the common way to make one, without building an argument tuple.
// Other calls, and subclasses (their __init__ may differ), take the ordinary path.
PyObject* tasklet_vectorcall(PyObject* type, PyObject* const* args, size_t nargsf,
                             PyObject* kwnames) {
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames == nullptr && n == 1 && type == reinterpret_cast<PyObject*>(&tasklet_type)) {
        PyObject* o = tasklet_new(&tasklet_type, nullptr, nullptr);
        if (o == nullptr) return nullptr;
        // A new tasklet is unbound and unscheduled: binding only records the function (what
        // bind() would conclude after checking that).
        if (args[0] != Py_None && PyCallable_Check(args[0])) {
            as_tasklet(o)->func = Py_NewRef(args[0]);
            return o;
        }
        if (bind(as_tasklet(o), args[0], nullptr, nullptr) < 0) Py_CLEAR(o);
        return o;
    }
    PyObject* tuple = PyTuple_New(n);
    if (tuple == nullptr) return nullptr;
    for (Py_ssize_t i = 0; i < n; ++i) PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    PyObject* kwargs = nullptr;
    if (kwnames != nullptr) {
        kwargs = PyDict_New();
        for (Py_ssize_t i = 0; kwargs != nullptr && i < PyTuple_GET_SIZE(kwnames); ++i) {
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0)
                Py_CLEAR(kwargs);
        }
        if (kwargs == nullptr) {
            Py_DECREF(tuple);
            return nullptr;
        }
    }
    PyObject* result = PyType_Type.tp_call(type, tuple, kwargs);
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return result;
}

}  // namespace

int prepare_restored_waiter(py_tasklet* t) {
    stackless::tasklet::status_flags st;
    try {
        st = t->core.status();
    } catch (...) {
        return raise_from_cxx_int();
    }
    if (t->awaiting_plan || t->plan != nullptr) {
        if (!st.started) return 0;  // bound for this already (and maybe queued by a channel)
    } else if (!t->is_main && !st.alive && !st.scheduled && t->func == nullptr) {
        // A fresh tasklet from the unpickler: it resumes its frames in a copy of the context
        // of the code unpickling it.
        if (take_creator_context(t) < 0) return -1;
        try {
            t->core.bind(&run_restored, t);
            t->core.set_function_takes_pending(true);
        } catch (...) {
            return raise_from_cxx_int();
        }
        t->python_started = false;
        t->awaiting_plan = true;
        return 0;
    }
    PyErr_SetString(PyExc_RuntimeError,
                    "stackless: only a new tasklet made by the unpickler can take unpickled "
                    "frames (this one is bound, scheduled or has run)");
    return -1;
}

int restore_tasklet(py_tasklet* t, restore_plan* plan) {
    if (t->plan != nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "stackless: the tasklet has its frames already");
        return -1;
    }
    if (prepare_restored_waiter(t) < 0) return -1;
    t->plan = plan;
    t->awaiting_plan = false;
    return 0;
}

namespace {

PyObject* tasklet_bind(PyObject* o, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"func", "args", "kwargs", nullptr};
    PyObject *func = nullptr, *fargs = nullptr, *fkwargs = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO:bind", const_cast<char**>(names), &func,
                                     &fargs, &fkwargs))
        return nullptr;
    if (bind(as_tasklet(o), func != nullptr ? func : Py_None, fargs, fkwargs) < 0) return nullptr;
    return Py_NewRef(o);
}

PyObject* tasklet_setup(PyObject* o, PyObject* args, PyObject* kwds) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    try {
        if (self->core.alive()) {
            PyErr_SetString(PyExc_RuntimeError, "tasklet is alive");
            return nullptr;
        }
    } catch (...) {
        return raise_from_cxx();
    }
    if (self->func == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "the tasklet was not bound to a function");
        return nullptr;
    }
    if (bind(self, nullptr, args, kwds != nullptr ? kwds : Py_None) < 0) return nullptr;
    try {
        self->core.insert();
    } catch (...) {
        return raise_from_cxx();
    }
    return Py_NewRef(o);
}

// ---------------------------------------------------------------------------------------------
// Scheduling

PyObject* tasklet_insert(PyObject* o, PyObject*) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    try {
        self->core.insert();
    } catch (...) {
        return raise_from_cxx();
    }
    return Py_NewRef(o);
}

PyObject* tasklet_remove(PyObject* o, PyObject*) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    if (!run_core([&] { self->core.remove(); })) return nullptr;
    return Py_NewRef(o);
}

// Whether switching to `self` would switch at all (it is not the running tasklet).
bool is_running(py_tasklet* self) {
    return stackless::tasklet::current_payload() == self;
}

PyObject* tasklet_run(PyObject* o, PyObject*) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    if (!is_running(self) && refuse_if_trapped() < 0) return nullptr;
    if (!run_core([&] { self->core.run(); })) return nullptr;
    Py_RETURN_NONE;
}

PyObject* tasklet_switch(PyObject* o, PyObject*) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    if (!is_running(self) && refuse_if_trapped() < 0) return nullptr;
    if (!run_core([&] { self->core.switch_to(); })) return nullptr;
    Py_RETURN_NONE;
}

// Raises (type, value, tb) in the tasklet: at once if it is the current one, else through the
// core, which switches to it unless `pending`.
PyObject* throw_into(py_tasklet* self, PyObject* type, PyObject* value, PyObject* tb,
                     bool pending) {
    if (check_thread(self) < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return nullptr;
    }
    bool alive;
    try {
        alive = self->core.alive();
    } catch (...) {
        return raise_from_cxx();
    }
    if (!alive) {
        bool is_exit =
            PyType_Check(type) && PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(type),
                                                   reinterpret_cast<PyTypeObject*>(TaskletExit));
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        if (is_exit) Py_RETURN_NONE;  // ending an ended tasklet is no error
        PyErr_SetString(PyExc_RuntimeError, "You cannot throw to a dead tasklet");
        return nullptr;
    }
    if (!pending && !is_running(self) && refuse_if_trapped() < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return nullptr;
    }
    if (!run_core([&] {
            self->core.throw_exception(std::make_exception_ptr(python_error(type, value, tb)),
                                       pending);
        }))
        return nullptr;
    Py_RETURN_NONE;
}

PyObject* tasklet_throw(PyObject* o, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"exc", "val", "tb", "pending", nullptr};
    PyObject *exc = Py_None, *val = Py_None, *tb = Py_None;
    int pending = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOOp:throw", const_cast<char**>(names), &exc,
                                     &val, &tb, &pending))
        return nullptr;
    if (exc == Py_None) exc = TaskletExit;
    PyObject* type;
    PyObject* value;
    if (PyExceptionInstance_Check(exc)) {
        if (val != Py_None) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return nullptr;
        }
        type = Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(exc)));
        value = Py_NewRef(exc);
    } else if (PyExceptionClass_Check(exc)) {
        type = Py_NewRef(exc);
        value = Py_NewRef(val);
    } else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
        return nullptr;
    }
    PyObject* traceback = tb != Py_None ? Py_NewRef(tb) : nullptr;
    if (traceback != nullptr && !PyTraceBack_Check(traceback)) {
        Py_DECREF(type);
        Py_DECREF(value);
        Py_DECREF(traceback);
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback object");
        return nullptr;
    }
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != nullptr) PyException_SetTraceback(value, traceback);
    return throw_into(as_tasklet(o), type, value, traceback, pending != 0);
}

PyObject* tasklet_raise_exception(PyObject* o, PyObject* args) {
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "raise_exception() takes an exception class");
        return nullptr;
    }
    PyObject* cls = PyTuple_GET_ITEM(args, 0);
    if (!PyExceptionClass_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "raise_exception() needs an exception class");
        return nullptr;
    }
    PyObject* rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == nullptr) return nullptr;
    PyObject* value = PyObject_Call(cls, rest, nullptr);
    Py_DECREF(rest);
    if (value == nullptr) return nullptr;
    return throw_into(as_tasklet(o), Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(value))), value,
                      nullptr, false);
}

PyObject* tasklet_kill(PyObject* o, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"pending", nullptr};
    int pending = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:kill", const_cast<char**>(names), &pending))
        return nullptr;
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    if (self->is_main) {
        PyErr_SetString(PyExc_RuntimeError, "the main tasklet cannot be killed");
        return nullptr;
    }
    bool alive = false;
    if (!run_core([&] { alive = self->core.alive(); })) return nullptr;
    if (!pending && alive && !is_running(self) && refuse_if_trapped() < 0) return nullptr;
    if (!run_core([&] { self->core.kill(pending != 0); })) return nullptr;
    Py_RETURN_NONE;
}

// set_context(context): the contextvars context the tasklet runs in from now on.
PyObject* tasklet_set_context(PyObject* o, PyObject* context) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    if (!PyContext_CheckExact(context)) {
        PyErr_SetString(PyExc_TypeError, "set_context() needs a contextvars.Context");
        return nullptr;
    }
    if (is_running(self)) {
        PyThreadState* ts = self->tstate;
        Py_XSETREF(ts->context, Py_NewRef(context));
        ts->context_ver++;
    } else if (self->python_started) {
        Py_XSETREF(self->saved.context, Py_NewRef(context));
    } else {
        Py_XSETREF(self->context, Py_NewRef(context));
    }
    return Py_NewRef(o);
}

// context_run(callable, *args, **kwargs): calls it in the tasklet's context (Context.run of
// that context; in the running tasklet's own context, just a call).
PyObject* tasklet_context_run(PyObject* o, PyObject* const* args, size_t nargsf,
                              PyObject* kwnames) {
    py_tasklet* self = as_tasklet(o);
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n < 1) {
        PyErr_SetString(PyExc_TypeError, "context_run() takes a callable");
        return nullptr;
    }
    if (check_thread(self) < 0) return nullptr;
    if (is_running(self)) return PyObject_Vectorcall(args[0], args + 1, n - 1, kwnames);
    PyObject*& slot = self->python_started ? self->saved.context : self->context;
    if (slot == nullptr) {
        slot = PyContext_New();
        if (slot == nullptr) return nullptr;
    }
    PyObject* run = PyObject_GetAttrString(slot, "run");
    if (run == nullptr) return nullptr;
    PyObject* result = PyObject_Vectorcall(run, args, n, kwnames);
    Py_DECREF(run);
    return result;
}

PyObject* tasklet_set_atomic(PyObject* o, PyObject* flag) {
    py_tasklet* self = as_tasklet(o);
    int on = PyObject_IsTrue(flag);
    if (on < 0) return nullptr;
    bool old = self->atomic;
    self->atomic = on != 0;
    return PyBool_FromLong(old);
}

// bind_thread(thread_id=None): moves a tasklet that has not run yet (just made, or just
// unpickled) to this thread, or to the thread with that id, where it will run (Stackless's
// bind_thread). Only such tasklets can move: a started one has its C stack on its thread.
PyObject* tasklet_bind_thread(PyObject* o, PyObject* args) {
    py_tasklet* self = as_tasklet(o);
    PyObject* id = Py_None;
    if (!PyArg_ParseTuple(args, "|O:bind_thread", &id)) return nullptr;
    if (self->is_main || self->python_started) {
        PyErr_SetString(PyExc_RuntimeError,
                        "bind_thread: only a tasklet that has not run yet can move to another "
                        "thread");
        return nullptr;
    }
    unsigned long ident = PyThread_get_thread_ident();
    if (id != Py_None) {
        ident = PyLong_AsUnsignedLong(id);
        if (ident == static_cast<unsigned long>(-1) && PyErr_Occurred()) return nullptr;
    }
    thread_data* target;
    if (ident == PyThread_get_thread_ident()) {
        if (thread_main() == nullptr) return nullptr;
        target = this_thread;
    } else {
        auto found = all_threads().find(ident);
        if (found == all_threads().end() || found->second->ended ||
            found->second->main_object == nullptr) {
            PyErr_Format(PyExc_ValueError, "bind_thread: no thread with id %lu runs stackless",
                         ident);
            return nullptr;
        }
        target = found->second;
    }
    auto* from = static_cast<thread_data*>(self->thread);
    if (target == from) Py_RETURN_NONE;
    if (from != nullptr && from->ended) {
        PyErr_SetString(PyExc_RuntimeError, "bind_thread: the tasklet's thread has ended");
        return nullptr;
    }
    try {
        self->core.move_to_thread_of(target->main_object->core);
    } catch (...) {
        return raise_from_cxx();
    }
    self->tstate = target->main_object->tstate;
    self->thread_ident = target->ident;
    self->thread = target;
    ++target->objects;
    release_thread_data(from);
    Py_RETURN_NONE;
}

PyObject* tasklet_set_ignore_nesting(PyObject* o, PyObject* flag) {
    py_tasklet* self = as_tasklet(o);
    int on = PyObject_IsTrue(flag);
    if (on < 0) return nullptr;
    bool old = self->ignore_nesting;
    self->ignore_nesting = on != 0;
    return PyBool_FromLong(old);
}

// ---------------------------------------------------------------------------------------------
// Attributes

// Its thread has ended and this is another thread: its tasklets were killed then (or, if one
// caught every kill, dropped without running again).
bool of_ended_thread(const py_tasklet* t) noexcept {
    auto* thread = static_cast<const thread_data*>(t->thread);
    return thread != nullptr && thread != this_thread && thread->ended;
}

template <bool (stackless::tasklet::*query)() const,
          bool (*from_flags)(const stackless::tasklet::status_flags&)>
PyObject* get_flag(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (of_ended_thread(self)) Py_RETURN_FALSE;  // it can never run again
    try {
        if (self->thread != this_thread) [[unlikely]]  // (the GIL keeps its thread still)
            return PyBool_FromLong(from_flags(self->core.status_from_any_thread()));
        return PyBool_FromLong(((self->core).*query)());
    } catch (...) {
        return raise_from_cxx();
    }
}

using flags = stackless::tasklet::status_flags;
bool alive_flag(const flags& f) {
    return f.alive;
}
bool paused_flag(const flags& f) {
    return f.alive && !f.scheduled;
}
bool blocked_flag(const flags& f) {
    return f.blocked;
}
bool scheduled_flag(const flags& f) {
    return f.scheduled;
}
bool current_flag(const flags& f) {
    return f.current;
}

PyObject* get_next(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (of_ended_thread(self)) Py_RETURN_NONE;
    if (check_thread(self) < 0) return nullptr;
    try {
        return new_ref_or_none(self->core.next());
    } catch (...) {
        return raise_from_cxx();
    }
}

PyObject* get_prev(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (of_ended_thread(self)) Py_RETURN_NONE;
    if (check_thread(self) < 0) return nullptr;
    try {
        return new_ref_or_none(self->core.prev());
    } catch (...) {
        return raise_from_cxx();
    }
}

PyObject* get_tempval(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    return Py_NewRef(self->tempval != nullptr ? self->tempval : Py_None);
}

int set_tempval(PyObject* o, PyObject* value, void*) {
    py_tasklet* self = as_tasklet(o);
    Py_XSETREF(self->tempval, Py_XNewRef(value));
    return 0;
}

PyObject* get_block_trap(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return nullptr;
    return PyBool_FromLong(self->core.block_trap());
}

int set_block_trap(PyObject* o, PyObject* value, void*) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return -1;
    int on = value != nullptr ? PyObject_IsTrue(value) : 0;
    if (on < 0) return -1;
    self->core.set_block_trap(on != 0);
    return 0;
}

PyObject* get_atomic(PyObject* o, void*) {
    return PyBool_FromLong(as_tasklet(o)->atomic);
}
PyObject* get_ignore_nesting(PyObject* o, void*) {
    return PyBool_FromLong(as_tasklet(o)->ignore_nesting);
}
PyObject* get_is_main(PyObject* o, void*) {
    return PyBool_FromLong(as_tasklet(o)->is_main);
}
PyObject* get_thread_id(PyObject* o, void*) {
    py_tasklet* t = as_tasklet(o);
    if (of_ended_thread(t)) return PyLong_FromLong(-1);  // as Stackless reports
    return PyLong_FromUnsignedLong(t->thread_ident);
}
PyObject* get_nesting_level(PyObject*, void*) {
    return PyLong_FromLong(0);
}

// trace_function / profile_function: the tasklet's own (Stackless: tracing is per tasklet).
template <bool trace>
PyObject* get_hook_function(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    Py_tracefunc func;
    PyObject* obj;
    if (is_running(self)) {
        func = trace ? self->tstate->c_tracefunc : self->tstate->c_profilefunc;
        obj = trace ? self->tstate->c_traceobj : self->tstate->c_profileobj;
    } else {
        func = trace ? self->saved.c_tracefunc : self->saved.c_profilefunc;
        obj = trace ? self->saved.c_traceobj : self->saved.c_profileobj;
    }
    Py_tracefunc python = trace ? python_trace_trampoline : python_profile_trampoline;
    return Py_NewRef(func == python && obj != nullptr ? obj : Py_None);
}

template <bool trace>
int set_hook_function(PyObject* o, PyObject* value, void*) {
    py_tasklet* self = as_tasklet(o);
    if (check_thread(self) < 0) return -1;
    if (value == nullptr) value = Py_None;
    if (value != Py_None && !PyCallable_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "the trace or profile function must be callable");
        return -1;
    }
    if (is_running(self)) {
        PyObject* r = PySys_GetObject(trace ? "settrace" : "setprofile");  // borrowed
        if (r == nullptr) {
            PyErr_SetString(PyExc_RuntimeError, "sys.settrace is missing");
            return -1;
        }
        PyObject* done = PyObject_CallOneArg(r, value);
        if (done == nullptr) return -1;
        Py_DECREF(done);
        return 0;
    }
    Py_tracefunc python = trace ? python_trace_trampoline : python_profile_trampoline;
    Py_tracefunc& func = trace ? self->saved.c_tracefunc : self->saved.c_profilefunc;
    PyObject*& obj = trace ? self->saved.c_traceobj : self->saved.c_profileobj;
    func = value == Py_None ? nullptr : python;
    Py_XSETREF(obj, value == Py_None ? nullptr : Py_NewRef(value));
    return 0;
}

PyObject* get_context(PyObject* o, void*) {
    py_tasklet* self = as_tasklet(o);
    if (self->context != nullptr) return Py_NewRef(self->context);
    if (self->saved.context != nullptr) return Py_NewRef(self->saved.context);
    try {
        if (self->core.is_current()) return PyContext_CopyCurrent();
    } catch (...) {
        return raise_from_cxx();
    }
    Py_RETURN_NONE;
}

// ---------------------------------------------------------------------------------------------
// Object protocol

// A switched-out tasklet's frames, context and trace functions are its own references; a
// scheduled tasklet's reference to itself is not visited here but by the channel it waits on
// (channel_traverse) or not at all (the run queue is a root). So a blocked tasklet that nothing
// but an unreachable channel refers to is garbage, and the collector kills it (tasklet_finalize).
int tasklet_traverse(PyObject* o, visitproc visit, void* arg) {
    py_tasklet* self = as_tasklet(o);
    Py_VISIT(self->func);
    Py_VISIT(self->args);
    Py_VISIT(self->kwargs);
    Py_VISIT(self->tempval);
    Py_VISIT(self->context);
    Py_VISIT(self->waiting_on);
    if (self->plan != nullptr)
        if (int r = traverse_plan(*self->plan, visit, arg)) return r;
    bool suspended_in_python = false;  // switched out with frames of its own
    try {
        suspended_in_python = self->python_started && !self->is_main && this_thread != nullptr &&
                              this_thread->current != self && self->thread == this_thread &&
                              self->core.status().started;
    } catch (...) {
    }
    if (suspended_in_python) {
        Py_VISIT(self->saved.context);
        Py_VISIT(self->saved.c_traceobj);
        Py_VISIT(self->saved.c_profileobj);
        if (int r = traverse_frames(self->saved.current_frame, self->hint, visit, arg)) return r;
    }
    return 0;  // a subclass's type is visited by CPython's subtype_traverse
}

int tasklet_clear(PyObject* o) {
    py_tasklet* self = as_tasklet(o);
    bool running_its_function = false;  // then run_body is using them
    try {
        running_its_function = self->python_started && !self->is_main &&
                               self->thread == this_thread && self->core.status().started;
    } catch (...) {
    }
    if (!running_its_function) {
        Py_CLEAR(self->func);
        Py_CLEAR(self->args);
        Py_CLEAR(self->kwargs);
    }
    Py_CLEAR(self->tempval);
    Py_CLEAR(self->context);
    Py_CLEAR(self->waiting_on);
    delete std::exchange(self->plan, nullptr);
    return 0;
}

// PEP 442 finalizer: a started tasklet that nobody can reach any more is killed, running its
// finally blocks, as Stackless's finalizer does.
void tasklet_finalize(PyObject* o) {
    py_tasklet* self = as_tasklet(o);
    if (self->is_main || self->thread != this_thread) return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    try {
        // Called when its last reference goes (then it is paused: a scheduled tasklet holds one
        // to itself), or by the collector because it is unreachable (then it may be blocked on
        // an unreachable channel). A runnable one is never unreachable: the run queue is a root.
        stackless::tasklet::status_flags st = self->core.status();
        // An unpickled tasklet waiting on a channel has frames to unwind too.
        // (One a damaged pickle left queued on a channel without its frames goes too.)
        bool has_frames = st.started || self->plan != nullptr || self->awaiting_plan;
        if (has_frames && (!st.scheduled || st.blocked)) self->core.kill(false);
    } catch (...) {
        raise_from_cxx();
        PyErr_WriteUnraisable(o);
    }
    flush_released();
    PyErr_Restore(type, value, tb);
}

void tasklet_dealloc(PyObject* o) {
    py_tasklet* self = as_tasklet(o);
    if (PyObject_CallFinalizerFromDealloc(o) < 0) return;  // resurrected
    PyObject_GC_UnTrack(o);
    if (self->weakreflist != nullptr) PyObject_ClearWeakRefs(o);
    // Started and not finished: its stack, and its thread's scheduler (which calls our hooks with
    // this object), still refer to it.
    bool started_alive = false;
    if (self->core && self->python_started && !self->python_finished && !self->is_main) {
        if (self->thread != this_thread) {
            started_alive = true;  // dropped on another thread: its owner may still run it
        } else {
            try {
                started_alive = self->core.alive();
            } catch (...) {
            }
        }
    }
    if (started_alive) {
        // It survived its kill (it caught TaskletExit and paused), or it was dropped on another
        // thread: the object must stay. Stackless puts such tasklets in gc.garbage.
        PyObject_GC_Track(o);
        Py_SET_REFCNT(o, 1);
        // A subclass's type is released by CPython's subtype_dealloc after this returns.
        if (Py_TYPE(o)->tp_flags & Py_TPFLAGS_HEAPTYPE) Py_INCREF(Py_TYPE(o));
        PyObject* gc = PyImport_ImportModule("gc");
        PyObject* garbage = gc != nullptr ? PyObject_GetAttrString(gc, "garbage") : nullptr;
        if (garbage == nullptr || PyList_Append(garbage, o) < 0) Py_INCREF(o);  // leak, safely
        Py_XDECREF(garbage);
        Py_XDECREF(gc);
        PyErr_Clear();
        Py_DECREF(o);
        return;
    }
    tasklet_clear(o);
    try {
        if (self->core && self->thread == this_thread) self->core.set_hooks(nullptr, nullptr);
    } catch (...) {
        // its thread's scheduler is gone: nothing calls the hooks any more
    }
    self->core.~tasklet();
    if (self->root_chunk != nullptr) free_root_chunk(self->root_chunk);
    Py_XDECREF(self->saved.context);
    Py_XDECREF(self->saved.c_traceobj);
    Py_XDECREF(self->saved.c_profileobj);
    thread_data* thread = static_cast<thread_data*>(self->thread);
    Py_TYPE(o)->tp_free(o);  // a subclass's type is released by CPython's subtype_dealloc
    release_thread_data(thread);
}

PyObject* tasklet_repr(PyObject* o) {
    return PyUnicode_FromFormat("<%s object at %p>", Py_TYPE(o)->tp_name, o);
}

PyMethodDef tasklet_methods[] = {
    {"bind", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_bind)),
     METH_VARARGS | METH_KEYWORDS, "bind(func=None, args=None, kwargs=None)"},
    {"setup", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_setup)),
     METH_VARARGS | METH_KEYWORDS, "setup(*args, **kwargs): bind arguments and insert"},
    {"insert", tasklet_insert, METH_NOARGS, "insert at the end of the run queue"},
    {"remove", tasklet_remove, METH_NOARGS, "remove from the run queue"},
    {"run", tasklet_run, METH_NOARGS, "switch to this tasklet now; the caller stays runnable"},
    {"switch", tasklet_switch, METH_NOARGS, "switch to this tasklet now; the caller is paused"},
    {"throw", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_throw)),
     METH_VARARGS | METH_KEYWORDS, "throw(exc=None, val=None, tb=None, pending=False)"},
    {"raise_exception", tasklet_raise_exception, METH_VARARGS, "raise_exception(exc_class, *args)"},
    {"kill", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_kill)),
     METH_VARARGS | METH_KEYWORDS, "kill(pending=False): raise TaskletExit in the tasklet"},
    {"set_atomic", tasklet_set_atomic, METH_O, "set_atomic(flag) -> old flag"},
    {"set_context", tasklet_set_context, METH_O,
     "set_context(context): the contextvars context it runs in from now on; returns it"},
    {"context_run",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tasklet_context_run)),
     METH_FASTCALL | METH_KEYWORDS, "context_run(callable, *args, **kwargs) in its context"},
    {"set_ignore_nesting", tasklet_set_ignore_nesting, METH_O,
     "set_ignore_nesting(flag) -> old flag"},
    {"bind_thread", tasklet_bind_thread, METH_VARARGS,
     "bind_thread(thread_id=None): move a tasklet that has not run yet to this or that thread"},
    {"__reduce__", tasklet_reduce, METH_NOARGS, "pickle support"},
    {"__reduce_ex__", tasklet_reduce, METH_O, "pickle support"},
    {"__setstate__", tasklet_setstate, METH_O, "unpickle support"},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef tasklet_getset[] = {
    {"alive", get_flag<&stackless::tasklet::alive, alive_flag>, nullptr, "running or runnable",
     nullptr},
    {"paused", get_flag<&stackless::tasklet::paused, paused_flag>, nullptr, "alive, not scheduled",
     nullptr},
    {"blocked", get_flag<&stackless::tasklet::blocked, blocked_flag>, nullptr,
     "blocked on a channel", nullptr},
    {"scheduled", get_flag<&stackless::tasklet::scheduled, scheduled_flag>, nullptr,
     "in the run queue or blocked", nullptr},
    {"is_current", get_flag<&stackless::tasklet::is_current, current_flag>, nullptr,
     "the running tasklet", nullptr},
    {"is_main", get_is_main, nullptr, "the thread's main tasklet", nullptr},
    {"next", get_next, nullptr, "next tasklet in its chain", nullptr},
    {"prev", get_prev, nullptr, "previous tasklet in its chain", nullptr},
    {"tempval", get_tempval, set_tempval, "value passed by schedule()", nullptr},
    {"block_trap", get_block_trap, set_block_trap, "refuse to block on a channel", nullptr},
    {"atomic", get_atomic, nullptr, "inside set_atomic(True)", nullptr},
    {"ignore_nesting", get_ignore_nesting, nullptr, "inside set_ignore_nesting(True)", nullptr},
    {"thread_id", get_thread_id, nullptr, "id of the thread it belongs to", nullptr},
    {"restorable", tasklet_get_restorable, nullptr, "can be pickled and restored", nullptr},
    {"nesting_level", get_nesting_level, nullptr, "interpreter nesting level", nullptr},
    {"context", get_context, nullptr, "its contextvars context", nullptr},
    {"trace_function", get_hook_function<true>, set_hook_function<true>,
     "the tasklet's trace function (sys.settrace in that tasklet)", nullptr},
    {"profile_function", get_hook_function<false>, set_hook_function<false>,
     "the tasklet's profile function (sys.setprofile in that tasklet)", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace

PyTypeObject tasklet_type = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "stackless.tasklet";
    t.tp_basicsize = sizeof(py_tasklet);
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC;
    t.tp_doc = "tasklet(func=None, args=None, kwargs=None): a lightweight thread";
    t.tp_new = tasklet_new;
    t.tp_init = tasklet_init;
    t.tp_vectorcall = tasklet_vectorcall;
    t.tp_dealloc = tasklet_dealloc;
    t.tp_finalize = tasklet_finalize;
    t.tp_traverse = tasklet_traverse;
    t.tp_clear = tasklet_clear;
    t.tp_call = tasklet_setup;
    t.tp_repr = tasklet_repr;
    t.tp_methods = tasklet_methods;
    t.tp_getset = tasklet_getset;
    t.tp_weaklistoffset = offsetof(py_tasklet, weakreflist);
    return t;
}();

}  // namespace stackless::python
