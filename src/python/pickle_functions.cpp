// pickle.dumps as Stackless's pickle has it: functions that pickle cannot find by name (lambdas,
// nested functions) are pickled by value. CPython 3.11's pickler saves every function by name and
// asks no copyreg reducer for them, so the module replaces pickle.dumps with this: the C dumps
// first, unchanged (no cost), and only if that fails, once more with a pickler that pickles such
// functions by value (_stackless_pickle._dumps_by_value). The original error is raised if the
// second try fails too.
#include "binding.hpp"

namespace stackless::python {

namespace {

PyObject* original_dumps = nullptr;  // _pickle.dumps
PyObject* by_value_dumps = nullptr;  // _stackless_pickle._dumps_by_value
PyObject* pickling_error = nullptr;  // pickle.PicklingError

PyObject* mod_pickle_dumps(PyObject*, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    PyObject* r = PyObject_Vectorcall(original_dumps, args, nargsf, kwnames);
    if (r != nullptr) return r;
    // "Can't pickle <function ...>: it's not found as ..." (PicklingError) or "Can't pickle
    // local object ..." (AttributeError): what a function pickle cannot find by name raises.
    if (!PyErr_ExceptionMatches(pickling_error) && !PyErr_ExceptionMatches(PyExc_AttributeError))
        return nullptr;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    r = PyObject_Vectorcall(by_value_dumps, args, nargsf, kwnames);
    if (r != nullptr) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return r;
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return nullptr;
}

PyMethodDef dumps_def = {
    "dumps", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(mod_pickle_dumps)),
    METH_FASTCALL | METH_KEYWORDS,
    "dumps(obj, protocol=None, *, fix_imports=True, buffer_callback=None)\n--\n\n"
    "Return the pickled representation of the object as a bytes object (pickle.dumps; with\n"
    "stackless imported, functions that cannot be found by name are pickled by value)."};

}  // namespace

// Makes pickle.dumps this module's (idempotent).
int install_pickle_dumps(PyObject* helper_module) {
    if (original_dumps != nullptr) return 0;
    PyObject* pickle = PyImport_ImportModule("pickle");
    if (pickle == nullptr) return -1;
    original_dumps = PyObject_GetAttrString(pickle, "dumps");
    pickling_error = PyObject_GetAttrString(pickle, "PicklingError");
    by_value_dumps = PyObject_GetAttrString(helper_module, "_dumps_by_value");
    PyObject* module_name = PyUnicode_FromString("pickle");
    PyObject* dumps =
        module_name != nullptr ? PyCFunction_NewEx(&dumps_def, nullptr, module_name) : nullptr;
    Py_XDECREF(module_name);
    int r = original_dumps != nullptr && pickling_error != nullptr && by_value_dumps != nullptr &&
                    dumps != nullptr
                ? PyObject_SetAttrString(pickle, "dumps", dumps)
                : -1;
    Py_XDECREF(dumps);
    Py_DECREF(pickle);
    return r;
}

}  // namespace stackless::python
