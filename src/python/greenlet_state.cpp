// greenlet and tasklets in one process: each tasklet hosts its own greenlets, as each thread does
// for greenlet.
//
// Why: a greenlet switch copies slices of the C stack between the greenlets that began on one C
// stack, the thread's, which greenlet assumes is the only one. A tasklet runs on a C stack of its
// own: a greenlet begun in one tasklet and switched to from another (gevent's hub, one greenlet
// per thread, used by two tasklets) copied the wrong memory and crashed the process. So the
// switch hooks give every tasklet its own greenlet state (its own main and current greenlet),
// swapped in and out with the tasklet like the interpreter state. Greenlets stay with the tasklet
// that began them, and greenlet itself refuses a switch to a greenlet of another tasklet, as to
// one of another thread (greenlet.error, "cannot switch to a different thread").
//
// Relies on: greenlet 2.0 (Debian 12's python3-greenlet 2.0.2), which keeps its per-thread
// state behind one pointer in a C++ thread_local of its extension module, greenlet._greenlet
// (greenlet.cpp: `static thread_local ThreadStateCreator g_thread_state_global`; the creator's
// only member is `ThreadState* _state`: (ThreadState*)1 until greenlet first needs it, then the
// thread's state, which greenlet frees when the thread exits). That module's TLS block is 16
// bytes: the guard byte of the variable's dynamic initialisation at offset 0, the pointer at
// offset 8 (its code reads them so). Checked before use: the version, the size of the block, and,
// once greenlet has run in the thread, the guard set and the pointer a real one. Any other
// greenlet is left alone (and a greenlet switched across tasklets may then crash, as before).
#include <dlfcn.h>
#include <link.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "tasklet_internal.hpp"

extern "C" void* __tls_get_addr(void*);  // glibc's (x86-64 ABI): the TLS block of a module

namespace stackless::python {

// greenlet._greenlet has been imported (set under the GIL by the import watcher or at import of
// stackless), and this thread's greenlet state pointer, once found.
bool greenlet_imported = false;
__attribute__((tls_model("initial-exec"))) constinit thread_local void** greenlet_state_slot =
    nullptr;

namespace {

constexpr const char* greenlet_module = "greenlet._greenlet";
constexpr std::size_t tls_block_size = 16;
constexpr std::size_t state_offset = 8;  // the ThreadState pointer; the guard byte is at 0
void* const fresh_state = reinterpret_cast<void*>(1);  // greenlet makes a state on first use

// Whether greenlet's TLS block matched (0 unknown, 1 yes, -1 no: leave greenlet alone).
int layout_ok = 0;
std::size_t tls_module_id = 0;

// Greenlet states of ended tasklets that hold no greenlet but their main one (see
// recycle_greenlet_state), for tasklets that start later. GIL-guarded.
std::vector<void*>& spare_states() {
    static auto* v = new std::vector<void*>;
    return *v;
}

int find_module(dl_phdr_info* info, std::size_t, void* out) {
    if (info->dlpi_name == nullptr ||
        std::strstr(info->dlpi_name, "/greenlet/_greenlet") == nullptr)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        if (info->dlpi_phdr[i].p_type != PT_TLS) continue;
        auto* found = static_cast<std::pair<std::size_t, std::size_t>*>(out);
        *found = {info->dlpi_tls_modid, info->dlpi_phdr[i].p_memsz};
        return 1;
    }
    return 0;
}

// Whether greenlet is the version whose layout this file knows (asked once, under the GIL).
bool known_version() {
    PyObject* mod = PyDict_GetItemString(PyImport_GetModuleDict(), "greenlet");  // (borrowed)
    if (mod == nullptr) return false;
    PyObject* v = PyObject_GetAttrString(mod, "__version__");
    const char* s = v != nullptr && PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : nullptr;
    bool ok = s != nullptr && std::strncmp(s, "2.0.", 4) == 0;
    Py_XDECREF(v);
    PyErr_Clear();
    return ok;
}

void check_layout() {
    layout_ok = -1;
    if (!known_version()) return;
    std::pair<std::size_t, std::size_t> found{0, 0};
    dl_iterate_phdr(&find_module, &found);
    if (found.first == 0 || found.second != tls_block_size) return;
    tls_module_id = found.first;
    layout_ok = 1;
}

// This thread's slot (its module TLS block is made on first access), or nullptr if greenlet's
// state there does not look as expected.
void** find_slot() noexcept {
    struct {
        std::size_t module, offset;
    } index{tls_module_id, 0};
    auto* block = static_cast<unsigned char*>(__tls_get_addr(&index));
    if (block == nullptr) return nullptr;
    auto** slot = reinterpret_cast<void**>(block + state_offset);
    const unsigned char guard = block[0];
    void* state = *slot;
    // Before greenlet first runs in this thread: all zero. After: the guard set, and the
    // pointer (ThreadState*)1 or a real one.
    if (guard == 0 && state == nullptr) return slot;
    if (guard == 1 && state != nullptr &&
        (state == fresh_state || reinterpret_cast<std::uintptr_t>(state) % alignof(void*) == 0))
        return slot;
    return nullptr;
}

// The find_spec of an import finder first in sys.meta_path: notes the import of
// greenlet._greenlet and finds nothing, so that the other finders import it (the switch hooks
// look for the module at the next tasklet switch). Only imports of modules not imported yet come
// here: nothing else pays (a CPython audit hook would also run for pickle.find_class,
// sys._getframe and the like).
PyObject* watch_find_spec(PyObject*, PyObject* args, PyObject*) {
    PyObject* name = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : nullptr;
    if (!greenlet_imported && name != nullptr && PyUnicode_Check(name) &&
        PyUnicode_CompareWithASCIIString(name, greenlet_module) == 0)
        greenlet_imported = true;
    Py_RETURN_NONE;
}

PyMethodDef watch_find_spec_def = {
    "find_spec", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(watch_find_spec)),
    METH_VARARGS | METH_KEYWORDS, "stackless: notes the import of greenlet (greenlet_state.cpp)"};

