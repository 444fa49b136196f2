// 1,000,000 tasklets, each sleeping a random time in [0, 1) s (fixed seed), for the timer
// figures of `make bench` (the same workload as the Go and Boost.Fiber programs beside it):
//   cpp ours timer_overhead_ns <v>      (end of the last wake-up - latest deadline) / count
//   cpp ours timer_bytes_per_sleeper <v> (RSS with all asleep - RSS before) / count, measured
//                                        first, in a run where all sleep until one deadline
//   cpp ours timer_cpu_ns_per_timer <v>  process CPU time from first spawn to the end / count
// TIMER_COUNT overrides the count.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "stackless/stackless.hpp"

namespace {

long rss_bytes() {
    std::ifstream status("/proc/self/status");
    std::string key;
    long kib = 0;
    while (status >> key) {
        if (key == "VmRSS:") {
            status >> kib;
            break;
        }
    }
    return kib * 1024;
}

std::int64_t cpu_ns() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

int main() {
    const char* env = std::getenv("TIMER_COUNT");
    const int count = env != nullptr ? std::atoi(env) : 1'000'000;
    std::mt19937_64 random(20261208);
    std::uniform_int_distribution<std::int64_t> nanos(0, 999'999'999);
    std::vector<std::int64_t> sleep_ns(static_cast<std::size_t>(count));
    for (auto& ns : sleep_ns) ns = nanos(random);

    // Memory: every sleeper asleep at once (until a deadline far away; they are killed once
    // measured).
    std::vector<stackless::tasklet> sleepers;
    sleepers.reserve(static_cast<std::size_t>(count));
    const long rss_before = rss_bytes();
    long rss_all_asleep = 0;
    {
        const auto far = stackless::clock::now() + std::chrono::minutes(10);
        int asleep = 0;
        for (int i = 0; i < count; ++i)
            sleepers.push_back(stackless::spawn([&] {
                if (++asleep == count) rss_all_asleep = rss_bytes();
                stackless::sleep_until(far);
            }));
        while (asleep < count) stackless::sleep_for(std::chrono::milliseconds(10));
        for (stackless::tasklet& t : sleepers) t.kill(/*pending=*/true);
        stackless::run();
        sleepers.clear();
    }

    // Overhead: each sleeper sleeps its own random time from when it starts.
    const std::int64_t cpu_start = cpu_ns();
    stackless::clock::time_point latest{};
    int woken = 0;
    for (int i = 0; i < count; ++i) {
        stackless::spawn([&, ns = sleep_ns[static_cast<std::size_t>(i)]] {
            const auto at = stackless::clock::now() + std::chrono::nanoseconds(ns);
            latest = std::max(latest, at);
            stackless::sleep_until(at);
            ++woken;
        });
    }
    stackless::run();
    const auto end = stackless::clock::now();
    const std::int64_t cpu = cpu_ns() - cpu_start;
    if (woken != count) {
        std::fprintf(stderr, "timers: %d of %d sleepers woke\n", woken, count);
        return 1;
    }
    const double overhead = std::chrono::duration<double, std::nano>(end - latest).count() / count;
    std::printf("cpp ours timer_overhead_ns %.1f\n", overhead);
    std::printf("cpp ours timer_bytes_per_sleeper %.1f\n",
                static_cast<double>(rss_all_asleep - rss_before) / count);
    std::printf("cpp ours timer_cpu_ns_per_timer %.1f\n", static_cast<double>(cpu) / count);
    return 0;
}
