// stackless.run(timeout): preemption of a tasklet that runs about `timeout` bytecode
// instructions without switching (Stackless's watchdog), on stock CPython 3.11, in any thread.
//
// CPython counts no instructions we could read, so the budget is time: `timeout` times the time
// Stackless 3.7 would count one instruction in, estimated from the time CPython 3.11 takes for
// one (_stackless_pickle.ns_per_instruction) and from how many of those Stackless counts as one
// (budget_ns below; docs/python.md). When the time of a slice is up, the running tasklet gets a
// C trace function; at its next line (or instruction: see arm) the trace function, still in that
// tasklet, takes it out of the run queue and switches to the tasklet that called the timed run()
// (stackless::interrupt_to_run), whose run() returns it. Inserted again, the tasklet goes on
// from inside the trace function, which has removed itself. An atomic tasklet is interrupted at
// its first line outside its atomic section. soft=True interrupts at the next switch instead,
// and run() returns None with the tasklet left runnable (Stackless).
//
// As in Stackless, only the outermost timed run() of a thread counts: a run(timeout) called in
// a tasklet while another is active is a plain run(), and an interruption returns to the
// outermost one (whose return makes the run() calls nested inside it runnable again).
//
// How the deadline is noticed (a signal from a POSIX timer would be the precise way, but on this
// project's virtual machine delivering one costs about 50 µs of the interrupted thread's time):
// - Budgets below half a millisecond: every tasklet switched in during the run gets the trace
//   function at once (it keeps a trace function of its own, and is then not interrupted), which
//   reads the clock at each line and interrupts once the slice's time is up. Precise to a line,
//   but traced code runs slower (docs/python.md).
// - Larger budgets: a watchdog thread keeps the deadlines of the timed runs of all threads, and
//   looks every quarter budget whether the thread of a run has switched tasklets meanwhile:
//   then the deadline starts again (unless totaltimeout), from the middle of that quarter. Once
//   time is up, the running tasklet gets the trace function, which
//   interrupts at its first line. On the main thread the watchdog thread adds a pending call
//   that sets it (Py_AddPendingCall, run at the next check of the eval breaker: a backward
//   jump, a call, a function start); on another thread (3.11 runs pending calls on the main
//   thread only) it takes the GIL, which the running thread gives up within the switch
//   interval (sys.getswitchinterval(), 5 ms), and sets it in that thread's state
//   (_PyEval_SetTrace, CPython's own way to trace another thread, used by
//   threading.settrace_all_threads in 3.12). With counting, the watchdog thread also catches a
//   loop that starts no line (see arm).
//
// Costs: nothing without a timeout; with one, an atomic increment per switch and the watchdog
// thread's wake-ups, and with a small budget the tracing of every line.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <pthread.h>

#include "binding.hpp"

// Relies on CPython 3.11: PyThreadState.c_tracefunc (read: a tasklet that traces itself is left
// alone, and the counting trace function is recognised); _PyEval_SetTrace(tstate, ...), which
// traces another thread's state with the GIL held; the evaluation loop calling a C trace
// function for a line, and for each instruction of a frame whose f_trace_opcodes is set, with
// the frame's stack top saved and prev_instr on the instruction about to run (what an
// interrupted tasklet's pickle resumes from, frame_capture.cpp). Installing the trace function
// during a switch goes through interp_state.cpp (give_trace_if_none), where the thread-state
// layout lives.
#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

extern "C" void stackless_wake_main_interpreter(void);  // eval_breaker.c

