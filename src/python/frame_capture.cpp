// Reading a switched-out tasklet's frames (and a generator's) as pickle records.
#include "frame_layout.hpp"

#include "coroutine_state.hpp"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

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

// Is `callee` the generator (coroutine, async generator, or a coroutine's __await__ wrapper)
// whose frame `next` is (iterated over by FOR_ITER, or sent to)?
bool drives_generator(PyObject* callee, _PyInterpreterFrame* next) {
    if (callee == nullptr) return false;
    if (PyObject* coro = coroutine_of_wrapper(callee)) callee = coro;
    return generator_like(callee) && frame_of(reinterpret_cast<PyGenObject*>(callee)) == next;
}

bool is_resuming_method(const char* name) {
    return std::strcmp(name, "send") == 0 || std::strcmp(name, "throw") == 0 ||
           std::strcmp(name, "__next__") == 0;
}

// A generator driven by a call that returns what it yields and raises StopIteration when it
// returns: gen.send(v), gen.throw(...), gen.__next__() (bound, or through the method descriptor
// with self in the next slot: [descriptor, self, args]) and next(gen), of a generator, a
// coroutine or a coroutine's __await__ wrapper.
bool call_drives_generator(PyObject* callee, PyObject* const* stack, const int position,
                           const int depth, _PyInterpreterFrame* next) {
    if (PyCFunction_Check(callee)) {
        const char* name = reinterpret_cast<PyCFunctionObject*>(callee)->m_ml->ml_name;
        PyObject* self = PyCFunction_GET_SELF(callee);
        if (self != nullptr && PyModule_Check(self) && std::strcmp(name, "next") == 0) {
            // next(gen): [NULL, next, gen], without a default
            return depth - position == 3 && drives_generator(stack[position + 2], next);
        }
        return self != nullptr && is_resuming_method(name) && drives_generator(self, next);
    }
    if (Py_IS_TYPE(callee, &PyMethodDescr_Type) && position + 1 < depth) {
        const char* name = reinterpret_cast<PyMethodDescrObject*>(callee)->d_method->ml_name;
        return is_resuming_method(name) && drives_generator(stack[position + 1], next);
    }
    return false;
}

// What _stackless_pickle._call_site says of a frame stopped inside a C call (see there).
struct call_site_info {
    int depth = -1;
    int mode = 0;  // 1 CALL, 2 CALL_FUNCTION_EX, 3 FOR_ITER, 4 SEND, 5 BEFORE_WITH,
                   // 6 WITH_EXCEPT_START
    int position = -1;
    int resume = -1;
    int consumed = 0;
    int alt_resume = -1;
    int alt_push = 0;
};

// 1 if the site is a call the frame can resume after, 0 if not, -1 with an exception.
int read_call_site(PyObject* call_site, PyCodeObject* code, int index, call_site_info& s) {
    PyObject* site = PyObject_CallFunction(call_site, "Oi", code, index);
    if (site == nullptr) return -1;
    int parsed = PyArg_ParseTuple(site, "iiiiiii", &s.depth, &s.mode, &s.position, &s.resume,
                                  &s.consumed, &s.alt_resume, &s.alt_push);
    Py_DECREF(site);
    if (!parsed) return -1;
    return s.depth >= 0 && s.depth <= code->co_stacksize && s.resume >= 0 && s.consumed >= 0 &&
           s.consumed <= s.depth;
}

// The callable (or iterator, receiver, __exit__ method) of a call site, from the value stack.
PyObject* site_callee(const call_site_info& s, PyObject* const* stack) {
    if (s.mode == 1 && s.position >= 0 && s.position + 1 < s.depth)  // [NULL|method, callable|self]
        return stack[s.position] != nullptr ? stack[s.position] : stack[s.position + 1];
    if (s.mode >= 2 && s.mode <= 6 && s.position >= 0 && s.position < s.depth)
        return stack[s.position];
    return nullptr;
}

