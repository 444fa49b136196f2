// The run queue and the scheduling functions: schedule, schedule_remove, run, insert, remove,
// tasklet::run, tasklet::switch_to, getruncount, getcurrent, getmain.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::events;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;

namespace {

// Listing 2 of the article.
TEST(Scheduler, Listing2RunInterleavesTwoTasklets) {
    in_fresh_thread([] {
        events log;
        auto f = [&](std::string c) {
            log.push_back(c + " before");
            schedule();
            log.push_back(c + " after");
        };
        tasklet{f}(std::string("a"));
        tasklet{f}(std::string("b"));
        stackless::run();
        EXPECT_EQ(log, (events{"a before", "b before", "a after", "b after"}));
        expect_idle_scheduler();
    });
}

// The same program on the process's main thread (whose scheduler persists between tests run in
// one process, so this test leaves it idle as it found it).
TEST(Scheduler, Listing2OnTheProcessMainThread) {
    events log;
    auto f = [&](std::string c) {
        log.push_back(c + " before");
        schedule();
        log.push_back(c + " after");
    };
    spawn(f, "a");
    spawn(f, "b");
    stackless::run();
    EXPECT_EQ(log, (events{"a before", "b before", "a after", "b after"}));
    expect_idle_scheduler();
}

// Listing 1: the main tasklet calls schedule() twice, as the interactive session does.
TEST(Scheduler, Listing1ScheduleFromMain) {
    in_fresh_thread([] {
        events log;
        tasklet t = tasklet([&] {
            log.push_back("1");
            schedule();
            log.push_back("2");
        })();
        EXPECT_TRUE(log.empty());
        schedule();
        log.push_back("main");
        EXPECT_TRUE(t.alive());
        EXPECT_TRUE(t.scheduled());
        EXPECT_EQ(getruncount(), 2);
        schedule();
        log.push_back("main");
        EXPECT_EQ(log, (events{"1", "main", "2", "main"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(Scheduler, ScheduleWithNothingElseRunnableReturnsAtOnce) {
    in_fresh_thread([] {
        schedule();
        schedule();
        expect_idle_scheduler();
    });
}

TEST(Scheduler, RunWithNothingRunnableReturnsAtOnce) {
    in_fresh_thread([] {
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(Scheduler, ScheduleIsRoundRobinIncludingMain) {
    in_fresh_thread([] {
        events log;
        for (const char* name : {"A", "B", "C"}) {
            spawn([&log, name = std::string(name)] {
                for (int round = 0; round < 3; ++round) {
                    log.push_back(name + std::to_string(round));
                    schedule();
                }
            });
        }
        for (int round = 0; round < 3; ++round) {
            schedule();
            log.push_back("main");
        }
        EXPECT_EQ(log, (events{"A0", "B0", "C0", "main", "A1", "B1", "C1", "main", "A2", "B2", "C2",
                               "main"}));
        EXPECT_EQ(getruncount(), 4);  // each is still inside its last schedule()
        schedule();
        expect_idle_scheduler();
    });
}

TEST(Scheduler, RuncountCountsRunnableTaskletsIncludingCurrent) {
    in_fresh_thread([] {
        std::vector<int> counts;
        EXPECT_EQ(getruncount(), 1);
        spawn([&] { counts.push_back(getruncount()); });
        spawn([&] { counts.push_back(getruncount()); });
        EXPECT_EQ(getruncount(), 3);
        stackless::run();
        // main left the queue for run(): the first sees itself and the second, the second only
        // itself.
        EXPECT_EQ(counts, (std::vector<int>{2, 1}));
        EXPECT_EQ(getruncount(), 1);
    });
}

TEST(Scheduler, ScheduleRemovePausesCurrentUntilInserted) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            log.push_back("start");
            schedule_remove();
            log.push_back("resumed");
        });
        stackless::run();
        EXPECT_EQ(log, (events{"start"}));
        EXPECT_TRUE(t.alive());
        EXPECT_TRUE(t.paused());
        EXPECT_FALSE(t.scheduled());
        EXPECT_FALSE(t.blocked());
        EXPECT_EQ(getruncount(), 1);

        stackless::run();  // nothing to run: t is paused
        EXPECT_EQ(log, (events{"start"}));

        t.insert();
        EXPECT_TRUE(t.scheduled());
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(log, (events{"start", "resumed"}));
        EXPECT_FALSE(t.alive());
    });
}

TEST(Scheduler, ScheduleRemoveRunsTheNextTasklet) {
    in_fresh_thread([] {
        events log;
        tasklet a = spawn([&] {
            log.push_back("a1");
            schedule_remove();
            log.push_back("a2");
        });
        spawn([&] {
            log.push_back("b1");
            schedule();
            log.push_back("b2");
        });
        stackless::run();
        EXPECT_EQ(log, (events{"a1", "b1", "b2"}));
        a.insert();
        stackless::run();
        EXPECT_EQ(log, (events{"a1", "b1", "b2", "a2"}));
    });
}

TEST(Scheduler, TaskletsSpawnedByTaskletsGoToTheEnd) {
    in_fresh_thread([] {
        events log;
        spawn([&] {
            log.push_back("A");
            spawn([&] { log.push_back("C"); });
            schedule();
            log.push_back("A again");
        });
        spawn([&] {
            log.push_back("B");
            spawn([&] { log.push_back("D"); });
        });
        stackless::run();
        EXPECT_EQ(log, (events{"A", "B", "C", "A again", "D"}));
    });
}

TEST(Scheduler, InsertAppendsAtTheEndInInsertionOrder) {
    in_fresh_thread([] {
        events log;
        std::vector<tasklet> ts;
        for (const char* name : {"A", "B", "C"}) {
            tasklet t;
            t.bind([&log](std::string n) { log.push_back(n); }, std::string(name));
            ts.push_back(t);
        }
        ts[2].insert();
        ts[0].insert();
        ts[1].insert();
        EXPECT_EQ(getruncount(), 4);
        stackless::run();
        EXPECT_EQ(log, (events{"C", "A", "B"}));
    });
}

TEST(Scheduler, InsertOfScheduledTaskletIsNoop) {
    in_fresh_thread([] {
        int runs = 0;
        tasklet t = spawn([&] { ++runs; });
        EXPECT_EQ(getruncount(), 2);
        t.insert();
        t.insert();
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(runs, 1);
    });
}

TEST(Scheduler, RemoveTakesTaskletOutOfTheQueue) {
    in_fresh_thread([] {
        events log;
        tasklet a = spawn([&] { log.push_back("a"); });
        tasklet b = spawn([&] { log.push_back("b"); });
        b.remove();
        EXPECT_TRUE(b.alive());
        EXPECT_TRUE(b.paused());
        EXPECT_FALSE(b.scheduled());
        EXPECT_EQ(getruncount(), 2);
        b.remove();  // removing a paused tasklet is harmless
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(log, (events{"a"}));
        b.insert();
        stackless::run();
        EXPECT_EQ(log, (events{"a", "b"}));
    });
}

TEST(Scheduler, NextAndPrevDescribeTheRunQueueRing) {
    in_fresh_thread([] {
        tasklet m = getmain();
        tasklet a = spawn([] {});
        tasklet b = spawn([] {});
        EXPECT_TRUE(m.next() == a);
        EXPECT_TRUE(a.next() == b);
        EXPECT_TRUE(b.next() == m);
        EXPECT_TRUE(m.prev() == b);
        EXPECT_TRUE(b.prev() == a);
        EXPECT_TRUE(a.prev() == m);
        b.remove();
        EXPECT_FALSE(static_cast<bool>(b.next()));
        EXPECT_FALSE(static_cast<bool>(b.prev()));
        EXPECT_TRUE(a.next() == m);
        b.insert();
        EXPECT_TRUE(a.next() == b);
        stackless::run();
        EXPECT_FALSE(static_cast<bool>(a.next()));
    });
}

TEST(Scheduler, ManyTaskletsManyRoundsStayInRoundRobinOrder) {
    in_fresh_thread([] {
        constexpr int tasklets = 50, rounds = 20;
        std::vector<std::pair<int, int>> order;
        for (int id = 0; id < tasklets; ++id) {
            spawn(
                [&order](int me) {
                    for (int r = 0; r < rounds; ++r) {
                        order.emplace_back(r, me);
                        schedule();
                    }
                },
                id);
        }
        stackless::run();
        ASSERT_EQ(order.size(), size_t(tasklets * rounds));
        for (int r = 0; r < rounds; ++r)
            for (int id = 0; id < tasklets; ++id)
                ASSERT_EQ(order[r * tasklets + id], std::make_pair(r, id));
    });
}

// tasklets.rst, tasklet.run() on a scheduled tasklet: the caller stays in the queue, the
// target becomes current, and tasklets between them in the ring are skipped for now.
TEST(Scheduler, TaskletRunOnScheduledTaskletStartsTheRingThere) {
    in_fresh_thread([] {
        events log;
        auto f = [&](std::string name) {
            for (int i = 0; i < 2; ++i) {
                log.push_back(name + ":" + std::to_string(i) +
                              (getmain().scheduled() ? " main scheduled" : " main paused"));
                schedule();
            }
        };
        tasklet t1 = spawn(f, "t1");
        tasklet t2 = spawn(f, "t2");
        tasklet t3 = spawn(f, "t3");

        t1.run();
        EXPECT_EQ(log,
                  (events{"t1:0 main scheduled", "t2:0 main scheduled", "t3:0 main scheduled"}));
        log.clear();
        EXPECT_TRUE(getmain().next() == t1);

        t2.run();  // t1 is before t2 in the ring: it is skipped
        EXPECT_EQ(log, (events{"t2:1 main scheduled", "t3:1 main scheduled"}));
        log.clear();

        stackless::run();
        EXPECT_EQ(log, (events{"t1:1 main paused"}));
        EXPECT_FALSE(t1.alive());
        EXPECT_FALSE(t2.alive());
        EXPECT_FALSE(t3.alive());
        expect_idle_scheduler();
    });
}

// tasklets.rst: running a tasklet that is not scheduled inserts it at the end first, so only
// it runs before the caller.
TEST(Scheduler, TaskletRunOnRemovedTaskletRunsOnlyIt) {
    in_fresh_thread([] {
        events log;
        bool next_is_main = false;
        auto f = [&](std::string name) {
            for (int i = 0; i < 2; ++i) {
                log.push_back(name + ":" + std::to_string(i));
                if (name == "t2" && i == 0) next_is_main = getcurrent().next() == getmain();
                schedule();
            }
        };
        tasklet t1 = spawn(f, "t1");
        tasklet t2 = spawn(f, "t2");
        tasklet t3 = spawn(f, "t3");
        t2.remove();
        t2.run();
        EXPECT_EQ(log, (events{"t2:0"}));
        EXPECT_TRUE(next_is_main);
        EXPECT_TRUE(t2.scheduled());
        log.clear();
        stackless::run();
        EXPECT_EQ(log, (events{"t1:0", "t3:0", "t2:1", "t1:1", "t3:1"}));
        expect_idle_scheduler();
    });
}

TEST(Scheduler, TaskletRunOfPausedStartedTasklet) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            log.push_back("t1");
            schedule_remove();
            log.push_back("t2");
            schedule();
            log.push_back("t3");
        });
        tasklet other = spawn([&] { log.push_back("other"); });
        schedule();  // t pauses, other ends, main resumes
        EXPECT_EQ(log, (events{"t1", "other"}));
        ASSERT_TRUE(t.paused());
        t.run();  // t resumes at once; main stays runnable, so t's schedule() comes back to main
        EXPECT_EQ(log, (events{"t1", "other", "t2"}));
        EXPECT_TRUE(t.scheduled());
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(log, (events{"t1", "other", "t2", "t3"}));
    });
}

