// Relies on CPython 3.11's frames (Include/internal/pycore_frame.h): _PyInterpreterFrame's
// layout (specials, previous, prev_instr, stacktop, is_entry, owner, localsplus),
// _PyFrame_InitializeSpecials, PyFrameObject's _f_frame_data, and on how 3.11's evaluation loop
// resumes a frame: _PyEval_EvalFrameDefault(ts, frame, throwflag) marks the frame as an entry
// frame, links it to ts->cframe->current_frame and continues at prev_instr + 1 with the value
// stack up to stacktop, as it does for a generator; with throwflag it raises the current
// exception at prev_instr instead. An entry frame returns to its C caller, which clears it and
// pops it from the frame data stack (what _PyEvalFrameClearAndPop does inside ceval.c; the
// functions it uses are not exported, so clear_frame() below does the same).
//
// A frame that made an inline Python call has stacktop up to date and prev_instr on the call's
// last inline cache entry; a frame inside a C call has neither: its stack depth comes from the
// bytecode analysis in _stackless_pickle.py, and while the call runs its value stack still holds
// the callable and arguments.
#define Py_BUILD_CORE 1
#include "frame_state.hpp"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

#include <frameobject.h>  // PyFrame_New
#include <internal/pycore_frame.h>
#include <internal/pycore_pyerrors.h>  // _PyErr_ChainStackItem (exported)
#include <opcode.h>                    // EXTENDED_ARG, PRECALL, CALL

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

namespace stackless::python {

namespace {

constexpr unsigned char fast_cell = 0x40;  // CO_FAST_CELL in 3.11's pycore_code.h
constexpr unsigned char fast_free = 0x80;  // CO_FAST_FREE

int code_units(PyCodeObject* code) {
    return static_cast<int>(Py_SIZE(code));
}

// Words of frame data a frame of `code` takes: its specials, locals and value stack.
std::size_t frame_words(PyCodeObject* code) {
    return FRAME_SPECIALS_SIZE + static_cast<std::size_t>(code->co_nlocalsplus) +
           static_cast<std::size_t>(code->co_stacksize);
}

// An array of `n` elements, on the C stack when it has at most N (frames rarely have more).
template <class T, std::size_t N>
class small_array {
  public:
    explicit small_array(std::size_t n) {
        if (n > N) {
            large_.resize(n);
            data_ = large_.data();
        }
    }
    small_array(const small_array&) = delete;
    small_array& operator=(const small_array&) = delete;
    T* data() noexcept { return data_; }
    T& operator[](std::size_t i) noexcept { return data_[i]; }

