// Reading a switched-out tasklet's interpreter frames for pickling, and building frames from a
// pickle and resuming them (frame_state.cpp, CPython 3.11 only). The pickle format and the
// bytecode analysis that says what each frame slot must hold are in python/_stackless_pickle.py.
#pragma once

#include <Python.h>

#include "frame_traverse.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace stackless::python {

// What the blocking call of a tasklet's innermost frame returns when the tasklet resumes.
enum class resume_op : std::uint8_t {
    tempval,  // the tasklet's tempval (stackless.schedule, schedule_remove)
    none,     // None (channel.send, tasklet.run, tasklet.switch, ...)
    receive,  // the value a channel delivers (channel.receive, iterating over a channel)
    // Nothing: the innermost frame was interrupted by run(timeout)'s watchdog between two
    // instructions, and continues at the one it was about to execute.
    at_instruction,
};
// Its name in pickles: "tempval", "none", "receive", "interrupted".
const char* resume_op_name(resume_op op) noexcept;
// The resume_op a str names; nullopt if none.
std::optional<resume_op> resume_op_named(PyObject* name) noexcept;

// Says what a frame's pending C call is: for the innermost frame, the resume_op of the stackless
// operation `callee` (nullopt: not one); `is_iteration` when the frame is in a FOR_ITER over
// `callee`.
using classify_call = std::optional<resume_op> (*)(PyObject* callee, bool is_iteration);

struct capture_helpers {
    // call_site(code, index) -> (stack depth, mode, slot, resume index, entries consumed) for a
    // frame inside a C call (_stackless_pickle._call_site).
    PyObject* call_site;
    // by_value(function) -> what to pickle for it (_stackless_pickle._by_value_if_needed).
    PyObject* by_value;
    classify_call classify;
    // keeps_self(code) -> whether an __init__ of that code never rebinds its first local
    // (_stackless_pickle._keeps_self): its caller's class call then returns that local.
    PyObject* keeps_self;
    // The tasklet was interrupted by the watchdog (at a line boundary, in a trace function that
    // the evaluation loop called with the innermost frame's stack top saved).
    bool interrupted;
};

// The frames of a switched-out tasklet as a new tuple (records, resume_op): one record per frame,
// outermost first, (code, globals as a module name or dict, resume index, values, NULL indices)
// where values are the locals then the value stack without the pending call. If a frame cannot
// be resumed: ("refuse", reason, code, index, callee, next frame's code) instead.
PyObject* capture_frames(struct _PyInterpreterFrame* innermost, const capture_helpers& helpers);

// How many C-level calls of the interpreter between the frames from `innermost` outwards hold
// state a pickle cannot rebuild (calls through C code other than those capture_frames resumes):
// the tasklet's nesting level, as Stackless counts it with soft switching. `switched_out`: the
// innermost frame waits in a call (which counts unless it is a stackless operation called
// directly); `func`: the tasklet's function (nullptr for a main tasklet), which counts unless
// it is the outermost frame's; `resumed_frames`: its frames were rebuilt from a pickle (each
// waits for the one it called with its stack top saved; otherwise that marks a call of a trace
// function). -1 with an exception (the analysis is Python code).
int c_state_depth(struct _PyInterpreterFrame* innermost, const capture_helpers& helpers,
                  bool switched_out, PyObject* func, bool resumed_frames);
// The frame object of an interpreter frame (made if it has none; None for nullptr).
PyObject* frame_object_of(struct _PyInterpreterFrame* frame);
// How many frames there are from `innermost` outwards.
long frames_from(struct _PyInterpreterFrame* innermost) noexcept;
// The frames from `innermost` outwards with their locals only, for a pickle that cannot be
// resumed (they had C state): (code, globals, instruction index, locals, NULL indices) each,
// outermost first.
PyObject* capture_locals(struct _PyInterpreterFrame* innermost, PyObject* by_value);

// A frame to rebuild: its function (made from the pickled code and globals), where it resumes
// and its pickled locals and value stack (one tuple, with None placeholders at the NULL indices
// listed in `nulls`). Owned references.
struct restored_frame {
    PyObject* func = nullptr;
    PyObject* values = nullptr;
    PyObject* nulls = nullptr;
    int resume = 0;  // index of the instruction it continues at
    // Where it continues instead if the generator it iterates over (FOR_ITER) or delegates to
    // (SEND) returns: without that generator on its stack, and with the return value pushed if
    // alt_push (SEND). -1: it drives no generator.
    int alt_resume = -1;
    bool alt_push = false;
    // A generator's frame: the generator (owned), whose frame was set when it was unpickled;
    // func, values and nulls are unused.
    PyObject* generator = nullptr;
    const void* generator_at = nullptr;  // its prev_instr then, to see it was not run since
    // An __init__ frame run by its caller's class call: its self (owned), which the call returns
    // once the frame returns None.
    PyObject* self = nullptr;
};

struct restore_plan {
    std::vector<restored_frame> frames;  // outermost first
    resume_op op = resume_op::none;
    PyObject* exc_value = nullptr;  // the exception being handled where the innermost stopped
    PyObject* source = nullptr;     // the pickled frames, to pickle the tasklet again unchanged
    // Why the frames cannot resume (a str: they had C state when pickled); nullptr if they can.
    PyObject* invalid = nullptr;
    std::size_t chunk_bytes = 0;  // frame memory the frames need
    ~restore_plan();
};

