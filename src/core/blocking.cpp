// stackless::blocking(): the caller's side. A job carries the calling tasklet's wait (a
// remote_wait built inside it); the pool completes the wait once the job has run.
#include <new>

#include "remote_wait.hpp"
#include "scheduler.hpp"
#include "stackless/blocking.hpp"
#include "stackless/errors.hpp"
#include "thread_pool.hpp"

namespace stackless::detail {

blocking_job::blocking_job() noexcept {
    static_assert(sizeof(remote_wait) <= sizeof(completion_) &&
                      alignof(remote_wait) <= alignof(std::max_align_t),
                  "blocking_job::completion_size is too small for a remote_wait");
    ::new (static_cast<void*>(completion_)) remote_wait();
}

blocking_job::~blocking_job() {
    completion().~remote_wait();
}

remote_wait& blocking_job::completion() noexcept {
    return *std::launder(reinterpret_cast<remote_wait*>(completion_));
}

void run_blocking(const std::shared_ptr<blocking_job>& job) {
    // A pool thread may block: it runs a nested job itself rather than wait for another pool
    // thread, which could be waiting for it in turn.
    if (thread_pool::on_pool_thread()) {
        job->execute();
        return;
    }
    scheduler& s = scheduler::get();
    // Armed before the pool can complete it.
    remote_wait& w = job->completion();
    s.arm_remote_wait(w);
    if (!thread_pool::instance().submit(job)) {
        job->execute();
        return;
    }
    // (Raises what is thrown into the tasklet meanwhile; the wait is cancelled then, and the
    // pool's reference keeps the job alive until it ends.)
    if (s.wait_remote(w) != wait_result::ready)
        throw error("blocking: the tasklet was woken before its call ended");
}

}  // namespace stackless::detail

namespace stackless {

void set_blocking_threads(int n) {
    if (n < 1) throw error("set_blocking_threads: the pool needs at least one thread");
    detail::thread_pool::instance().set_max_threads(n);
}

int blocking_threads() {
    return detail::thread_pool::instance().max_threads();
}

}  // namespace stackless
