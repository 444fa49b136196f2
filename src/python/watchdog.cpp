// stackless.run(timeout): preemption of a tasklet that runs about `timeout` bytecode
// instructions without switching (Stackless's watchdog), on stock CPython 3.11, in any thread.
//
// CPython counts no instructions we could read, so the budget is time: `timeout` instructions
// times the time one instruction takes on this machine, measured once
// (_stackless_pickle.ns_per_instruction). A watchdog thread keeps the deadline of every timed
// run() in progress (one per thread at a time: the innermost); if the thread of a run has switched
// tasklets meanwhile the run's deadline starts again (unless totaltimeout). When time is up, the
// running tasklet gets a C trace function; at its next line the trace function, still in that
// tasklet, takes it out of the run queue and switches to run()'s caller
// (stackless::interrupt_to_run), which returns it. Inserted again, the tasklet goes on from
// inside the trace function, which has removed itself: nothing is traced afterwards. An atomic
// tasklet is interrupted at its first line outside its atomic section. soft=True interrupts at
// the tasklet's next schedule() instead.
//
// How the trace function gets there:
// - Main thread: a pending call (Py_AddPendingCall, which the evaluation loop runs at its next
//   check: a backward jump or a call) sets it in the running tasklet. Quick: no GIL needed.
// - Other threads (CPython 3.11 runs pending calls on the main thread only): the watchdog thread
//   takes the GIL, which the running thread gives up within the switch interval
//   (sys.getswitchinterval(), 5 ms), and sets the trace function in that thread's state
//   (_PyEval_SetTrace, CPython's own way to trace another thread, used by
//   threading.settrace_all_threads in 3.12); the thread meets it at its next instruction. So an
//   interruption there comes at least one switch interval after the deadline.
//
// Costs: nothing without a timeout; with one, an atomic increment per switch and the watchdog
// thread's wake-ups.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <pthread.h>

#include "binding.hpp"

// Relies on CPython 3.11: PyThreadState.c_tracefunc (a tasklet that traces itself is left alone)
// and _PyEval_SetTrace(tstate, ...), which traces another thread's state with the GIL held.
#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

extern "C" void stackless_wake_main_interpreter(void);  // eval_breaker.c

namespace stackless::python {

struct timed_run;

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
    bool* expired = nullptr;  // its thread's soft_expired record (touched only with the GIL)
    std::atomic<std::uint64_t> switches{0};  // counted by its thread
    // `switches` when the trace function was set: a tasklet that switched since (the trace
    // function travels with it) has had a new budget and is not interrupted.
    std::atomic<std::uint64_t> armed_at{0};
    // The watchdog thread's bookkeeping (under the state's mutex).
    clock::time_point deadline;
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

}  // namespace

// A thread's timed run() in progress (under the GIL, in its thread).
struct timed_run {
    std::uint64_t generation = 0;
    bool soft = false;
    PyObject* interrupted = nullptr;
    std::chrono::nanoseconds budget{0};
    bool total = false;
    std::shared_ptr<watched_run> watched;
};

namespace {

__attribute__((tls_model("initial-exec"))) thread_local timed_run active;
// soft=True: the time of this thread's timed run() is up, its next schedule() interrupts. (Apart
// from `active`, which has a destructor: read at every schedule(), without a TLS wrapper. The
// watchdog thread sets another thread's with the GIL held.)
__attribute__((tls_model("initial-exec"))) constinit thread_local bool soft_expired = false;
// What count_switch() increments (nullptr: no timed run on this thread).
__attribute__((tls_model(
    "initial-exec"))) constinit thread_local std::atomic<std::uint64_t>* counter = nullptr;

std::atomic<std::uint64_t> generations{0};

int on_deadline(void* arg);
int interrupt_trace(PyObject* generation, PyFrameObject*, int, PyObject*);

// Py_AddPendingCall from a thread other than the main one records the call but does not set the
// main thread's eval breaker: 3.11 recomputes it for the calling thread, which cannot run pending
// calls, and so may even clear it. A loop that never releases the GIL would not look
// (eval_breaker.c).
void wake_main_thread() {
    stackless_wake_main_interpreter();
}

// Gives the running tasklet of `tstate`'s thread the interrupting trace function for `run`
// (with the GIL). A tasklet with a trace function of its own is not interrupted: it would lose it.
void arm(PyThreadState* tstate, watched_run& w) {
    if (tstate->c_tracefunc != nullptr) return;
    const std::uint64_t generation = w.generation;
    w.armed_at.store(w.switches.load(std::memory_order_relaxed), std::memory_order_relaxed);
    PyObject* g = PyLong_FromUnsignedLongLong(generation);
    if (g == nullptr) {
        PyErr_Clear();
        return;
    }
    if (_PyEval_SetTrace(tstate, &interrupt_trace, g) < 0) PyErr_Clear();
    Py_DECREF(g);
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
        if (w->soft)
            *w->expired = true;
        else
            arm(w->tstate, *w);
    }
    PyGILState_Release(gil);
}

