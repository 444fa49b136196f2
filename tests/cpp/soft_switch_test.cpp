// Soft switching in the core (scheduler.cpp transfer_slow, try_discard): a tasklet that needs a
// fresh stack when no slot is free takes the running tasklet's slot if that one has ended or its
// binding can go on without its stack (tasklet_hooks::discard_stack); nothing is copied. And, with
// no hooks, copying through the overflow window once the slot maximum is reached, at scale.
#include <gtest/gtest.h>

#include <exception>
#include <string>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;

namespace {

// An exception that carries a number, thrown into tasklets.
struct tagged {
    int value;
};

// The state of a tasklet whose function can start again after its stack was dropped: it
// lives outside the stack, as a binding's does (the CPython binding's frames).
struct restartable {
    int id = 0;
    int steps = 0;         // schedule() calls to make
    int step = 0;          // made so far
    int starts = 0;        // times the function started (1 + the drops it went on from)
    bool discardable = true;
    int caught = -1;       // tagged::value caught, or -1
    bool saw_exit = false;
    std::vector<int>* log = nullptr;
};

bool discard_if_allowed(void* payload) noexcept {
    return static_cast<restartable*>(payload)->discardable;
}

const tasklet_hooks restart_hooks{nullptr, nullptr, nullptr, false, &discard_if_allowed};

// Logs id * 1000 + step and calls schedule() `steps` times. Started again after a drop, it goes
// on from the step it had reached, first raising what was thrown into it meanwhile (which a
// tasklet that kept its stack gets from schedule() itself): the same behaviour either way.
void restartable_body(restartable& r) {
    ++r.starts;
    try {
        if (std::exception_ptr e = take_pending_exception()) std::rethrow_exception(e);
        while (r.step < r.steps) {
            r.log->push_back(r.id * 1000 + r.step);
            ++r.step;
            schedule();
        }
    } catch (const tagged& t) {
        r.caught = t.value;
    } catch (const tasklet_exit&) {
        r.saw_exit = true;
        throw;
    }
}

tasklet start_restartable(restartable& r) {
    tasklet t;
    t.bind([&r](int) { restartable_body(r); }, 0);
    t.set_hooks(&restart_hooks, &r);
    t.insert();
    return t;
}

std::vector<int> round_robin(int count, int steps) {
    std::vector<int> expected;
    for (int s = 0; s < steps; ++s)
        for (int id = 0; id < count; ++id) expected.push_back(id * 1000 + s);
    return expected;
}

std::uint64_t restarts(const std::vector<restartable>& states) {
    std::uint64_t n = 0;
    for (const restartable& r : states) n += static_cast<std::uint64_t>(r.starts - 1);
    return n;
}

TEST(SoftSwitch, TheRunningTaskletsStackIsDroppedAndTheNextStartsOnItsSlot) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        constexpr int count = 300, steps = 6;
        std::vector<int> log;
        std::vector<restartable> states(count);
        std::vector<tasklet> ts;
        for (int id = 0; id < count; ++id) {
            states[id].id = id;
            states[id].steps = steps;
            states[id].log = &log;
            ts.push_back(start_restartable(states[id]));
        }
        stackless::run();
        EXPECT_EQ(log, round_robin(count, steps));
        scheduler_stats s = stats();
        // Every slot holds a runnable tasklet, yet nothing was copied and no slot was added: the
        // running tasklet's stack was dropped and the next one started on its slot.
        EXPECT_EQ(s.stacks_saved, 0u);
        EXPECT_EQ(s.slots_mapped, 2u);
        EXPECT_GE(s.stacks_discarded, std::uint64_t((count - 2) * steps));
        // Each drop made exactly one more start.
        EXPECT_EQ(s.stacks_discarded, restarts(states));
        for (int id = 0; id < count; ++id) {
            EXPECT_EQ(states[id].step, steps);
            EXPECT_FALSE(ts[id].alive());
        }
        EXPECT_EQ(s.live_tasklets, 0u);
        expect_idle_scheduler();
    });
}

