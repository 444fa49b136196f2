// Stack slots and stack saving: many more tasklets than slots, values on saved stacks survive
// being copied out and back, configure() and stats().
#include <gtest/gtest.h>

#include <algorithm>

#include <array>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;

namespace {

// One level of a recursion whose frames point at their parents: walking the chain after the
// tasklet resumes only works if its stack came back at the same address with the same bytes.
struct frame_link {
    const frame_link* parent;
    int id;
    int level;
    std::array<int, 16> data;
};

// Makes `p` escape, so the compiler cannot assume that schedule() leaves the memory alone (the
// checks below would otherwise be folded away).
[[gnu::noinline]] void escape(const void* p) {
    asm volatile("" : : "g"(p) : "memory");
}

int expected_data(int id, int level, int i) {
    return id * 1000 + level * 16 + i;
}

bool chain_intact(const frame_link* f, int id, int level) {
    for (; f != nullptr; f = f->parent, --level) {
        if (f->id != id || f->level != level) return false;
        for (int i = 0; i < 16; ++i)
            if (f->data[i] != expected_data(id, level, i)) return false;
    }
    return level == -1;
}

// Recurses to `depth`, yields `yields` times at the bottom, checks every frame on the way back.
// Returns the number of checks that failed.
[[gnu::noinline]] int dive(int id, int level, int depth, const frame_link* parent, int yields) {
    frame_link me{parent, id, level, {}};
    for (int i = 0; i < 16; ++i) me.data[i] = expected_data(id, level, i);
    const std::string short_text = std::string("L").append(std::to_string(level));  // small: inline
    const std::string long_text(64 + level, char('a' + id % 26));
    const std::vector<int> numbers(level + 1, id);
    volatile int scalar = id ^ level;
    escape(&me);
    escape(&short_text);
    escape(&long_text);
    escape(&numbers);

    int failures = 0;
    if (level == depth) {
        for (int y = 0; y < yields; ++y) {
            schedule();
            if (!chain_intact(&me, id, level)) ++failures;
        }
    } else {
        failures += dive(id, level + 1, depth, &me, yields);
    }
    if (!chain_intact(&me, id, level)) ++failures;
    if (short_text != std::string("L").append(std::to_string(level))) ++failures;
    if (long_text != std::string(64 + level, char('a' + id % 26))) ++failures;
    if (numbers != std::vector<int>(level + 1, id)) ++failures;
    if (scalar != (id ^ level)) ++failures;
    return failures;
}

TEST(Stacks, ThousandTaskletsOnFourSlotsKeepTheirLocals) {
    in_fresh_thread(scheduler_config{64 * 1024, 4, 4}, [] {
        constexpr int count = 1000, yields = 3;
        const std::size_t baseline_live = stats().live_tasklets;
        std::vector<int> failures(count, -1);
        for (int id = 0; id < count; ++id)
            spawn([&failures](int me) { failures[me] = dive(me, 0, 5 + me % 20, nullptr, yields); },
                  id);
        schedule();  // every tasklet starts, recurses and yields once; then main is back

        scheduler_stats mid = stats();
        EXPECT_EQ(mid.live_tasklets, baseline_live + count);
        EXPECT_GT(mid.stacks_saved, 0u);
        EXPECT_GT(mid.saved_stack_bytes, 0u);
        EXPECT_LE(mid.slots_mapped, 4u);
        EXPECT_GE(mid.slots_mapped, 1u);

        stackless::run();
        for (int id = 0; id < count; ++id) ASSERT_EQ(failures[id], 0) << "tasklet " << id;

        scheduler_stats end = stats();
        EXPECT_EQ(end.live_tasklets, baseline_live);
        EXPECT_EQ(end.saved_stack_bytes, 0u);
        EXPECT_LE(end.slots_mapped, 4u);
        EXPECT_GE(end.stacks_saved, std::uint64_t(2 * count));  // at least twice per tasklet
        EXPECT_EQ(end.stacks_restored, end.stacks_saved);       // every saved stack came back
        expect_idle_scheduler();
    });
}

// More runnable tasklets than max_stack_slots (24: more than the overflow window of 16 slots
// that stacks are then copied through): every tasklet's frames come back intact at every turn.
TEST(Stacks, RunnableTaskletsBeyondTheSlotMaximumKeepTheirLocals) {
    in_fresh_thread(scheduler_config{64 * 1024, 4, 24}, [] {
        constexpr int count = 3000, yields = 4;
        std::vector<int> failures(count, -1);
        for (int id = 0; id < count; ++id)
            spawn([&failures](int me) { failures[me] = dive(me, 0, 2 + me % 12, nullptr, yields); },
                  id);
        stackless::run();
        for (int id = 0; id < count; ++id) ASSERT_EQ(failures[id], 0) << "tasklet " << id;
        scheduler_stats s = stats();
        EXPECT_EQ(s.slots_mapped, 24u);  // all runnable: slots were added up to the maximum
        // (all but the tasklets that found a slot at their turn were copied out at every yield)
        EXPECT_GE(s.stacks_saved, std::uint64_t((count - 24) * yields));
        EXPECT_EQ(s.stacks_restored, s.stacks_saved);
        EXPECT_EQ(s.saved_stack_bytes, 0u);
        EXPECT_EQ(s.stacks_discarded, 0u);
        EXPECT_EQ(s.live_tasklets, 0u);
        expect_idle_scheduler();
    });
}

// Regression (ASan builds): a tasklet switched out where the next one was resident (the fast
// path: its deepest frame is schedule()'s) had its stack restored into a slot where another
// tasklet had been switched out in transfer_slow (a frame deeper), whose ASan redzones were left
// poisoned below the restored frames; the exception the restored tasklet then raised had ASan's
// __asan_handle_no_return call sigaltstack with a local there, reported as a stack-buffer-
// overflow. stack_pool::restore now unpoisons the whole slot.
TEST(Stacks, AnExceptionRaisedOnAStackRestoredAboveADeeperOnesFrames) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        std::vector<std::string> log;
        auto body = [&log](std::string name) {
            try {
                schedule();
                log.push_back(name + " returned");
            } catch (const std::runtime_error& e) {
                log.push_back(name + " caught " + e.what());
            }
        };
        // T starts on slot 0 and switches to main, which is resident: the fast path.
        tasklet t = spawn(body, std::string("T"));
        schedule();
        t.remove();
        spawn(body, std::string("U1"));
        spawn(body, std::string("U2"));
        t.raise_exception(std::runtime_error("pending"), true);  // T is queued again, last
        // U1 starts on slot 1; U2 needs a slot: T's stack is saved, U2 starts on slot 0 and
        // switches to T in transfer_slow, leaving that frame below where T's frames come back.
        stackless::run();
        EXPECT_EQ(log, (std::vector<std::string>{"T caught pending", "U1 returned", "U2 returned"}));
        EXPECT_GT(stats().stacks_restored, 0u);
        expect_idle_scheduler();
    });
}

