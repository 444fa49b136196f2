// Shared declarations of the CPython binding: the tasklet and channel objects and the glue
// between C++ exceptions and Python exceptions.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cxxabi.h>
#include <cstdint>
#include <utility>
#include <vector>

#include "frame_state.hpp"
#include "frame_traverse.hpp"
#include "interp_state.hpp"
#include "stackless/stackless.hpp"

namespace stackless::python {

// An owned reference that moves without touching the reference count: the value type of the
// C++ channels behind stackless.channel, so a transfer costs no INCREF/DECREF pair.
class py_ref {
  public:
    py_ref() noexcept = default;
    explicit py_ref(PyObject* owned) noexcept : p_(owned) {}
    py_ref(py_ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    py_ref& operator=(py_ref&& o) noexcept {
        std::swap(p_, o.p_);
        return *this;
    }
    py_ref(const py_ref&) = delete;
    ~py_ref() { Py_XDECREF(p_); }
    PyObject* get() const noexcept { return p_; }
    PyObject* release() noexcept { return std::exchange(p_, nullptr); }

  private:
    PyObject* p_ = nullptr;
};

// A Python exception carried through the C++ core: raised in a tasklet, it reaches the main
// tasklet (or whoever the core delivers it to) as this C++ exception, and becomes the Python
// exception again at the binding's boundary.
class python_error {
  public:
    // Takes the current Python error.
    python_error() noexcept { PyErr_Fetch(&type_, &value_, &tb_); }
    python_error(PyObject* type, PyObject* value, PyObject* tb) noexcept
        : type_(type), value_(value), tb_(tb) {}
    python_error(python_error&& o) noexcept
        : type_(std::exchange(o.type_, nullptr)),
          value_(std::exchange(o.value_, nullptr)),
          tb_(std::exchange(o.tb_, nullptr)) {}
    python_error(const python_error& o) noexcept : type_(o.type_), value_(o.value_), tb_(o.tb_) {
        Py_XINCREF(type_);
        Py_XINCREF(value_);
        Py_XINCREF(tb_);
    }
    python_error& operator=(const python_error&) = delete;
    ~python_error();
    // Makes it the current Python error again.
    void restore() noexcept;

