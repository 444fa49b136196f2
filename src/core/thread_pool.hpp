// The process's pool of threads for blocking(): calls that would stop every tasklet of a thread
// run here instead. Threads start on demand, when a job finds none idle, up to a limit; they
// stay until the process exits.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "job_queue.hpp"
#include "stackless/detail/blocking_job.hpp"

namespace stackless::detail {

class thread_pool {
  public:
    // The pool, created on first use. Never destroyed (thread_pool.cpp says why); its threads
    // are stopped at process exit.
    static thread_pool& instance();
    // Whether the calling thread is one of the pool's.
    static bool on_pool_thread() noexcept;

    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    // Queues `job` for a pool thread, which calls execute() and then completes the job's wait.
    // False if the pool has stopped (the process is exiting): the caller runs the job itself.
    // Raises if the job cannot be queued (no thread could be started, or no memory).
    bool submit(std::shared_ptr<blocking_job> job);

    void set_max_threads(int n);
    int max_threads();

  private:
    friend class pool_until_exit;
    thread_pool();
    ~thread_pool() = default;  // (never called)

    struct worker {
        std::thread thread;
        bool busy = false;  // running a job (or about to)
    };
    void start_worker();
    void work(std::size_t index);
    // At process exit: idle threads end and are joined; jobs that no thread took fail.
    void stop() noexcept;

    std::mutex mutex_;
    std::condition_variable job_queued_;
    job_queue queue_;
    std::vector<worker> workers_;
    std::size_t idle_ = 0;  // threads started and not running a job (waiting for one, or starting)
    std::size_t max_threads_;
    bool stopping_ = false;
};

}  // namespace stackless::detail