// Checks one pickled frame record (as capture_frames makes them) against its code and against
// what each stack slot must hold where it resumes (the analysis slot_kinds(code) returns, cached
// on the code object), and adds it to `plan`. Returns -1 with an exception (a corrupt or
// mismatched pickle) on failure.
int add_restored_frame(restore_plan& plan, PyObject* record, PyObject* slot_kinds,
                       bool at_instruction = false);

// Runs on the tasklet's fresh C stack, after start_interp_state() with a root chunk of at least
// plan.chunk_bytes: builds the frames and resumes them innermost first, each continuing where it
// stopped with the value its call returns (`value`, owned; nullptr: raise the current exception
// there). Returns the outermost frame's result (new reference) or nullptr with an exception.
// The plan's references are used up.
PyObject* resume_frames(PyThreadState* ts, _PyCFrame* root, restore_plan& plan, PyObject* value);

int traverse_plan(const restore_plan& plan, visitproc visit, void* arg);

// Whether a paused tasklet's frames, from `innermost` out, can be dropped without unwinding its
// C stack: its innermost frame waits in a stackless operation it called, every link is a call
// inside one evaluation loop or the driving of a generator (FOR_ITER, SEND, send(), next()),
// and the outermost is the tasklet's own call of `func`. 1 if so, with `tops` the entries of
// localsplus each frame uses (innermost first); 0 if not; -1 with an exception.
int droppable_frames(struct _PyInterpreterFrame* innermost, const capture_helpers& helpers,
                     PyObject* func, std::vector<int>& tops);
// Clears those frames without running their code (as Stackless drops a rebound tasklet's frames:
// no finally block runs; a generator among them ends), and frees the frame chunks of the
// tasklet's data stack from `chunk` back to (not including) `root_chunk`.
void drop_frames(struct _PyInterpreterFrame* innermost, const std::vector<int>& tops,
                 _PyStackChunk* chunk, _PyStackChunk* root_chunk);
// How many entries of localsplus the innermost frame of a switched-out tasklet uses while it
// waits in a stackless operation it called directly (the analysis says): -1 if it waits in no
// such call, -2 with an exception.
int waiting_stack_top(struct _PyInterpreterFrame* innermost, const capture_helpers& helpers);

// A tasklet whose C stack was dropped while it was blocked (tasklet_hooks::discard_stack) goes
// on from its frames, which stay where they are in its frame data stack. The frames qualify if
// every link between them is a call inside one evaluation loop (no C code between frames, no
// generator), the innermost one is blocked in a call of a stackless operation from its
// evaluation loop (`hint` says where its value stack ends) and the outermost one was entered by
// the tasklet's own call of its function. One more entry frame is allowed: state.running,
// entered by resume_in_place when the frames went on after an earlier drop (the frames outside
// it wait for it as callers do, so dropping the stack again loses nothing). Reads frames only:
// safe during a switch. On success, state says where the innermost frame goes on, and the hint
// is marked accepted.
bool can_resume_in_place(struct _PyInterpreterFrame* innermost, struct stack_hint& hint,
                         PyObject* func, struct in_place_state& state);
// Resumes them (innermost first) as resume_frames does, the innermost with `value` (owned;
// nullptr: raise the current exception there); pops each frame as it ends, and keeps
// state.running on the frame it runs. Returns the outermost frame's result, or `value` itself
// if there are no frames.
PyObject* resume_in_place(PyThreadState* ts, _PyCFrame* root, struct _PyInterpreterFrame* innermost,
                          const struct stack_hint& hint, struct in_place_state& state,
                          PyObject* value);

// Makes sure the bytecode analysis of `code` is cached on it (a Python call the first time), so
// that a tasklet blocked iterating over a channel in that code can drop its stack (the hook
// that decides runs no Python code). -1 with an exception on failure.
int prepare_iteration_analysis(PyObject* code, PyObject* slot_kinds);

// The instruction tables can_resume_in_place reads the bytecode with: `deopt` and `caches`,
// bytes of 256 (_stackless_pickle.opcode_tables). -1 with an exception if malformed.
int set_opcode_tables(PyObject* deopt, PyObject* caches);

// Generators on their own (pickling.cpp's _generator_info and _generator_set_frame).
// (state, code, globals or None, name, qualname, record or closure, exception being handled):
// state created, suspended (record: its frame, as capture_frames makes them), running (the
// cells of its closure: its frame pickles with its tasklet) or done.
PyObject* generator_info(PyObject* gen, PyObject* by_value);
// Gives a new generator (just created, not started) the pickled frame `record`, suspended
// (`created`: not yet started) where it resumes, with `exc_value` the exception it handles.
int set_generator_frame(PyObject* gen, PyObject* record, bool created, PyObject* exc_value,
                        PyObject* slot_kinds);
int code_nlocalsplus(PyObject* code);
// A frame object of `code` in `globals` that never runs (for an unpickled traceback), stopped at
// byte offset `lasti` and line `lineno` (ignored if below 0 / 1), called by `back` (a frame, or
// nullptr).
PyObject* new_frame_object(PyObject* code, PyObject* globals, int lasti, int lineno,
                           PyObject* back);
// Gives such a frame its caller; -1 with an exception if it has one or has run.
int set_frame_back(PyObject* frame, PyObject* back);

}  // namespace stackless::python
