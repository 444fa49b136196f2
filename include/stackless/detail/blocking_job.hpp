// The type-erased half of stackless::blocking(): one call, as the pool runs it and as the calling
// tasklet waits for it. blocking.hpp derives the typed job (the function and where its result
// goes); the core (src/core/blocking.cpp, thread_pool.cpp) queues it, runs it on a pool thread
// and wakes the caller.
//
// The caller and the pool share the job (std::shared_ptr): whichever lets go last frees it. A
// caller killed while it waits lets go at once, and the pool thread, still running the
// function, then owns everything the job touches until it ends.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>

namespace stackless::detail {

struct remote_wait;

class blocking_job {
  public:
    blocking_job() noexcept;
    virtual ~blocking_job();
    blocking_job(const blocking_job&) = delete;
    blocking_job& operator=(const blocking_job&) = delete;

    // Calls the function and keeps what it returned or raised. On a pool thread, or on the
    // caller's own thread when no pool thread may take it (see run_blocking).
    virtual void execute() noexcept = 0;
    // Ends the job without calling the function: the caller gets `e` instead of a result.
    void fail(std::exception_ptr e) noexcept { error_ = std::move(e); }

    // (The core.) The calling tasklet's wait, which the pool completes after execute().
    remote_wait& completion() noexcept;

  protected:
    std::exception_ptr error_;  // what the function raised, or why it was not called

  private:
    // The wait is built inside the job instead of on its own allocation, so that a call costs
    // one allocation. Its type is the core's; blocking.cpp checks that it fits here.
    static constexpr std::size_t completion_size = sizeof(std::mutex) + 3 * sizeof(void*);
    alignas(std::max_align_t) std::byte completion_[completion_size];
};

// Hands `job` to the process's pool and parks the calling tasklet until the job has run (the
// other tasklets of the thread run meanwhile; a thread with nothing else to run sleeps). Raises
// what is thrown into the tasklet meanwhile (tasklet::kill, throw_exception): the job then runs
// to its end on the pool, which keeps it alive. Runs the job on the calling thread instead when
// it is itself a pool thread (a job that calls blocking()), or when the pool has stopped
// because the process is exiting.
void run_blocking(const std::shared_ptr<blocking_job>& job);

}  // namespace stackless::detail
