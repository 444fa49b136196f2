// The scheduler: one per OS thread, created on first use, with an implicit main tasklet for the
// thread. The run queue is a ring whose head is the current tasklet; new tasklets go to its end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "stackless/tasklet.hpp"

namespace stackless {

// Moves the current tasklet to the end of the run queue and runs the next one.
void schedule();
// Takes the current tasklet out of the run queue and runs the next one. The tasklet stays alive,
// paused, until something inserts it again.
void schedule_remove();
// Runs the scheduler until no other tasklet is runnable. The caller leaves the run queue
// meanwhile (it is "paused", as the article explains). An exception escaping a tasklet's
// function ends that tasklet and is re-raised here. threadblock: when nothing is runnable, wait
// for other threads to wake a tasklet of this one (if one may: docs/threads.md) instead of
// returning.
void run(bool threadblock = false);
// Preemption (a binding's watchdog calls it in the tasklet to interrupt): the current tasklet
// leaves the run queue, paused, and the innermost run() returns at once. Returns when the
// tasklet runs again (inserted by someone); returns false at once, doing nothing, if no run() is
// active on this thread or the current tasklet is the one that called it.
bool interrupt_to_run();
// The same, but the run() that returns is the one `watchdog` called, however many run() calls
// of other tasklets are nested inside it (Stackless interrupts to its outermost timed run();
// the nested ones are made runnable again as that run() returns). False, doing nothing, if
// `watchdog` is not inside run() on this thread or is the current tasklet.
bool interrupt_to_run(const tasklet& watchdog);
// The tasklets inside run() on this thread, outermost first (Stackless's watchdog list).
std::vector<tasklet> run_callers();

tasklet getcurrent();
tasklet getmain();
// Runnable tasklets in this thread's run queue, the current one included.
int getruncount();

// What happens to a thread's tasklets when it ends, on demand: never-started tasklets leave the run
// queue and started ones are killed (their stacks unwound), the main tasklet excepted. A binding
// calls it while its runtime is still alive (the CPython binding at interpreter exit). Must be
// called from the main tasklet; returns how many tasklets could not be killed (they caught
// tasklet_exit every time), which abandon_survivors() then drops without unwinding.
int kill_all();
void abandon_survivors() noexcept;

// Stack strategy of this thread's scheduler. See docs/design.md.
struct scheduler_config {
    std::size_t stack_size = 256 * 1024;  // usable bytes of each stack slot (plus a guard page)
    std::size_t stack_slots = 256;        // tasklets that keep their stack in place (>= 2)
    // More slots are mapped, up to this many, when every slot holds a runnable tasklet: copying
    // the stacks of tasklets that take turns would cost more than the slots' resident pages.
    std::size_t max_stack_slots = 4096;
    // For tasklets that can go on without their stacks (a binding's tasklet_hooks::
    // discard_stack): runnable ones keep their stacks while no more than this many slots are
    // mapped; beyond, they take turns on few slots (soft switching, docs/scaling.md). Waiting
    // ones drop their stacks as soon as all stack_slots are taken. Clamped to max_stack_slots.
    std::size_t runnable_slots = 4096;
};
// Must be called on a thread before its scheduler exists (before any other call above on that
// thread); raises stackless::error otherwise.
void configure(const scheduler_config& config);

// Counters of this thread's scheduler, for tests and benchmarks.
struct scheduler_stats {
    std::uint64_t switches = 0;      // context switches performed
    std::uint64_t stacks_saved = 0;  // times a blocked tasklet's stack was copied to the heap
    std::uint64_t stacks_restored = 0;
    std::uint64_t stacks_discarded = 0;  // stacks dropped instead of saved (tasklet_hooks)
    std::size_t saved_stack_bytes = 0;   // heap bytes currently holding saved stacks
    std::size_t slots_mapped = 0;        // stack slots mapped so far
    std::size_t live_tasklets = 0;       // started tasklets that have not ended
    std::size_t state_chunks = 0;  // process-wide: chunks of 64 tasklet states allocated so far
};
scheduler_stats stats();

}  // namespace stackless