// tasklets.rst, tasklet.switch(): like run(), but the caller is paused.
TEST(Scheduler, SwitchToPausesTheCaller) {
    in_fresh_thread([] {
        events log;
        auto f = [&](std::string name) {
            for (int i = 0; i < 2; ++i) {
                log.push_back(name + ":" + std::to_string(i) +
                              (getmain().scheduled() ? " main scheduled" : " main paused"));
                schedule();
            }
        };
        tasklet t1 = spawn(f, "t1");
        tasklet t2 = spawn(f, "t2");
        t1.switch_to();
        // Both ran to their end; with nothing left to run, the paused main resumed.
        EXPECT_EQ(log, (events{"t1:0 main paused", "t2:0 main paused", "t1:1 main paused",
                               "t2:1 main paused"}));
        EXPECT_FALSE(t1.alive());
        EXPECT_FALSE(t2.alive());
        expect_idle_scheduler();
    });
}

TEST(Scheduler, SwitchToFromTaskletPausesThatTasklet) {
    in_fresh_thread([] {
        events log;
        tasklet b = spawn([&] { log.push_back("b"); });
        b.remove();
        tasklet a = spawn([&] {
            log.push_back("a1");
            b.switch_to();
            log.push_back("a2");
        });
        stackless::run();
        EXPECT_EQ(log, (events{"a1", "b"}));
        EXPECT_TRUE(a.paused());
        EXPECT_FALSE(b.alive());
        a.insert();
        stackless::run();
        EXPECT_EQ(log, (events{"a1", "b", "a2"}));
    });
}

