// Shared harness of the native benchmarks (bench_ours, bench_boost_fiber): workload sizes,
// timing, median, resident memory and the output format. The workloads are defined in
// /work/shared/ANCHORS.md; bench/go/main.go mirrors this file for Go.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string_view>

#include <unistd.h>

namespace bench {

inline constexpr int pingpong_round_trips = 500'000;
inline constexpr int schedule_tasklets = 100;
inline constexpr int schedule_yields = 5'000;
inline constexpr int spawn_tasklets = 200'000;
inline constexpr int memory_tasklets = 100'000;
inline constexpr int measured_runs = 5;  // per timing workload, after one warm-up run

// Median over `measured_runs` runs of `workload`, after one warm-up run, in ns per operation.
// The warm-up pays the one-time costs (first touch of stacks and pools, lazy initialisation).
// With BENCH_VERBOSE set in the environment, every run is also shown on stderr, to judge noise.
template <class F>
double median_ns_per_op(std::string_view figure, F workload, double ops) {
    auto once = [&] {
        auto start = std::chrono::steady_clock::now();
        workload();
        std::chrono::duration<double, std::nano> elapsed = std::chrono::steady_clock::now() - start;
        return elapsed.count() / ops;
    };
    once();
    std::array<double, measured_runs> ns{};
    for (double& x : ns) x = once();
    if (std::getenv("BENCH_VERBOSE") != nullptr) {
        std::fprintf(stderr, "%.*s runs:", static_cast<int>(figure.size()), figure.data());
        for (double x : ns) std::fprintf(stderr, " %.1f", x);
        std::fprintf(stderr, "\n");
    }
    std::sort(ns.begin(), ns.end());
    return ns[measured_runs / 2];
}

// Resident set size of this process in bytes: the second field of /proc/self/statm, in pages.
inline double resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = 0;
    statm >> size >> resident;
    return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

inline void report(std::string_view system, std::string_view figure, double value) {
    std::printf("cpp %.*s %.*s %.1f\n", static_cast<int>(system.size()), system.data(),
                static_cast<int>(figure.size()), figure.data(), value);
    std::fflush(stdout);  // keep the lines already printed if a later workload crashes
}

// One system's workloads. The timing ones run the whole workload once; `memory` measures, in a
// fresh process, the resident bytes added per blocked tasklet.
struct suite {
    std::string_view system;
    void (*pingpong)();
    void (*schedule)();
    void (*spawn_run)();
    double (*memory)();
};

// main() of a benchmark program: `--time` (default) prints the three timing figures, `--memory`
// the memory figure. Memory gets its own process so that nothing the timing runs left in the
// heap or in stack pools hides in the baseline.
inline int run_main(int argc, char** argv, const suite& s) {
    std::string_view mode = argc > 1 ? argv[1] : "--time";
    try {
        if (mode == "--time") {
            auto timed = [&](std::string_view figure, void (*workload)(), double ops) {
                report(s.system, figure, median_ns_per_op(figure, workload, ops));
            };
            timed("pingpong_ns_per_transfer", s.pingpong, 2.0 * pingpong_round_trips);
            timed("schedule_ns_per_switch", s.schedule,
                  double(schedule_tasklets) * schedule_yields);
            timed("spawn_run_ns_per_tasklet", s.spawn_run, spawn_tasklets);
        } else if (mode == "--memory") {
            report(s.system, "memory_bytes_per_blocked_tasklet", s.memory());
        } else {
            std::fprintf(stderr, "usage: %s [--time | --memory]\n", argv[0]);
            return 2;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
        return 1;
    }
    return 0;
}

}  // namespace bench
