// Exceptions leaving tasklets, kill(), throw_exception()/raise_exception() and deadlock
// detection.
#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::events;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;
using stackless_test::mark_on_destroy;

namespace {

struct custom_error {
    int code;
};

// `catch (const std::exception&)` in user code must not swallow a kill.
static_assert(!std::is_base_of_v<std::exception, tasklet_exit>);
static_assert(std::is_base_of_v<std::runtime_error, stackless::error>);
static_assert(std::is_base_of_v<stackless::error, deadlock_error>);
static_assert(std::is_base_of_v<stackless::error, channel_closed_error>);
static_assert(std::is_base_of_v<stackless::error, tasklet_state_error>);
static_assert(std::is_base_of_v<stackless::error, wrong_thread_error>);

// --- exceptions escaping a tasklet reach main ---------------------------------------------

// scheduler.rst, "an exception raised out of the scheduler"
TEST(TaskletExceptions, EscapingExceptionIsRaisedFromRun) {
    in_fresh_thread([] {
        events log;
        tasklet loop = spawn([&] {
            for (int i = 0; i < 3; ++i) {
                log.push_back("loop " + std::to_string(i));
                schedule();
            }
        });
        tasklet thrower = spawn([&] {
            mark_on_destroy guard(log, "thrower unwound");
            throw std::runtime_error("catch this");
        });
        try {
            stackless::run();
            ADD_FAILURE() << "run() did not raise";
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "catch this");
        }
        EXPECT_EQ(log, (events{"loop 0", "thrower unwound"}));
        EXPECT_FALSE(thrower.alive());
        EXPECT_TRUE(getmain().is_current());
        // the other tasklet is still runnable; a new run() finishes it
        EXPECT_TRUE(loop.alive());
        EXPECT_TRUE(loop.scheduled());
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(log, (events{"loop 0", "thrower unwound", "loop 1", "loop 2"}));
        expect_idle_scheduler();
    });
}

