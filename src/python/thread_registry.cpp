// The binding's data per Python thread: the registry of threads that use stackless, each
// thread's main tasklet object (made on first use), and the end of a thread's tasklets when the
// thread ends (and of the main thread's at interpreter exit).
#include <cstdint>
#include <unordered_map>

#include "tasklet_internal.hpp"

namespace stackless::python {

std::unordered_map<unsigned long, thread_data*>& all_threads() {
    static auto* map = new std::unordered_map<unsigned long, thread_data*>;
    return *map;
}

// Per-thread state of the binding, reached through one initial-exec thread-local pointer (the
// general-dynamic model costs a __tls_get_addr call per access in a shared object).
__attribute__((tls_model("initial-exec"))) constinit thread_local thread_data* this_thread =
    nullptr;

thread_data& this_thread_data() {
    if (this_thread == nullptr) [[unlikely]] {
        this_thread = new thread_data;  // lives as long as the thread's tasklets may
        all_threads()[this_thread->ident] = this_thread;
    }
    return *this_thread;
}

namespace {
int install_thread_sentinel();
void retire_thread() noexcept;

// The id of this OS thread's Python thread state whose stackless data retire_thread() tore down
// (0: none). Code that CPython runs later while it clears that thread state (a __del__) must not
// start tasklets again: nothing would end them while Python can still run.
__attribute__((
    tls_model("initial-exec"))) constinit thread_local std::uint64_t retired_thread_state = 0;
}  // namespace

namespace {
// The stacks of this thread's scheduler, until it exists (_configure_stacks may change them).
// Python code recurses through C calls up to the recursion limit (1000 levels of up to a few
// KiB each), so tasklets get stacks as large as a thread's; only the pages a tasklet touches
// become resident. Runnable tasklets keep their stacks (a plain context switch) up to 1,024
// slots; beyond, those that can drop their stacks take turns on few slots (soft switching), and
// blocked ones do so beyond 256. Measured on a quiet machine, the schedule loop per switch:
// 53 ns hard and 76 soft with 1,000 tasklets, 80 and 82 with 2,000, 125 and 85 with 3,000
// (docs/scaling.md).
thread_local stackless::scheduler_config stack_config{8 * 1024 * 1024, 256, 4096, 1024};
}  // namespace

int configure_this_thread_stacks(std::size_t stack_slots, std::size_t runnable_slots) {
    if (this_thread != nullptr && this_thread->main_object != nullptr) {
        PyErr_SetString(PyExc_RuntimeError,
                        "stackless._configure_stacks: this thread has used tasklets already");
        return -1;
    }
    if (stack_slots < 2 || runnable_slots < stack_slots ||
        runnable_slots > stack_config.max_stack_slots) {
        PyErr_Format(PyExc_ValueError,
                     "stackless._configure_stacks: need 2 <= stack_slots <= runnable_slots <= %zu",
                     stack_config.max_stack_slots);
        return -1;
    }
    stack_config.stack_slots = stack_slots;
    stack_config.runnable_slots = runnable_slots;
    return 0;
}

py_tasklet* thread_main() {
    if (this_thread == nullptr && retired_thread_state != 0 &&
        PyThreadState_GetID(PyThreadState_Get()) == retired_thread_state) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError,
                        "stackless: this thread is ending; it cannot run tasklets any more");
        return nullptr;
    }
    thread_data& d = this_thread_data();
    if (d.main_object != nullptr) [[likely]]
        return d.main_object;
    try {
        stackless::configure(stack_config);
    } catch (const stackless::error&) {
        // This thread's scheduler exists already (C++ code used it first): keep its stacks.
    }
    auto* t = reinterpret_cast<py_tasklet*>(tasklet_type.tp_alloc(&tasklet_type, 0));
    if (t == nullptr) return nullptr;
    try {
        new (&t->core) stackless::tasklet(stackless::getmain());
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        Py_DECREF(t);
        raise_from_cxx();
        return nullptr;
    }
    t->tstate = PyThreadState_Get();
    t->thread = &d;
    ++d.objects;
    t->python_started = true;
    t->is_main = true;
    t->core.set_hooks(&tasklet_switch_hooks, t);
    d.main_object = t;
    d.current = t;
    if (install_thread_sentinel() < 0) PyErr_WriteUnraisable(nullptr);
    return t;
}

py_tasklet* object_of(const stackless::tasklet& t) noexcept {
    // (The collector may traverse a channel from another thread than its waiters', and next
    // and prev read another thread's chain: every caller holds the GIL, which keeps that thread
    // still.)
    return static_cast<py_tasklet*>(t.payload_from_any_thread());
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

const thread_data* thread_data_of(unsigned long ident) noexcept {
    auto it = all_threads().find(ident);
    return it != all_threads().end() ? it->second : nullptr;
}

int& switch_trap_level_slow() noexcept {
    return this_thread_data().switch_trap;
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
    } catch (...) {  // (a forced unwind ends a killed tasklet's own stack, not this one)
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

void release_thread_data(thread_data* d) noexcept {
    if (d == nullptr || --d->objects > 0 || !d->ended || d->main_object != nullptr) return;
    // Its thread has ended: what it released was flushed then, and nothing adds to it since.
    for (PyObject* o : d->released) Py_DECREF(o);
    delete d;
}

namespace {

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
    } catch (...) {  // (set_hooks only writes: no forced unwind starts in it)
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

}  // namespace stackless::python
