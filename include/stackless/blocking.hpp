// Calls that cannot be made cooperative (a C library that blocks in its own I/O, getaddrinfo,
// disk I/O, long computations): blocking(f) runs f on a small pool of threads shared by the
// whole process while the calling tasklet waits and the other tasklets of its thread run.
// docs/io.md, "Blocking calls".
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "stackless/detail/blocking_job.hpp"

namespace stackless {

// Calls f (moved or copied into the job first, called as an rvalue) on a pool thread and
// returns what it returned, or raises what it raised, in the calling tasklet. The tasklet waits
// meanwhile while the other tasklets of its thread run; a thread with nothing else to run sleeps
// until the result arrives. Callable from any tasklet, the main one included, and from a thread
// that uses no tasklets otherwise.
//
// A tasklet killed or thrown into while it waits leaves the wait at once with that exception.
// f cannot be interrupted: it runs to its end on the pool thread, and its result is then
// destroyed there. So f must own what it touches (capture by value or by shared_ptr) whenever
// its caller may be killed, or its thread may end, before f returns: a reference to the
// caller's locals would outlive them.
template <class F>
auto blocking(F&& f) -> std::invoke_result_t<std::decay_t<F>>;

// How many threads the pool may run at once (so how many blocking() calls of the whole process
// proceed together; the others queue). Default 4, or the environment variable
// STACKLESS_BLOCKING_THREADS if it holds a positive integer. Threads start on demand, up to
// this limit, and stay until the process exits. May be called at any time: a higher limit
// applies to the next call; a lower one stops no thread already started. Raises
// stackless::error if n < 1.
void set_blocking_threads(int n);
int blocking_threads();

namespace detail {

// Where a job keeps its function's result until the caller collects it: a value (move-only
// types included), a reference (as a pointer), or nothing.
template <class R>
class blocking_result {
  public:
    template <class F>
    void produce(F&& f) {
        if constexpr (std::is_void_v<R>) {
            std::invoke(std::forward<F>(f));
        } else if constexpr (std::is_reference_v<R>) {
            R r = std::invoke(std::forward<F>(f));
            stored_ = std::addressof(r);
        } else {
            stored_.emplace(std::invoke(std::forward<F>(f)));
        }
    }
    R take() {
        if constexpr (std::is_void_v<R>)
            return;
        else if constexpr (std::is_reference_v<R>)
            return static_cast<R>(*stored_);
        else
            return std::move(*stored_);
    }

  private:
    struct nothing {};
    using stored = std::conditional_t<
        std::is_void_v<R>, nothing,
        std::conditional_t<std::is_reference_v<R>, std::remove_reference_t<R>*, std::optional<R>>>;
    stored stored_{};
};

template <class Fn>
class blocking_call final : public blocking_job {
  public:
    using result_type = std::invoke_result_t<Fn>;

    template <class F>
    explicit blocking_call(F&& f) : fn_(std::in_place, std::forward<F>(f)) {}

    void execute() noexcept override {
        try {
            result_.produce(std::move(*fn_));
        } catch (...) {
            error_ = std::current_exception();
        }
        // What f captured goes now, on the thread that ran it, rather than whenever the caller
        // gets round to collecting the result.
        fn_.reset();
    }

    result_type collect() {
        if (error_) std::rethrow_exception(error_);
        return result_.take();
    }

  private:
    std::optional<Fn> fn_;
    blocking_result<result_type> result_;
};

}  // namespace detail

template <class F>
auto blocking(F&& f) -> std::invoke_result_t<std::decay_t<F>> {
    auto job = std::make_shared<detail::blocking_call<std::decay_t<F>>>(std::forward<F>(f));
    detail::run_blocking(job);
    return job->collect();
}

}  // namespace stackless