// The Python function a class has for a special method (borrowed; nullptr if it has none, or
// if that is not a plain Python function).
PyObject* python_method(PyTypeObject* type, const char* name) {
    PyObject* key = PyUnicode_InternFromString(name);
    if (key == nullptr) {
        PyErr_Clear();
        return nullptr;
    }
    PyObject* m = _PyType_Lookup(type, key);  // borrowed, sets no exception
    Py_DECREF(key);
    return m != nullptr && PyFunction_Check(m) ? m : nullptr;
}

bool runs_code_of(PyObject* function, _PyInterpreterFrame* next) {
    return function != nullptr &&
           PyFunction_GET_CODE(function) == reinterpret_cast<PyObject*>(next->f_code);
}

// The object in the first local of `next` (a method's self), unless that local is a cell.
PyObject* first_local(_PyInterpreterFrame* next) {
    PyCodeObject* code = next->f_code;
    if (code->co_argcount < 1 || code->co_nlocalsplus < 1) return nullptr;
    const char* kinds = PyBytes_AS_STRING(code->co_localspluskinds);
    if (static_cast<unsigned char>(kinds[0]) & (fast_cell | fast_free)) return nullptr;
    return next->localsplus[0];
}

// How a frame inside the C call `site` reaches `next`, the frame that call runs, in a way a
// pickle can rebuild (Stackless makes these calls without C recursion: a "soft" call).
enum class c_link {
    none,       // through C code a pickle cannot rebuild
    call,       // the callee returns the call's result: a function or method, an instance's
                // __call__, a class's __enter__ (BEFORE_WITH) or __exit__ (WITH_EXCEPT_START)
    init,       // a class called: `next` runs its __init__, and the call's result is its self
    generator,  // FOR_ITER over, or SEND to, the generator whose frame `next` is
};

// -1 with an exception.
int link_to(const call_site_info& site, PyObject* const* stack, PyObject* callee,
            _PyInterpreterFrame* next, const capture_helpers& helpers, c_link* link) {
    *link = c_link::none;
    if (callee == nullptr) return 0;
    switch (site.mode) {
        case 3:
        case 4:
            if (drives_generator(callee, next)) *link = c_link::generator;
            return 0;
        case 5: {  // [.., __exit__ bound method] while __enter__ runs
            if (!PyMethod_Check(callee)) return 0;
            PyObject* self = PyMethod_GET_SELF(callee);
            if (runs_code_of(python_method(Py_TYPE(self), "__enter__"), next) &&
                first_local(next) == self)
                *link = c_link::call;
            return 0;
        }
        case 6:
            if (calls_frame(callee, next)) *link = c_link::call;
            return 0;
        case 1:
        case 2:
            break;
        default:
            return 0;
    }
    if (calls_frame(callee, next)) {
        *link = c_link::call;
        return 0;
    }
    if (site.mode == 1 && call_drives_generator(callee, stack, site.position, site.depth, next)) {
        *link = c_link::call;  // (resume_frames raises StopIteration if the generator returns)
        return 0;
    }
    // A with statement's __exit__ called on the way out, [__exit__, None, None, None]: the
    // bound method's vectorcall puts its self in the method's slot while the call runs.
    if (site.mode == 1 && callee == first_local(next) &&
        runs_code_of(python_method(Py_TYPE(callee), "__exit__"), next)) {
        *link = c_link::call;
        return 0;
    }
    if (!PyType_Check(callee)) {  // an instance whose class has a Python __call__
        if (runs_code_of(python_method(Py_TYPE(callee), "__call__"), next) &&
            first_local(next) == callee)
            *link = c_link::call;
        return 0;
    }
    // A class called: type.__call__ made the instance with a C __new__ (object.__new__ or a
    // builtin base's) and calls its Python __init__, then returns the instance, which must be
    // what the __init__ frame's self still holds.
    auto* cls = reinterpret_cast<PyTypeObject*>(callee);
    if (Py_TYPE(cls)->tp_call != PyType_Type.tp_call) return 0;  // a metaclass's own __call__
    PyObject* new_key = PyUnicode_InternFromString("__new__");
    if (new_key == nullptr) return -1;
    PyObject* new_method = _PyType_Lookup(cls, new_key);
    Py_DECREF(new_key);
    if (new_method == nullptr || !PyCFunction_Check(new_method)) return 0;
    PyObject* self = first_local(next);
    if (!runs_code_of(python_method(cls, "__init__"), next) || self == nullptr ||
        Py_TYPE(self) != cls)
        return 0;
    PyObject* keeps =
        PyObject_CallOneArg(helpers.keeps_self, reinterpret_cast<PyObject*>(next->f_code));
    if (keeps == nullptr) return -1;
    int kept = PyObject_IsTrue(keeps);
    Py_DECREF(keeps);
    if (kept < 0) return -1;
    if (kept) *link = c_link::init;
    return 0;
}

