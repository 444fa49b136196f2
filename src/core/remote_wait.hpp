// A wait of one tasklet that another thread completes: the thread pool's jobs (blocking()) and
// anything else that finishes work for a tasklet outside its thread.
//
//   scheduler::get().arm_remote_wait(w);   // in the tasklet (w outlives the wait: the thread
//                                          // pool keeps it in its job)
//   hand `w` to another thread, which calls w.complete() when done
//   scheduler::get().wait_remote(w);       // parks until then
//
// complete() may come before, during or after the wait, from any thread, even after the
// tasklet's thread has ended or the tasklet was killed (it then does nothing).
#pragma once

#include <mutex>

namespace stackless::detail {

class scheduler;
struct tasklet_state;

struct remote_wait {
    enum class phase : unsigned char { armed, completed, cancelled };

    // Wakes the waiting tasklet (in its own thread) unless it gave up. Any thread.
    void complete() noexcept;

    std::mutex mutex;  // orders complete() against a cancel by the tasklet's thread
    scheduler* owner = nullptr;
    tasklet_state* waiter = nullptr;
    phase state = phase::armed;
    bool waiting = false;  // (owner's thread) the tasklet is parked on it
};

}  // namespace stackless::detail