TEST(SoftSwitch, TaskletsThatKeepTheirStacksAreCopiedWhileTheOthersSoftSwitch) {
    in_fresh_thread(scheduler_config{64 * 1024, 4, 8}, [] {
        constexpr int count = 400, steps = 5;
        std::vector<int> log;
        std::vector<restartable> states(count);
        std::vector<int> bad(count, 0);
        for (int id = 0; id < count; ++id) {
            restartable& r = states[id];
            r.id = id;
            r.steps = steps;
            r.log = &log;
            if (id % 2 == 0) {
                start_restartable(r);
                continue;
            }
            // Cannot go on without its stack: a local on it must survive the copies.
            r.discardable = false;
            tasklet t;
            t.bind(
                [&r, &bad](int) {
                    ++r.starts;
                    volatile int local[64];
                    for (int i = 0; i < 64; ++i) local[i] = r.id * 64 + i;
                    while (r.step < r.steps) {
                        r.log->push_back(r.id * 1000 + r.step);
                        ++r.step;
                        schedule();
                        for (int i = 0; i < 64; ++i)
                            if (local[i] != r.id * 64 + i) ++bad[r.id];
                    }
                },
                0);
            t.set_hooks(&restart_hooks, &r);
            t.insert();
        }
        stackless::run();
        EXPECT_EQ(log, round_robin(count, steps));
        EXPECT_EQ(bad, std::vector<int>(count, 0));
        scheduler_stats s = stats();
        EXPECT_GT(s.stacks_saved, 0u);
        EXPECT_GT(s.stacks_discarded, 0u);
        EXPECT_EQ(s.stacks_restored, s.stacks_saved);
        EXPECT_EQ(s.saved_stack_bytes, 0u);
        EXPECT_LE(s.slots_mapped, 8u);
        EXPECT_EQ(s.stacks_discarded, restarts(states));
        for (int id = 1; id < count; id += 2) EXPECT_EQ(states[id].starts, 1);
        expect_idle_scheduler();
    });
}

TEST(SoftSwitch, NoStackIsDroppedWhileAnExceptionIsBeingHandledOnIt) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        constexpr int count = 100, steps = 4;
        std::vector<int> log;
        std::vector<restartable> states(count);
        std::vector<std::string> seen(count);
        for (int id = 0; id < count; ++id) {
            restartable& r = states[id];
            r.id = id;
            r.steps = steps;
            r.log = &log;
            if (id % 2 == 0) {
                start_restartable(r);
                continue;
            }
            // Switches inside a catch block: the C++ runtime's exception is on its stack, so it
            // is copied even though its binding would let it go (scheduler::try_discard).
            tasklet t;
            t.bind(
                [&r, &seen](int) {
                    ++r.starts;
                    try {
                        try {
                            throw std::runtime_error("handled " + std::to_string(r.id));
                        } catch (const std::exception& e) {
                            while (r.step < r.steps) {
                                r.log->push_back(r.id * 1000 + r.step);
                                ++r.step;
                                schedule();
                            }
                            seen[r.id] = e.what();
                            throw;
                        }
                    } catch (const std::runtime_error& again) {
                        seen[r.id] += std::string(" / ") + again.what();
                    }
                },
                0);
            t.set_hooks(&restart_hooks, &r);
            t.insert();
        }
        stackless::run();
        EXPECT_EQ(log, round_robin(count, steps));
        for (int id = 1; id < count; id += 2) {
            EXPECT_EQ(states[id].starts, 1) << id;
            std::string h = "handled " + std::to_string(id);
            EXPECT_EQ(seen[id], h + " / " + h);
        }
        scheduler_stats s = stats();
        EXPECT_GT(s.stacks_saved, 0u);
        EXPECT_GT(s.stacks_discarded, 0u);
        EXPECT_EQ(s.stacks_discarded, restarts(states));
        expect_idle_scheduler();
    });
}

TEST(SoftSwitch, AnEndedTaskletsSlotGoesToTheNextWhenNoneIsFree) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        // One slot is held by a blocked tasklet without hooks (its stack could only be copied);
        // a thousand tasklets then start and end one after the other on the other slot.
        channel<int> ch;
        int got = -1, bad = 0;
        spawn([&] {
            volatile int local = 4242;
            got = ch.receive();
            if (local != 4242) ++bad;
        });
        stackless::run();
        ASSERT_EQ(ch.balance(), -1);
        std::vector<int> log;
        constexpr int count = 1000;
        for (int i = 0; i < count; ++i) spawn([&log](int me) { log.push_back(me); }, i);
        stackless::run();
        std::vector<int> expected;
        for (int i = 0; i < count; ++i) expected.push_back(i);
        EXPECT_EQ(log, expected);
        scheduler_stats s = stats();
        EXPECT_EQ(s.stacks_saved, 0u);  // the blocked one kept its slot throughout
        EXPECT_EQ(s.slots_mapped, 2u);
        ch.send(7);
        EXPECT_EQ(got, 7);
        EXPECT_EQ(bad, 0);
        EXPECT_EQ(stats().stacks_saved, 0u);
        expect_idle_scheduler();
    });
}