TEST(Stacks, LargeStackContentsSurviveSaving) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        constexpr int count = 40, yields = 5;
        int bad = 0;
        for (int id = 0; id < count; ++id)
            spawn(
                [&bad](int me) {
                    unsigned char buffer[16 * 1024];
                    for (std::size_t i = 0; i < sizeof buffer; ++i)
                        buffer[i] = static_cast<unsigned char>(i * 7 + me);
                    escape(buffer);
                    for (int y = 0; y < yields; ++y) {
                        schedule();
                        for (std::size_t i = 0; i < sizeof buffer; ++i)
                            if (buffer[i] != static_cast<unsigned char>(i * 7 + me)) {
                                ++bad;
                                break;
                            }
                    }
                },
                id);
        stackless::run();
        EXPECT_EQ(bad, 0);
        scheduler_stats s = stats();
        EXPECT_GT(s.stacks_saved, 0u);
        EXPECT_EQ(s.saved_stack_bytes, 0u);
        EXPECT_LE(s.slots_mapped, 2u);
    });
}

TEST(Stacks, FewerTaskletsThanSlotsNeverSave) {
    in_fresh_thread(scheduler_config{64 * 1024, 8, 8}, [] {
        int steps = 0;
        for (int i = 0; i < 4; ++i)
            spawn([&] {
                for (int r = 0; r < 10; ++r) {
                    ++steps;
                    schedule();
                }
            });
        stackless::run();
        EXPECT_EQ(steps, 40);
        scheduler_stats s = stats();
        EXPECT_EQ(s.stacks_saved, 0u);
        EXPECT_EQ(s.stacks_restored, 0u);
        EXPECT_EQ(s.saved_stack_bytes, 0u);
        EXPECT_LE(s.slots_mapped, 8u);
        EXPECT_GE(s.slots_mapped, 1u);
    });
}

TEST(Stacks, SlotsOfEndedTaskletsAreReused) {
    in_fresh_thread(scheduler_config{64 * 1024, 4, 4}, [] {
        int ran = 0;
        for (int batch = 0; batch < 100; ++batch) {
            spawn([&] {
                schedule();
                ++ran;
            });
            spawn([&] {
                schedule();
                ++ran;
            });
            stackless::run();
        }
        EXPECT_EQ(ran, 200);
        scheduler_stats s = stats();
        EXPECT_EQ(s.stacks_saved, 0u);
        EXPECT_LE(s.slots_mapped, 4u);
    });
}

