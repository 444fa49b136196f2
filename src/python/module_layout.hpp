// Reads a module's attribute dictionary without a call. Relies on CPython 3.11's PyModuleObject
// (Include/internal/pycore_moduleobject.h): PyObject_HEAD followed by md_dict.
#pragma once

#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

namespace stackless::python {

struct module_layout {
    PyObject_HEAD PyObject* md_dict;
};

inline PyObject* module_dict(PyObject* module) noexcept {
    return reinterpret_cast<module_layout*>(module)->md_dict;
}

}  // namespace stackless::python