TEST(SoftSwitch, EndedTaskletsHandTheirSlotsToTaskletsWhoseStacksWereSaved) {
    // Tasklets without hooks, more than the slots, ending at different times: a tasklet whose
    // stack was saved from the slot the ending one leaves comes back into it (the helper's
    // path), one whose slot is elsewhere is copied back there; a new one starts on the slot.
    in_fresh_thread(scheduler_config{64 * 1024, 3, 3}, [] {
        constexpr int count = 200;
        std::vector<int> done;
        std::vector<int> bad(count, 0);
        for (int i = 0; i < count; ++i)
            spawn(
                [&done, &bad](int me) {
                    volatile int local[32];
                    for (int k = 0; k < 32; ++k) local[k] = me * 32 + k;
                    for (int r = 0; r < me % 7; ++r) {
                        schedule();
                        for (int k = 0; k < 32; ++k)
                            if (local[k] != me * 32 + k) ++bad[me];
                    }
                    done.push_back(me);
                },
                i);
        stackless::run();
        EXPECT_EQ(bad, std::vector<int>(count, 0));
        // Tasklet me ends in round me % 7, after the tasklets that end in earlier rounds.
        std::vector<int> expected;
        for (int round = 0; round < 7; ++round)
            for (int i = 0; i < count; ++i)
                if (i % 7 == round) expected.push_back(i);
        EXPECT_EQ(done, expected);
        scheduler_stats s = stats();
        EXPECT_GT(s.stacks_saved, 0u);
        EXPECT_EQ(s.stacks_restored, s.stacks_saved);
        EXPECT_EQ(s.saved_stack_bytes, 0u);
        EXPECT_LE(s.slots_mapped, 3u);
        expect_idle_scheduler();
    });
}

TEST(SoftSwitch, ExceptionsAndKillsReachSoftSwitchedTasklets) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        constexpr int count = 600, rounds = 3;
        std::vector<int> log;
        std::vector<restartable> states(count);
        std::vector<tasklet> ts;
        for (int id = 0; id < count; ++id) {
            states[id].id = id;
            states[id].steps = 1000000;  // until something is thrown into it
            states[id].log = &log;
            ts.push_back(start_restartable(states[id]));
        }
        // Main takes its turn in the ring: every tasklet makes one step per round, and is
        // switched out in schedule(), mostly without its stack, when main runs.
        for (int r = 0; r < rounds; ++r) schedule();
        EXPECT_EQ(log, round_robin(count, rounds));
        const std::uint64_t discarded = stats().stacks_discarded;
        EXPECT_GE(discarded, std::uint64_t(rounds * (count - 2 - rounds)));
        // (An immediate kill or throw switches to the tasklet; once it has ended, the others
        // take their turns before main's comes: they go on making steps meanwhile.)
        for (int id = 0; id < count; ++id) {
            switch (id % 4) {
                case 0: ts[id].kill(); break;
                case 1: ts[id].kill(true); break;
                case 2: ts[id].raise_exception(tagged{id}); break;
                case 3: ts[id].raise_exception(tagged{id}, true); break;
            }
        }
        stackless::run();
        std::vector<std::vector<int>> steps_of(count);
        for (int entry : log) steps_of[entry / 1000].push_back(entry % 1000);
        for (int id = 0; id < count; ++id) {
            const restartable& r = states[id];
            EXPECT_FALSE(ts[id].alive()) << id;
            EXPECT_GE(r.step, rounds) << id;
            // its steps, each once and in order, whether it went on from a stack or restarted
            std::vector<int> expected_steps(r.step);
            for (int k = 0; k < r.step; ++k) expected_steps[k] = k;
            EXPECT_EQ(steps_of[id], expected_steps) << id;
            if (id % 4 < 2) {
                EXPECT_TRUE(r.saw_exit) << id;
                EXPECT_EQ(r.caught, -1) << id;
            } else {
                EXPECT_FALSE(r.saw_exit) << id;
                EXPECT_EQ(r.caught, id) << id;
            }
        }
        EXPECT_EQ(stats().stacks_saved, 0u);
        EXPECT_EQ(stats().stacks_discarded, restarts(states));
        EXPECT_EQ(stats().live_tasklets, 0u);
        expect_idle_scheduler();
    });
}