  private:
    T small_[N];
    std::vector<T> large_;
    T* data_ = small_;
};

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

// Is `callee` the function whose frame `next` is (called directly by the evaluation loop)?
bool calls_frame(PyObject* callee, _PyInterpreterFrame* next) {
    if (callee == nullptr || next == nullptr) return false;
    if (PyMethod_Check(callee)) callee = PyMethod_GET_FUNCTION(callee);
    return PyFunction_Check(callee) &&
           PyFunction_GET_CODE(callee) == reinterpret_cast<PyObject*>(next->f_code);
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

// Why a frame cannot be pickled: ("refuse", reason, code, index, callee, next code), for
// _stackless_pickle to put into words.
PyObject* refusal(const char* reason, PyCodeObject* code, int index, PyObject* callee,
                  _PyInterpreterFrame* next) {
    return Py_BuildValue("(ssOiOO)", "refuse", reason, code, index,
                         callee != nullptr ? callee : Py_None,
                         next != nullptr ? reinterpret_cast<PyObject*>(next->f_code) : Py_None);
}

// Coroutines and asynchronous generators are not resumed yet; generators are (their frame lives in
// the generator object: FRAME_OWNED_BY_GENERATOR).
constexpr int code_flags_not_resumable = CO_COROUTINE | CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE;

PyGenObject* generator_of(_PyInterpreterFrame* f) {
    if (f->owner != FRAME_OWNED_BY_GENERATOR) return nullptr;
    return reinterpret_cast<PyGenObject*>(reinterpret_cast<char*>(f) -
                                          offsetof(PyGenObject, gi_iframe));
}

_PyInterpreterFrame* frame_of(PyGenObject* gen) {
    return reinterpret_cast<_PyInterpreterFrame*>(gen->gi_iframe);
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

// Does `value` fit a slot of kind `kind` (see _stackless_pickle.slot_kinds)?
bool fits(char kind, PyObject* value, PyCodeObject* code) {
    switch (kind) {
        case 'n':
            return true;
        case 'o':
            return value != nullptr;
        case 'i':
            return value != nullptr && PyIter_Check(value);
        case 'x':
            return value != nullptr && (value == Py_None || PyExceptionInstance_Check(value));
        case 'e':
            return value != nullptr && PyExceptionInstance_Check(value);
        case 'l': {
            if (value == nullptr || !PyLong_CheckExact(value)) return false;
            long offset = PyLong_AsLong(value);
            if (offset == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                return false;
            }
            return offset >= 0 && offset < code_units(code);
        }
        default:
            return false;
    }
}

// Takes over a finished frame whose frame object outlives it (a traceback or sys._getframe()
// kept it): the object gets its own copy of the frame, as CPython's take_ownership() does.
void hand_frame_to_object(PyFrameObject* f, _PyInterpreterFrame* frame) {
    auto size =
        static_cast<std::size_t>(reinterpret_cast<char*>(&frame->localsplus[frame->stacktop]) -
                                 reinterpret_cast<char*>(frame));
    std::memcpy(f->_f_frame_data, frame, size);
    auto* owned = reinterpret_cast<_PyInterpreterFrame*>(f->_f_frame_data);
    f->f_frame = owned;
    owned->owner = FRAME_OWNED_BY_FRAME_OBJECT;
    if (owned->previous != nullptr && f->f_back == nullptr) {
        // The caller's frame object (made now if needed): CPython keeps f_back that way. The
        // caller is the thread state's current frame at this point.
        // (An exception may be on its way out of the finished frame: keep it.)
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyFrameObject* back = PyEval_GetFrame();  // borrowed
        if (back != nullptr) f->f_back = reinterpret_cast<PyFrameObject*>(Py_NewRef(back));
        PyErr_Clear();  // no memory for the caller's frame object: f_back stays None
        PyErr_Restore(type, value, tb);
    }
    owned->previous = nullptr;
    if (!PyObject_GC_IsTracked(reinterpret_cast<PyObject*>(f)))
        PyObject_GC_Track(reinterpret_cast<PyObject*>(f));
}

// What _PyFrame_Clear does for a frame owned by the thread.
void clear_frame(_PyInterpreterFrame* frame) {
    if (PyFrameObject* f = frame->frame_obj) {
        frame->frame_obj = nullptr;
        if (Py_REFCNT(f) > 1) {
            hand_frame_to_object(f, frame);
            Py_DECREF(f);
            return;
        }
        Py_DECREF(f);
    }
    for (int i = 0; i < frame->stacktop; ++i) Py_XDECREF(frame->localsplus[i]);
    Py_XDECREF(frame->f_locals);
    Py_DECREF(frame->f_func);
    Py_DECREF(frame->f_code);
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

restore_plan::~restore_plan() {
    for (restored_frame& f : frames) {
        Py_XDECREF(f.func);
        Py_XDECREF(f.values);
        Py_XDECREF(f.nulls);
        Py_XDECREF(f.generator);
    }
    Py_XDECREF(exc_value);
    Py_XDECREF(source);
}

namespace {

// What add_restored_frame keeps on a code object (co_extra): a list [slot kinds by resume index
// (a dict), the last function made for it]. Frees with the code object.
Py_ssize_t code_extra_index = -1;

void release_extra(void* extra) {
    Py_XDECREF(static_cast<PyObject*>(extra));
}

PyObject* code_cache(PyCodeObject* code, PyObject* slot_kinds) {
    auto* object = reinterpret_cast<PyObject*>(code);
    if (code_extra_index < 0) {
        code_extra_index = _PyEval_RequestCodeExtraIndex(&release_extra);
        if (code_extra_index < 0) return nullptr;
    }
    void* extra = nullptr;
    if (_PyCode_GetExtra(object, code_extra_index, &extra) < 0) return nullptr;
    if (extra != nullptr) return static_cast<PyObject*>(extra);
    PyObject* table = PyObject_CallOneArg(slot_kinds, object);
    if (table == nullptr) return nullptr;
    if (!PyDict_Check(table)) {
        Py_DECREF(table);
        PyErr_SetString(PyExc_TypeError, "slot_kinds() did not return a dict");
        return nullptr;
    }
    PyObject* cache = Py_BuildValue("[NO]", table, Py_None);
    if (cache == nullptr) return nullptr;
    if (_PyCode_SetExtra(object, code_extra_index, cache) < 0) {
        Py_DECREF(cache);
        return nullptr;
    }
    return cache;  // the code object owns it
}

// The slot kinds of `code` before its instruction `resume` (borrowed); nullptr, without an
// exception, if the code cannot resume there.
PyObject* kinds_at(PyObject* cache, int resume) {
    PyObject* key = PyLong_FromLong(resume);
    if (key == nullptr) return nullptr;
    PyObject* kinds = PyDict_GetItemWithError(PyList_GET_ITEM(cache, 0), key);
    Py_DECREF(key);
    return kinds;
}

// A function for a frame of `code` running in `globals` (a new reference): the one made last
// time if it has the same globals.
PyObject* function_for(PyObject* cache, PyObject* code, PyObject* globals) {
    PyObject* last = PyList_GET_ITEM(cache, 1);
    if (PyFunction_Check(last) && PyFunction_GET_GLOBALS(last) == globals) return Py_NewRef(last);
    PyObject* func = PyFunction_New(code, globals);
    if (func != nullptr) PyList_SetItem(cache, 1, Py_NewRef(func));
    return func;
}

// A frame's globals: a module name (that module's dict; imported if needed) or a dict.
PyObject* resolve_globals(PyObject* ref) {
    if (PyDict_Check(ref)) return Py_NewRef(ref);
    if (!PyUnicode_Check(ref)) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: corrupt pickle: a frame's globals are neither a module name "
                        "nor a dict");
        return nullptr;
    }
    PyObject* module = Py_XNewRef(PyDict_GetItemWithError(PyImport_GetModuleDict(), ref));
    if (module == nullptr && !PyErr_Occurred()) module = PyImport_Import(ref);
    if (module == nullptr) return nullptr;
    PyObject* dict = PyModule_Check(module) ? PyModule_GetDict(module) : nullptr;
    Py_XINCREF(dict);
    Py_DECREF(module);
    if (dict == nullptr)
        PyErr_SetString(PyExc_ValueError, "stackless: a frame's module is not a module");
    return dict;
}

int corrupt(PyCodeObject* code, const char* what) {
    PyErr_Format(PyExc_ValueError, "stackless: corrupt pickle: a frame of %U: %s",
                 code->co_qualname, what);
    return -1;
}

// Marks in `is_null` the indices listed in `nulls` (a tuple of ints) of `values` (a tuple),
// each of which must hold a None placeholder.
bool read_nulls(PyObject* values, PyObject* nulls, char* is_null) {
    Py_ssize_t n = PyTuple_GET_SIZE(values);
    std::fill(is_null, is_null + n, 0);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(nulls); ++j) {
        PyObject* index = PyTuple_GET_ITEM(nulls, j);
        Py_ssize_t i = PyLong_CheckExact(index) ? PyLong_AsSsize_t(index) : -1;
        if (i == -1) PyErr_Clear();
        if (i < 0 || i >= n || PyTuple_GET_ITEM(values, i) != Py_None) return false;
        is_null[i] = 1;
    }
    return true;
}

// Checks a frame's pickled locals and value stack (tuple `values`, with None placeholders at the
// indices listed in tuple `nulls`) against its code resuming where the stack slots must hold
// `kind` (the last slot is the pending call's result, pushed when it resumes). Marks in
// `is_null` (room for every value) which values stand for NULL.
int check_slots(PyCodeObject* code, const char* kind, Py_ssize_t nkinds, PyObject* values,
                PyObject* nulls, char* is_null) {
    Py_ssize_t nlocals = code->co_nlocalsplus;
    Py_ssize_t n = PyTuple_GET_SIZE(values);
    if (n != nlocals + nkinds - 1)
        return corrupt(code, "its locals and value stack do not match its code where it resumes");
    if (!read_nulls(values, nulls, is_null)) return corrupt(code, "bad empty slot");
    const char* local_kinds = PyBytes_AS_STRING(code->co_localspluskinds);
    for (Py_ssize_t i = 0; i < nlocals; ++i) {
        // LOAD_DEREF and friends trust a cell or free variable's slot to hold a cell.
        if ((static_cast<unsigned char>(local_kinds[i]) & (fast_cell | fast_free)) &&
            (is_null[i] || !PyCell_Check(PyTuple_GET_ITEM(values, i))))
            return corrupt(code, "a cell variable without its cell");
    }
    for (Py_ssize_t i = nlocals; i < n; ++i) {
        char k = kind[i - nlocals];
        bool ok = is_null[i] ? k == 'n' : fits(k, PyTuple_GET_ITEM(values, i), code);
        if (!ok) return corrupt(code, "its value stack holds what its code cannot resume with");
    }
    return 0;
}

// A new reference to each value of `values`, NULL at the indices in `nulls`, into `out`.
void copy_values(PyObject* values, PyObject* nulls, PyObject** out) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(values); ++i)
        out[i] = Py_NewRef(PyTuple_GET_ITEM(values, i));
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(nulls); ++j) {
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(nulls, j));  // checked already
        Py_CLEAR(out[i]);
    }
}

}  // namespace

