// Checking pickled frame records against their code before anything resumes them: a damaged
// pickle raises instead of resuming a frame whose code or stack does not match.
#include "frame_layout.hpp"

#include <frameobject.h>  // PyFrame_New

#include <algorithm>
#include <string>

namespace stackless::python {

// What add_restored_frame keeps on a code object (co_extra): a list [slot kinds by resume index
// (a dict), the last function made for it]. Frees with the code object.
Py_ssize_t code_extra_index = -1;

namespace {

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
        case 'L':
            return value != nullptr && PyList_CheckExact(value);
        case 'S':
            return value != nullptr && PySet_CheckExact(value);
        case 'D':
            return value != nullptr && PyDict_CheckExact(value);
        case 's':
            return value != nullptr && PyUnicode_Check(value);
        case 'g': {  // the exceptions raised in except* clauses: restored from a copy
            if (value == nullptr || !PyList_CheckExact(value)) return false;
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); ++i) {
                PyObject* item = PyList_GET_ITEM(value, i);
                if (item != Py_None && !PyExceptionInstance_Check(item)) return false;
            }
            return true;
        }
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

void release_extra(void* extra) {
    Py_XDECREF(static_cast<PyObject*>(extra));
}

}  // namespace

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

// A new reference to each value of `values`, NULL at the indices in `nulls`, into `out`.
void copy_values(PyObject* values, PyObject* nulls, PyObject** out) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(values); ++i)
        out[i] = Py_NewRef(PyTuple_GET_ITEM(values, i));
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(nulls); ++j) {
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(nulls, j));  // checked already
        Py_CLEAR(out[i]);
    }
}

namespace {

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

// The comprehension or generator expression argument `.0`: the iterator its FOR_ITER calls.
bool is_iterator_argument(PyCodeObject* code, Py_ssize_t i) {
    PyObject* name = PyTuple_GET_ITEM(code->co_localsplusnames, i);
    return PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, ".0") == 0;
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
        PyObject* value = PyTuple_GET_ITEM(values, i);
        // LOAD_DEREF and friends trust a cell or free variable's slot to hold a cell.
        if ((static_cast<unsigned char>(local_kinds[i]) & (fast_cell | fast_free)) &&
            (is_null[i] || !PyCell_Check(value)))
            return corrupt(code, "a cell variable without its cell");
        if (!is_null[i] && is_iterator_argument(code, i) && !PyIter_Check(value))
            return corrupt(code, "the iterator of a comprehension is no iterator");
    }
    for (Py_ssize_t i = nlocals; i < n; ++i) {
        char k = kind[i - nlocals];
        bool ok = is_null[i] ? k == 'n' : fits(k, PyTuple_GET_ITEM(values, i), code);
        if (!ok) return corrupt(code, "its value stack holds what its code cannot resume with");
    }
    return 0;
}

// How a frame goes on: after a call returns into it (the call's result pushed), at an
// instruction boundary (a tasklet interrupted by run(timeout)), at the start of a created
// generator or after a suspended generator's yield (the value sent pushed).
enum class resume_mode { after_call, at_instruction, generator_start, after_yield };

// Whether `code` can go on at instruction `resume` in this mode (the resume table of
// _stackless_bytecode.slot_kinds); for after_call, *alt is where it goes on when the generator
// it drives returns (-1 for plain calls).
bool resume_point_allowed(PyObject* table, resume_mode mode, int resume, long* alt) {
    *alt = -1;
    const char* key = mode == resume_mode::after_call       ? "calls"
                      : mode == resume_mode::at_instruction ? "steps"
                      : mode == resume_mode::after_yield    ? "yields"
                                                            : "start";
    PyObject* points = PyDict_GetItemString(table, key);
    if (points == nullptr) return false;
    if (mode == resume_mode::generator_start)
        return PyLong_Check(points) && PyLong_AsLong(points) == resume;
    PyObject* index = PyLong_FromLong(resume);
    if (index == nullptr) {
        PyErr_Clear();
        return false;
    }
    bool allowed = false;
    if (PyDict_Check(points)) {
        PyObject* alternative = PyDict_GetItemWithError(points, index);
        if (alternative != nullptr && PyLong_Check(alternative)) {
            allowed = true;
            *alt = PyLong_AsLong(alternative);
        }
    } else if (PyAnySet_Check(points)) {
        allowed = PySet_Contains(points, index) == 1;
    }
    PyErr_Clear();
    Py_DECREF(index);
    return allowed;
}

