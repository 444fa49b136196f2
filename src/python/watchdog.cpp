// stackless.run(timeout): preemption of a tasklet that runs about `timeout` bytecode
// instructions without switching (Stackless's watchdog), on stock CPython 3.11.
//
// CPython counts no instructions we could read, so the budget is time: `timeout` instructions
// times the time one instruction takes on this machine, measured once
// (_stackless_pickle.ns_per_instruction). A watchdog thread sleeps for that long; if the thread
// running run(timeout) has switched tasklets meanwhile it starts again (unless totaltimeout),
// else it asks the interpreter for a pending call (Py_AddPendingCall, which the evaluation loop
// runs at its next check: a backward jump or a call). The pending call, in the running tasklet,
// sets a C trace function on it; at the next line the trace function, still in that tasklet,
// takes it out of the run queue and switches to run()'s caller (stackless::interrupt_to_run),
// which returns it. Inserted again, the tasklet goes on from inside the trace function, which
// has removed itself: nothing is traced afterwards. An atomic tasklet is interrupted at its first
// line outside its atomic section. soft=True interrupts at the tasklet's next schedule() instead.
//
// Costs: nothing without a timeout; with one, an atomic increment per switch and the watchdog
// thread's wake-ups. Only the main thread runs pending calls in CPython 3.11: run(timeout) on
// another thread raises NotImplementedError.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <pthread.h>

#include "binding.hpp"

extern "C" void stackless_wake_main_interpreter(void);  // eval_breaker.c

