// Threads: every OS thread has its own scheduler and main tasklet; a tasklet belongs to the
// thread that created it. Channels connect threads when they are made for it (see
// docs/threads.md for the rules and their costs).
#pragma once

namespace stackless {

// Tag for a channel that tasklets of several threads use: channel<T> ch(stackless::across_threads).
// Its operations take a lock; a channel made without it stays private to one thread at a time
// and costs nothing extra.
struct across_threads_t {
    explicit across_threads_t() = default;
};
inline constexpr across_threads_t across_threads{};

// For bindings whose threads hold a lock of their own (the CPython binding: the GIL) while a
// thread whose tasklets all wait sleeps until another thread wakes one of them.
struct thread_hooks {
    // Whether to wait for other threads (1) or report a deadlock (0) instead of the core's rule
    // (-1, for threads the binding does not know: a tasklet of this thread waits on a shared
    // channel and another thread that uses stackless is not asleep waiting too). Called in the
    // thread that would wait.
    int (*may_be_woken)() = nullptr;
    void (*begin_wait)() = nullptr;  // just before the thread sleeps
    void (*end_wait)() = nullptr;    // after it woke; may throw to end the wait with an exception
    // Whether the tasklets still alive when a thread ends may run to be killed then (nullptr: yes).
    // Called while the thread ends; a binding whose thread was ended without its own teardown
    // (the CPython binding: by CPython, during finalization) answers false, and they are dropped
    // without running, as abandon_survivors() does.
    bool (*may_run_tasklets_at_thread_end)() = nullptr;
};
// Installs process-wide hooks (nullptr: none). Call before threads use stackless.
void set_thread_hooks(const thread_hooks* hooks) noexcept;
// Threads whose scheduler exists (they used stackless and have not ended), this one included.
int threads_using_stackless() noexcept;
// Threads asleep waiting for other threads with nothing woken yet (a snapshot), for a binding's
// may_be_woken rule.
int sleeping_threads() noexcept;

}  // namespace stackless