TEST(TaskletExceptions, EscapingExceptionIsRaisedFromMainsSchedule) {
    in_fresh_thread([] {
        tasklet t = spawn([] { throw std::logic_error("from tasklet"); });
        EXPECT_THROW(schedule(), std::logic_error);
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(TaskletExceptions, ExceptionTypeIsPreserved) {
    in_fresh_thread([] {
        spawn([] { throw custom_error{42}; });
        try {
            stackless::run();
            ADD_FAILURE() << "run() did not raise";
        } catch (const custom_error& e) {
            EXPECT_EQ(e.code, 42);
        }
        expect_idle_scheduler();
    });
}

TEST(TaskletExceptions, ExceptionReachesMainBlockedOnAChannel) {
    in_fresh_thread([] {
        channel<int> ch;
        spawn([] { throw std::runtime_error("while main waits"); });
        try {
            ch.receive();
            ADD_FAILURE() << "receive() did not raise";
        } catch (const deadlock_error&) {
            ADD_FAILURE() << "got deadlock_error instead of the tasklet's exception";
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "while main waits");
        }
        EXPECT_EQ(ch.balance(), 0);
        EXPECT_FALSE(getmain().blocked());
        expect_idle_scheduler();
    });
}

TEST(TaskletExceptions, ExceptionFromDeepInsideNestedCallsUnwindsEverything) {
    in_fresh_thread([] {
        events log;
        std::function<void(int)> dive = [&](int depth) {
            mark_on_destroy guard(log, "level " + std::to_string(depth));
            if (depth == 0) {
                schedule();
                throw std::runtime_error("bottom");
            }
            dive(depth - 1);
        };
        spawn(dive, 3);
        EXPECT_THROW(stackless::run(), std::runtime_error);
        EXPECT_EQ(log, (events{"level 0", "level 1", "level 2", "level 3"}));
    });
}

TEST(TaskletExceptions, CaughtInsideTaskletDoesNotReachMain) {
    in_fresh_thread([] {
        events log;
        spawn([&] {
            try {
                throw std::runtime_error("local");
            } catch (const std::exception& e) {
                log.push_back(e.what());
            }
        });
        EXPECT_NO_THROW(stackless::run());
        EXPECT_EQ(log, (events{"local"}));
    });
}

TEST(TaskletExceptions, EscapingExceptionIsRaisedFromTaskletRun) {
    in_fresh_thread([] {
        tasklet t = spawn([] {
            schedule_remove();
            throw std::runtime_error("from t");
        });
        stackless::run();
        ASSERT_TRUE(t.paused());
        EXPECT_THROW(t.run(), std::runtime_error);
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(TaskletExceptions, EscapingExceptionIsRaisedFromSwitchTo) {
    in_fresh_thread([] {
        tasklet t = spawn([] {
            schedule();
            throw std::runtime_error("while main is paused");
        });
        EXPECT_THROW(t.switch_to(), std::runtime_error);
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

// Each tasklet has its own "exception being handled": a switch inside a catch block, or inside
// a destructor running during unwinding, must not mix them up (also when stacks are saved).
TEST(TaskletExceptions, ExceptionsBeingHandledSurviveSwitches) {
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        constexpr int count = 12;
        std::vector<std::string> rethrown(count), current(count);
        for (int i = 0; i < count; ++i)
            spawn(
                [&](int me) {
                    try {
                        throw std::runtime_error("tasklet " + std::to_string(me));
                    } catch (...) {
                        schedule();  // the others throw and catch their own meanwhile
                        try {
                            std::rethrow_exception(std::current_exception());
                        } catch (const std::runtime_error& e) {
                            current[me] = e.what();
                        }
                        schedule();
                        try {
                            throw;
                        } catch (const std::runtime_error& e) {
                            rethrown[me] = e.what();
                        }
                    }
                },
                i);
        stackless::run();
        for (int i = 0; i < count; ++i) {
            EXPECT_EQ(current[i], "tasklet " + std::to_string(i));
            EXPECT_EQ(rethrown[i], "tasklet " + std::to_string(i));
        }
    });
}

TEST(TaskletExceptions, SwitchInsideDestructorDuringUnwinding) {
    struct yields_when_destroyed {
        int* uncaught_seen;
        ~yields_when_destroyed() {
            schedule();
            *uncaught_seen = std::uncaught_exceptions();
        }
    };
    in_fresh_thread(scheduler_config{64 * 1024, 2, 2}, [] {
        constexpr int count = 6;
        std::vector<int> uncaught(count, -1);
        std::vector<std::string> caught(count);
        for (int i = 0; i < count; ++i)
            spawn(
                [&](int me) {
                    try {
                        yields_when_destroyed guard{&uncaught[me]};
                        throw std::runtime_error("unwinding " + std::to_string(me));
                    } catch (const std::runtime_error& e) {
                        caught[me] = e.what();
                    }
                },
                i);
        // a tasklet that is not unwinding runs in between
        int plain_uncaught = -1;
        spawn([&] {
            schedule();
            plain_uncaught = std::uncaught_exceptions();
        });
        stackless::run();
        for (int i = 0; i < count; ++i) {
            EXPECT_EQ(uncaught[i], 1) << "tasklet " << i;
            EXPECT_EQ(caught[i], "unwinding " + std::to_string(i));
        }
        EXPECT_EQ(plain_uncaught, 0);
        EXPECT_EQ(std::uncaught_exceptions(), 0);
    });
}

// --- kill ------------------------------------------------------------------------------------

TEST(Kill, PausedTaskletRunsAtOnceAndUnwinds) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            mark_on_destroy guard(log, "unwound");
            log.push_back("start");
            schedule_remove();
            log.push_back("resumed");
        });
        stackless::run();
        ASSERT_TRUE(t.paused());
        t.kill();
        log.push_back("after kill");
        EXPECT_EQ(log, (events{"start", "unwound", "after kill"}));
        EXPECT_FALSE(t.alive());
        EXPECT_FALSE(t.scheduled());
        EXPECT_FALSE(t.paused());
        expect_idle_scheduler();
    });
}

TEST(Kill, RunnableStartedTasklet) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            mark_on_destroy guard(log, "unwound");
            for (;;) {
                log.push_back("tick");
                schedule();
            }
        });
        schedule();
        ASSERT_TRUE(t.scheduled());
        t.kill();
        log.push_back("after kill");
        EXPECT_EQ(log, (events{"tick", "unwound", "after kill"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(Kill, BlockedTaskletIsRemovedFromItsChannel) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        tasklet other = spawn([&] { ch.receive(); });
        tasklet t = spawn([&] {
            mark_on_destroy guard(log, "unwound");
            ch.receive();
            log.push_back("received");
        });
        stackless::run();
        ASSERT_EQ(ch.balance(), -2);
        t.kill();
        log.push_back("after kill");
        EXPECT_EQ(log, (events{"unwound", "after kill"}));
        EXPECT_EQ(ch.balance(), -1);
        EXPECT_FALSE(t.blocked());
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(ch.waiting(), (std::vector<tasklet>{other}));
        ch.send(1);
        EXPECT_FALSE(other.alive());
        expect_idle_scheduler();
    });
}

