// The four workloads of ANCHORS.md on Boost.Fiber 1.74: default round-robin scheduler,
// unbuffered_channel<int>, this_fiber::yield(), and 16 KiB pooled stacks for every fiber.
#include <memory>
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

}  // namespace

int main(int argc, char** argv) {
    return bench::run_main(argc, argv, {"boost_fiber", pingpong, schedule, spawn_run, memory});
}