// Regression: a slot freed by a tasklet that ended went to the free list; a tasklet whose stack
// had been saved from that slot earlier moved back in; the slot was then handed to a new tasklet
// as if free, and the returning tasklet resumed on someone else's stack. Listing 3's pattern
// (tasklets that end at different times while others wait) with few slots triggers it.
TEST(Stacks, SlotsFreedWhileSavedStacksReturnAreNotGivenTwice) {
    in_fresh_thread(scheduler_config{64 * 1024, 4, 4}, [] {
        for (int round = 0; round < 3; ++round) {
            channel<int> ch;
            std::vector<int> numbers;
            for (int i = 0; i < 64; ++i) numbers.push_back((i * 37) % 64);
            for (int n : numbers) {
                spawn(
                    [ch](int n) mutable {
                        volatile char pad[256];
                        pad[0] = static_cast<char>(n);
                        for (int i = 0; i < n; ++i) schedule();
                        ch.send(n + pad[0] - static_cast<char>(n));
                    },
                    n);
            }
            stackless::run();
            std::vector<int> received;
            while (ch.balance() > 0) received.push_back(ch.receive());
            std::vector<int> sorted = numbers;
            std::sort(sorted.begin(), sorted.end());
            EXPECT_EQ(received, sorted) << "round " << round;
            stackless::run();  // the senders end
        }
        EXPECT_GT(stats().stacks_restored, 0u);
    });
}

// When every slot holds a runnable tasklet, more slots are mapped (up to max_stack_slots) rather
// than copying stacks at every turn; blocked tasklets are the ones whose stacks get saved.
TEST(Stacks, RunnableTaskletsGetMoreSlotsBlockedOnesAreSaved) {
    in_fresh_thread(scheduler_config{64 * 1024, 4, 64}, [] {
        int turns = 0;
        for (int i = 0; i < 32; ++i) {
            spawn([&turns] {
                for (int k = 0; k < 10; ++k) {
                    ++turns;
                    schedule();
                }
            });
        }
        stackless::run();
        EXPECT_EQ(turns, 320);
        EXPECT_EQ(stats().stacks_saved, 0u);
        EXPECT_GE(stats().slots_mapped, 32u);
        EXPECT_LE(stats().slots_mapped, 64u);

        channel<int> ch;
        for (int i = 0; i < 200; ++i) spawn([ch]() mutable { ch.receive(); });
        stackless::run();
        EXPECT_EQ(ch.balance(), -200);
        EXPECT_LE(stats().slots_mapped, 64u);  // the blocked ones were saved instead
        EXPECT_GT(stats().stacks_saved, 100u);
        for (int i = 0; i < 200; ++i) ch.send(i);
        stackless::run();
    });
}

TEST(Stacks, HundredThousandTaskletsBlockedOnOneChannel) {
    in_fresh_thread(scheduler_config{64 * 1024, 16, 16}, [] {
        constexpr int count = 100000;
        const std::size_t baseline_live = stats().live_tasklets;
        channel<int> ch;
        std::vector<int> got(count, -1);
        for (int i = 0; i < count; ++i) spawn([&got, &ch](int me) { got[me] = ch.receive(); }, i);
        stackless::run();
        ASSERT_EQ(ch.balance(), -count);
        scheduler_stats blocked = stats();
        EXPECT_EQ(blocked.live_tasklets, baseline_live + count);
        EXPECT_GT(blocked.saved_stack_bytes, 0u);
        EXPECT_LE(blocked.slots_mapped, 16u);

        for (int v = 0; v < count; ++v) ch.send(v);
        EXPECT_EQ(ch.balance(), 0);
        for (int i = 0; i < count; ++i) ASSERT_EQ(got[i], i) << "receiver " << i;

        scheduler_stats end = stats();
        EXPECT_EQ(end.live_tasklets, baseline_live);
        EXPECT_EQ(end.saved_stack_bytes, 0u);
        expect_idle_scheduler();
    });
}

TEST(Stacks, SwitchesAreCounted) {
    in_fresh_thread([] {
        const std::uint64_t before = stats().switches;
        for (int i = 0; i < 2; ++i)
            spawn([] {
                for (int r = 0; r < 10; ++r) schedule();
            });
        stackless::run();
        // main -> a, then a and b alternate 10 times each, then back to main
        EXPECT_GE(stats().switches - before, 20u);
        EXPECT_LE(stats().switches - before, 30u);
    });
}