// A frame whose caller is inside a C call that ran it: the link between them, or -1 with an
// exception. (`f` is inside a C call: its stack depth comes from the analysis.)
int link_of(_PyInterpreterFrame* f, _PyInterpreterFrame* next, const capture_helpers& helpers,
            c_link* link) {
    *link = c_link::none;
    PyCodeObject* code = f->f_code;
    int index = static_cast<int>(f->prev_instr - _PyCode_CODE(code));
    call_site_info site;
    int r = read_call_site(helpers.call_site, code, index, site);
    if (r <= 0) return r;
    PyObject* const* stack = f->localsplus + code->co_nlocalsplus;
    PyObject* callee = site_callee(site, stack);
    return link_to(site, stack, callee, next, helpers, link);
}

// One frame's record, or a refusal (*refused set), or nullptr with an exception. *link says how
// it reaches the next frame.
PyObject* capture_one(_PyInterpreterFrame* f, _PyInterpreterFrame* next,
                      const capture_helpers& helpers, resume_op* op, bool* refused, c_link* link) {
    PyCodeObject* code = f->f_code;
    int nlocals = code->co_nlocalsplus;
    int index = static_cast<int>(f->prev_instr - _PyCode_CODE(code));
    *refused = true;
    *link = c_link::call;
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
        call_site_info site;
        int r = read_call_site(helpers.call_site, code, index, site);
        if (r < 0) return nullptr;
        if (r == 0) return refusal("c-call", code, index, nullptr, next);
        PyObject* callee = site_callee(site, stack);
        depth = site.depth;
        resume = site.resume;
        alt_resume = site.alt_resume;
        alt_push = site.alt_push;
        if (next == nullptr) {
            bool iterates = site.mode == 3 || site.mode == 4;
            std::optional<resume_op> kind = callee != nullptr && site.mode <= 4
                                                ? helpers.classify(callee, iterates)
                                                : std::nullopt;
            if (!kind) return refusal("blocked-in-c", code, index, callee, nullptr);
            *op = *kind;
            alt_resume = -1;
        } else {
            if (link_to(site, stack, callee, next, helpers, link) < 0) return nullptr;
            if (*link == c_link::none) return refusal("c-between", code, index, callee, next);
            if (*link != c_link::generator) alt_resume = -1;
        }
        depth -= site.consumed;  // the call's callable and arguments: its result takes their place
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
    c_link link_in = c_link::call;  // how the previous frame reached this one
    for (std::size_t i = 0; i < chain.size(); ++i) {
        _PyInterpreterFrame* next = i + 1 < chain.size() ? chain[i + 1] : nullptr;
        bool refused = false;
        c_link link_out = c_link::call;
        PyObject* item = capture_one(chain[i], next, helpers, &op, &refused, &link_out);
        // The frame of an __init__ its caller's class call runs: its result is its self.
        if (item != nullptr && !refused && link_in == c_link::init)
            Py_SETREF(item, Py_BuildValue("(sO)", "__init__", item));
        if (item == nullptr || refused) {
            Py_DECREF(records);
            return item;
        }
        PyTuple_SET_ITEM(records, static_cast<Py_ssize_t>(i), item);
        link_in = link_out;
    }
    PyObject* result = Py_BuildValue("(Os)", records, resume_op_name(op));
    Py_DECREF(records);
    return result;
}