namespace {

// Checks a frame record (code, globals, resume, values, nulls[, alt_resume, alt_push]) against
// its code; returns the kinds where it resumes (borrowed), or nullptr with an exception.
struct checked_record {
    PyCodeObject* code;
    int resume;
    int alt_resume;
    bool alt_push;
    PyObject* cache;
};

int check_record(PyObject* record, PyObject* slot_kinds, checked_record& out,
                 bool at_instruction = false) {
    Py_ssize_t size = PyTuple_Check(record) ? PyTuple_GET_SIZE(record) : 0;
    if ((size != 5 && size != 7) || !PyCode_Check(PyTuple_GET_ITEM(record, 0)) ||
        !PyLong_Check(PyTuple_GET_ITEM(record, 2))) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad frame record");
        return -1;
    }
    auto* code = reinterpret_cast<PyCodeObject*>(PyTuple_GET_ITEM(record, 0));
    long resume = PyLong_AsLong(PyTuple_GET_ITEM(record, 2));
    if (resume == -1 && PyErr_Occurred()) return -1;
    if (code->co_flags & code_flags_not_resumable) {
        PyErr_Format(PyExc_ValueError,
                     "stackless: cannot restore a frame of %U: coroutine frames are not "
                     "supported yet",
                     code->co_qualname);
        return -1;
    }
    if (resume < 1 || resume >= code_units(code))
        return corrupt(code, "it resumes outside its code");
    PyObject* cache = code_cache(code, slot_kinds);
    if (cache == nullptr) return -1;
    PyObject* kinds = kinds_at(cache, static_cast<int>(resume));
    if (kinds == nullptr) {
        if (PyErr_Occurred()) return -1;
        return corrupt(code, "it resumes where no instruction of its code can continue");
    }
    if (!PyUnicode_Check(kinds) || !PyUnicode_IS_ASCII(kinds)) {
        PyErr_SetString(PyExc_TypeError, "stackless: bad slot kinds");
        return -1;
    }
    Py_ssize_t nkinds = PyUnicode_GET_LENGTH(kinds);
    const char* kind = static_cast<const char*>(PyUnicode_DATA(kinds));
    std::string with_result;
    if (at_instruction) {
        // Nothing is pushed: every slot the code expects there is in the record. (Checked as if
        // a plain object were pushed on top.)
        with_result.assign(kind, static_cast<std::size_t>(nkinds)).push_back('o');
        kind = with_result.c_str();
        ++nkinds;
    }
    // The call's result is pushed where it resumes: a plain object.
    if (nkinds < 1 || nkinds > code->co_stacksize + (at_instruction ? 1 : 0) ||
        (kind[nkinds - 1] != 'o' && kind[nkinds - 1] != 'n'))
        return corrupt(code, "it resumes where no call returns");
    PyObject* values = PyTuple_GET_ITEM(record, 3);
    PyObject* nulls = PyTuple_GET_ITEM(record, 4);
    if (!PyTuple_Check(values) || !PyTuple_Check(nulls))
        return corrupt(code, "bad locals and stack");
    small_array<char, 256> is_null(static_cast<std::size_t>(PyTuple_GET_SIZE(values)));
    if (check_slots(code, kind, nkinds, values, nulls, is_null.data()) < 0) return -1;
    out = {code, static_cast<int>(resume), -1, false, cache};
    if (size == 7) {
        // The other way on, when the generator it drives returns: the same stack without that
        // generator (on top), and the return value pushed if alt_push.
        long alt = PyLong_Check(PyTuple_GET_ITEM(record, 5))
                       ? PyLong_AsLong(PyTuple_GET_ITEM(record, 5))
                       : -1;
        int push = PyObject_IsTrue(PyTuple_GET_ITEM(record, 6));
        if (alt == -1) PyErr_Clear();
        if (push < 0) return -1;
        PyObject* alt_kinds =
            alt >= 1 && alt < code_units(code) ? kinds_at(cache, static_cast<int>(alt)) : nullptr;
        if (alt_kinds == nullptr && PyErr_Occurred()) return -1;
        Py_ssize_t stack_size = nkinds - 1;  // what the values hold after the locals
        if (alt_kinds == nullptr || !PyUnicode_IS_ASCII(alt_kinds) || stack_size < 1 ||
            PyUnicode_GET_LENGTH(alt_kinds) != stack_size - 1 + push)
            return corrupt(code, "bad resume point for when its generator returns");
        const char* alt_kind = static_cast<const char*>(PyUnicode_DATA(alt_kinds));
        // The slots below the generator must also fit what the other way expects.
        Py_ssize_t nlocals = code->co_nlocalsplus;
        for (Py_ssize_t i = 0; i + 1 < stack_size; ++i) {
            PyObject* v = PyTuple_GET_ITEM(values, nlocals + i);
            if (is_null[static_cast<std::size_t>(nlocals + i)] ? alt_kind[i] != 'n'
                                                               : !fits(alt_kind[i], v, code))
                return corrupt(code, "its stack does not fit where it goes on after its generator");
        }
        if (push && alt_kind[stack_size - 1] != 'o' && alt_kind[stack_size - 1] != 'n')
            return corrupt(code, "bad resume point for when its generator returns");
        out.alt_resume = static_cast<int>(alt);
        out.alt_push = push != 0;
    }
    return 0;
}