namespace stackless::python {

namespace {

using clock = std::chrono::steady_clock;

// A timed run() in progress, as the watchdog thread sees it (one per thread: the innermost).
struct watched_run {
    std::uint64_t generation = 0;
    std::chrono::nanoseconds budget{0};
    bool total = false;
    bool on_main_thread = false;
    bool soft = false;
    PyThreadState* tstate = nullptr;  // of its thread (valid while the run is in progress)
    bool* expired = nullptr;  // its thread's soft_interrupt_pending (touched only with the GIL)
    PyObject** opcode_frame = nullptr;       // its thread's timed_run's (touched only with the GIL)
    std::atomic<std::uint64_t> switches{0};  // counted by its thread
    // `switches` when the trace function was set: a tasklet that switched since (the trace
    // function travels with it) has had a new budget and is not interrupted.
    std::atomic<std::uint64_t> armed_at{0};
    // The watchdog thread's bookkeeping (under the state's mutex).
    clock::time_point deadline;    // the end of the slice, as far as the watchdog knows
    clock::time_point next_check;  // it looks for switches every quarter budget
    clock::time_point last_check;
    std::uint64_t seen = 0;
};

struct watchdog_state {
    std::mutex mutex;
    std::condition_variable wake;
    bool thread_started = false;
    std::uint64_t changes = 0;  // bumped when `runs` changes
    std::vector<std::shared_ptr<watched_run>> runs;
};

watchdog_state* the_state = nullptr;

// The main thread's timed run() whose time is up, for on_deadline; and whether an on_deadline
// call is in CPython's queue of pending calls (one at a time: that queue is short, and shared).
std::atomic<std::uint64_t> expired_generation{0};
std::atomic<bool> deadline_call_queued{false};

void forget_the_watchdog_in_a_forked_child() {
    // The child has no watchdog thread, and the mutex may have been held at fork time: start
    // afresh (the old state is leaked on purpose: its mutex cannot be destroyed safely).
    the_state = new watchdog_state;
    deadline_call_queued.store(false);
}

watchdog_state& state() {
    static bool registered = [] {
        the_state = new watchdog_state;  // outlives the thread, never destroyed
        pthread_atfork(nullptr, nullptr, &forget_the_watchdog_in_a_forked_child);
        return true;
    }();
    (void)registered;
    return *the_state;
}

// A thread's timed run() in progress (under the GIL, in its thread).
struct timed_run {
    std::uint64_t generation = 0;  // 0: none on this thread
    bool soft = false;
    bool total = false;
    std::chrono::nanoseconds budget{0};
    py_tasklet* watchdog = nullptr;  // the tasklet that called it (a reference)
    PyObject* interrupted = nullptr;
    // Small budgets (below what the watchdog thread can time): every tasklet that runs gets
    // the trace function from the start, which looks at the clock at each line and interrupts
    // once the slice's deadline (CLOCK_MONOTONIC, ns) has passed (see budget_ns).
    bool counting = false;
    std::int64_t deadline_ns = 0;
    // And at least this many lines in the slice (run with totaltimeout: in the run), so that a
    // tiny budget still lets a tasklet do about what Stackless's would: Stackless counts about two
    // instructions per line, and the time of a switch and of run() itself would otherwise use up
    // such a budget before the tasklet ran a line.
    std::int64_t lines = 0;
    std::int64_t min_lines = 0;
    // The watchdog thread's record (with counting, it catches what sets no line: see arm).
    std::shared_ptr<watched_run> watched;
    // The frame arm() made report every instruction (see there), to put back.
    PyObject* opcode_frame = nullptr;
};

}  // namespace

// soft=True: time is up; the next switch interrupts (binding.hpp, run_core).
__attribute__((tls_model("initial-exec"))) constinit thread_local bool soft_interrupt_pending =
    false;
// A timed run() with a small budget is active: tasklets switched in get the trace function.
__attribute__((tls_model("initial-exec"))) constinit thread_local bool counting_run = false;

namespace {

__attribute__((tls_model("initial-exec"))) thread_local timed_run active;
// What count_switch() increments (nullptr: no timed run on this thread).
__attribute__((tls_model(
    "initial-exec"))) constinit thread_local std::atomic<std::uint64_t>* counter = nullptr;

std::atomic<std::uint64_t> generations{0};

int on_deadline(void* arg);
int interrupt_trace(PyObject* generation, PyFrameObject*, int, PyObject*);

std::int64_t now_ns() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  // (vDSO: no system call)
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Py_AddPendingCall from a thread other than the main one records the call but does not set the
// main thread's eval breaker: 3.11 recomputes it for the calling thread, which cannot run pending
// calls, and so may even clear it. A loop that never releases the GIL would not look
// (eval_breaker.c).
void wake_main_thread() {
    stackless_wake_main_interpreter();
}

// Undoes arm()'s f_trace_opcodes.
void forget_opcode_frame(PyObject** opcode_frame) {
    if (PyObject* frame = std::exchange(*opcode_frame, nullptr)) {
        if (PyObject_SetAttrString(frame, "f_trace_opcodes", Py_False) < 0) PyErr_Clear();
        Py_DECREF(frame);
    }
}

// Gives the running tasklet of `tstate`'s thread the interrupting trace function (with the GIL).
// A tasklet with a trace function of its own is not interrupted: it would lose it. The frame
// that runs also reports each instruction (f_trace_opcodes, a frame attribute any trace
// function may set): a loop that jumps back to its own instruction (`while True: pass`) starts
// no new line, and 3.11 reports a backward jump as a line only if it lands on an earlier
// instruction, so line events alone would never come.
void arm(PyThreadState* tstate, std::uint64_t generation, PyObject** opcode_frame) {
    if (tstate->c_tracefunc != &interrupt_trace) {  // (else: counting, see timed_run)
        if (tstate->c_tracefunc != nullptr) return;
        PyObject* g = PyLong_FromUnsignedLongLong(generation);
        if (g == nullptr) {
            PyErr_Clear();
            return;
        }
        if (_PyEval_SetTrace(tstate, &interrupt_trace, g) < 0) PyErr_Clear();
        Py_DECREF(g);
    }
    PyFrameObject* frame = PyThreadState_GetFrame(tstate);  // a new reference, or nullptr
    if (reinterpret_cast<PyObject*>(frame) == *opcode_frame) {
        Py_XDECREF(frame);  // flagged already
        return;
    }
    forget_opcode_frame(opcode_frame);  // (a frame flagged for an earlier slice)
    if (frame != nullptr) {
        if (PyObject_SetAttrString(reinterpret_cast<PyObject*>(frame), "f_trace_opcodes", Py_True) <
            0)
            PyErr_Clear();
        Py_XSETREF(*opcode_frame, reinterpret_cast<PyObject*>(frame));
    }
}

// The watchdog thread's action for a run of another thread than the main one.
void expire_elsewhere(watchdog_state& s, const std::shared_ptr<watched_run>& w) {
    if (_Py_IsFinalizing()) return;  // the GIL may never come back
    PyGILState_STATE gil = PyGILState_Ensure();
    // Still in progress? Its thread registers and unregisters a run with the GIL held, so with
    // the GIL a registered run's thread, state and records are alive.
    bool in_progress;
    {
        std::lock_guard lock(s.mutex);
        in_progress = std::find(s.runs.begin(), s.runs.end(), w) != s.runs.end();
    }
    if (in_progress) {
        if (w->soft) {
            *w->expired = true;
        } else {
            w->armed_at.store(w->switches.load(std::memory_order_relaxed),
                              std::memory_order_relaxed);
            arm(w->tstate, w->generation, w->opcode_frame);
        }
    }
    PyGILState_Release(gil);
}

void watchdog_thread() {
    watchdog_state& s = state();
    std::unique_lock lock(s.mutex);
    for (;;) {
        s.wake.wait(lock, [&] { return !s.runs.empty(); });
        auto next = clock::time_point::max();
        for (const auto& w : s.runs) next = std::min(next, w->next_check);
        const std::uint64_t changes = s.changes;
        if (s.wake.wait_until(lock, next, [&] { return s.changes != changes; })) continue;
        std::vector<std::shared_ptr<watched_run>> due;
        const auto now = clock::now();
        for (const auto& w : s.runs) {
            if (w->next_check > now) continue;
            // A switch since the last look started a new slice, at a time between the two
            // looks: its middle is taken, so that the interruption comes within an eighth of a
            // budget of the slice's end (looking only at the deadline, a switch right after
            // run() started, the usual case, gave the tasklet two budgets).
            std::uint64_t switches = w->switches.load(std::memory_order_relaxed);
            if (!w->total && switches != w->seen) {
                w->seen = switches;
                w->deadline = w->last_check + (now - w->last_check) / 2 + w->budget;
            }
            w->last_check = now;
            if (w->deadline <= now) {
                due.push_back(w);
                w->deadline = now + w->budget;  // (again after a budget if not interrupted)
            }
            w->next_check = std::min(w->deadline, now + w->budget / 4);
        }
        for (const auto& w : due) {
            if (w->on_main_thread) {
                // Ask the interpreter to call us in the running tasklet, unless a call is queued
                // already (the main thread has not run pending calls since: a long C call, or
                // the OS paused it). Refused only when the queue is full (of others' calls): the
                // next round tries again.
                expired_generation.store(w->generation);
                if (!deadline_call_queued.exchange(true) &&
                    Py_AddPendingCall(&on_deadline, nullptr) != 0)
                    deadline_call_queued.store(false);
                // Every round, whatever happened to the call: a queued call runs only once the
                // eval breaker is set, and Py_AddPendingCall may have cleared it.
                wake_main_thread();
            } else {
                lock.unlock();  // (the GIL comes before the mutex: watch() takes them so)
                expire_elsewhere(s, w);
                lock.lock();
            }
        }
    }
}

// May the running tasklet `t` be interrupted now? Not inside an atomic section, nor in the
// schedule callback (which runs during a switch), nor under switch_trap (Stackless: the same).
bool interruptible(py_tasklet* t) {
    return !t->atomic && !this_thread->in_schedule_callback && this_thread->switch_trap == 0;
}

// The trace function that interrupts: called at the next event of the tasklet that was running
// when time was up.
int interrupt_trace(PyObject* generation, PyFrameObject*, int what, PyObject*) {
    // Only where the frame can go on from the instruction it is about to run: a line or an
    // instruction. (At a call's start the frame has not reached its first instruction, which a
    // pickle cannot express; at a return the value has left the stack; an exception is being
    // raised.) The next line comes soon.
    if (what != PyTrace_LINE && what != PyTrace_OPCODE) return 0;
    bool stale = active.generation == 0;
    if (!stale && generation == nullptr) {
        // Counting (installed when the tasklet was switched in): is the slice over?
        if (++active.lines < active.min_lines || now_ns() < active.deadline_ns) return 0;
        if (active.soft) {
            soft_interrupt_pending = true;  // the next switch interrupts
            stale = true;                   // (and this tasklet needs no more lines)
        }
    } else if (!stale) {
        stale = PyLong_AsUnsignedLongLong(generation) != active.generation;
        // Did it switch after the trace function was set? (It has had a new slice since.)
        if (!stale && !active.total && active.watched != nullptr)
            stale = active.watched->switches.load(std::memory_order_relaxed) !=
                    active.watched->armed_at.load(std::memory_order_relaxed);
    }
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    if (t == nullptr || stale || t == active.watchdog) {
        PyErr_Clear();
        PyEval_SetTrace(nullptr, nullptr);
        return 0;
    }
    if (!interruptible(t)) return 0;  // try again at the next event
    PyEval_SetTrace(nullptr, nullptr);
    forget_opcode_frame(&active.opcode_frame);
    Py_XSETREF(active.interrupted, Py_NewRef(reinterpret_cast<PyObject*>(t)));
    t->interrupted = true;
    py_tasklet* watchdog = active.watchdog;
    bool ok = run_core([&] { stackless::interrupt_to_run(watchdog->core); });
    t->interrupted = false;
    return ok ? 0 : -1;
}

int on_deadline(void*) {
    deadline_call_queued.store(false);
    std::uint64_t generation = expired_generation.load();
    if (active.generation == 0 || active.generation != generation || active.soft) {
        if (active.generation == generation) soft_interrupt_pending = true;  // at the next switch
        return 0;
    }
    if (this_thread != nullptr && this_thread->current != nullptr) {
        active.watched->armed_at.store(active.watched->switches.load(std::memory_order_relaxed),
                                       std::memory_order_relaxed);
        arm(PyThreadState_Get(), active.generation, &active.opcode_frame);
    }
    return 0;
}

// Has the watchdog thread watch this thread's timed run (generation 0: stop watching it),
// starting the thread if needed.
void watch(timed_run& run) {
    watchdog_state& s = state();
    if (run.generation != 0) {
        auto w = std::make_shared<watched_run>();
        w->generation = run.generation;
        // With counting, the watchdog thread is only the backstop for loops that start no line
        // (see arm): it need not look often, and waking it up every few microseconds would keep
        // a core busy.
        w->budget = run.counting ? std::max<std::chrono::nanoseconds>(run.budget,
                                                                      std::chrono::milliseconds(2))
                                 : run.budget;
        w->total = run.total;
        w->on_main_thread = _PyOS_IsMainThread() != 0;
        w->soft = run.soft;
        w->tstate = PyThreadState_Get();
        w->expired = &soft_interrupt_pending;
        w->opcode_frame = &run.opcode_frame;
        run.watched = w;
    }
    {
        std::lock_guard lock(s.mutex);
        // This thread's entry (at most one) is replaced.
        std::erase_if(s.runs, [&](const std::shared_ptr<watched_run>& w) {
            return w->expired == &soft_interrupt_pending;
        });
        if (run.generation != 0) {
            const auto now = clock::now();
            run.watched->deadline = now + run.budget;
            run.watched->last_check = now;
            run.watched->next_check = now + run.budget / 4;
            run.watched->seen = run.watched->switches.load(std::memory_order_relaxed);
            s.runs.push_back(run.watched);
            if (!s.thread_started) {
                std::thread(&watchdog_thread).detach();
                s.thread_started = true;
            }
        }
        ++s.changes;
    }
    s.wake.notify_all();
    counter = run.generation != 0 ? &run.watched->switches : nullptr;
}

double ns_per_instruction() {
    static double measured = 0;
    if (measured > 0) return measured;
    PyObject* helper = PyImport_ImportModule("_stackless_pickle");
    PyObject* r =
        helper != nullptr ? PyObject_CallMethod(helper, "ns_per_instruction", nullptr) : nullptr;
    Py_XDECREF(helper);
    double v = r != nullptr ? PyFloat_AsDouble(r) : -1;
    Py_XDECREF(r);
    if (v <= 0 || PyErr_Occurred()) {
        PyErr_Clear();
        v = 3;  // a plausible figure for this kind of machine, if measuring failed
    }
    measured = v;
    return measured;
}

// What a budget of `timeout` instructions is in time. Stackless 3.7 counts an instruction only
// when its evaluation loop dispatches it through its slow path (the cheap ones, LOAD_FAST,
// LOAD_CONST, STORE_FAST, POP_TOP, most jumps, go uncounted), and its evaluation loop is slower
// than 3.11's. Measured side by side on this project's machine (docs/python.md,
// bench/python/instruction_costs.py), Stackless took 6 to 18 ns per counted instruction in six
// loop shapes, 2.3 to 7 times what 3.11 takes per instruction, about 3.5 to 4 times in the
// middle: a budget unit is taken as 3.5 of 3.11's instructions, so that run(timeout) returns at
// about the intervals Stackless's does (each slice then holds more work than Stackless's, 3.11
// being faster; with counting, less).
constexpr double instructions_per_budget_unit = 3.5;

std::chrono::nanoseconds budget_ns(long timeout) {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(
        static_cast<double>(timeout) * instructions_per_budget_unit * ns_per_instruction()));
}

// Below this, a budget is counted by the trace function (timed_run::counting): the watchdog
// thread wakes up too late for it (about 100 to 300 µs on this machine when it is busy).
constexpr std::int64_t counting_below_ns = 500'000;

}  // namespace