TEST(Kill, PendingKillOnlyMakesTheTaskletRunnable) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            mark_on_destroy guard(log, "unwound");
            schedule_remove();
            log.push_back("resumed");
        });
        stackless::run();
        t.kill(true);
        log.push_back("after kill");
        EXPECT_TRUE(t.alive());
        EXPECT_TRUE(t.scheduled());
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(log, (events{"after kill", "unwound"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(Kill, PendingKillOfBlockedTaskletUnblocksItAtOnce) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        tasklet t = spawn([&] {
            mark_on_destroy guard(log, "unwound");
            ch.send(1);
            log.push_back("sent");
        });
        stackless::run();
        ASSERT_EQ(ch.balance(), 1);
        t.kill(true);
        EXPECT_EQ(ch.balance(), 0);
        EXPECT_FALSE(t.blocked());
        EXPECT_TRUE(t.scheduled());
        EXPECT_TRUE(log.empty());
        stackless::run();
        EXPECT_EQ(log, (events{"unwound"}));
        expect_idle_scheduler();
    });
}

TEST(Kill, KillingDeadOrUnboundTaskletIsNoop) {
    in_fresh_thread([] {
        tasklet done = spawn([] {});
        stackless::run();
        ASSERT_FALSE(done.alive());
        EXPECT_NO_THROW(done.kill());
        EXPECT_NO_THROW(done.kill(true));
        tasklet unbound;
        EXPECT_NO_THROW(unbound.kill());
        tasklet no_args([](int) {});
        EXPECT_NO_THROW(no_args.kill());
        EXPECT_FALSE(no_args.alive());
        expect_idle_scheduler();
    });
}

TEST(Kill, UnstartedTaskletSimplyEnds) {
    in_fresh_thread([] {
        bool ran = false;
        tasklet scheduled = spawn([&] { ran = true; });
        scheduled.kill();
        EXPECT_FALSE(scheduled.alive());
        EXPECT_FALSE(scheduled.scheduled());
        tasklet paused;
        paused.bind([&](int) { ran = true; }, 1);
        ASSERT_TRUE(paused.paused());
        paused.kill();
        EXPECT_FALSE(paused.alive());
        stackless::run();
        EXPECT_FALSE(ran);
        expect_idle_scheduler();
    });
}

TEST(Kill, CatchingStdExceptionDoesNotCatchTaskletExit) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            try {
                schedule_remove();
            } catch (const std::exception&) {
                log.push_back("caught as std::exception");
            }
            log.push_back("went on");
        });
        stackless::run();
        t.kill();
        EXPECT_TRUE(log.empty());
        EXPECT_FALSE(t.alive());
    });
}

