// Coroutines, asynchronous generators and their awaitables, for pickling (coroutine_state.cpp).
#pragma once

#include <Python.h>

namespace stackless::python {

// The coroutine a coroutine_wrapper (what a coroutine's __await__() returns) runs; nullptr if
// `o` is none, or if this CPython's layout could not be verified.
PyObject* coroutine_of_wrapper(PyObject* o) noexcept;

PyObject* mod_agen_hooks(PyObject*, PyObject* ag);
PyObject* mod_agen_set_hooks(PyObject*, PyObject* args);
PyObject* mod_coro_set_origin(PyObject*, PyObject* args);
PyObject* mod_asend_info(PyObject*, PyObject* o);
PyObject* mod_asend_new(PyObject*, PyObject* args);
PyObject* mod_athrow_info(PyObject*, PyObject* o);
PyObject* mod_athrow_new(PyObject*, PyObject* args);
PyObject* mod_coro_wrapper_coroutine(PyObject*, PyObject* o);
PyObject* mod_awaitable_take(PyObject*, PyObject* args);

}  // namespace stackless::python
