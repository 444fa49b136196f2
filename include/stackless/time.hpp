// Time for tasklets: a tasklet that sleeps leaves the run queue and the others run; when no
// tasklet is runnable the thread sleeps until the nearest deadline (or until a file descriptor
// or another thread wakes one of its tasklets). run() returns only when nothing is runnable,
// sleeping or waiting for I/O.
#pragma once

#include <chrono>
#include <cstdint>

namespace stackless {

// Every deadline in this library is a point of the monotonic clock.
using clock = std::chrono::steady_clock;

// When a blocking operation gives up: a point in time, or never (the default). Built from a
// time point, or from a duration counted from now: `receive_for(...)`, `read_some(buf, n, 2s)`.
class deadline {
  public:
    constexpr deadline() noexcept = default;
    deadline(clock::time_point at) noexcept : ns_(to_ns(at)) {}
    template <class Rep, class Period>
    deadline(std::chrono::duration<Rep, Period> from_now) : ns_(from(from_now)) {}
    static constexpr deadline never() noexcept { return deadline(); }
    // A deadline that has passed: the operation must not block.
    static constexpr deadline passed() noexcept { return deadline(0); }

    constexpr bool is_never() const noexcept { return ns_ == never_ns; }
    // Nanoseconds of the steady clock (for the core).
    constexpr std::int64_t ns() const noexcept { return ns_; }
    clock::time_point at() const noexcept {
        return clock::time_point(
            std::chrono::duration_cast<clock::duration>(std::chrono::nanoseconds(ns_)));
    }
    bool has_passed() const noexcept { return !is_never() && to_ns(clock::now()) >= ns_; }

  private:
    constexpr explicit deadline(std::int64_t ns) noexcept : ns_(ns) {}
    static constexpr std::int64_t never_ns = INT64_MAX;
    template <class Rep, class Period>
    static std::int64_t from(std::chrono::duration<Rep, Period> d) {
        const std::int64_t now = to_ns(clock::now());
        if (d <= d.zero()) return now;
        // (Compared in floating point: the duration may be of any type and far too long.)
        const double ns = std::chrono::duration<double, std::nano>(d).count();
        if (ns >= static_cast<double>(never_ns - now)) return never_ns;
        return now + static_cast<std::int64_t>(ns + 0.999);
    }
    static std::int64_t to_ns(clock::time_point t) noexcept {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    }
    std::int64_t ns_ = never_ns;
};

// The current tasklet sleeps until `until` (the others run meanwhile). A time that has passed
// lets the others run once, as schedule() does. A tasklet killed or thrown into while it sleeps
// leaves the sleep at once with that exception.
void sleep_until(deadline until);
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> duration) {
    sleep_until(deadline(duration));
}

}  // namespace stackless
