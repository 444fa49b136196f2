// Lets the garbage collector see what a switched-out tasklet's Python frames refer to, so that
// reference cycles through blocked tasklets can be found (frame_traverse.cpp, CPython 3.11 only).
#pragma once

#include <Python.h>

namespace stackless::python {

// Where the value stack of the frame that made a blocking call ends, when the call came from the
// evaluation loop: its arguments array then lies on that stack, and ends at its top.
struct stack_hint {
    const void* frame = nullptr;
    const void* instr = nullptr;  // the frame's instruction at the time (the hint's validity)
    int depth = 0;                // entries of localsplus in use
    // can_resume_in_place accepted the frames blocked at this frame and instruction, and the
    // hint was recorded at the same place since (the recording functions reset it otherwise).
    bool accepted = false;
};

// A tasklet's frames going on in place after its C stack was dropped (frame_resume.cpp). Part of
// every tasklet object: kept to 16 bytes.
struct in_place_state {
    // While they go on: the frame resume_in_place entered last, the one entry frame of the
    // chain that no C function called (so the stack may be dropped again). nullptr otherwise.
    struct _PyInterpreterFrame* running = nullptr;
    // Where the innermost frame goes on once the operation returns (can_resume_in_place finds
    // it, resume_in_place uses it; the entries of localsplus in use come from the hint): the
    // instruction it resumes at, and how many entries of its value stack the operation consumes.
    int resume = 0;
    int consumed = 0;
};

// Records the hint for the running frame of `ts`, for a vectorcall-style call with `args` and
// `n` arguments (positional and keyword). Leaves `hint` invalid if `args` is not on that stack.
void record_stack_hint(PyThreadState* ts, PyObject* const* args, Py_ssize_t n,
                       stack_hint& hint) noexcept;

// Records a hint with depth -1 (known from the bytecode analysis, not from arguments) for the
// running frame of `ts`, about to block iterating; returns that frame's code (borrowed), or
// nullptr if no frame runs.
PyObject* record_iteration_hint(PyThreadState* ts, stack_hint& hint) noexcept;

// A frame stopped inside an instruction that called C code (which ran Python code that blocked,
// or made the blocking call) has a value stack whose end only the bytecode analysis knows
// (_stackless_pickle._call_site, Python code, which a collection cannot run). The collector notes
// the instructions it met without knowing their depth; this runs the analysis for them after the
// collection (a gc.callbacks entry), so that the next collections see those stacks where that is
// safe (frame_traverse.cpp). Returns -1 with an exception if the analysis itself failed.
int learn_call_site_depths(PyObject* call_site_analysis);

// Visits the references held by the chain of interpreter frames starting at `innermost` (the
// frame that was running when the tasklet switched out) down to its first frame.
int traverse_frames(struct _PyInterpreterFrame* innermost, const stack_hint& hint, visitproc visit,
                    void* arg);

}  // namespace stackless::python
