// Shared harness of the native benchmarks (bench_ours, bench_boost_fiber): workload sizes,
// timing, median, resident memory and the output format. The workloads are defined in
// /work/shared/ANCHORS.md; bench/go/main.go mirrors this file for Go.
//
// The scale workloads (`--scale K`, one k per process) measure how cost grows with the number k
// of tasklets. Each system's program defines them alike:
//
// schedule_k<k>_ns: k tasklets each loop `while (!stop) { yield(); ++yields; }` (ours
//   stackless::schedule(), Boost this_fiber::yield(), Go runtime.Gosched()). Untimed: create
//   them, let the main tasklet yield until every one has started, then one more round. Timed:
//   `scale_runs` runs in each of which the main tasklet yields `scale_rounds(k)` times, counting
//   its yields too; in a FIFO scheduler each of its yields is a round in which each of the k
//   tasklets yields once. A run's figure is its elapsed time over the yields counted meanwhile
//   (k + 1 per round, main's included) rather than over rounds times k: Go's run queue is not
//   strictly FIFO (Gosched appends to the global queue, which is polled ahead of the local one at
//   every 61st pick), so a round there is k + 1 yields only on average. Boost's dispatcher fiber
//   also takes a turn in every round: part of Boost's cost per yield, not counted as a yield.
//   Untimed again: set stop and let them all end.
//
// wake_k<k>_ns and bytes_k<k>: k tasklets each loop receiving on ONE unbuffered channel (ours
//   stackless::channel<int> with its default preference; Boost unbuffered_channel<int>; Go
//   chan int). bytes_k: resident bytes added per tasklet from before creating them to when all
//   are blocked in receive, first thing in a fresh process (so that no other workload's pools or
//   heap hide in the baseline). Then the main tasklet wakes them in rounds: in round r it sends
//   the value r k times. Channels wake their receivers in FIFO order and a woken tasklet blocks
//   again at the end of the queue, so the k sends of a round reach each tasklet once; each
//   tasklet checks that it receives 0, 1, 2, ... in turn, and the counts are checked afterwards.
//   A round ends with all k blocked again: ours and Boost switch to the receiver at each send and
//   come back once it blocks again; Go's send only makes the receiver runnable, so there main
//   waits after its k sends until the round's last receiver signals it (one more channel
//   operation per round). One untimed round, then `scale_runs` timed runs of `scale_rounds(k)`
//   rounds; a run's figure is ns per wake (elapsed / (rounds * k), the receives counted).
//   Untimed again: release them and let them end.
//
// Each timed figure is the median of its runs. The untimed round before them also checks the
// budget (scale_budget_seconds): a system that would take longer gets no figure, and a note on
// stderr.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <string_view>

#include <unistd.h>