__attribute__((noinline, cold)) void** setup_slot() noexcept {
    if (layout_ok == 0) {
        // (Under the GIL, in a switch hook: nothing here switches tasklets.)
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject* modules = PyImport_GetModuleDict();
        PyObject* mod =
            modules != nullptr ? PyDict_GetItemString(modules, greenlet_module) : nullptr;
        if (mod != nullptr)
            check_layout();
        else
            greenlet_imported = false;  // the import failed: the finder sees the next attempt
        PyErr_Restore(type, value, tb);
        if (layout_ok == 0) return nullptr;
    }
    if (layout_ok < 0) return nullptr;
    greenlet_state_slot = find_slot();
    if (greenlet_state_slot == nullptr) layout_ok = -1;
    return greenlet_state_slot;
}

}  // namespace

int install_greenlet_support() {
    PyObject* modules = PyImport_GetModuleDict();
    if (PyDict_GetItemString(modules, greenlet_module) != nullptr) {
        greenlet_imported = true;
        return 0;
    }
    PyObject* meta_path = PySys_GetObject("meta_path");  // (borrowed)
    if (meta_path == nullptr || !PyList_Check(meta_path)) return 0;
    PyObject* types = PyImport_ImportModule("types");
    PyObject* ns_type =
        types != nullptr ? PyObject_GetAttrString(types, "SimpleNamespace") : nullptr;
    PyObject* find_spec = PyCFunction_New(&watch_find_spec_def, nullptr);
    PyObject* finder = nullptr;
    if (ns_type != nullptr && find_spec != nullptr) {
        PyObject* kwargs = Py_BuildValue("{sO}", "find_spec", find_spec);
        PyObject* empty = PyTuple_New(0);
        if (kwargs != nullptr && empty != nullptr) finder = PyObject_Call(ns_type, empty, kwargs);
        Py_XDECREF(kwargs);
        Py_XDECREF(empty);
    }
    int r = finder != nullptr ? PyList_Insert(meta_path, 0, finder) : -1;
    Py_XDECREF(finder);
    Py_XDECREF(find_spec);
    Py_XDECREF(ns_type);
    Py_XDECREF(types);
    return r;
}

void switch_greenlet_state_out(py_tasklet* t) noexcept {
    void** slot = greenlet_state_slot;
    if (slot == nullptr) [[likely]] {
        if (!greenlet_imported) [[likely]]
            return;
        slot = setup_slot();  // the state in the slot now is this tasklet's
        if (slot == nullptr) return;
    }
    void* state = *slot;
    if (!t->python_started && state != nullptr && state != fresh_state) [[unlikely]] {
        // It ends without having run Python code (killed before it began): the spare state it
        // was handed is untouched, and goes back. (A rebound tasklet's old state was let go in
        // greenlet_state_dropped: no other state reaches here.)
        spare_states().push_back(state);
        *slot = fresh_state;
        state = nullptr;
    }
    t->greenlet_state = state;
}

void greenlet_state_dropped(py_tasklet* t) noexcept {
    // Its greenlets (begun on the C stack that went with its frames) must never be reached
    // from its next run, on a new stack: it starts with a state of its own again. The old one
    // stays with those greenlets, which greenlet refuses to switch to from anywhere else.
    t->greenlet_state = nullptr;
}

void switch_greenlet_state_in(py_tasklet* t) noexcept {
    void** slot = greenlet_state_slot;
    if (slot == nullptr) [[likely]]
        return;
    void* state = t->greenlet_state;
    if (state == nullptr || state == fresh_state) {
        // Never had one: a spare one, or greenlet makes one when the tasklet first uses it.
        auto& spares = spare_states();
        if (!spares.empty()) {
            state = spares.back();
            spares.pop_back();
        } else {
            state = fresh_state;
        }
        t->greenlet_state = state;
    }
    *slot = state;
}

void recycle_greenlet_state(py_tasklet* t) noexcept {
    void** slot = greenlet_state_slot;
    if (slot == nullptr || *slot == nullptr || *slot == fresh_state) return;
    // The state may serve another tasklet if it holds no greenlet but its main one, the current
    // one, which nothing else refers to: the state's two references and ours (a greenlet begun
    // in this tasklet refers to it as its parent or its main greenlet, and so does any other
    // holder). Otherwise it stays with this ended tasklet: greenlet refuses a switch to its
    // greenlets from any other tasklet, as to those of an ended thread, and it is not freed.
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    bool clean = false;
    PyObject* mod = PyDict_GetItemString(PyImport_GetModuleDict(), greenlet_module);  // (borrowed)
    if (mod != nullptr) {
        PyObject* current = PyObject_CallMethod(mod, "getcurrent", nullptr);
        if (current != nullptr) {
            PyObject* parent = PyObject_GetAttrString(current, "parent");
            clean = parent == Py_None && Py_REFCNT(current) == 3;
            Py_XDECREF(parent);
            Py_DECREF(current);
        }
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    if (clean) spare_states().push_back(*slot);
    // Either way the ended tasklet lets go of it: if it is bound and run again, on a new C
    // stack, its greenlets of this run must stay out of reach.
    *slot = fresh_state;
    t->greenlet_state = fresh_state;
}

}  // namespace stackless::python
