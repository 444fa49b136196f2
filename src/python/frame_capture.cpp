// Reading a switched-out tasklet's frames (and a generator's) as pickle records.
#include "frame_layout.hpp"

#include <algorithm>
#include <utility>

namespace stackless::python {

// A tuple of `n` values starting at `values`, with None for NULL, and the NULLs' indices.
// Functions then go through `by_value` (functions pickle cannot find by name are wrapped): only
// once every value is in the tuple, since by_value runs Python code, which may change the frame.
bool values_tuple(PyObject* const* values, int n, PyObject* by_value, PyObject** out,
                  PyObject** nulls) {
    *nulls = nullptr;
    *out = PyTuple_New(n);
    if (*out == nullptr) return false;
    int null_count = 0;
    for (int i = 0; i < n; ++i) {
        PyObject* v = values[i];
        if (v == nullptr) ++null_count;
        PyTuple_SET_ITEM(*out, i, Py_NewRef(v != nullptr ? v : Py_None));
    }
    *nulls = PyTuple_New(null_count);
    for (int i = 0, j = 0; *nulls != nullptr && i < n; ++i) {
        if (values[i] != nullptr) continue;
        PyObject* index = PyLong_FromLong(i);
        if (index == nullptr)
            Py_CLEAR(*nulls);
        else
            PyTuple_SET_ITEM(*nulls, j++, index);
    }
    if (*nulls == nullptr) {
        Py_CLEAR(*out);
        return false;
    }
    for (int i = 0; i < n; ++i) {
        PyObject* v = PyTuple_GET_ITEM(*out, i);
        if (!PyFunction_Check(v)) continue;
        PyObject* wrapped = PyObject_CallOneArg(by_value, v);
        if (wrapped == nullptr) {
            Py_CLEAR(*out);
            Py_CLEAR(*nulls);
            return false;
        }
        PyTuple_SET_ITEM(*out, i, wrapped);
        Py_DECREF(v);
    }
    return true;
}

// A module's globals are pickled as the module's name; other dicts as themselves.
PyObject* globals_ref(PyObject* globals) {
    static PyObject* name_key = PyUnicode_InternFromString("__name__");
    PyObject* name = name_key != nullptr ? PyDict_GetItemWithError(globals, name_key) : nullptr;
    if (name != nullptr && PyUnicode_Check(name)) {
        // sys.modules directly: PyImport_GetModule also checks that the module finished
        // importing, at the cost of an AttributeError raised and caught each time.
        PyObject* module = PyDict_GetItemWithError(PyImport_GetModuleDict(), name);  // borrowed
        if (module != nullptr && PyModule_Check(module) && PyModule_GetDict(module) == globals)
            return Py_NewRef(name);
    }
    if (PyErr_Occurred()) return nullptr;
    return Py_NewRef(globals);
}

namespace {

// Is `callee` the function whose frame `next` is (called directly by the evaluation loop)?
bool calls_frame(PyObject* callee, _PyInterpreterFrame* next) {
    if (callee == nullptr || next == nullptr) return false;
    if (PyMethod_Check(callee)) callee = PyMethod_GET_FUNCTION(callee);
    return PyFunction_Check(callee) &&
           PyFunction_GET_CODE(callee) == reinterpret_cast<PyObject*>(next->f_code);
}

// Why a frame cannot be pickled: ("refuse", reason, code, index, callee, next code), for
// _stackless_pickle to put into words.
PyObject* refusal(const char* reason, PyCodeObject* code, int index, PyObject* callee,
                  _PyInterpreterFrame* next) {
    return Py_BuildValue("(ssOiOO)", "refuse", reason, code, index,
                         callee != nullptr ? callee : Py_None,
                         next != nullptr ? reinterpret_cast<PyObject*>(next->f_code) : Py_None);
}

// Is `callee` the generator whose frame `next` is (iterated over by FOR_ITER, or sent to)?
bool drives_generator(PyObject* callee, _PyInterpreterFrame* next) {
    return callee != nullptr && PyGen_CheckExact(callee) &&
           frame_of(reinterpret_cast<PyGenObject*>(callee)) == next;
}

// One frame's record, or a refusal (*refused set), or nullptr with an exception.
PyObject* capture_one(_PyInterpreterFrame* f, _PyInterpreterFrame* next,
                      const capture_helpers& helpers, resume_op* op, bool* refused) {
    PyCodeObject* code = f->f_code;
    int nlocals = code->co_nlocalsplus;
    int index = static_cast<int>(f->prev_instr - _PyCode_CODE(code));
    *refused = true;
    if (code->co_flags & code_flags_not_resumable)
        return refusal("generator", code, index, nullptr, nullptr);
    // A frame the evaluation loop is running has stacktop -1 (3.11 sets it so on entry); one
    // that made an inline call, or that waits in resume_frames for the frames above it (an
    // unpickled tasklet), has it up to date and resumes after its call.
    bool in_c_call = (next == nullptr || next->is_entry) && f->stacktop < 0;
    PyObject* const* stack = f->localsplus + nlocals;
    int depth, resume;
    int alt_resume = -1, alt_push = 0;  // where it goes on if the generator it drives returns
    if (next == nullptr && helpers.interrupted) {
        // Interrupted between two instructions: the evaluation loop saved the stack top before
        // it called the trace function, and prev_instr is the instruction it was about to run.
        depth = f->stacktop - nlocals;
        resume = index;
        if (depth < 0 || depth > code->co_stacksize)
            return refusal("c-call", code, index, nullptr, next);
        *op = resume_op::at_instruction;
    } else if (!in_c_call) {
        // It made an inline Python call: stacktop is up to date, prev_instr is on the call's last
        // cache entry, and the result is pushed when the callee returns.
        depth = f->stacktop - nlocals;
        resume = index + 1;
        if (depth < 0 || depth > code->co_stacksize)
            return refusal("c-call", code, index, nullptr, next);
    } else {
        // Inside a C call: where the stack ends and where the frame goes on come from the
        // bytecode analysis (_call_site); the callable or iterator is on the stack meanwhile.
        PyObject* site = PyObject_CallFunction(helpers.call_site, "Oi", code, index);
        if (site == nullptr) return nullptr;
        int mode = 0, position = -1, consumed = 0;
        depth = resume = alt_resume = -1;
        int parsed = PyArg_ParseTuple(site, "iiiiiii", &depth, &mode, &position, &resume, &consumed,
                                      &alt_resume, &alt_push);
        Py_DECREF(site);
        if (!parsed) return nullptr;
        if (depth < 0 || depth > code->co_stacksize || resume < 0 || consumed < 0 ||
            consumed > depth)
            return refusal("c-call", code, index, nullptr, next);
        PyObject* callee = nullptr;
        if (mode == 1 && position >= 0 && position + 1 < depth)  // [NULL|method, callable|self]
            callee = stack[position] != nullptr ? stack[position] : stack[position + 1];
        else if (mode >= 2 && mode <= 4 && position >= 0 && position < depth)
            callee = stack[position];
        bool iterates = mode == 3 || mode == 4;  // FOR_ITER, SEND
        if (next == nullptr) {
            std::optional<resume_op> kind =
                callee != nullptr ? helpers.classify(callee, iterates) : std::nullopt;
            if (!kind) return refusal("blocked-in-c", code, index, callee, nullptr);
            *op = *kind;
            alt_resume = -1;
        } else if (iterates ? !drives_generator(callee, next) : !calls_frame(callee, next)) {
            return refusal("c-between", code, index, callee, next);
        } else if (!iterates) {
            alt_resume = -1;
        }
        depth -= consumed;  // the call's callable and arguments: its result takes their place
    }
    *refused = false;
    // The locals and the value stack are one array: one tuple.
    PyObject *values = nullptr, *nulls = nullptr;
    PyObject* result = nullptr;
    PyObject* globals = globals_ref(f->f_globals);
    if (globals != nullptr &&
        values_tuple(f->localsplus, nlocals + depth, helpers.by_value, &values, &nulls))
        result = alt_resume >= 0 ? Py_BuildValue("(OOiOOii)", code, globals, resume, values, nulls,
                                                 alt_resume, alt_push)
                                 : Py_BuildValue("(OOiOO)", code, globals, resume, values, nulls);
    Py_XDECREF(globals);
    Py_XDECREF(values);
    Py_XDECREF(nulls);
    // A generator's frame: the record travels with the generator, whose own pickle makes the
    // generator it goes back into.
    if (PyGenObject* gen = result != nullptr ? generator_of(f) : nullptr) {
        PyObject* exc = gen->gi_exc_state.exc_value;
        Py_SETREF(result, Py_BuildValue("(OOO)", gen, result,
                                        exc != nullptr && exc != Py_None ? exc : Py_None));
    }
    return result;
}

constexpr std::pair<resume_op, const char*> resume_op_names[] = {
    {resume_op::tempval, "tempval"},
    {resume_op::none, "none"},
    {resume_op::receive, "receive"},
    {resume_op::at_instruction, "interrupted"},
};

}  // namespace

const char* resume_op_name(resume_op op) noexcept {
    for (const auto& [named, name] : resume_op_names)
        if (named == op) return name;
    return "none";  // (every resume_op is in the table)
}

std::optional<resume_op> resume_op_named(PyObject* name) noexcept {
    if (!PyUnicode_Check(name)) return std::nullopt;
    for (const auto& [op, op_name] : resume_op_names)
        if (PyUnicode_CompareWithASCIIString(name, op_name) == 0) return op;
    return std::nullopt;
}

PyObject* capture_frames(_PyInterpreterFrame* innermost, const capture_helpers& helpers) {
    std::vector<_PyInterpreterFrame*> chain;
    for (_PyInterpreterFrame* f = innermost; f != nullptr; f = f->previous) chain.push_back(f);
    std::reverse(chain.begin(), chain.end());
    PyObject* records = PyTuple_New(static_cast<Py_ssize_t>(chain.size()));
    if (records == nullptr) return nullptr;
    resume_op op = resume_op::none;
    for (std::size_t i = 0; i < chain.size(); ++i) {
        _PyInterpreterFrame* next = i + 1 < chain.size() ? chain[i + 1] : nullptr;
        bool refused = false;
        PyObject* item = capture_one(chain[i], next, helpers, &op, &refused);
        if (item == nullptr || refused) {
            Py_DECREF(records);
            return item;
        }
        PyTuple_SET_ITEM(records, static_cast<Py_ssize_t>(i), item);
    }
    PyObject* result = Py_BuildValue("(Os)", records, resume_op_name(op));
    Py_DECREF(records);
    return result;
}

PyObject* generator_info(PyObject* object, PyObject* by_value) {
    if (!PyGen_CheckExact(object)) {
        PyErr_SetString(PyExc_TypeError, "expected a generator");
        return nullptr;
    }
    auto* gen = reinterpret_cast<PyGenObject*>(object);
    PyObject* exc = gen->gi_exc_state.exc_value;
    if (exc == nullptr) exc = Py_None;
    PyObject* code = reinterpret_cast<PyObject*>(gen->gi_code);
    if (gen->gi_frame_state >= FRAME_COMPLETED)
        return Py_BuildValue("(sOOOOOO)", "done", code, Py_None, gen->gi_name, gen->gi_qualname,
                             Py_None, Py_None);
    _PyInterpreterFrame* frame = frame_of(gen);
    PyCodeObject* c = frame->f_code;
    if (gen->gi_frame_state == FRAME_EXECUTING) {
        Py_ssize_t nfree = c->co_nfreevars;
        PyObject* closure = Py_None;
        if (nfree > 0) {
            closure = PyTuple_New(nfree);
            if (closure == nullptr) return nullptr;
            for (Py_ssize_t i = 0; i < nfree; ++i) {
                PyObject* cell = frame->localsplus[c->co_nlocalsplus - nfree + i];
                PyTuple_SET_ITEM(closure, i, Py_NewRef(cell != nullptr ? cell : Py_None));
            }
        } else {
            Py_INCREF(closure);
        }
        PyObject* r = Py_BuildValue("(sOOOONO)", "running", code, frame->f_globals, gen->gi_name,
                                    gen->gi_qualname, closure, exc);
        return r;
    }
    // Created (stopped after RETURN_GENERATOR) or suspended (after YIELD_VALUE): it resumes at
    // the next instruction with the value sent pushed, as a frame does after a call.
    int index = static_cast<int>(frame->prev_instr - _PyCode_CODE(c));
    PyObject *values = nullptr, *nulls = nullptr;
    if (frame->stacktop < c->co_nlocalsplus ||
        frame->stacktop > c->co_nlocalsplus + c->co_stacksize) {
        PyErr_SetString(PyExc_SystemError, "stackless: a generator's stack top is out of range");
        return nullptr;
    }
    PyObject* globals = globals_ref(frame->f_globals);
    if (globals == nullptr) return nullptr;
    if (!values_tuple(frame->localsplus, frame->stacktop, by_value, &values, &nulls)) {
        Py_DECREF(globals);
        return nullptr;
    }
    PyObject* record = Py_BuildValue("(OOiNN)", c, globals, index + 1, values, nulls);
    Py_DECREF(globals);
    if (record == nullptr) return nullptr;
    return Py_BuildValue("(sOOOONO)",
                         gen->gi_frame_state == FRAME_CREATED ? "created" : "suspended", code,
                         frame->f_globals, gen->gi_name, gen->gi_qualname, record, exc);
}

}  // namespace stackless::python