namespace bench {

inline constexpr int pingpong_round_trips = 500'000;
inline constexpr int schedule_tasklets = 100;
inline constexpr int schedule_yields = 5'000;
inline constexpr int spawn_tasklets = 200'000;
inline constexpr int memory_tasklets = 100'000;
inline constexpr int measured_runs = 5;  // per timing workload, after one warm-up run

// Scale workloads: about this many switches (wakes) are timed at every k, in at least 2 rounds.
inline constexpr long scale_operations = 2'000'000;
inline int scale_rounds(int k) {
    return static_cast<int>(std::max(2L, scale_operations / k));
}
inline constexpr int scale_runs = 3;  // timed runs of scale_rounds(k) rounds; the median counts
// The timed runs of a scale workload may take this long at most: a system that would need more
// gets no figure, and a note on stderr, rather than hold up the whole run.
inline constexpr double scale_budget_seconds = 30;

inline std::string scale_figure(std::string_view workload, int k, std::string_view unit = "_ns") {
    return std::string(workload) + "_k" + std::to_string(k) + std::string(unit);
}

inline std::string_view system_name;  // of this program, for notes on stderr

// Nanoseconds that `f()` takes.
template <class F>
double elapsed_ns(F f) {
    auto start = std::chrono::steady_clock::now();
    f();
    std::chrono::duration<double, std::nano> elapsed = std::chrono::steady_clock::now() - start;
    return elapsed.count();
}

// With BENCH_VERBOSE set, the scale workloads tell on stderr when each of their phases ends
// (seconds since the first call), to see where a run's untimed time goes.
inline void phase(std::string_view what) {
    static const auto start = std::chrono::steady_clock::now();
    if (std::getenv("BENCH_VERBOSE") == nullptr) return;
    std::chrono::duration<double> t = std::chrono::steady_clock::now() - start;
    std::fprintf(stderr, "%8.3f s %.*s\n", t.count(), static_cast<int>(what.size()), what.data());
}

// The timed part of a scale workload: round(0) and round(1) untimed, then `scale_runs` timed
// runs of `rounds` rounds each (round(2), round(3), ...). `count()` tells how many operations
// (yields, wakes) have been made so far. Returns the median over the runs of ns per operation
// counted; NaN, with a note on stderr, if by the untimed round's duration the runs would exceed
// scale_budget_seconds (and then they do not run). With BENCH_VERBOSE set, every run is also
// shown on stderr.
template <class F, class C>
double time_rounds(const std::string& figure, int rounds, F round, C count) {
    // Two untimed rounds: the first pays for first starts (pages, pools), so the budget is
    // judged from the second.
    round(0);
    const double untimed = elapsed_ns([&] { round(1); });
    phase(figure + ": untimed rounds");
    if (untimed * rounds * scale_runs > scale_budget_seconds * 1e9) {
        std::fprintf(stderr,
                     "%.*s %s: not measured: the untimed round took %.1f s, so %d timed runs of "
                     "%d rounds would exceed the budget of %.0f s\n",
                     static_cast<int>(system_name.size()), system_name.data(), figure.c_str(),
                     untimed / 1e9, scale_runs, rounds, scale_budget_seconds);
        return std::nan("");
    }
    std::array<double, scale_runs> ns{};
    int next = 2;
    for (double& x : ns) {
        const long before = count();
        const double elapsed = elapsed_ns([&] {
            for (int r = 0; r < rounds; ++r) round(next++);
        });
        x = elapsed / double(count() - before);
    }
    if (std::getenv("BENCH_VERBOSE") != nullptr) {
        std::fprintf(stderr, "%s runs:", figure.c_str());
        for (double x : ns) std::fprintf(stderr, " %.1f", x);
        std::fprintf(stderr, "\n");
    }
    phase(figure + ": timed runs");
    std::sort(ns.begin(), ns.end());
    return ns[scale_runs / 2];
}

// Median over `measured_runs` runs of `workload`, after one warm-up run, in ns per operation.
// The warm-up pays the one-time costs (first touch of stacks and pools, lazy initialisation).
// With BENCH_VERBOSE set in the environment, every run is also shown on stderr, to judge noise.
template <class F>
double median_ns_per_op(std::string_view figure, F workload, double ops) {
    auto once = [&] { return elapsed_ns(workload) / ops; };
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

// What the wake workload at one k found (see the top of this file); NaN: not measured.
struct wake_figures {
    double ns_per_wake;
    double bytes_per_tasklet;
};

// One system's workloads. The timing ones run the whole workload once; `memory` measures, in a
// fresh process, the resident bytes added per blocked tasklet; the scale ones run at one k.
struct suite {
    std::string_view system;
    void (*pingpong)();
    void (*schedule)();
    void (*spawn_run)();
    double (*memory)();
    wake_figures (*wake_k)(int k);
    double (*schedule_k)(int k);  // ns per yield; NaN: not measured
};

// `--scale K`: the wake workload first, so that bytes_k is measured in a fresh process, then
// the schedule workload. A figure that was not measured (NaN) is left out.
inline void run_scale(const suite& s, int k) {
    phase("start");
    auto report_measured = [&](const std::string& figure, double value) {
        if (!std::isnan(value)) report(s.system, figure, value);
    };
    const wake_figures wake = s.wake_k(k);
    report_measured(scale_figure("wake", k), wake.ns_per_wake);
    report_measured(scale_figure("bytes", k, ""), wake.bytes_per_tasklet);
    report_measured(scale_figure("schedule", k), s.schedule_k(k));
}

// main() of a benchmark program: `--time` (default) prints the three timing figures, `--memory`
// the memory figure, `--scale K` the three figures of the scale workloads at k = K. Memory and
// each k get their own process so that nothing an earlier workload left in the heap or in stack
// pools hides in the baseline.
inline int run_main(int argc, char** argv, const suite& s) {
    std::string_view mode = argc > 1 ? argv[1] : "--time";
    system_name = s.system;
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
        } else if (mode == "--scale" && argc > 2 && std::atoi(argv[2]) > 0) {
            run_scale(s, std::atoi(argv[2]));
        } else {
            std::fprintf(stderr, "usage: %s [--time | --memory | --scale K]\n", argv[0]);
            return 2;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
        return 1;
    }
    return 0;
}

}  // namespace bench