void counting_switched_in(py_tasklet* t) noexcept {
    if (active.generation == 0 || !active.counting || t == active.watchdog) return;
    if (!active.total) {
        active.deadline_ns = now_ns() + active.budget.count();
        active.lines = 0;
    }
    // (A tasklet with a trace function of its own keeps it, and is not interrupted.)
    give_trace_if_none(t->tstate, &interrupt_trace);
}

void drop_interrupt_trace(interp_state& saved) noexcept {
    if (saved.c_tracefunc != &interrupt_trace) return;
    saved.c_tracefunc = nullptr;
    Py_CLEAR(saved.c_traceobj);  // (a generation number, or nothing)
}

void schedule_callback_returned() noexcept {
    // The tasklet's slice starts after the callback (Stackless resets its count there too): the
    // callback's own time is not the tasklet's.
    if (active.generation != 0 && active.counting && !active.total) {
        active.deadline_ns = now_ns() + active.budget.count();
        active.lines = 0;
    }
}

py_tasklet* timed_run_caller() noexcept {
    return active.generation != 0 ? active.watchdog : nullptr;
}

void count_switch() noexcept {
    if (std::atomic<std::uint64_t>* c = counter) [[unlikely]]
        c->fetch_add(1, std::memory_order_relaxed);
}

void soft_interrupt_now() {
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    if (active.generation == 0) {
        soft_interrupt_pending = false;
        return;
    }
    // Not the caller of run() (it is where the interruption goes), nor a tasklet that may not
    // be interrupted now: the next switch tries again.
    if (t == nullptr || t == active.watchdog || !interruptible(t)) return;
    soft_interrupt_pending = false;
    Py_XSETREF(active.interrupted, Py_NewRef(reinterpret_cast<PyObject*>(t)));
    stackless::interrupt_to_run(active.watchdog->core);
}

