// The Boost.Fiber peer of the timer benchmark (bench/timers/run.sh): N fibers (default
// 1,000,000; TIMER_COUNT or the first argument overrides) each sleep a uniformly random time in
// [0, 1) s with boost::this_fiber::sleep_for, on the default round-robin scheduler of this one
// thread. Prints `cpp boost_fiber timer_overhead_ns`, `timer_bytes_per_sleeper` and
// `timer_cpu_ns_per_timer` (definitions in bench/timers/run.sh).
//
// Stacks: 8 KiB each from boost::fibers::fixedsize_stack (malloc), the smallest that works. A
// fiber here uses 6.0 KiB of its stack at most (6,184 bytes, measured by painting the stacks:
// Boost puts the fiber's control block at the top of its stack, then come the frames of
// sleep_for down to the context switch, and at the end those of the fiber's exit). Larger
// stacks cost the same resident memory while sleeping (only touched pages count) but more time:
// free() then writes into the untouched bottom page of each stack, a page fault (12 us on this
// machine's VM). pooled_fixedsize_stack(8 KiB) costs more memory (9.5 KB per sleeper against
// 5.2 KB): boost::pool links every chunk of a new block into its free list, touching each.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <boost/fiber/all.hpp>

namespace {

using steady = std::chrono::steady_clock;

std::int64_t ns_since(steady::time_point base) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - base).count();
}

std::int64_t cpu_ns() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// VmRSS of /proc/self/status, in bytes.
double resident_bytes() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) * 1024;
    std::fprintf(stderr, "timer_boost_fiber: no VmRSS in /proc/self/status\n");
    std::exit(1);
}

long sleeper_count(int argc, char** argv) {
    const char* text = argc > 1 ? argv[1] : std::getenv("TIMER_COUNT");
    long n = text ? std::strtol(text, nullptr, 10) : 1'000'000;
    if (n < 1) {
        std::fprintf(stderr, "usage: timer_boost_fiber [count]   (or TIMER_COUNT)\n");
        std::exit(2);
    }
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    const long count = sleeper_count(argc, argv);
    // Everything that is not per sleeper exists and is touched before the baseline: the
    // durations (fixed seed), the records, the fiber handles, the scheduler and the pool.
    std::vector<std::int64_t> duration(count), deadline(count), finished(count);
    std::mt19937_64 random(1);
    std::uniform_int_distribution<std::int64_t> uniform(0, 999'999'999);
    for (std::int64_t& d : duration) d = uniform(random);
    std::vector<boost::fibers::fiber> fibers(count);
    boost::fibers::fixedsize_stack stacks(8 * 1024);
    boost::this_fiber::yield();
    long started = 0, woken = 0;
    const steady::time_point base = steady::now();

    const double rss_before = resident_bytes();
    const std::int64_t cpu_before = cpu_ns();
    for (long i = 0; i < count; ++i) {
        fibers[i] = boost::fibers::fiber(std::allocator_arg, stacks, [&, i] {
            ++started;
            deadline[i] = ns_since(base) + duration[i];
            boost::this_fiber::sleep_for(std::chrono::nanoseconds(duration[i]));
            finished[i] = ns_since(base);
            ++woken;
        });
    }
    // Fibers launched by the main fiber run when it yields: it is then behind all of them in
    // the ready queue, so one yield normally suffices.
    while (started < count) boost::this_fiber::yield();
    const double rss_sleeping = resident_bytes();
    std::fprintf(stderr, "timer_boost_fiber: %ld of %ld asleep when memory was sampled\n",
                 count - woken, count);
    for (boost::fibers::fiber& f : fibers) f.join();
    const std::int64_t cpu_after = cpu_ns();

    const std::int64_t last_deadline = *std::max_element(deadline.begin(), deadline.end());
    const std::int64_t last_finish = *std::max_element(finished.begin(), finished.end());
    std::printf("cpp boost_fiber timer_overhead_ns %.1f\n",
                double(last_finish - last_deadline) / double(count));
    std::printf("cpp boost_fiber timer_bytes_per_sleeper %.1f\n",
                (rss_sleeping - rss_before) / double(count));
    std::printf("cpp boost_fiber timer_cpu_ns_per_timer %.1f\n",
                double(cpu_after - cpu_before) / double(count));
    return 0;
}