TEST(SoftSwitch, AThreadThatEndsKillsItsSoftSwitchedTasklets) {
    constexpr int count = 300;
    std::vector<int> log;
    std::vector<restartable> states(count);
    std::uint64_t discarded = 0;
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [&] {
        for (int id = 0; id < count; ++id) {
            states[id].id = id;
            states[id].steps = 1000000;
            states[id].log = &log;
            start_restartable(states[id]);
        }
        for (int r = 0; r < 3; ++r) schedule();
        discarded = stats().stacks_discarded;
        // returns with `count` runnable tasklets, nearly all without a stack
    });
    EXPECT_GE(discarded, std::uint64_t(3 * (count - 5)));
    for (int id = 0; id < count; ++id) {
        EXPECT_TRUE(states[id].saw_exit) << id;
        EXPECT_EQ(states[id].step, 3) << id;
    }
}

// 100,000 tasklets without hooks on few slots (8, up to 32, so the overflow window of 16 is in
// play): all runnable at first, then all blocked, with exceptions thrown into them while they
// switch and while they wait, and kills, pending and immediate.
TEST(SoftSwitch, HundredThousandTaskletsSwitchBlockAndAreKilledOnFewSlots) {
    in_fresh_thread(scheduler_config{64 * 1024, 8, 32}, [] {
        constexpr int count = 100000;
        std::vector<int> first, second, early(count, -1), got(count, -1), unwound(count, 0),
            bad(count, 0);
        first.reserve(count);
        second.reserve(count);
        channel<int> ch;
        struct unwind_mark {
            int* counter;
            ~unwind_mark() { ++*counter; }
        };
        std::vector<tasklet> ts;
        ts.reserve(count);
        for (int i = 0; i < count; ++i)
            ts.push_back(spawn(
                [&](int me) {
                    unwind_mark mark{&unwound[me]};
                    volatile int local[8];
                    for (int k = 0; k < 8; ++k) local[k] = me * 8 + k;
                    try {
                        first.push_back(me);
                        schedule();
                    } catch (const tagged& t) {
                        early[me] = t.value;
                    }
                    second.push_back(me);
                    schedule();
                    try {
                        got[me] = ch.receive();
                    } catch (const tagged& t) {
                        got[me] = -t.value;
                    }
                    for (int k = 0; k < 8; ++k)
                        if (local[k] != me * 8 + k) ++bad[me];
                },
                i));
        schedule();  // every tasklet runs once and waits in schedule(); main is back
        std::vector<int> in_order(count);
        for (int i = 0; i < count; ++i) in_order[i] = i;
        ASSERT_EQ(first, in_order);
        for (int i = 0; i < count; i += 9) ts[i].raise_exception(tagged{i}, true);
        stackless::run();  // the rest of the first round, a second round, then all block
        ASSERT_EQ(second, in_order);
        ASSERT_EQ(ch.balance(), -count);
        scheduler_stats mid = stats();
        EXPECT_LE(mid.slots_mapped, 32u);
        EXPECT_GT(mid.stacks_saved, std::uint64_t(count));
        // The queue is in tasklet order, and everything before i was served or taken off it.
        for (int i = 0; i < count; ++i) {
            switch (i % 10) {
                case 3: ts[i].kill(); break;
                case 4: ts[i].kill(true); break;
                case 5: ch.send_exception(tagged{i + 1}); break;
                case 6: ts[i].raise_exception(tagged{i + 1}); break;
                case 7: ts[i].raise_exception(tagged{i + 1}, true); break;
                default: ch.send(i * 3); break;
            }
        }
        stackless::run();
        EXPECT_EQ(ch.balance(), 0);
        for (int i = 0; i < count; ++i) {
            ASSERT_EQ(early[i], i % 9 == 0 ? i : -1) << i;
            ASSERT_EQ(unwound[i], 1) << i;
            ASSERT_EQ(bad[i], 0) << i;
            ASSERT_FALSE(ts[i].alive()) << i;
            int kind = i % 10;
            if (kind == 3 || kind == 4)
                ASSERT_EQ(got[i], -1) << i;
            else if (kind >= 5 && kind <= 7)
                ASSERT_EQ(got[i], -(i + 1)) << i;
            else
                ASSERT_EQ(got[i], i * 3) << i;
        }
        scheduler_stats end = stats();
        EXPECT_EQ(end.stacks_restored, end.stacks_saved);
        EXPECT_EQ(end.saved_stack_bytes, 0u);
        EXPECT_EQ(end.stacks_discarded, 0u);  // no hooks: nothing may be dropped
        EXPECT_EQ(end.live_tasklets, 0u);
        expect_idle_scheduler();
    });
}

}  // namespace