// The record's locals and value stack to restore from (a new reference): the record's own
// tuple, or a copy in which the list of exceptions an except* statement collects is a list of
// its own, which nothing else can change before the frame's code reads it.
PyObject* values_to_restore(PyCodeObject* code, PyObject* values, const char* kind,
                            Py_ssize_t nkinds) {
    Py_ssize_t nlocals = code->co_nlocalsplus;
    PyObject* copy = nullptr;
    for (Py_ssize_t k = 0; k + 1 < nkinds; ++k) {
        if (kind[k] != 'g') continue;
        if (copy == nullptr) {
            // A new tuple (PyTuple_GetSlice would return `values` itself).
            Py_ssize_t n = PyTuple_GET_SIZE(values);
            copy = PyTuple_New(n);
            if (copy == nullptr) return nullptr;
            for (Py_ssize_t i = 0; i < n; ++i)
                PyTuple_SET_ITEM(copy, i, Py_NewRef(PyTuple_GET_ITEM(values, i)));
        }
        PyObject* list = PyTuple_GET_ITEM(copy, nlocals + k);
        PyObject* own = PyList_GetSlice(list, 0, PyList_GET_SIZE(list));
        if (own == nullptr) {
            Py_DECREF(copy);
            return nullptr;
        }
        PyTuple_SET_ITEM(copy, nlocals + k, own);
        Py_DECREF(list);
    }
    return copy != nullptr ? copy : Py_NewRef(values);
}

// A frame record (code, globals, resume, values, nulls[, alt_resume, alt_push]) checked against
// its code.
struct checked_record {
    PyCodeObject* code = nullptr;
    int resume = -1;
    int alt_resume = -1;
    bool alt_push = false;
    PyObject* cache = nullptr;   // borrowed: the code object owns it
    PyObject* values = nullptr;  // owned: what to restore the frame's locals and stack from
    checked_record() = default;
    checked_record(const checked_record&) = delete;
    checked_record& operator=(const checked_record&) = delete;
    ~checked_record() { Py_XDECREF(values); }
};