  private:
    PyObject* type_ = nullptr;
    PyObject* value_ = nullptr;
    PyObject* tb_ = nullptr;
};

struct py_tasklet;

// The binding's per-thread data, reached through one initial-exec thread-local pointer (the
// general-dynamic model costs a __tls_get_addr call per access in a shared object).
struct thread_data {
    py_tasklet* main_object = nullptr;  // the thread keeps this reference
    // References released by tasklets that left the scheduler. They are dropped later, at a
    // point where running arbitrary Python code (a __del__) is safe, not inside the core's
    // switch.
    std::vector<PyObject*> released;
    bool flushing = false;
    int switch_trap = 0;
    bool in_schedule_callback = false;  // run(timeout) does not interrupt there
    // Stackless's watchdog list of this thread, made on request (get_thread_info's flag bit 31;
    // Stackless's test suite watches it), then kept up to date by run(): [the caller of the
    // active timed run() or None, the callers of run() outermost first]. A new reference.
    PyObject* watchdog_list = nullptr;
    bool called_run = false;  // (a thread that never called run() has no watchdog list)
    unsigned long ident = PyThread_get_thread_ident();
    py_tasklet* current = nullptr;   // the running tasklet, for get_thread_info() elsewhere
    py_tasklet* previous = nullptr;  // the one before the last switch (schedule callback)
    bool ended = false;              // its tasklets were killed: the thread is ending
    // What get_thread_info(id, 1 << 30) reports as Stackless does (module.cpp): the C stacks its
    // tasklets have begun so far (Stackless's serial).
    std::uint64_t cstack_serial = 0;
    // schedule() records its call site (note_blocking_call) once a tasklet switched out by it
    // could not drop its stack for want of one: until stacks run short, a thread's schedule()
    // calls do not pay for it.
    bool schedule_hints = false;
    // Tasklet objects whose `thread` points here (the main one included). The data is freed
    // once its thread has ended and the last of them is gone, so that a pointer comparison with
    // `this_thread` never meets a freed (and possibly reused) address.
    Py_ssize_t objects = 0;
};

__attribute__((tls_model("initial-exec"))) extern constinit thread_local thread_data* this_thread;

struct py_tasklet {
    PyObject_HEAD stackless::tasklet core;  // placement-constructed in tp_new
    PyObject* func;                         // bound function (Stackless: bind(func))
    PyObject* args;
    PyObject* kwargs;
    PyObject* tempval;
    PyObject* context;  // the contextvars context it will start in
    PyObject* weakreflist;
    PyThreadState* tstate;  // of the thread it belongs to
    interp_state saved;     // its interpreter state while switched out
    _PyErr_StackItem exc_base;
    _PyStackChunk* root_chunk;
    stack_hint hint;          // its innermost frame's value stack at its last blocking call
    in_place_state in_place;  // its frames going on without the C stack they had
    restore_plan* plan;       // unpickled frames it resumes when it first runs (owned)
    // The channel an unpickled tasklet was queued on, until it runs: what its pending call held
    // (the channel may be referenced by nothing else; then both are garbage together).
    PyObject* waiting_on;
    void* thread;          // the binding's data of its thread, to check the thread without a call
    bool self_ref;         // holds a reference to itself while scheduled
    bool python_started;   // its interpreter state lives in `saved` or in the thread state
    bool python_finished;  // its function has returned (it is ending or has ended)
    bool is_main;
    bool atomic;
    bool ignore_nesting;
    bool awaiting_plan;  // bound to resume unpickled frames that are not there yet
    // Its frames were rebuilt from a pickle (run_restored) or resumed after its C stack was dropped
    // (resume_without_stack): its C stack holds where it is among them, each waiting for the next.
    bool restored_body;
    // Its C stack was dropped while it was blocked: its frames go on in place when it runs
    // (tasklet_hooks::discard_stack).
    bool stack_discarded;
    // In a blocking operation called from Python, and what that returns when the tasklet goes
    // on (for discard_stack).
    bool in_blocking_call;
    resume_op blocked_op;
    bool interrupted;  // switched out by run(timeout)'s watchdog (watchdog.cpp)
    // The serial number of its C stack on its thread (thread_data::cstack_serial when it began).
    // (In what was the object's tail padding.)
    std::uint32_t cstack_serial;
    void* greenlet_state;  // its own greenlet state while switched out (greenlet_state.cpp)
};

// Its thread has ended and this is another thread: its tasklets were killed then (or, if one
// caught every kill, dropped without running again).
inline bool of_ended_thread(const py_tasklet* t) noexcept {
    auto* thread = static_cast<const thread_data*>(t->thread);
    return thread != nullptr && thread != this_thread && thread->ended;
}

// Of an ended thread, and dropped alive then, its frames not unwound (it caught every kill: its
// Python code began and never finished): Stackless's tasklet with C state of an ended thread
// (nesting_level > 0, not restorable, cannot be rebound).
inline bool dropped_alive(const py_tasklet* t) noexcept {
    return of_ended_thread(t) && t->python_started && !t->python_finished && !t->is_main;
}

struct py_channel {
    PyObject_HEAD stackless::channel<py_ref> ch;  // placement-constructed in tp_new
    PyObject* weakreflist;
};

extern PyTypeObject tasklet_type;
extern PyTypeObject channel_type;
extern PyTypeObject bomb_type;
extern PyObject* TaskletExit;

// Converts the C++ exception being handled (call inside a catch block) into the current Python
// error, and returns nullptr for the caller to return.
PyObject* raise_from_cxx() noexcept;
int raise_from_cxx_int() noexcept;

// This thread's main tasklet object, created (with the thread's scheduler) on first use.
py_tasklet* thread_main();
// The private _configure_stacks(): the stack slots of this thread's scheduler, before
// thread_main creates it (-1 with an exception if too late or out of range).
int configure_this_thread_stacks(std::size_t stack_slots, std::size_t runnable_slots);
// The Python object of a core tasklet state (every tasklet of a Python thread has one).
py_tasklet* object_of(const stackless::tasklet& t) noexcept;
PyObject* new_ref_or_none(const stackless::tasklet& t) noexcept;
// The running tasklet's object (creating this thread's main tasklet on first use).
py_tasklet* current_object_slow();
inline py_tasklet* current_object() {
    if (this_thread != nullptr && this_thread->current != nullptr) [[likely]]
        return this_thread->current;
    return current_object_slow();
}
// Before a blocking operation called with `args` (n of them) from the evaluation loop: notes
// where the running frame's value stack ends (see frame_traverse.hpp) and what the operation
// returns when the tasklet goes on, so that its C stack may be dropped meanwhile
// (discard_stack). Returns the running tasklet, whose in_blocking_call the caller resets when
// the operation returns.
inline py_tasklet* note_blocking_call(PyObject* const* args, Py_ssize_t n, resume_op op) noexcept {
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    if (t != nullptr) {
        record_stack_hint(t->tstate, args, n, t->hint);
        t->in_blocking_call = true;
        t->blocked_op = op;
    }
    return t;
}

// Before a receive made by iterating over a channel (FOR_ITER, or a C function iterating):
// notes the running frame, whose stack depth the bytecode analysis gives (made ready here), so
// that the tasklet's C stack may be dropped. Returns the running tasklet, as note_blocking_call.
int prepare_iteration(PyObject* code);  // pickling.cpp
inline py_tasklet* note_blocking_iteration() noexcept {
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    if (t == nullptr) return nullptr;
    if (PyObject* code = record_iteration_hint(t->tstate, t->hint)) {
        if (prepare_iteration(code) < 0) {
            PyErr_Clear();  // no analysis: the stack is kept, as before
            t->hint.frame = nullptr;
        }
    }
    t->in_blocking_call = true;
    t->blocked_op = resume_op::receive;
    return t;
}

// Drops the references released by tasklets that left the scheduler; called after operations
// that may switch, once back in Python's world.
void flush_released_slow() noexcept;
inline void flush_released() noexcept {
    if (this_thread != nullptr && !this_thread->released.empty()) [[unlikely]]
        flush_released_slow();
}

// run(timeout, soft=True) whose time is up: the next switch interrupts (watchdog.cpp). Set in
// this thread, or by the watchdog thread with the GIL held.
__attribute__((
    tls_model("initial-exec"))) extern constinit thread_local bool soft_interrupt_pending;
// Interrupts the running tasklet for such a run(), if it may be now (it goes on when inserted
// again; raises what is thrown into it meanwhile).
void soft_interrupt_now();

// Runs a core operation that may switch tasklets: converts a C++ exception it raises into the
// Python error, and drops the references released meanwhile. Returns false if it raised. After
// a switch, this is where a soft run(timeout) interrupts the tasklet that got the turn
// (Stackless: at the next switch). (Not noexcept: CPython ends a thread that takes the GIL back
// during finalization with pthread_exit, whose forced unwind must pass through here.)
template <class Op>
bool run_core(Op&& op) {
    bool ok = true;
    try {
        op();
        if (soft_interrupt_pending) [[unlikely]]
            soft_interrupt_now();
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        raise_from_cxx();
        ok = false;
    }
    flush_released();
    return ok;
}

PyObject* new_bomb(PyObject* type, PyObject* value, PyObject* tb) noexcept;
// If `obj` is a bomb: consumes it, sets its exception and returns true.
bool explode_if_bomb(PyObject* obj) noexcept;

// The idents of the threads whose stackless scheduler is alive (stackless.threads).
PyObject* thread_idents();
// Main, current tasklet and run count of the thread with this ident, if it used stackless.
bool thread_info(unsigned long ident, py_tasklet** main, py_tasklet** current, int* runcount);
// --- greenlet_state.cpp: each tasklet hosts its own greenlets.
// Watches for greenlet's import (a finder first in sys.meta_path). -1 with an exception on
// failure.
int install_greenlet_support();
// Switch hooks: the tasklet's greenlet state goes out and in with it. Inline, so that a process
// that never imports greenlet pays two loads per switch, not two calls.
extern bool greenlet_imported;
__attribute__((tls_model("initial-exec"))) extern constinit thread_local void** greenlet_state_slot;
void switch_greenlet_state_out(py_tasklet* t) noexcept;
void switch_greenlet_state_in(py_tasklet* t) noexcept;
inline void greenlet_switched_out(py_tasklet* t) noexcept {
    if (greenlet_state_slot == nullptr && !greenlet_imported) [[likely]]
        return;
    switch_greenlet_state_out(t);
}
inline void greenlet_switched_in(py_tasklet* t) noexcept {
    if (greenlet_state_slot == nullptr) [[likely]]
        return;
    switch_greenlet_state_in(t);
}
// The tasklet ends (its Python code has returned): a greenlet state it made that holds no
// greenlet any more serves tasklets that start later.
void recycle_greenlet_state(py_tasklet* t) noexcept;
// Its frames were dropped (rebound while paused): it lets go of its greenlet state.
void greenlet_state_dropped(py_tasklet* t) noexcept;
// Whether the (switched-out) tasklet holds a greenlet state of its own: greenlets it began may
// have their stacks on its C stack, or refer to addresses there, so that stack must stay.
inline bool holds_greenlet_state(const py_tasklet* t) noexcept {
    return t->greenlet_state != nullptr && t->greenlet_state != reinterpret_cast<void*>(1);
}

// The binding's data of the thread with this ident, if it used stackless (else nullptr).
const thread_data* thread_data_of(unsigned long ident) noexcept;

// Stackless's switch trap: while the level is above 0, an operation that would switch tasklets
// raises RuntimeError instead (and changes nothing).
int& switch_trap_level_slow() noexcept;
inline int switch_trap_level() noexcept {
    return this_thread != nullptr ? this_thread->switch_trap : 0;
}
// Returns -1 with RuntimeError set if the trap is on, else 0.
int refuse_if_trapped() noexcept;

// Stackless's global callbacks (nullptr when unset; owned references).
extern PyObject* schedule_callback;
extern PyObject* channel_callback;
// Stackless's set_error_handler(): called in a tasklet that ends with an exception.
extern PyObject* error_handler;
// Stackless's enable_softswitch(), for the whole process. On (the default), a blocked tasklet
// whose C stack holds only calls of Python functions may drop that stack and resume its frames
// in place (soft-switching.md), and its nesting level counts only the C calls between its
// frames. Off, every tasklet keeps its C stack, and the call of its function from that stack
// counts as a level of nesting, as with Stackless's hard switching.
extern bool softswitch_enabled;
// Calls the channel callback, if any, before a channel action; -1 if it raised.
int notify_channel(PyObject* channel, int sending, int will_block) noexcept;

// Pickling (pickling.cpp): the helper module python/_stackless_pickle.py, imported once.
int install_pickling(PyObject* module);
// Makes pickle.dumps pickle functions that cannot be found by name by value (pickle_functions.cpp).
int install_pickle_dumps(PyObject* helper_module);
PyObject* tasklet_reduce(PyObject* self, PyObject*);
PyObject* tasklet_setstate(PyObject* self, PyObject* state);
PyObject* tasklet_get_restorable(PyObject* self, void*);
// C-level calls of the interpreter in the tasklet's frames that hold state a pickle cannot
// rebuild (frame_state.hpp c_state_depth); -1 with an exception.
int nesting_level(py_tasklet* t);
// The number of Python frames the tasklet runs in (0 if it has not started or has ended).
long frame_count(py_tasklet* t);
// Drops the frames of a paused tasklet that has no C state (Stackless's rebinding of such a
// tasklet: its frames go without running; pickling.cpp): 0 if done, 1 if it has C state,
// -1 with an exception.
int drop_paused_frames(py_tasklet* t);
// The innermost frame object of the tasklet (None if it runs in none).
PyObject* tasklet_frame_object(py_tasklet* t);
PyObject* channel_reduce(PyObject* self, PyObject*);
PyObject* channel_setstate(PyObject* self, PyObject* state);
PyObject* mod_tasklet_info(PyObject*, PyObject* t);
PyObject* mod_tasklet_plan(PyObject*, PyObject* t);
PyObject* mod_tasklet_frames(PyObject*, PyObject* args);
PyObject* mod_tasklet_restore(PyObject*, PyObject* args);
PyObject* mod_tasklet_locals(PyObject*, PyObject* args);
PyObject* mod_tasklet_restore_invalid(PyObject*, PyObject* args);
PyObject* mod_channel_info(PyObject*, PyObject* ch);
PyObject* mod_generator_info(PyObject*, PyObject* args);
PyObject* mod_generator_set_frame(PyObject*, PyObject* args);
PyObject* mod_code_nlocalsplus(PyObject*, PyObject* code);
PyObject* mod_new_frame(PyObject*, PyObject* args);
PyObject* mod_set_frame_back(PyObject*, PyObject* args);
PyObject* mod_channel_restore(PyObject*, PyObject* args);
// Binds a fresh tasklet (or one a channel queued already) to resume `plan` (taken over on
// success) when it runs (tasklet_type.cpp).
int restore_tasklet(py_tasklet* t, restore_plan* plan);
// Binds a fresh tasklet, not yet given its frames, so that a channel can queue it.
int prepare_restored_waiter(py_tasklet* t);

// Runs the scheduler: stackless.run() as the core does it, keeping the watchdog list (above) up
// to date (module.cpp). False if it raised.
bool run_scheduler(bool threadblock);
// Rewrites the watchdog list from the core's run() callers (plus the current tasklet if it is
// about to enter run()); nothing if nobody asked for the list.
void refresh_watchdog_list(bool entering) noexcept;
// The caller of this thread's active timed run() (watchdog.cpp), or nullptr.
py_tasklet* timed_run_caller() noexcept;
// run(timeout) (watchdog.cpp): runs the scheduler, interrupting a tasklet that runs about
// `timeout` instructions without switching; returns it (or None).
PyObject* run_with_timeout(long timeout, bool threadblock, bool soft, bool total);
// Lets a thread whose tasklets all wait for other threads sleep without the GIL (threads.cpp).
void install_thread_hooks() noexcept;
// Counts a switch for the watchdog while a timed run() is active (switched_in).
void count_switch() noexcept;
// The schedule callback has returned (tasklet_body.cpp): a timed run()'s slice starts now.
void schedule_callback_returned() noexcept;
// A timed run() with a small budget counts with the trace function (watchdog.cpp): a tasklet
// switched in, or starting, gets it (after its interpreter state is in place); and the trace
// function is never saved with a tasklet that is switched out (it would outlive the run).
__attribute__((tls_model("initial-exec"))) extern constinit thread_local bool counting_run;
void counting_switched_in(py_tasklet* t) noexcept;
void drop_interrupt_trace(interp_state& saved) noexcept;

// Thread end (and interpreter exit for the main thread): kills every tasklet of this thread while
// Python still runs (Stackless does the same), then drops the ones that would not die.
void shutdown_thread() noexcept;
// Interpreter exit: kills every tasklet of the main thread (Stackless does the same).
void shutdown_main_thread() noexcept;

}  // namespace stackless::python
