// The GIL and threads that wait for each other. A thread whose tasklets all wait sleeps in the
// core until another thread completes one of them on a channel; meanwhile it must not hold the
// GIL, or no other thread could. Whether to wait at all follows Stackless: while another Python
// thread is running (not itself waiting like this), it may still wake us; otherwise the wait is
// a deadlock and raises.
//
// Relies on: CPython 3.11's thread-state list (PyInterpreterState_ThreadHead,
// PyThreadState_Next), which changes only with the GIL held, so reading it with the GIL is safe.
#include "binding.hpp"  // Python.h first

#include "stackless/threads.hpp"

namespace stackless::python {

namespace {

__attribute__((tls_model("initial-exec"))) constinit thread_local PyThreadState* saved_state =
    nullptr;

// (A thread of C++ code in the same process, without a Python thread state, follows the core's
// rule and keeps no GIL.)
int may_be_woken() {
    if (!PyGILState_Check()) return -1;
    PyThreadState* self = PyThreadState_Get();
    int others = 0;
    for (PyThreadState* t = PyInterpreterState_ThreadHead(self->interp); t != nullptr;
         t = PyThreadState_Next(t))
        if (t != self) ++others;
    // (Counts every thread asleep in the core as a Python one: in a process where C++ threads
    // also wait on shared channels, a Python thread may report a deadlock too early.)
    return others - stackless::sleeping_threads() > 0 ? 1 : 0;
}

void begin_wait() {
    if (PyGILState_Check()) saved_state = PyEval_SaveThread();
}

void end_wait() {
    if (saved_state == nullptr) return;  // not a Python thread
    // A daemon thread that takes the GIL back while the interpreter finalizes is ended here by
    // CPython (pthread_exit): its forced unwind passes through the core and the tasklet's frames
    // (every catch-all lets it through), and the thread's end drops its tasklets unrun
    // (may_run_tasklets_at_thread_end).
    PyEval_RestoreThread(std::exchange(saved_state, nullptr));
    // Ctrl-C ends the wait of the main thread: its handler runs now, and what it raises is
    // raised in the waiting tasklet.
    if (PyErr_CheckSignals() < 0) throw python_error();
}

// Called while a thread ends, after CPython has let it go. A Python thread whose stackless data
// was not torn down with its thread state (shutdown_thread) was ended by CPython without it: a
// daemon thread that took the GIL back during finalization. Its tasklets' frames cannot run any
// more (the GIL is not ours, the interpreter may be gone).
bool may_run_tasklets_at_thread_end() {
    return this_thread == nullptr || this_thread->main_object == nullptr || this_thread->ended;
}

const stackless::thread_hooks hooks{&may_be_woken, &begin_wait, &end_wait,
                                    &may_run_tasklets_at_thread_end};

}  // namespace

void install_thread_hooks() noexcept {
    stackless::set_thread_hooks(&hooks);
}

}  // namespace stackless::python