void watchdog_thread() {
    watchdog_state& s = state();
    std::unique_lock lock(s.mutex);
    for (;;) {
        s.wake.wait(lock, [&] { return !s.runs.empty(); });
        auto next = clock::time_point::max();
        for (const auto& w : s.runs) next = std::min(next, w->deadline);
        const std::uint64_t changes = s.changes;
        if (s.wake.wait_until(lock, next, [&] { return s.changes != changes; })) continue;
        std::vector<std::shared_ptr<watched_run>> due;
        const auto now = clock::now();
        for (const auto& w : s.runs) {
            if (w->deadline > now) continue;
            w->deadline = now + w->budget;
            std::uint64_t switches = w->switches.load(std::memory_order_relaxed);
            if (!w->total && switches != w->seen) {  // it switched: a new budget
                w->seen = switches;
                continue;
            }
            due.push_back(w);
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

// The trace function that interrupts: called at the next line of the tasklet that was running
// when time was up.
int interrupt_trace(PyObject* generation, PyFrameObject*, int, PyObject*) {
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    bool stale =
        active.generation == 0 || PyLong_AsUnsignedLongLong(generation) != active.generation;
    if (!stale && !active.total && active.watched != nullptr &&
        active.watched->switches.load(std::memory_order_relaxed) !=
            active.watched->armed_at.load(std::memory_order_relaxed))
        stale = true;  // it switched after the trace function was set
    if (t == nullptr || stale) {
        PyErr_Clear();
        PyEval_SetTrace(nullptr, nullptr);
        return 0;
    }
    if (t->atomic) return 0;  // never inside an atomic section: try again at the next line
    PyEval_SetTrace(nullptr, nullptr);
    Py_XSETREF(active.interrupted, Py_NewRef(reinterpret_cast<PyObject*>(t)));
    t->interrupted = true;
    bool ok = run_core([] { stackless::interrupt_to_run(); });
    t->interrupted = false;
    return ok ? 0 : -1;
}

int on_deadline(void*) {
    deadline_call_queued.store(false);
    std::uint64_t generation = expired_generation.load();
    if (active.generation == 0 || active.generation != generation || active.soft) {
        if (active.generation == generation) soft_expired = true;  // soft: at schedule()
        return 0;
    }
    if (this_thread != nullptr && this_thread->current != nullptr)
        arm(PyThreadState_Get(), *active.watched);
    return 0;
}

// Has the watchdog thread watch this thread's `run` (generation 0: none), starting the thread if
// needed.
void watch(timed_run& run) {
    watchdog_state& s = state();
    std::shared_ptr<watched_run> previous;
    if (run.generation != 0 && run.watched == nullptr) {
        auto w = std::make_shared<watched_run>();
        w->generation = run.generation;
        w->budget = run.budget;
        w->total = run.total;
        w->on_main_thread = _PyOS_IsMainThread() != 0;
        w->soft = run.soft;
        w->tstate = PyThreadState_Get();
        w->expired = &soft_expired;
        run.watched = w;
    }
    {
        std::lock_guard lock(s.mutex);
        // This thread's entry (at most one) is replaced.
        std::erase_if(s.runs, [&](const std::shared_ptr<watched_run>& w) {
            return w->expired == &soft_expired;
        });
        if (run.generation != 0) {
            run.watched->deadline = clock::now() + run.budget;
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
        v = 10;  // a plausible figure for this kind of machine, if measuring failed
    }
    measured = v;
    return measured;
}

}  // namespace

void count_switch() noexcept {
    if (std::atomic<std::uint64_t>* c = counter) [[unlikely]]
        c->fetch_add(1, std::memory_order_relaxed);
}

bool soft_interrupt_due() noexcept {
    return soft_expired;
}

bool interrupt_softly() {
    soft_expired = false;
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    if (t == nullptr || t->atomic) return false;
    Py_XSETREF(active.interrupted, Py_NewRef(reinterpret_cast<PyObject*>(t)));
    return true;
}

PyObject* run_with_timeout(long timeout, bool threadblock, bool soft, bool total) {
    auto budget = std::chrono::nanoseconds(
        static_cast<std::int64_t>(static_cast<double>(timeout) * ns_per_instruction()));
    timed_run outer = std::move(active);  // a timed run() inside another one's tasklets
    active = timed_run{generations.fetch_add(1) + 1, soft, nullptr, budget, total, nullptr};
    soft_expired = false;
    watch(active);
    bool ok = run_core([&] { stackless::run(threadblock); });
    PyObject* interrupted = std::exchange(active.interrupted, nullptr);
    // The outer timed run() (if any) is watched again, with its own budget. (state() may be
    // another one now, if a tasklet forked the process.)
    active = std::move(outer);
    soft_expired = false;
    watch(active);
    if (!ok) {
        Py_XDECREF(interrupted);
        return nullptr;
    }
    if (interrupted == nullptr) Py_RETURN_NONE;
    return interrupted;
}

}  // namespace stackless::python
