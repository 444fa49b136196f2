// The four workloads of ANCHORS.md on Boost.Fiber 1.74: default round-robin scheduler,
// unbuffered_channel<int>, this_fiber::yield(), and 16 KiB pooled stacks for every fiber.
#include <cmath>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include <boost/fiber/all.hpp>

#include "harness.hpp"

namespace {

namespace fibers = boost::fibers;
using channel = fibers::unbuffered_channel<int>;

// One pool for the whole process (copies of the allocator share it), as a program using pooled
// stacks would have: after the warm-up run the timed runs reuse its stacks.
fibers::pooled_fixedsize_stack& stacks() {
    static fibers::pooled_fixedsize_stack pool(16 * 1024);
    return pool;
}

template <class F>
fibers::fiber launch(F&& f) {
    return fibers::fiber(std::allocator_arg, stacks(), std::forward<F>(f));
}

// The main fiber joins every fiber, so capturing its locals by reference is safe.
void pingpong() {
    channel ping, pong;
    fibers::fiber a = launch([&] {
        for (int i = 0; i < bench::pingpong_round_trips; ++i) {
            ping.push(i);
            pong.value_pop();
        }
    });
    fibers::fiber b = launch([&] {
        for (int i = 0; i < bench::pingpong_round_trips; ++i) pong.push(ping.value_pop());
    });
    a.join();
    b.join();
}

void schedule() {
    std::vector<fibers::fiber> all;
    all.reserve(bench::schedule_tasklets);
    for (int t = 0; t < bench::schedule_tasklets; ++t) {
        all.push_back(launch([] {
            for (int i = 0; i < bench::schedule_yields; ++i) boost::this_fiber::yield();
        }));
    }
    for (fibers::fiber& f : all) f.join();
}

void spawn_run() {
    std::vector<fibers::fiber> all;
    all.reserve(bench::spawn_tasklets);
    for (int t = 0; t < bench::spawn_tasklets; ++t) all.push_back(launch([] {}));
    for (fibers::fiber& f : all) f.join();
}

// Boost's figure is mostly pages of the stack pool: each fiber touches the top page of its stack
// (its context lives there), and boost::pool, growing by doubling blocks, writes a free-list link
// into the bottom page of every chunk of a new block, used or not.
double memory() {
    channel ch;
    int blocked = 0;
    // Everything that is not per-fiber cost exists before the baseline: the scheduler, the
    // stack pool and the (touched) array of fiber handles.
    boost::this_fiber::yield();
    stacks();
    std::vector<fibers::fiber> all(bench::memory_tasklets);

    const double before = bench::resident_bytes();
    for (fibers::fiber& f : all) {
        f = launch([&] {
            ++blocked;  // no other fiber runs between this and blocking in pop()
            int v;
            ch.pop(v);  // returns channel_op_status::closed at the end
        });
    }
    while (blocked < bench::memory_tasklets) boost::this_fiber::yield();
    const double after = bench::resident_bytes();

    ch.close();  // wakes every consumer
    for (fibers::fiber& f : all) f.join();
    return (after - before) / bench::memory_tasklets;
}

// What the fibers of the scale workloads share with the main fiber (which joins them all).
bool stop = false;
long started = 0, yields = 0, received = 0, misordered = 0;

bench::wake_figures wake_k(int k) {
    channel ch;
    // As in memory(): the scheduler, the stack pool and the touched array of handles exist
    // before the baseline.
    boost::this_fiber::yield();
    stacks();
    std::vector<fibers::fiber> all(k);

    const double before = bench::resident_bytes();
    for (fibers::fiber& f : all) {
        f = launch([&] {
            ++started;  // no other fiber runs between this and blocking in pop()
            int v;
            for (int expected = 0; ch.pop(v) == fibers::channel_op_status::success; ++expected) {
                if (v != expected) ++misordered;
                ++received;
            }
        });
    }
    while (started < k) boost::this_fiber::yield();
    const double after = bench::resident_bytes();
    bench::phase("wake: created, all blocked");

    // push() wakes the first waiting consumer and suspends until it has taken the value; the
    // consumer makes main ready and runs on until it blocks in pop() again (at the end of the
    // queue), so each push returns with every consumer blocked.
    const int rounds = bench::scale_rounds(k);
    const double ns = bench::time_rounds(
        bench::scale_figure("wake", k), rounds,
        [&](int r) {
            for (int t = 0; t < k; ++t) ch.push(r);
        },
        [] { return received; });
    const int rounds_run = 2 + (std::isnan(ns) ? 0 : bench::scale_runs * rounds);
    if (received != long(rounds_run) * k || misordered != 0)
        throw std::runtime_error("wake: a fiber missed a value or got one twice");

    ch.close();  // wakes every consumer
    for (fibers::fiber& f : all) f.join();
    bench::phase("wake: ended");
    return {ns, (after - before) / k};
}

double schedule_k(int k) {
    stop = false;
    started = yields = 0;
    std::vector<fibers::fiber> all;
    all.reserve(k);
    for (int t = 0; t < k; ++t) {
        all.push_back(launch([] {
            ++started;
            while (!stop) {
                boost::this_fiber::yield();
                ++yields;
            }
        }));
    }
    while (started < k) boost::this_fiber::yield();
    bench::phase("schedule: created, all started");

    const double ns = bench::time_rounds(
        bench::scale_figure("schedule", k), bench::scale_rounds(k),
        [](int) {
            boost::this_fiber::yield();
            ++yields;
        },
        [] { return yields; });

    stop = true;
    for (fibers::fiber& f : all) f.join();
    bench::phase("schedule: ended");
    return ns;
}

}  // namespace

int main(int argc, char** argv) {
    return bench::run_main(
        argc, argv, {"boost_fiber", pingpong, schedule, spawn_run, memory, wake_k, schedule_k});
}