// Overwrites the frame of `gen`, a generator just made for `code` (created, not started), with
// a checked record.
int fill_generator(PyGenObject* gen, PyObject* record, const checked_record& checked, bool created,
                   PyObject* exc_value) {
    _PyInterpreterFrame* frame = frame_of(gen);
    PyCodeObject* code = checked.code;
    if (frame->f_code != code || gen->gi_frame_state != FRAME_CREATED ||
        frame->stacktop != code->co_nlocalsplus) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: corrupt pickle: a generator frame for another generator");
        return -1;
    }
    if (exc_value != Py_None && !PyExceptionInstance_Check(exc_value)) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: corrupt pickle: a generator handles what is no exception");
        return -1;
    }
    PyObject* values = PyTuple_GET_ITEM(record, 3);
    PyObject* nulls = PyTuple_GET_ITEM(record, 4);
    int old_count = frame->stacktop;
    small_array<PyObject*, 512> saved(static_cast<std::size_t>(old_count));
    std::copy(frame->localsplus, frame->localsplus + old_count, saved.data());
    copy_values(values, nulls, frame->localsplus);
    frame->stacktop = static_cast<int>(PyTuple_GET_SIZE(values));
    frame->prev_instr = _PyCode_CODE(code) + checked.resume - 1;
    gen->gi_frame_state = created ? FRAME_CREATED : FRAME_SUSPENDED;
    Py_XSETREF(gen->gi_exc_state.exc_value, exc_value != Py_None ? Py_NewRef(exc_value) : nullptr);
    for (int i = 0; i < old_count; ++i) Py_XDECREF(saved[i]);  // last: may run __del__
    return 0;
}

}  // namespace

