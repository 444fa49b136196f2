// C++ exceptions from the core become Python exceptions at the binding's boundary, with
// Stackless's exception types: RuntimeError for scheduling errors, ValueError for closed
// channels, TaskletExit for a kill.
#include <new>
#include <stdexcept>

#include "binding.hpp"

namespace stackless::python {

python_error::~python_error() {
    // An exception object destroyed without the GIL (a thread's scheduler torn down after its
    // interpreter state) is leaked rather than released unsafely.
    if (type_ == nullptr && value_ == nullptr && tb_ == nullptr) return;
    if (!PyGILState_Check()) return;
    Py_XDECREF(type_);
    Py_XDECREF(value_);
    Py_XDECREF(tb_);
}

void python_error::restore() noexcept {
    PyErr_Restore(std::exchange(type_, nullptr), std::exchange(value_, nullptr),
                  std::exchange(tb_, nullptr));
}

PyObject* raise_from_cxx() noexcept {
    try {
        throw;
    } catch (python_error& e) {
        e.restore();
    } catch (const stackless::tasklet_exit&) {
        PyErr_SetNone(TaskletExit);
    } catch (const stackless::channel_closed_error& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const stackless::error& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const std::invalid_argument& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_SystemError, e.what());
    } catch (...) {  // (callers let a forced unwind through before they call this)
        PyErr_SetString(PyExc_SystemError, "stackless: unknown C++ exception");
    }
    return nullptr;
}

int raise_from_cxx_int() noexcept {
    raise_from_cxx();
    return -1;
}

}  // namespace stackless::python
