// The four workloads of ANCHORS.md on our library, with the scheduler's default configuration.
// Channels are handles: the tasklets capture them by value, so no tasklet refers to a local of
// main (or to another tasklet's stack).
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

}  // namespace

int main(int argc, char** argv) {
    return bench::run_main(argc, argv, {"ours", pingpong, schedule, spawn_run, memory});
}