int set_generator_frame(PyObject* gen, PyObject* record, bool created, PyObject* exc_value,
                        PyObject* slot_kinds) {
    if (!PyGen_CheckExact(gen)) {
        PyErr_SetString(PyExc_TypeError, "expected a generator");
        return -1;
    }
    checked_record checked;
    if (check_record(record, slot_kinds, checked) < 0) return -1;
    if (PyTuple_GET_SIZE(record) != 5)  // (a suspended generator is inside no call)
        return corrupt(checked.code, "a suspended generator's frame drives no generator");
    return fill_generator(reinterpret_cast<PyGenObject*>(gen), record, checked, created, exc_value);
}

PyObject* new_frame_object(PyObject* code, PyObject* globals) {
    return reinterpret_cast<PyObject*>(
        PyFrame_New(PyThreadState_Get(), reinterpret_cast<PyCodeObject*>(code), globals, nullptr));
}

int code_nlocalsplus(PyObject* code) {
    return PyCode_Check(code) ? reinterpret_cast<PyCodeObject*>(code)->co_nlocalsplus : -1;
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

int add_restored_frame(restore_plan& plan, PyObject* record, PyObject* slot_kinds,
                       bool at_instruction) {
    // A generator's frame: (generator, record, exception it handles).
    if (PyTuple_Check(record) && PyTuple_GET_SIZE(record) == 3) {
        PyObject* gen = PyTuple_GET_ITEM(record, 0);
        if (!PyGen_CheckExact(gen)) {
            PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad generator frame");
            return -1;
        }
        checked_record checked;
        PyObject* frame_record = PyTuple_GET_ITEM(record, 1);
        if (check_record(frame_record, slot_kinds, checked) < 0 ||
            fill_generator(reinterpret_cast<PyGenObject*>(gen), frame_record, checked, false,
                           PyTuple_GET_ITEM(record, 2)) < 0)
            return -1;
        restored_frame f;
        f.alt_resume = checked.alt_resume;
        f.alt_push = checked.alt_push;
        f.generator = Py_NewRef(gen);
        f.generator_at = frame_of(reinterpret_cast<PyGenObject*>(gen))->prev_instr;
        plan.frames.push_back(f);
        return 0;
    }
    checked_record checked;
    if (check_record(record, slot_kinds, checked, at_instruction) < 0) return -1;
    PyCodeObject* code = checked.code;
    PyObject* globals = resolve_globals(PyTuple_GET_ITEM(record, 1));
    if (globals == nullptr) return -1;
    PyObject* func = function_for(checked.cache, reinterpret_cast<PyObject*>(code), globals);
    Py_DECREF(globals);
    if (func == nullptr) return -1;
    restored_frame f;
    f.func = func;
    f.resume = checked.resume;
    f.alt_resume = checked.alt_resume;
    f.alt_push = checked.alt_push;
    f.values = Py_NewRef(PyTuple_GET_ITEM(record, 3));
    f.nulls = Py_NewRef(PyTuple_GET_ITEM(record, 4));
    plan.chunk_bytes += sizeof(PyObject*) * frame_words(code);
    plan.frames.push_back(f);
    return 0;
}

namespace {

// Pops a finished frame as _PyThreadState_PopFrame does, giving back a chunk it began.
void pop_frame(PyThreadState* ts, _PyInterpreterFrame* frame) {
    auto** base = reinterpret_cast<PyObject**>(frame);
    _PyStackChunk* chunk = ts->datastack_chunk;
    if (base == &chunk->data[0] && chunk->previous != nullptr) {
        _PyStackChunk* previous = chunk->previous;
        ts->datastack_chunk = previous;
        ts->datastack_top = &previous->data[previous->top];
        ts->datastack_limit =
            reinterpret_cast<PyObject**>(reinterpret_cast<char*>(previous) + previous->size);
        PyObjectArenaAllocator arena;
        PyObject_GetArenaAllocator(&arena);
        arena.free(arena.ctx, chunk, chunk->size);
        return;
    }
    ts->datastack_top = base;
}

// Runs `frame`, resumed (its call's result pushed, or the current exception to raise in it if
// `raising`), to its end as the callee of `caller`, `depth` frames above the outermost; then
// clears and pops it. Returns what it returned, or nullptr with an exception.
PyObject* run_to_end(PyThreadState* ts, _PyCFrame* root, _PyInterpreterFrame* frame,
                     _PyInterpreterFrame* caller, int depth, bool raising) {
    root->current_frame = caller;
    ts->recursion_remaining = ts->recursion_limit - depth;
    PyObject* result = _PyEval_EvalFrameDefault(ts, frame, raising ? 1 : 0);
    root->current_frame = caller;
    clear_frame(frame);
    pop_frame(ts, frame);
    return result;
}

// The other way on of a FOR_ITER or SEND once the generator `frame` drove has returned: the
// generator leaves its stack, and it continues at rf.alt_resume.
void take_other_way(_PyInterpreterFrame* frame, const restored_frame& rf) {
    Py_XDECREF(frame->localsplus[--frame->stacktop]);
    frame->prev_instr = _PyCode_CODE(frame->f_code) + rf.alt_resume - 1;
}

// Resumes a restored generator's frame as CPython's gen_send_ex2 does, with `value` (owned)
// pushed if `push`, or with the current exception raised in it if `value` is nullptr. Returns
// what it yields or returns (*returned tells which), or nullptr with an exception. (Not through
// gen.send(): the other way on after a FOR_ITER over a generator that returned pushes nothing.)
PyObject* run_generator(PyGenObject* gen, PyObject* value, bool push, bool* returned) {
    *returned = false;
    PyThreadState* ts = PyThreadState_Get();
    _PyInterpreterFrame* frame = frame_of(gen);
    bool raising = value == nullptr;
    if (!raising) {
        if (push)
            frame->localsplus[frame->stacktop++] = value;
        else
            Py_DECREF(value);
    }
    frame->previous = ts->cframe->current_frame;
    gen->gi_exc_state.previous_item = ts->exc_info;
    ts->exc_info = &gen->gi_exc_state;
    if (raising) _PyErr_ChainStackItem(nullptr);
    gen->gi_frame_state = FRAME_EXECUTING;
    PyObject* result = _PyEval_EvalFrameDefault(ts, frame, raising ? 1 : 0);
    ts->exc_info = gen->gi_exc_state.previous_item;
    gen->gi_exc_state.previous_item = nullptr;
    frame->previous = nullptr;
    if (result != nullptr && gen->gi_frame_state == FRAME_SUSPENDED) return result;  // yielded
    if (result == nullptr && PyErr_ExceptionMatches(PyExc_StopIteration))
        _PyErr_FormatFromCause(PyExc_RuntimeError, "generator raised StopIteration");  // PEP 479
    // It ended: it cannot run again, so its frame goes.
    Py_CLEAR(gen->gi_exc_state.exc_value);
    gen->gi_frame_state = FRAME_CLEARED;
    clear_frame(frame);
    *returned = result != nullptr;
    return result;
}

// Resumes the generator of a restored frame, first making sure nothing ran it since it was
// unpickled. `callee_returned`: the generator it drives returned (it takes its other way on).
PyObject* resume_generator(const restored_frame& rf, PyObject* value, bool callee_returned,
                           bool* returned) {
    *returned = false;
    auto* gen = reinterpret_cast<PyGenObject*>(rf.generator);
    _PyInterpreterFrame* frame = frame_of(gen);
    if (gen->gi_frame_state != FRAME_SUSPENDED || frame->prev_instr != rf.generator_at) {
        Py_XDECREF(value);
        PyErr_Format(PyExc_RuntimeError,
                     "stackless: the unpickled generator %U was run before its tasklet",
                     gen->gi_qualname);
        return nullptr;
    }
    bool push = true;
    if (value != nullptr && callee_returned && rf.alt_resume > 0) {
        take_other_way(frame, rf);
        push = rf.alt_push;
    }
    return run_generator(gen, value, push, returned);
}

}  // namespace

PyObject* resume_frames(PyThreadState* ts, _PyCFrame* root, restore_plan& plan, PyObject* value) {
    std::vector<_PyInterpreterFrame*> built;
    built.reserve(plan.frames.size());
    for (restored_frame& rf : plan.frames) {
        if (rf.generator != nullptr) {  // its frame lives in the generator
            built.push_back(frame_of(reinterpret_cast<PyGenObject*>(rf.generator)));
            continue;
        }
        auto* func = reinterpret_cast<PyFunctionObject*>(std::exchange(rf.func, nullptr));
        auto* code = reinterpret_cast<PyCodeObject*>(func->func_code);
        auto* frame = reinterpret_cast<_PyInterpreterFrame*>(ts->datastack_top);
        ts->datastack_top +=
            frame_words(code);  // the root chunk was sized for every frame (chunk_bytes)
        _PyFrame_InitializeSpecials(frame, func, nullptr, code->co_nlocalsplus);
        copy_values(rf.values, rf.nulls, frame->localsplus);
        frame->stacktop = static_cast<int>(PyTuple_GET_SIZE(rf.values));
        frame->prev_instr = _PyCode_CODE(code) + rf.resume - 1;
        frame->previous = built.empty() ? nullptr : built.back();
        built.push_back(frame);
    }
    bool generator_returned = false;  // the frame just resumed was a generator that returned
    bool push = plan.op != resume_op::at_instruction;  // (for the innermost frame)
    for (std::size_t i = built.size(); i-- > 0;) {
        restored_frame& rf = plan.frames[i];
        _PyInterpreterFrame* frame = built[i];
        _PyInterpreterFrame* caller = i > 0 ? built[i - 1] : nullptr;
        if (rf.generator != nullptr) {
            root->current_frame = caller;
            ts->recursion_remaining = ts->recursion_limit - static_cast<int>(i);
            value = resume_generator(rf, value, generator_returned, &generator_returned);
            root->current_frame = caller;
            continue;
        }
        bool raising = value == nullptr;
        if (!raising && !push) {
            Py_DECREF(value);  // interrupted between two instructions: nothing to push
        } else if (!raising) {
            if (generator_returned && rf.alt_resume > 0) {
                take_other_way(frame, rf);
                if (rf.alt_push)
                    frame->localsplus[frame->stacktop++] = value;
                else
                    Py_DECREF(value);
            } else {
                frame->localsplus[frame->stacktop++] = value;
            }
        }
        generator_returned = false;
        push = true;
        value = run_to_end(ts, root, frame, caller, static_cast<int>(i), raising);
    }
    root->current_frame = nullptr;
    return value;
}

namespace {

// What CPython's _PyOpcode_Deopt and _PyOpcode_Caches say (not exported; their definitions in
// pycore_opcode.h are C99 only): the base instruction of each specialised one, and the inline
// cache entries after each base instruction. Filled from the `opcode` and `dis` modules
// (set_opcode_tables); until then nothing resumes in place.
unsigned char deopt_table[256];
unsigned char cache_table[256];
bool have_opcode_tables = false;

// The call instruction a frame inside a C call is at (PRECALL or CALL, specialised or not), its
// argument, and where the frame goes on once the call returns; false for anything else.
bool call_at(_PyInterpreterFrame* f, int* oparg, int* resume) {
    if (!have_opcode_tables) return false;
    const unsigned char* _PyOpcode_Deopt = deopt_table;
    const unsigned char* _PyOpcode_Caches = cache_table;
    _Py_CODEUNIT* first = _PyCode_CODE(f->f_code);
    int index = static_cast<int>(f->prev_instr - first);
    if (index < 0 || index >= code_units(f->f_code)) return false;
    int op = _PyOpcode_Deopt[_Py_OPCODE(first[index])];
    int arg = _Py_OPARG(first[index]);
    for (int i = index - 1, shift = 8;
         i >= 0 && _PyOpcode_Deopt[_Py_OPCODE(first[i])] == EXTENDED_ARG; --i, shift += 8)
        arg |= _Py_OPARG(first[i]) << shift;
    int next = index + 1 + _PyOpcode_Caches[op];
    if (op == PRECALL) {
        if (next >= code_units(f->f_code) || _PyOpcode_Deopt[_Py_OPCODE(first[next])] != CALL)
            return false;
        next += 1 + _PyOpcode_Caches[CALL];
    } else if (op != CALL) {
        return false;
    }
    *oparg = arg;
    *resume = next;
    return next < code_units(f->f_code);
}

}  // namespace

int set_opcode_tables(PyObject* deopt, PyObject* caches) {
    if (!PyBytes_Check(deopt) || !PyBytes_Check(caches) || PyBytes_GET_SIZE(deopt) != 256 ||
        PyBytes_GET_SIZE(caches) != 256) {
        PyErr_SetString(PyExc_ValueError, "stackless: bad opcode tables");
        return -1;
    }
    std::memcpy(deopt_table, PyBytes_AS_STRING(deopt), 256);
    std::memcpy(cache_table, PyBytes_AS_STRING(caches), 256);
    have_opcode_tables = true;
    return 0;
}

namespace {

// Entries of localsplus in use while a frame is in the FOR_ITER at its prev_instr (its iterator
// on top), from the bytecode analysis if its code has one already; -1 otherwise. Reads only.
int iteration_top(_PyInterpreterFrame* f) {
    if (!have_opcode_tables || code_extra_index < 0) return -1;
    _Py_CODEUNIT* first = _PyCode_CODE(f->f_code);
    int index = static_cast<int>(f->prev_instr - first);
    if (index < 0 || index >= code_units(f->f_code) ||
        deopt_table[_Py_OPCODE(first[index])] != FOR_ITER)
        return -1;
    void* extra = nullptr;
    if (_PyCode_GetExtra(reinterpret_cast<PyObject*>(f->f_code), code_extra_index, &extra) < 0 ||
        extra == nullptr) {
        PyErr_Clear();
        return -1;
    }
    PyObject* kinds = kinds_at(static_cast<PyObject*>(extra), index);
    if (kinds == nullptr || !PyUnicode_Check(kinds)) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t depth = PyUnicode_GET_LENGTH(kinds);
    if (depth < 1 || depth > f->f_code->co_stacksize) return -1;
    int top = f->f_code->co_nlocalsplus + static_cast<int>(depth);
    PyObject* iterator = f->localsplus[top - 1];
    return iterator != nullptr && PyIter_Check(iterator) ? top : -1;
}

// Where the innermost frame of a tasklet blocked in a stackless operation stands: the entries of
// localsplus in use during the operation, how many of them the operation consumes, and where
// the frame goes on. A call (its hint says where its arguments end) or a FOR_ITER (hint.depth
// -1: the analysis says). False if neither.
bool blocked_at(_PyInterpreterFrame* f, const stack_hint& hint, int* top, int* consumed,
                int* resume) {
    if (hint.frame != f || hint.instr != f->prev_instr) return false;
    if (hint.depth < 0) {
        *top = iteration_top(f);
        *consumed = 0;  // the iterator stays; the value goes on top of it
        *resume = static_cast<int>(f->prev_instr - _PyCode_CODE(f->f_code)) + 1;
        return *top > 0;
    }
    int oparg;
    if (!call_at(f, &oparg, resume)) return false;
    *top = hint.depth;
    *consumed = oparg + 2;
    return *top - *consumed >= f->f_code->co_nlocalsplus;
}

}  // namespace

int prepare_iteration_analysis(PyObject* code, PyObject* slot_kinds) {
    if (!PyCode_Check(code)) return 0;
    return code_cache(reinterpret_cast<PyCodeObject*>(code), slot_kinds) != nullptr ? 0 : -1;
}

bool can_resume_in_place(_PyInterpreterFrame* innermost, const stack_hint& hint, PyObject* func) {
    if (innermost == nullptr) return true;  // the operation was the tasklet's function itself
    int top, consumed, resume;
    if (!blocked_at(innermost, hint, &top, &consumed, &resume)) return false;
    _PyInterpreterFrame* f = innermost;
    for (; f->previous != nullptr; f = f->previous) {
        if (f->is_entry || f->owner != FRAME_OWNED_BY_THREAD) return false;  // C or a generator
        if (f->f_code->co_flags & (CO_GENERATOR | code_flags_not_resumable)) return false;
    }
    // The outermost frame: the tasklet's own call of its function (a plain Python function).
    return f->is_entry && f->owner == FRAME_OWNED_BY_THREAD && PyFunction_Check(func) &&
           PyFunction_GET_CODE(func) == reinterpret_cast<PyObject*>(f->f_code) &&
           !(f->f_code->co_flags & (CO_GENERATOR | code_flags_not_resumable));
}

PyObject* resume_in_place(PyThreadState* ts, _PyCFrame* root, _PyInterpreterFrame* innermost,
                          const stack_hint& hint, PyObject* value) {
    if (innermost == nullptr) return value;
    // The innermost frame: what its evaluation loop does once the operation returns. A call's
    // callable and arguments leave the stack, and the result takes their place; FOR_ITER
    // pushes the value above its iterator. It goes on after the instruction.
    int top = 0, consumed = 0, resume = 0;
    blocked_at(innermost, hint, &top, &consumed, &resume);  // checked by can_resume_in_place
    for (int i = top - consumed; i < top; ++i) Py_CLEAR(innermost->localsplus[i]);
    innermost->stacktop = top - consumed;
    innermost->prev_instr = _PyCode_CODE(innermost->f_code) + resume - 1;
    std::vector<_PyInterpreterFrame*> chain;
    for (_PyInterpreterFrame* f = innermost; f != nullptr; f = f->previous) chain.push_back(f);
    // The callers called inline: their stacktop and prev_instr are what RETURN_VALUE expects.
    for (std::size_t i = 0; i < chain.size(); ++i) {
        _PyInterpreterFrame* frame = chain[i];
        _PyInterpreterFrame* caller = i + 1 < chain.size() ? chain[i + 1] : nullptr;
        bool raising = value == nullptr;
        if (!raising) frame->localsplus[frame->stacktop++] = value;
        value =
            run_to_end(ts, root, frame, caller, static_cast<int>(chain.size() - 1 - i), raising);
    }
    root->current_frame = nullptr;
    return value;
}

int traverse_plan(const restore_plan& plan, visitproc visit, void* arg) {
    for (const restored_frame& f : plan.frames) {
        Py_VISIT(f.func);
        Py_VISIT(f.values);
        Py_VISIT(f.generator);
    }
    Py_VISIT(plan.exc_value);
    Py_VISIT(plan.source);
    return 0;
}

}  // namespace stackless::python
