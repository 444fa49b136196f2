#include "thread_pool.hpp"

#include <pthread.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <utility>

#include "remote_wait.hpp"
#include "stackless/errors.hpp"

namespace stackless::detail {

namespace {

thread_local bool is_pool_thread = false;

constexpr std::size_t default_threads = 4;

std::size_t threads_from_environment() noexcept {
    const char* text = std::getenv("STACKLESS_BLOCKING_THREADS");
    if (text == nullptr) return default_threads;
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || n < 1 || n > INT_MAX) return default_threads;
    return static_cast<std::size_t>(n);
}

// Blocks every signal in the calling thread while this object lives, and so in the threads it
// starts meanwhile, which inherit the mask.
class signals_blocked {
  public:
    signals_blocked() noexcept {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved_);
    }
    ~signals_blocked() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
    signals_blocked(const signals_blocked&) = delete;
    signals_blocked& operator=(const signals_blocked&) = delete;

  private:
    sigset_t saved_;
};

}  // namespace

// Keeps the pool in static storage without ever destroying it; at process exit it only stops
// the threads.
//
// An ordinary static would be destroyed while it may still be used: a thread busy with a job at
// exit cannot be stopped and returns to the pool (its mutex, its queue) when the job ends, after
// static destructors ran, and threads of the program may call blocking() during exit. Staying
// in place, the pool serves both: the late worker finds it stopped and ends; a late job runs on
// its caller's thread (submit() says false).
//
// Joining every thread instead would make exit wait for jobs that may block for as long as they
// like (a read on a pipe, a hung network file system), so stop() joins only the idle threads
// and detaches the busy ones. A detached thread touches nothing that goes away at exit: the
// pool stays, and the job it runs is its own (the caller's thread may already have ended: the
// job owns what it touches after that, blocking_job.hpp).
class pool_until_exit {
  public:
    pool_until_exit() : pool_() {}
    ~pool_until_exit() { pool_.stop(); }  // and deliberately not pool_.~thread_pool()
    thread_pool& pool() noexcept { return pool_; }

  private:
    union {
        thread_pool pool_;
    };
};

thread_pool& thread_pool::instance() {
    static pool_until_exit holder;
    return holder.pool();
}

bool thread_pool::on_pool_thread() noexcept {
    return is_pool_thread;
}

thread_pool::thread_pool() : max_threads_(threads_from_environment()) {}

bool thread_pool::submit(std::shared_ptr<blocking_job> job) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return false;
        if (queue_.size() >= idle_ && workers_.size() < max_threads_) {
            try {
                start_worker();
            } catch (...) {
                // The system refused a thread: the job waits for one of the others, if any.
                if (workers_.empty()) throw;
            }
        }
        queue_.push(std::move(job));
    }
    job_queued_.notify_one();
    return true;
}

void thread_pool::start_worker() {
    const std::size_t index = workers_.size();
    workers_.emplace_back();
    try {
        // Pool threads take no signal meant for the program: its handlers expect to run in its
        // own threads (and a binding's, such as CPython's, in the one that handles them).
        const signals_blocked inherited_by_the_worker;
        // (It waits for our lock before it looks at the queue.)
        workers_.back().thread = std::thread([this, index] { work(index); });
    } catch (...) {
        workers_.pop_back();
        throw;
    }
    ++idle_;
}

void thread_pool::work(std::size_t index) {
    is_pool_thread = true;
    std::unique_lock lock(mutex_);
    for (;;) {
        job_queued_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        std::shared_ptr<blocking_job> job = queue_.pop();
        --idle_;
        workers_[index].busy = true;
        lock.unlock();
        job->execute();
        job->completion().complete();
        // Our reference may be the last (the caller gave up): the result's destructor runs
        // here, outside the lock, as it may take its time or call blocking() itself.
        job.reset();
        lock.lock();
        workers_[index].busy = false;
        ++idle_;
    }
}

void thread_pool::set_max_threads(int n) {
    std::lock_guard lock(mutex_);
    max_threads_ = static_cast<std::size_t>(n);
    // Jobs already queued need not wait for the next call to get the threads now allowed.
    while (queue_.size() > idle_ && workers_.size() < max_threads_) {
        try {
            start_worker();
        } catch (...) {
            if (workers_.empty()) throw;
            break;
        }
    }
}

int thread_pool::max_threads() {
    std::lock_guard lock(mutex_);
    return static_cast<int>(max_threads_);
}

void thread_pool::stop() noexcept {
    job_queue unstarted;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        unstarted = std::exchange(queue_, job_queue());
        // (A job that calls exit() is busy too: its thread is not asked to join itself.)
        for (worker& w : workers_)
            if (w.busy) w.thread.detach();
    }
    job_queued_.notify_all();
    // Nobody changes workers_ once stopping_ is set, so it is read without the lock.
    for (worker& w : workers_)
        if (w.thread.joinable()) w.thread.join();
    // Jobs that no thread took: their callers may be tasklets of threads that still run, which
    // get an error instead of a wait without end.
    while (!unstarted.empty()) {
        std::shared_ptr<blocking_job> job = unstarted.pop();
        job->fail(std::make_exception_ptr(
            error("blocking: the process is exiting; the call was not made")));
        job->completion().complete();
    }
}

}  // namespace stackless::detail