namespace stackless::python {

namespace {

using clock = std::chrono::steady_clock;

struct watchdog_state {
    std::mutex mutex;
    std::condition_variable wake;
    bool thread_started = false;
    // What the watchdog thread watches (under mutex).
    std::uint64_t generation = 0;  // of the active timed run() call; 0: none
    std::chrono::nanoseconds budget{0};
    bool total = false;
};

watchdog_state* the_state = nullptr;

// The timed run() whose time is up, for on_deadline; and whether an on_deadline call is in
// CPython's queue of pending calls (one at a time: that queue is short, and shared).
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

// Read by the main thread (under the GIL) and by the watchdog thread.
std::atomic<std::uint64_t> switches{0};
std::atomic<bool> counting{false};  // a timed run() is active: switched_in counts
std::atomic<std::uint64_t> armed_generation{0};

// Main-thread state (under the GIL).
struct timed_run {
    std::uint64_t generation = 0;
    bool soft = false;
    bool expired = false;  // soft: the next schedule() interrupts
    PyObject* interrupted = nullptr;
    void* thread = nullptr;  // the binding's data of the (main) thread running it
    std::chrono::nanoseconds budget{0};
    bool total = false;
};
timed_run active;

int on_deadline(void* arg);

// Py_AddPendingCall from a thread other than the main one records the call but does not set the
// main thread's eval breaker: 3.11 recomputes it for the calling thread, which cannot run pending
// calls, and so may even clear it. A loop that never releases the GIL would not look
// (eval_breaker.c).
void wake_main_thread() {
    stackless_wake_main_interpreter();
}

void watchdog_thread() {
    watchdog_state& s = state();
    std::unique_lock lock(s.mutex);
    for (;;) {
        s.wake.wait(lock, [&] { return s.generation != 0; });
        std::uint64_t generation = s.generation;
        std::uint64_t seen = switches.load(std::memory_order_relaxed);
        auto deadline = clock::now() + s.budget;
        while (s.generation == generation &&
               s.wake.wait_until(lock, deadline) != std::cv_status::timeout) {
        }
        if (s.generation != generation) continue;
        if (!s.total && switches.load(std::memory_order_relaxed) != seen) continue;  // it switched
        // Time is up: ask the interpreter to call us in the running tasklet, unless a call is
        // queued already (the main thread has not run pending calls since: a long C call, or the
        // OS paused it). Refused only when the queue is full (of others' calls): the next round
        // tries again.
        expired_generation.store(generation);
        if (!deadline_call_queued.exchange(true) && Py_AddPendingCall(&on_deadline, nullptr) != 0)
            deadline_call_queued.store(false);
        // Every round, whatever happened to the call: a queued call runs only once the eval
        // breaker is set, and Py_AddPendingCall may have cleared it.
        wake_main_thread();
    }
}

// The trace function that interrupts: called at the next line of the tasklet that was running
// when time was up.
int interrupt_trace(PyObject*, PyFrameObject*, int, PyObject*) {
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    bool stale = active.generation == 0 || active.generation != armed_generation.load();
    if (t == nullptr || stale) {
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
        if (active.generation == generation) active.expired = true;  // soft: at schedule()
        return 0;
    }
    PyThreadState* ts = PyThreadState_Get();
    // A tasklet with a trace function of its own is not interrupted (it would lose it).
    if (ts->c_tracefunc == nullptr && this_thread != nullptr && this_thread->current != nullptr)
        PyEval_SetTrace(&interrupt_trace, nullptr);
    return 0;
}

// Has the watchdog thread watch `run` (generation 0: nothing), starting the thread if needed.
void watch(const timed_run& run) {
    watchdog_state& s = state();
    {
        std::lock_guard lock(s.mutex);
        s.generation = run.generation;
        s.budget = run.budget;
        s.total = run.total;
        if (run.generation != 0 && !s.thread_started) {
            std::thread(&watchdog_thread).detach();
            s.thread_started = true;
        }
    }
    s.wake.notify_all();
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
    if (counting.load(std::memory_order_relaxed)) [[unlikely]]
        switches.fetch_add(1, std::memory_order_relaxed);
}

bool soft_interrupt_due() noexcept {
    // (Only in the thread of the timed run(): another thread's schedule() is not concerned.)
    return active.expired && active.thread == this_thread;
}

bool interrupt_softly() {
    active.expired = false;
    py_tasklet* t = this_thread != nullptr ? this_thread->current : nullptr;
    if (t == nullptr || t->atomic) return false;
    Py_XSETREF(active.interrupted, Py_NewRef(reinterpret_cast<PyObject*>(t)));
    return true;
}

PyObject* run_with_timeout(long timeout, bool threadblock, bool soft, bool total) {
    static unsigned long main_ident = [] {
        PyObject* threading = PyImport_ImportModule("threading");
        PyObject* main =
            threading ? PyObject_CallMethod(threading, "main_thread", nullptr) : nullptr;
        PyObject* ident = main ? PyObject_GetAttrString(main, "ident") : nullptr;
        unsigned long v = ident ? PyLong_AsUnsignedLong(ident) : 0;
        Py_XDECREF(ident);
        Py_XDECREF(main);
        Py_XDECREF(threading);
        PyErr_Clear();
        return v;
    }();
    if (PyThread_get_thread_ident() != main_ident) {
        PyErr_SetString(PyExc_NotImplementedError,
                        "stackless.run(timeout): preemption works on the main thread only (CPython "
                        "3.11 runs pending calls there only)");
        return nullptr;
    }
    auto budget = std::chrono::nanoseconds(
        static_cast<std::int64_t>(static_cast<double>(timeout) * ns_per_instruction()));
    timed_run outer = active;  // a timed run() inside another one's tasklets
    static std::uint64_t generations = 0;
    active = timed_run{++generations, soft, false, nullptr, this_thread, budget, total};
    armed_generation.store(active.generation);
    counting.store(true, std::memory_order_relaxed);
    watch(active);
    bool ok = run_core([&] { stackless::run(threadblock); });
    PyObject* interrupted = active.interrupted;
    active.interrupted = nullptr;
    // The outer timed run() (if any) is watched again, with its own budget. (state() may be
    // another one now, if a tasklet forked the process.)
    watch(outer);
    active = outer;
    armed_generation.store(outer.generation);
    counting.store(outer.generation != 0, std::memory_order_relaxed);
    if (!ok) {
        Py_XDECREF(interrupted);
        return nullptr;
    }
    if (interrupted == nullptr) Py_RETURN_NONE;
    return interrupted;
}

}  // namespace stackless::python
