// The four workloads of ANCHORS.md on our library, with the scheduler's default configuration.
// Channels are handles: the tasklets capture them by value, so no tasklet refers to a local of
// main (or to another tasklet's stack).
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <stackless/stackless.hpp>

#include "harness.hpp"

namespace {

void pingpong() {
    stackless::channel<int> ping, pong;
    stackless::spawn([ping, pong]() mutable {
        for (int i = 0; i < bench::pingpong_round_trips; ++i) {
            ping.send(i);
            pong.receive();
        }
    });
    stackless::spawn([ping, pong]() mutable {
        for (int i = 0; i < bench::pingpong_round_trips; ++i) pong.send(ping.receive());
    });
    stackless::run();
}

void schedule() {
    for (int t = 0; t < bench::schedule_tasklets; ++t) {
        stackless::spawn([] {
            for (int i = 0; i < bench::schedule_yields; ++i) stackless::schedule();
        });
    }
    stackless::run();
}

void spawn_run() {
    // The returned handles are dropped at once: a scheduled tasklet lives on without them.
    for (int t = 0; t < bench::spawn_tasklets; ++t) stackless::spawn([] {});
    stackless::run();
}

double memory() {
    stackless::channel<int> ch;
    stackless::getruncount();  // creates this thread's scheduler before the baseline

    const double before = bench::resident_bytes();
    for (int t = 0; t < bench::memory_tasklets; ++t) {
        stackless::spawn([ch]() mutable { ch.receive(); });
    }
    stackless::run();  // returns once every tasklet is blocked in receive()
    const double after = bench::resident_bytes();
    if (ch.balance() != -bench::memory_tasklets)
        throw std::runtime_error("memory: not every tasklet is blocked on the channel");

    // Release them: close() does not wake receivers, so give each one a value.
    for (int t = 0; t < bench::memory_tasklets; ++t) ch.send(t);
    stackless::run();
    return (after - before) / bench::memory_tasklets;
}

// What the tasklets of the scale workloads share with the main tasklet: globals, so that no
// tasklet refers to main's stack.
bool stop = false;
long started = 0, yields = 0, received = 0, misordered = 0;

bench::wake_figures wake_k(int k) {
    stackless::channel<int> ch;
    stackless::getruncount();  // creates this thread's scheduler before the baseline

    const double before = bench::resident_bytes();
    for (int t = 0; t < k; ++t) {
        stackless::spawn([ch]() mutable {
            for (int expected = 0;; ++expected) {
                const int v = ch.receive();
                if (v < 0) return;
                if (v != expected) ++misordered;
                ++received;
            }
        });
    }
    stackless::run();  // returns once every tasklet is blocked in receive()
    const double after = bench::resident_bytes();
    bench::phase("wake: created, all blocked");
    if (ch.balance() != -k) throw std::runtime_error("wake: not every tasklet is blocked");

    // Preference 1, as the Python figure and Go's channels do: the sender keeps running and
    // each woken receiver joins the run queue; main then lets them run until all block again.
    // (With the default preference, each send switches to its receiver and back: two switches
    // per wake, as Boost.Fiber's push makes. docs/scaling.md has both figures.)
    ch.set_preference(std::getenv("BENCH_WAKE_PREFERENCE") != nullptr
                          ? std::atoi(std::getenv("BENCH_WAKE_PREFERENCE"))
                          : 1);
    const int rounds = bench::scale_rounds(k);
    const double ns = bench::time_rounds(
        bench::scale_figure("wake", k), rounds,
        [&](int r) {
            for (int t = 0; t < k; ++t) ch.send(r);
            stackless::run();
        },
        [] { return received; });
    const int rounds_run = 2 + (std::isnan(ns) ? 0 : bench::scale_runs * rounds);
    if (received != long(rounds_run) * k || misordered != 0 || ch.balance() != -k)
        throw std::runtime_error("wake: a tasklet missed a value or got one twice");

    for (int t = 0; t < k; ++t) ch.send(-1);
    stackless::run();
    bench::phase("wake: ended");
    return {ns, (after - before) / k};
}

double schedule_k(int k) {
    stop = false;
    started = yields = 0;
    for (int t = 0; t < k; ++t) {
        stackless::spawn([] {
            ++started;
            while (!stop) {
                stackless::schedule();
                ++yields;
            }
        });
    }
    while (started < k) stackless::schedule();
    bench::phase("schedule: created, all started");

    const double ns = bench::time_rounds(
        bench::scale_figure("schedule", k), bench::scale_rounds(k),
        [](int) {
            stackless::schedule();
            ++yields;
        },
        [] { return yields; });

    stop = true;
    stackless::run();
    bench::phase("schedule: ended");
    return ns;
}

}  // namespace

int main(int argc, char** argv) {
    return bench::run_main(argc, argv,
                           {"ours", pingpong, schedule, spawn_run, memory, wake_k, schedule_k});
}