int check_record(PyObject* record, PyObject* slot_kinds, checked_record& out, resume_mode mode,
                 bool in_generator = false) {
    Py_ssize_t size = PyTuple_Check(record) ? PyTuple_GET_SIZE(record) : 0;
    if ((size != 5 && size != 7) || !PyCode_Check(PyTuple_GET_ITEM(record, 0)) ||
        !PyLong_Check(PyTuple_GET_ITEM(record, 2))) {
        PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad frame record");
        return -1;
    }
    auto* code = reinterpret_cast<PyCodeObject*>(PyTuple_GET_ITEM(record, 0));
    long resume = PyLong_AsLong(PyTuple_GET_ITEM(record, 2));
    if (resume == -1 && PyErr_Occurred()) return -1;
    // Generator code runs only in its generator's frame, and a generator's frame runs its own
    // code (fill_generator checks that).
    if (!in_generator && (code->co_flags & code_flags_of_generators))
        return corrupt(code, "a generator's code in a plain frame");
    // A class body or a module reads and writes its names in a dict of locals that a restored
    // frame does not have.
    if ((code->co_flags & (CO_OPTIMIZED | CO_NEWLOCALS)) != (CO_OPTIMIZED | CO_NEWLOCALS))
        return corrupt(code, "code without a function scope (a class body or a module)");
    if (resume < 1 || resume >= code_units(code))
        return corrupt(code, "it resumes outside its code");
    PyObject* cache = code_cache(code, slot_kinds);
    if (cache == nullptr) return -1;
    PyObject* table = PyList_GET_ITEM(cache, 0);
    PyObject* kinds = kinds_at(cache, static_cast<int>(resume));
    if (kinds == nullptr) {
        if (PyErr_Occurred()) return -1;
        return corrupt(code, "it resumes where no instruction of its code can continue");
    }
    long expected_alt = -1;
    if (!resume_point_allowed(table, mode, static_cast<int>(resume), &expected_alt)) {
        return corrupt(code, mode == resume_mode::after_call ? "it resumes where no call returns"
                             : mode == resume_mode::at_instruction
                                 ? "it resumes inside an instruction"
                                 : "bad resume point for a generator");
    }
    if (!PyUnicode_Check(kinds) || !PyUnicode_IS_ASCII(kinds)) {
        PyErr_SetString(PyExc_TypeError, "stackless: bad slot kinds");
        return -1;
    }
    Py_ssize_t nkinds = PyUnicode_GET_LENGTH(kinds);
    const char* kind = static_cast<const char*>(PyUnicode_DATA(kinds));
    std::string with_result;
    bool at_instruction = mode == resume_mode::at_instruction;
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
    out.code = code;
    out.resume = static_cast<int>(resume);
    out.cache = cache;
    out.values = values_to_restore(code, values, kind, nkinds);
    if (out.values == nullptr) return -1;
    if (size == 7) {
        // The other way on, when the generator it drives returns: the same stack without that
        // generator (on top), and the return value pushed if alt_push. It must be where the
        // FOR_ITER or SEND that the frame resumes after jumps to.
        long alt = PyLong_Check(PyTuple_GET_ITEM(record, 5))
                       ? PyLong_AsLong(PyTuple_GET_ITEM(record, 5))
                       : -1;
        int push = PyObject_IsTrue(PyTuple_GET_ITEM(record, 6));
        if (alt == -1) PyErr_Clear();
        if (push < 0) return -1;
        if (alt != expected_alt || alt < 0)
            return corrupt(code, "bad resume point for when its generator returns");
        PyObject* alt_kinds = kinds_at(cache, static_cast<int>(alt));
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
    PyObject* values = checked.values;
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
    if (!generator_like(gen)) {
        PyErr_SetString(PyExc_TypeError, "expected a generator, coroutine or async generator");
        return -1;
    }
    checked_record checked;
    resume_mode mode = created ? resume_mode::generator_start : resume_mode::after_yield;
    if (check_record(record, slot_kinds, checked, mode, true) < 0) return -1;
    if (PyTuple_GET_SIZE(record) != 5)  // (a suspended generator is inside no call)
        return corrupt(checked.code, "a suspended generator's frame drives no generator");
    return fill_generator(reinterpret_cast<PyGenObject*>(gen), record, checked, created, exc_value);
}

PyObject* new_frame_object(PyObject* code, PyObject* globals, int lasti, int lineno,
                           PyObject* back) {
    auto* c = reinterpret_cast<PyCodeObject*>(code);
    PyFrameObject* f = PyFrame_New(PyThreadState_Get(), c, globals, nullptr);
    if (f == nullptr) return nullptr;
    // A frame that never runs: its place, line and caller are what they were, as a traceback's.
    if (lasti >= 0 && lasti / 2 < code_units(c))
        f->f_frame->prev_instr = _PyCode_CODE(c) + lasti / 2;
    f->f_lineno = lineno > 0 ? lineno : 0;
    if (back != nullptr && PyFrame_Check(back))
        f->f_back = reinterpret_cast<PyFrameObject*>(Py_NewRef(back));
    return reinterpret_cast<PyObject*>(f);
}

int set_frame_back(PyObject* frame, PyObject* back) {
    if (!PyFrame_Check(frame) || !PyFrame_Check(back)) {
        PyErr_SetString(PyExc_TypeError, "expected two frames");
        return -1;
    }
    auto* f = reinterpret_cast<PyFrameObject*>(frame);
    if (f->f_frame->owner != FRAME_OWNED_BY_FRAME_OBJECT || f->f_back != nullptr) {
        PyErr_SetString(PyExc_ValueError,
                        "stackless: only a frame that never ran, without a "
                        "caller yet, can be given one");
        return -1;
    }
    f->f_back = reinterpret_cast<PyFrameObject*>(Py_NewRef(back));
    return 0;
}

int code_nlocalsplus(PyObject* code) {
    return PyCode_Check(code) ? reinterpret_cast<PyCodeObject*>(code)->co_nlocalsplus : -1;
}

int add_restored_frame(restore_plan& plan, PyObject* record, PyObject* slot_kinds,
                       bool at_instruction) {
    // A generator's frame: (generator, record, exception it handles).
    if (PyTuple_Check(record) && PyTuple_GET_SIZE(record) == 3) {
        PyObject* gen = PyTuple_GET_ITEM(record, 0);
        if (!generator_like(gen)) {
            PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad generator frame");
            return -1;
        }
        checked_record checked;
        PyObject* frame_record = PyTuple_GET_ITEM(record, 1);
        resume_mode mode = at_instruction ? resume_mode::at_instruction : resume_mode::after_call;
        if (check_record(frame_record, slot_kinds, checked, mode, true) < 0 ||
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
    // The frame of an __init__ its caller's class call runs: ("__init__", record).
    bool returns_self = false;
    if (PyTuple_Check(record) && PyTuple_GET_SIZE(record) == 2) {
        PyObject* tag = PyTuple_GET_ITEM(record, 0);
        if (!PyUnicode_Check(tag) || PyUnicode_CompareWithASCIIString(tag, "__init__") != 0 ||
            plan.frames.empty()) {
            PyErr_SetString(PyExc_ValueError, "stackless: corrupt pickle: bad frame record");
            return -1;
        }
        record = PyTuple_GET_ITEM(record, 1);
        returns_self = true;
    }
    checked_record checked;
    resume_mode mode = at_instruction ? resume_mode::at_instruction : resume_mode::after_call;
    if (check_record(record, slot_kinds, checked, mode) < 0) return -1;
    PyCodeObject* code = checked.code;
    PyObject* self = nullptr;
    if (returns_self) {
        // Its self (the first local, not a cell) is what the class call returns.
        const char* kinds = PyBytes_AS_STRING(code->co_localspluskinds);
        PyObject* nulls = PyTuple_GET_ITEM(record, 4);
        bool self_is_null = false;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(nulls); ++j)
            if (PyLong_AsSsize_t(PyTuple_GET_ITEM(nulls, j)) == 0) self_is_null = true;
        if (code->co_argcount < 1 || code->co_nlocalsplus < 1 ||
            (static_cast<unsigned char>(kinds[0]) & (fast_cell | fast_free)) || self_is_null)
            return corrupt(code, "an __init__ frame without its self");
        self = PyTuple_GET_ITEM(checked.values, 0);
    }
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
    f.values = Py_NewRef(checked.values);
    f.nulls = Py_NewRef(PyTuple_GET_ITEM(record, 4));
    f.self = Py_XNewRef(self);
    plan.chunk_bytes += sizeof(PyObject*) * frame_words(code);
    plan.frames.push_back(f);
    return 0;
}

restore_plan::~restore_plan() {
    for (restored_frame& f : frames) {
        Py_XDECREF(f.func);
        Py_XDECREF(f.values);
        Py_XDECREF(f.nulls);
        Py_XDECREF(f.generator);
        Py_XDECREF(f.self);
    }
    Py_XDECREF(exc_value);
    Py_XDECREF(source);
    Py_XDECREF(invalid);
}

int traverse_plan(const restore_plan& plan, visitproc visit, void* arg) {
    for (const restored_frame& f : plan.frames) {
        Py_VISIT(f.func);
        Py_VISIT(f.values);
        Py_VISIT(f.generator);
        Py_VISIT(f.self);
    }
    Py_VISIT(plan.exc_value);
    Py_VISIT(plan.source);
    Py_VISIT(plan.invalid);
    return 0;
}

}  // namespace stackless::python