PyObject* run_with_timeout(long timeout, bool threadblock, bool soft, bool total) {
    if (active.generation != 0) {
        // Stackless: only the outermost timed run() counts; the others are plain ones.
        if (!run_scheduler(threadblock)) return nullptr;
        Py_RETURN_NONE;
    }
    py_tasklet* self = current_object();
    if (self == nullptr) return nullptr;
    ns_per_instruction();  // (measured once, before the clock starts)
    active.generation = generations.fetch_add(1) + 1;
    active.soft = soft;
    active.total = total;
    active.budget = budget_ns(timeout);
    active.watchdog = reinterpret_cast<py_tasklet*>(Py_NewRef(reinterpret_cast<PyObject*>(self)));
    soft_interrupt_pending = false;
    active.counting = active.budget.count() < counting_below_ns;
    if (active.counting) active.deadline_ns = now_ns() + active.budget.count();
    active.lines = 0;
    active.min_lines = timeout / 8;
    counting_run = active.counting;
    watch(active);
    bool ok = run_scheduler(threadblock);
    timed_run none;
    watch(none);
    active.watched = nullptr;
    forget_opcode_frame(&active.opcode_frame);
    PyObject* interrupted = std::exchange(active.interrupted, nullptr);
    Py_CLEAR(active.watchdog);
    active.generation = 0;
    active.counting = counting_run = false;
    refresh_watchdog_list(false);  // (its first entry was this run's caller until now)
    soft_interrupt_pending = false;
    if (!ok) {
        Py_XDECREF(interrupted);
        return nullptr;
    }
    if (interrupted == nullptr) Py_RETURN_NONE;
    if (soft) {
        // Stackless leaves a softly interrupted tasklet runnable, and run() returns None.
        auto* t = reinterpret_cast<py_tasklet*>(interrupted);
        ok = run_core([&] {
            if (t->core.alive() && !t->core.scheduled()) t->core.insert();
        });
        Py_DECREF(interrupted);
        if (!ok) return nullptr;
        Py_RETURN_NONE;
    }
    return interrupted;
}

}  // namespace stackless::python
