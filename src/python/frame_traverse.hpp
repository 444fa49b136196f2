// Lets the garbage collector see what a switched-out tasklet's Python frames refer to, so that
// reference cycles through blocked tasklets can be found (frame_traverse.cpp, CPython 3.11 only).
#pragma once

#include <Python.h>

namespace stackless::python {

// Visits the references held by the chain of interpreter frames starting at `innermost` (the
// frame that was running when the tasklet switched out) down to its first frame.
int traverse_frames(struct _PyInterpreterFrame* innermost, visitproc visit, void* arg);

}  // namespace stackless::python
