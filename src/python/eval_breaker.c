/* Sets the main interpreter's eval breaker from another thread, so that a pending call it added
 * (Py_AddPendingCall) runs at the main thread's next check even when nothing else would make
 * that thread look: in CPython 3.11, Py_AddPendingCall computes the flag for the calling thread,
 * which cannot run pending calls, and leaves it unset. The main thread recomputes the flag when
 * it handles it. Relies on 3.11's PyInterpreterState.ceval.eval_breaker
 * (Include/internal/pycore_interp.h, pycore_ceval_state). C, not C++: the internal atomics
 * header is C11 only. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_interp.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

void stackless_wake_main_interpreter(void) {
    _Py_atomic_store_relaxed(&PyInterpreterState_Main()->ceval.eval_breaker, 1);
}