TEST(Kill, RethrownTaskletExitEndsSilently) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            try {
                schedule_remove();
            } catch (const tasklet_exit&) {
                log.push_back("cleanup");
                throw;
            }
        });
        stackless::run();
        EXPECT_NO_THROW(t.kill());
        EXPECT_EQ(log, (events{"cleanup"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(Kill, SwallowingTaskletExitIsReportedAsError) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            try {
                schedule_remove();
            } catch (const tasklet_exit&) {
                log.push_back("swallowed");
            }
        });
        stackless::run();
        EXPECT_THROW(t.kill(), stackless::error);
        EXPECT_EQ(log, (events{"swallowed"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(Kill, SwallowingPendingTaskletExitIsReportedFromRun) {
    in_fresh_thread([] {
        tasklet t = spawn([] {
            try {
                schedule_remove();
            } catch (const tasklet_exit&) {
            }
        });
        stackless::run();
        t.kill(true);
        EXPECT_THROW(stackless::run(), stackless::error);
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(Kill, KillingTheCurrentTaskletRaisesAtOnce) {
    // Stackless raises directly when the target is the current tasklet.
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            mark_on_destroy guard(log, "unwound");
            getcurrent().kill();
            log.push_back("went on");
        });
        EXPECT_NO_THROW(stackless::run());
        EXPECT_EQ(log, (events{"unwound"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(Kill, KillingATaskletInsideACatchBlock) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            try {
                throw std::runtime_error("being handled");
            } catch (const std::exception& e) {
                mark_on_destroy guard(log, "unwound");
                schedule_remove();
                log.push_back("went on");
            }
        });
        stackless::run();
        t.kill();
        EXPECT_EQ(log, (events{"unwound"}));
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(std::uncaught_exceptions(), 0);
        EXPECT_FALSE(static_cast<bool>(std::current_exception()));
    });
}

TEST(Kill, SwallowedExitOfTaskletKilledByTaskletIsRaisedInMain) {
    in_fresh_thread([] {
        events log;
        tasklet victim = spawn([&] {
            try {
                schedule_remove();
            } catch (const tasklet_exit&) {
                log.push_back("swallowed");
            }
        });
        tasklet killer = spawn([&] {
            victim.kill();
            log.push_back("killer after kill");
        });
        EXPECT_THROW(stackless::run(), stackless::error);
        EXPECT_EQ(log, (events{"swallowed"}));
        EXPECT_FALSE(victim.alive());
        EXPECT_TRUE(killer.scheduled());  // still runnable, inside kill()
        stackless::run();
        EXPECT_EQ(log, (events{"swallowed", "killer after kill"}));
        expect_idle_scheduler();
    });
}

TEST(Kill, KillFromAnotherTaskletRunsVictimThenKillerBeforeOthers) {
    in_fresh_thread([] {
        events log;
        tasklet victim = spawn([&] {
            mark_on_destroy guard(log, "victim unwound");
            log.push_back("victim start");
            schedule_remove();
        });
        spawn([&] {
            victim.kill();
            log.push_back("killer after kill");
        });
        spawn([&] { log.push_back("other"); });
        stackless::run();
        EXPECT_EQ(log, (events{"victim start", "victim unwound", "killer after kill", "other"}));
        expect_idle_scheduler();
    });
}

TEST(Kill, KillWhileItsScopeHoldsResourcesReleasesThemAll) {
    in_fresh_thread([] {
        auto resource = std::make_shared<int>(5);
        std::weak_ptr<int> watch = resource;
        std::vector<tasklet> ts;
        for (int i = 0; i < 10; ++i)
            ts.push_back(spawn([r = resource] {
                std::shared_ptr<int> local = r;
                std::vector<std::string> junk(10, std::string(100, 'j'));
                for (;;) schedule();
            }));
        resource.reset();
        schedule();
        EXPECT_FALSE(watch.expired());
        for (tasklet& t : ts) t.kill();
        ts.clear();
        EXPECT_TRUE(watch.expired());
        expect_idle_scheduler();
    });
}

// --- throw_exception / raise_exception -------------------------------------------------------

TEST(ThrowException, RaisedInPausedTaskletWhichRunsAtOnce) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            try {
                schedule_remove();
                log.push_back("no exception");
            } catch (const std::runtime_error& e) {
                log.push_back(std::string("caught ") + e.what());
            }
            log.push_back("end");
        });
        stackless::run();
        t.throw_exception(std::make_exception_ptr(std::runtime_error("boom")));
        log.push_back("main after throw");
        EXPECT_EQ(log, (events{"caught boom", "end", "main after throw"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(ThrowException, RaiseExceptionTemplate) {
    in_fresh_thread([] {
        int code = 0;
        tasklet t = spawn([&] {
            try {
                schedule_remove();
            } catch (const custom_error& e) {
                code = e.code;
            }
        });
        stackless::run();
        t.raise_exception(custom_error{9});
        EXPECT_EQ(code, 9);
        EXPECT_FALSE(t.alive());
    });
}

TEST(ThrowException, UncaughtInTargetReachesMain) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            mark_on_destroy guard(log, "unwound");
            schedule_remove();
        });
        stackless::run();
        EXPECT_THROW(t.raise_exception(std::logic_error("unhandled")), std::logic_error);
        EXPECT_EQ(log, (events{"unwound"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(ThrowException, PendingThrowRaisesWhenTheTaskletNextRuns) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            try {
                schedule_remove();
            } catch (const std::runtime_error& e) {
                log.push_back(e.what());
            }
        });
        stackless::run();
        t.raise_exception(std::runtime_error("later"), true);
        log.push_back("main continues");
        EXPECT_TRUE(t.alive());
        EXPECT_TRUE(t.scheduled());
        stackless::run();
        EXPECT_EQ(log, (events{"main continues", "later"}));
    });
}

TEST(ThrowException, ThrowIntoBlockedTaskletUnblocksIt) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        tasklet t = spawn([&] {
            try {
                ch.receive();
            } catch (const std::runtime_error& e) {
                log.push_back(e.what());
            }
        });
        stackless::run();
        ASSERT_EQ(ch.balance(), -1);
        t.raise_exception(std::runtime_error("wake up"));
        EXPECT_EQ(log, (events{"wake up"}));
        EXPECT_EQ(ch.balance(), 0);
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(ThrowException, ThrowIntoRunnableTaskletFromAnotherTasklet) {
    in_fresh_thread([] {
        events log;
        tasklet target = spawn([&] {
            try {
                for (;;) schedule();
            } catch (const custom_error& e) {
                log.push_back("target caught " + std::to_string(e.code));
            }
        });
        spawn([&] {
            schedule();  // let target start
            target.raise_exception(custom_error{3});
            log.push_back("thrower continues");
        });
        stackless::run();
        EXPECT_EQ(log, (events{"target caught 3", "thrower continues"}));
        expect_idle_scheduler();
    });
}

TEST(ThrowException, ThrowIntoCurrentTaskletRaisesAtOnce) {
    in_fresh_thread([] {
        EXPECT_THROW(getcurrent().raise_exception(std::runtime_error("here")), std::runtime_error);
        expect_idle_scheduler();
    });
}

TEST(ThrowException, ThrowIntoDeadTaskletIsError) {
    // tasklets.rst: "If you try to raise an exception on a tasklet, that is not alive, the
    // method raises RuntimeError on the caller" (kill() being the exception to that).
    in_fresh_thread([] {
        tasklet t = spawn([] {});
        stackless::run();
        ASSERT_FALSE(t.alive());
        EXPECT_THROW(t.raise_exception(std::runtime_error("x")), stackless::error);
        expect_idle_scheduler();
    });
}

// --- deadlock --------------------------------------------------------------------------------

TEST(Deadlock, MainReceivingWithNothingRunnable) {
    in_fresh_thread([] {
        channel<int> ch;
        EXPECT_THROW(ch.receive(), deadlock_error);
        EXPECT_EQ(ch.balance(), 0);
        EXPECT_FALSE(static_cast<bool>(ch.queue()));
        expect_idle_scheduler();
        // the channel and scheduler still work
        spawn([&] { ch.send(2); });
        EXPECT_EQ(ch.receive(), 2);
        stackless::run();
    });
}

TEST(Deadlock, MainSendingWithNothingRunnable) {
    in_fresh_thread([] {
        channel<std::string> ch;
        EXPECT_THROW(ch.send("nobody listens"), deadlock_error);
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(Deadlock, MainBlockedWhenLastTaskletEnds) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        spawn([&] { log.push_back("ran and ended"); });
        EXPECT_THROW(ch.receive(), deadlock_error);
        EXPECT_EQ(log, (events{"ran and ended"}));
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(Deadlock, MainBlockedWhenLastTaskletBlocksElsewhere) {
    in_fresh_thread([] {
        channel<int> mains, others;
        tasklet t = spawn([&] { others.receive(); });
        EXPECT_THROW(mains.receive(), deadlock_error);
        EXPECT_EQ(mains.balance(), 0);
        expect_idle_scheduler();
        if (t.alive()) t.kill();
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(others.balance(), 0);
    });
}

TEST(Deadlock, TaskletBlockingWhileMainIsInRunLetsRunReturn) {
    in_fresh_thread([] {
        channel<int> ch;
        int got = 0;
        tasklet t = spawn([&] { got = ch.receive(); });
        EXPECT_NO_THROW(stackless::run());
        EXPECT_TRUE(t.blocked());
        EXPECT_EQ(ch.balance(), -1);
        expect_idle_scheduler();
        ch.send(8);
        EXPECT_EQ(got, 8);
    });
}

TEST(Deadlock, TaskletBlockingWhileMainIsPausedLetsMainResume) {
    in_fresh_thread([] {
        channel<int> ch;
        tasklet t = spawn([&] { ch.receive(); });
        t.switch_to();  // main paused, t blocks: nothing runnable, main resumes
        EXPECT_TRUE(t.blocked());
        expect_idle_scheduler();
        ch.send(1);
        EXPECT_FALSE(t.alive());
    });
}

TEST(Deadlock, RangeForOverChannelWhoseProducerEndsWithoutClosingInTime) {
    // With the default preference the consumer (main) runs as soon as each value arrives and
    // blocks again before the producer gets to close(): when the producer ends, nothing is
    // runnable and main is blocked, so main gets deadlock_error.
    in_fresh_thread([] {
        channel<int> ch;
        spawn([&] {
            ch.send_sequence(std::vector<int>{1, 2, 3});
            ch.close();
        });
        std::vector<int> got;
        EXPECT_THROW(
            {
                for (int v : ch) got.push_back(v);
            },
            deadlock_error);
        EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

}  // namespace