TEST(Scheduler, RunFromMainPausesMainUntilQueueIsEmpty) {
    in_fresh_thread([] {
        events log;
        spawn([&] {
            log.push_back(getmain().paused() ? "main paused" : "main not paused");
            log.push_back("runcount " + std::to_string(getruncount()));
        });
        stackless::run();
        EXPECT_EQ(log, (events{"main paused", "runcount 1"}));
        EXPECT_FALSE(getmain().paused());
        expect_idle_scheduler();
    });
}

TEST(Scheduler, RunCanBeCalledRepeatedlyAsTheQueueRefills) {
    in_fresh_thread([] {
        int total = 0;
        for (int batch = 1; batch <= 5; ++batch) {
            for (int i = 0; i < batch; ++i) spawn([&] { ++total; });
            stackless::run();
            expect_idle_scheduler();
        }
        EXPECT_EQ(total, 15);
    });
}

TEST(Scheduler, LongChainOfSpawnsAllRun) {
    in_fresh_thread([] {
        int depth = 0;
        std::function<void(int)> step = [&](int n) {
            ++depth;
            if (n > 0) spawn(step, n - 1);
        };
        spawn(step, 999);
        stackless::run();
        EXPECT_EQ(depth, 1000);
    });
}

}  // namespace

namespace {

// Preemption support: interrupt_to_run() makes the innermost run() return with the interrupted
// tasklet paused; inserting it again lets it go on where it was.
TEST(Scheduler, InterruptToRunReturnsFromRunWithTheTaskletPaused) {
    in_fresh_thread([] {
        std::vector<int> steps;
        bool interrupted_outside_run = true;
        tasklet busy = spawn([&] {
            for (int i = 0; i < 10; ++i) {
                steps.push_back(i);
                if (i == 4) {
                    EXPECT_TRUE(interrupt_to_run());
                }
            }
        });
        tasklet other = spawn([&] { steps.push_back(100); });
        stackless::run();
        EXPECT_EQ(steps, (std::vector<int>{0, 1, 2, 3, 4}));
        EXPECT_TRUE(busy.alive());
        EXPECT_TRUE(busy.paused());
        EXPECT_TRUE(other.scheduled());  // still waiting its turn
        busy.insert();
        stackless::run();
        EXPECT_EQ(steps.size(), 11u);
        EXPECT_EQ(steps.back(), 9);
        EXPECT_FALSE(busy.alive());
        // Without a run() to return to, nothing happens.
        tasklet outside = spawn([&] { interrupted_outside_run = interrupt_to_run(); });
        outside.run();
        EXPECT_FALSE(interrupted_outside_run);
        EXPECT_FALSE(interrupt_to_run());  // main, the caller of no run()
        expect_idle_scheduler();
    });
}

// interrupt_to_run(watchdog) returns to an outer run() past an inner one (Stackless interrupts
// to its outermost timed run()): the inner run()'s caller is made runnable again, and its run()
// then returns without popping the outer one's entry.
TEST(Scheduler, InterruptToAnOuterRunMakesTheInnerCallerRunnable) {
    in_fresh_thread([] {
        std::vector<std::string> log;
        tasklet main_handle = getmain();
        tasklet busy;
        tasklet inner = spawn([&] {
            busy = spawn([&] {
                EXPECT_EQ(run_callers().size(), 2u);  // main, then `inner`
                EXPECT_TRUE(interrupt_to_run(main_handle));
                log.push_back("busy resumed");
            });
            stackless::run();
            log.push_back("inner run returned");
        });
        stackless::run();
        log.push_back("outer run returned");
        EXPECT_TRUE(busy.paused());
        EXPECT_TRUE(inner.scheduled());  // popped and made runnable by the outer run()
        EXPECT_TRUE(run_callers().empty());
        busy.insert();
        stackless::run();
        EXPECT_EQ(log, (std::vector<std::string>{"outer run returned", "inner run returned",
                                                 "busy resumed"}));
        EXPECT_FALSE(interrupt_to_run(main_handle));  // main is in no run() now
        expect_idle_scheduler();
    });
}

}  // namespace