TEST(Stacks, ConfigureAfterFirstUseIsError) {
    in_fresh_thread([] {
        (void)getcurrent();
        EXPECT_THROW(configure(scheduler_config{64 * 1024, 4, 4}), stackless::error);
        // the scheduler keeps working
        int ran = 0;
        spawn([&] { ++ran; });
        stackless::run();
        EXPECT_EQ(ran, 1);
    });
}

TEST(Stacks, ConfigureRejectsFewerThanTwoSlots) {
    in_fresh_thread([] { EXPECT_ANY_THROW(configure(scheduler_config{64 * 1024, 1})); });
}

TEST(Stacks, ConfigureIsPerThread) {
    std::uint64_t saved_small = 0, saved_large = 0;
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [&] {
        for (int i = 0; i < 8; ++i) spawn([] { schedule(); });
        stackless::run();
        saved_small = stats().stacks_saved;
    });
    in_fresh_thread(scheduler_config{64 * 1024, 16, 16}, [&] {
        for (int i = 0; i < 8; ++i) spawn([] { schedule(); });
        stackless::run();
        saved_large = stats().stacks_saved;
    });
    EXPECT_GT(saved_small, 0u);
    EXPECT_EQ(saved_large, 0u);
}

}  // namespace

namespace {

// tasklet_hooks::discard_stack: a binding that can go on without a blocked tasklet's stack has
// it dropped instead of copied to the heap; the tasklet's function then starts again on a new
// stack when the tasklet runs, and finds an exception thrown in meanwhile with
// take_pending_exception().
struct restartable {
    int starts = 0;
    bool discardable = true;
    int value = 0;
    bool saw_exit = false;
};

bool discard_if_allowed(void* payload) noexcept {
    return static_cast<restartable*>(payload)->discardable;
}

const tasklet_hooks restart_hooks{nullptr, nullptr, nullptr, false, &discard_if_allowed};

TEST(Stacks, ADiscardableStackIsDroppedAndTheFunctionStartsAgain) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        channel<int> ch;
        std::vector<restartable> states(6);
        std::vector<tasklet> ts;
        for (restartable& r : states) {
            tasklet t;
            t.bind(
                [&ch, &r](int) {
                    ++r.starts;
                    if (r.starts == 1) {
                        r.value = ch.receive();  // blocks; its stack may be dropped meanwhile
                        return;
                    }
                    // Started again: what a binding does to go on without the old stack.
                    if (std::exception_ptr e = take_pending_exception()) {
                        try {
                            std::rethrow_exception(e);
                        } catch (const tasklet_exit&) {
                            r.saw_exit = true;
                            throw;
                        }
                    }
                    r.value = channel<int>::take_delivered().value_or(-1);
                },
                0);
            t.set_hooks(&restart_hooks, &r);
            t.insert();
            ts.push_back(t);
        }
        stackless::run();
        EXPECT_EQ(ch.balance(), -6);
        // Two slots for main and six tasklets: at least four stacks were dropped, none saved.
        EXPECT_GE(stats().stacks_discarded, 4u);
        EXPECT_EQ(stats().stacks_saved, 0u);
        for (int i = 0; i < 5; ++i) ch.send(100 + i);
        ts[5].kill();
        stackless::run();
        int restarted = 0;
        for (int i = 0; i < 5; ++i) {
            // Whether its stack was dropped (it started twice) or kept, it got its value.
            EXPECT_EQ(states[i].value, 100 + i);
            restarted += states[i].starts == 2;
            EXPECT_FALSE(ts[i].alive());
        }
        EXPECT_GE(restarted, 4);
        EXPECT_FALSE(ts[5].alive());
        EXPECT_TRUE(states[5].saw_exit || states[5].starts == 1);
        expect_idle_scheduler();
    });
}

TEST(Stacks, AStackIsSavedWhenItsBindingCannotDoWithoutIt) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        channel<int> ch;
        std::vector<restartable> states(4);
        std::vector<int> got;
        for (restartable& r : states) {
            r.discardable = false;
            tasklet t;
            t.bind([&ch, &got](int) { got.push_back(ch.receive()); }, 0);
            t.set_hooks(&restart_hooks, &r);
            t.insert();
        }
        stackless::run();
        EXPECT_EQ(stats().stacks_discarded, 0u);
        EXPECT_GT(stats().stacks_saved, 0u);
        for (int i = 0; i < 4; ++i) ch.send(i);
        stackless::run();
        EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
        expect_idle_scheduler();
    });
}

}  // namespace