PyObject* generator_info(PyObject* object, PyObject* by_value) {
    if (!generator_like(object)) {
        PyErr_SetString(PyExc_TypeError, "expected a generator, coroutine or async generator");
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

int c_state_depth(_PyInterpreterFrame* innermost, const capture_helpers& helpers, bool switched_out,
                  PyObject* func, bool resumed_frames) {
    if (innermost == nullptr) return 0;
    int depth = 0;
    // A switched-out tasklet's innermost frame waits in the stackless operation it called, or in
    // a C function that called one.
    if (switched_out && innermost->stacktop < 0) {
        PyCodeObject* code = innermost->f_code;
        int index = static_cast<int>(innermost->prev_instr - _PyCode_CODE(code));
        call_site_info site;
        int r = read_call_site(helpers.call_site, code, index, site);
        if (r < 0) return -1;
        PyObject* callee =
            r > 0 ? site_callee(site, innermost->localsplus + code->co_nlocalsplus) : nullptr;
        bool iterates = site.mode == 3 || site.mode == 4;
        if (callee == nullptr || site.mode > 4 || !helpers.classify(callee, iterates)) ++depth;
    }
    _PyInterpreterFrame* outermost = innermost;
    for (_PyInterpreterFrame* next = innermost; next->previous != nullptr; next = next->previous) {
        _PyInterpreterFrame* f = next->previous;
        outermost = f;
        if (!next->is_entry) continue;  // an inline call
        if (f->stacktop >= 0) {
            // The frames an unpickled tasklet resumes wait so for the frame they called; any
            // other frame with its stack top saved called a trace or profile function, from C.
            if (!resumed_frames) ++depth;
            continue;
        }
        c_link link;
        if (link_of(f, next, helpers, &link) < 0) return -1;
        if (link == c_link::none) ++depth;
    }
    // The tasklet's function is where its frames start (an instance's Python __call__ too, as
    // in Stackless), unless it is a C function that called Python code (a main tasklet's frames
    // start wherever its thread's code began).
    bool starts_there = calls_frame(func, outermost) ||
                        (func != nullptr && !PyType_Check(func) &&
                         runs_code_of(python_method(Py_TYPE(func), "__call__"), outermost) &&
                         first_local(outermost) == func);
    if (func != nullptr && outermost->stacktop < 0 && !starts_there) ++depth;
    return depth;
}

PyObject* frame_object_of(_PyInterpreterFrame* frame) {
    if (frame == nullptr) Py_RETURN_NONE;
    if (frame->frame_obj != nullptr)
        return Py_NewRef(reinterpret_cast<PyObject*>(frame->frame_obj));
    // CPython makes a frame's object only for the thread's current frame (PyEval_GetFrame; the
    // function it uses is not exported): this one is made current for that moment.
    _PyCFrame* cframe = PyThreadState_Get()->cframe;
    _PyInterpreterFrame* current = std::exchange(cframe->current_frame, frame);
    PyFrameObject* f = PyEval_GetFrame();  // borrowed
    cframe->current_frame = current;
    if (f == nullptr) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return nullptr;
    }
    return Py_NewRef(reinterpret_cast<PyObject*>(f));
}

int droppable_frames(_PyInterpreterFrame* innermost, const capture_helpers& helpers, PyObject* func,
                     std::vector<int>& tops) {
    tops.clear();
    int top = waiting_stack_top(innermost, helpers);
    if (top < 0) return top == -2 ? -1 : 0;
    tops.push_back(top);
    _PyInterpreterFrame* f = innermost;
    for (; f->previous != nullptr; f = f->previous) {
        _PyInterpreterFrame* caller = f->previous;
        if (caller->owner != FRAME_OWNED_BY_THREAD && caller->owner != FRAME_OWNED_BY_GENERATOR)
            return 0;
        if (!f->is_entry) {  // an inline call: the caller's stack top is saved
            if (f->owner != FRAME_OWNED_BY_THREAD || caller->stacktop < 0) return 0;
            tops.push_back(caller->stacktop);
            continue;
        }
        // Only a generator that the caller drives (FOR_ITER, SEND, send(), next()): the C code
        // between them holds no references of its own.
        if (f->owner != FRAME_OWNED_BY_GENERATOR || caller->stacktop >= 0) return 0;
        PyCodeObject* code = caller->f_code;
        int index = static_cast<int>(caller->prev_instr - _PyCode_CODE(code));
        call_site_info site;
        int r = read_call_site(helpers.call_site, code, index, site);
        if (r < 0) return -1;
        if (r == 0) return 0;
        PyObject* const* stack = caller->localsplus + code->co_nlocalsplus;
        PyObject* callee = site_callee(site, stack);
        bool driven = (site.mode == 3 || site.mode == 4)
                          ? drives_generator(callee, f)
                          : site.mode == 1 && callee != nullptr &&
                                call_drives_generator(callee, stack, site.position, site.depth, f);
        if (!driven) return 0;
        tops.push_back(code->co_nlocalsplus + site.depth);
    }
    // The outermost: the tasklet's own call of its function.
    if (PyMethod_Check(func)) func = PyMethod_GET_FUNCTION(func);
    return f->is_entry && f->owner == FRAME_OWNED_BY_THREAD && PyFunction_Check(func) &&
                   PyFunction_GET_CODE(func) == reinterpret_cast<PyObject*>(f->f_code)
               ? 1
               : 0;
}

int waiting_stack_top(_PyInterpreterFrame* innermost, const capture_helpers& helpers) {
    if (innermost == nullptr || innermost->stacktop >= 0) return -1;
    PyCodeObject* code = innermost->f_code;
    int index = static_cast<int>(innermost->prev_instr - _PyCode_CODE(code));
    call_site_info site;
    int r = read_call_site(helpers.call_site, code, index, site);
    if (r < 0) return -2;
    if (r == 0 || site.mode > 4) return -1;
    PyObject* callee = site_callee(site, innermost->localsplus + code->co_nlocalsplus);
    bool iterates = site.mode == 3 || site.mode == 4;
    if (callee == nullptr || !helpers.classify(callee, iterates)) return -1;
    return code->co_nlocalsplus + site.depth;
}

long frames_from(_PyInterpreterFrame* innermost) noexcept {
    long n = 0;
    for (_PyInterpreterFrame* f = innermost; f != nullptr; f = f->previous) ++n;
    return n;
}

PyObject* capture_locals(_PyInterpreterFrame* innermost, PyObject* by_value) {
    std::vector<_PyInterpreterFrame*> chain;
    for (_PyInterpreterFrame* f = innermost; f != nullptr; f = f->previous) chain.push_back(f);
    std::reverse(chain.begin(), chain.end());
    PyObject* records = PyTuple_New(static_cast<Py_ssize_t>(chain.size()));
    if (records == nullptr) return nullptr;
    for (std::size_t i = 0; i < chain.size(); ++i) {
        _PyInterpreterFrame* f = chain[i];
        PyCodeObject* code = f->f_code;
        int index = static_cast<int>(f->prev_instr - _PyCode_CODE(code));
        PyObject *values = nullptr, *nulls = nullptr, *record = nullptr;
        PyObject* globals = globals_ref(f->f_globals);
        if (globals != nullptr &&
            values_tuple(f->localsplus, code->co_nlocalsplus, by_value, &values, &nulls))
            record = Py_BuildValue("(OOiOO)", code, globals, index, values, nulls);
        Py_XDECREF(globals);
        Py_XDECREF(values);
        Py_XDECREF(nulls);
        if (record == nullptr) {
            Py_DECREF(records);
            return nullptr;
        }
        PyTuple_SET_ITEM(records, static_cast<Py_ssize_t>(i), record);
    }
    return records;
}

}  // namespace stackless::python
