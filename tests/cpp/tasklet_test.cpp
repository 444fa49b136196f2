// The tasklet handle: binding, state queries, identity, lifetime, hooks and misuse.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::events;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;
using stackless_test::mark_on_destroy;

namespace {

// --- binding and the states it leads to ---------------------------------------------------

TEST(Tasklet, DefaultConstructedIsUnboundAndNotAlive) {
    in_fresh_thread([] {
        tasklet t;
        EXPECT_TRUE(static_cast<bool>(t));
        EXPECT_FALSE(t.alive());
        EXPECT_FALSE(t.scheduled());
        EXPECT_FALSE(t.blocked());
        EXPECT_FALSE(t.paused());
        EXPECT_FALSE(t.is_main());
        EXPECT_FALSE(t.is_current());
        EXPECT_FALSE(t.block_trap());
        EXPECT_FALSE(static_cast<bool>(t.next()));
        EXPECT_FALSE(static_cast<bool>(t.prev()));
        expect_idle_scheduler();
    });
}

TEST(Tasklet, BoundWithoutArgumentsIsNotAliveUntilSetup) {
    in_fresh_thread([] {
        events log;
        tasklet t([&](int x) { log.push_back("ran " + std::to_string(x)); });
        EXPECT_FALSE(t.alive());
        EXPECT_FALSE(t.scheduled());
        EXPECT_EQ(getruncount(), 1);

        t.setup(7);  // binds the argument and inserts
        EXPECT_TRUE(t.alive());
        EXPECT_TRUE(t.scheduled());
        EXPECT_FALSE(t.paused());
        EXPECT_FALSE(t.blocked());
        EXPECT_EQ(getruncount(), 2);
        EXPECT_TRUE(log.empty());

        stackless::run();
        EXPECT_EQ(log, (events{"ran 7"}));
        EXPECT_FALSE(t.alive());
        EXPECT_FALSE(t.scheduled());
        EXPECT_FALSE(t.paused());
        expect_idle_scheduler();
    });
}

TEST(Tasklet, CallOperatorIsSetup) {
    in_fresh_thread([] {
        events log;
        auto f = [&](std::string who, int n) { log.push_back(who + std::to_string(n)); };
        tasklet{f}(std::string("a"), 1);
        tasklet{f}(std::string("b"), 2);
        EXPECT_EQ(getruncount(), 3);
        stackless::run();
        EXPECT_EQ(log, (events{"a1", "b2"}));
    });
}

TEST(Tasklet, ZeroArgumentFunctionSetupWithNoArguments) {
    in_fresh_thread([] {
        events log;
        tasklet t([&] { log.push_back("ran"); });
        t();
        EXPECT_TRUE(t.alive());
        stackless::run();
        EXPECT_EQ(log, (events{"ran"}));
    });
}

TEST(Tasklet, StepwiseBindSetupLikeTheArticle) {
    // t = stackless.tasklet(); t.bind(f); t.setup(); t.insert()
    in_fresh_thread([] {
        events log;
        tasklet t;
        t.bind([&] { log.push_back("f"); });
        EXPECT_FALSE(t.alive());
        t.setup();
        t.insert();  // already inserted by setup: a no-op
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(log, (events{"f"}));
    });
}

TEST(Tasklet, BindWithArgumentsMakesItAlivePausedAndInsertRunsIt) {
    in_fresh_thread([] {
        events log;
        tasklet t;
        t.bind([&](int a, std::string b) { log.push_back(std::to_string(a) + b); }, 4, "x");
        EXPECT_TRUE(t.alive());
        EXPECT_TRUE(t.paused());
        EXPECT_FALSE(t.scheduled());
        EXPECT_EQ(getruncount(), 1);

        stackless::run();  // not in the queue: does not run
        EXPECT_TRUE(log.empty());

        t.insert();
        EXPECT_TRUE(t.scheduled());
        EXPECT_FALSE(t.paused());
        stackless::run();
        EXPECT_EQ(log, (events{"4x"}));
        EXPECT_FALSE(t.alive());
    });
}

TEST(Tasklet, SpawnConvertsArgumentsAsInvokeDoes) {
    in_fresh_thread([] {
        events log;
        // const char* -> std::string, int -> double, a std::reference_wrapper -> T&
        int counter = 0;
        spawn([&](std::string s, double d) { log.push_back(s + std::to_string(int(d * 2))); },
              "lit", 3);
        spawn([](std::reference_wrapper<int> c) { c.get() += 5; }, std::ref(counter));
        stackless::run();
        EXPECT_EQ(log, (events{"lit6"}));
        EXPECT_EQ(counter, 5);
    });
}

TEST(Tasklet, SpawnAcceptsMoveOnlyArguments) {
    in_fresh_thread([] {
        int seen = 0;
        spawn([&seen](std::unique_ptr<int> p) { seen = *p; }, std::make_unique<int>(42));
        stackless::run();
        EXPECT_EQ(seen, 42);
    });
}

TEST(Tasklet, SpawnAcceptsPlainFunctionsAndFunctionObjects) {
    struct adder {
        int* target;
        void operator()(int v) const { *target += v; }
    };
    static int global_total = 0;
    struct fn {
        static void add(int v) { global_total += v; }
    };
    in_fresh_thread([] {
        int total = 0;
        global_total = 0;
        spawn(adder{&total}, 3);
        spawn(&fn::add, 4);
        tasklet{&fn::add}(5);
        tasklet{adder{&total}}(6);
        stackless::run();
        EXPECT_EQ(total, 9);
        EXPECT_EQ(global_total, 9);
    });
}

TEST(Tasklet, SetupWithMismatchedArgumentTypesIsInvalidArgument) {
    in_fresh_thread([] {
        tasklet t([](std::string) {});
        EXPECT_THROW(t.setup("a C string, not a std::string"), std::invalid_argument);
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(getruncount(), 1);
        t.setup(std::string("right type"));
        EXPECT_TRUE(t.alive());
        stackless::run();
        EXPECT_FALSE(t.alive());
    });
}

TEST(Tasklet, SetupOnAliveTaskletIsStateError) {
    in_fresh_thread([] {
        tasklet t = spawn([](int) { schedule_remove(); }, 1);
        EXPECT_THROW(t.setup(2), tasklet_state_error);  // scheduled, not started
        stackless::run();
        ASSERT_TRUE(t.paused());
        EXPECT_THROW(t.setup(3), tasklet_state_error);  // started and paused
        t.kill();
        EXPECT_FALSE(t.alive());
    });
}

TEST(Tasklet, DeadTaskletCanBeBoundAgainAndRunsAgain) {
    in_fresh_thread([] {
        events log;
        tasklet t([&](int n) { log.push_back("first " + std::to_string(n)); });
        t(1);
        stackless::run();
        ASSERT_FALSE(t.alive());
        t.bind([&](int n) { log.push_back("second " + std::to_string(n)); });
        t(2);
        stackless::run();
        EXPECT_EQ(log, (events{"first 1", "second 2"}));
        EXPECT_FALSE(t.alive());
    });
}

TEST(Tasklet, BindOnScheduledTaskletIsStateError) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] { log.push_back("original"); });
        EXPECT_THROW(t.bind([&] { log.push_back("replacement"); }), tasklet_state_error);
        stackless::run();
        EXPECT_EQ(log, (events{"original"}));
    });
}

// --- states while running ----------------------------------------------------------------

TEST(Tasklet, MainTaskletQueries) {
    in_fresh_thread([] {
        tasklet m = getmain();
        EXPECT_TRUE(m.is_main());
        EXPECT_TRUE(m.is_current());
        EXPECT_TRUE(m.alive());
        EXPECT_TRUE(m.scheduled());
        EXPECT_FALSE(m.paused());
        EXPECT_FALSE(m.blocked());
        EXPECT_TRUE(getcurrent() == m);
        EXPECT_NE(m.thread_id(), 0u);
        // With only main in the queue, main is its own neighbour.
        EXPECT_TRUE(m.next() == m);
        EXPECT_TRUE(m.prev() == m);
    });
}

TEST(Tasklet, QueriesFromInsideRunningTasklet) {
    in_fresh_thread([] {
        tasklet t;
        bool inside_current = false, inside_scheduled = false, inside_alive = false,
             inside_is_main = true, main_current = true, main_scheduled = true, main_paused = false,
             same_handle = false;
        t.bind([&] {
            tasklet me = getcurrent();
            same_handle = (me == t);
            inside_current = t.is_current();
            inside_scheduled = t.scheduled();
            inside_alive = t.alive();
            inside_is_main = t.is_main();
            main_current = getmain().is_current();
            main_scheduled = getmain().scheduled();  // run() took main out of the queue
            main_paused = getmain().paused();
        });
        t.setup();
        EXPECT_FALSE(t.is_current());
        stackless::run();
        EXPECT_TRUE(same_handle);
        EXPECT_TRUE(inside_current);
        EXPECT_TRUE(inside_scheduled);
        EXPECT_TRUE(inside_alive);
        EXPECT_FALSE(inside_is_main);
        EXPECT_FALSE(main_current);
        EXPECT_FALSE(main_scheduled);
        EXPECT_TRUE(main_paused);
        expect_idle_scheduler();
    });
}

TEST(Tasklet, BlockedTaskletStates) {
    in_fresh_thread([] {
        channel<int> ch;
        tasklet t = spawn([&] { ch.receive(); });
        stackless::run();
        EXPECT_TRUE(t.alive());
        EXPECT_TRUE(t.blocked());
        EXPECT_TRUE(t.scheduled());  // blocked counts as scheduled
        EXPECT_FALSE(t.paused());
        EXPECT_FALSE(t.is_current());
        EXPECT_EQ(getruncount(), 1);  // but it is not runnable
        ch.send(1);
        EXPECT_FALSE(t.alive());
        EXPECT_FALSE(t.blocked());
    });
}

TEST(Tasklet, ThreadIdIsSharedByTheThreadsTasklets) {
    in_fresh_thread([] {
        std::uint64_t inside = 0;
        tasklet t = spawn([&] { inside = getcurrent().thread_id(); });
        EXPECT_EQ(t.thread_id(), getmain().thread_id());
        stackless::run();
        EXPECT_EQ(inside, getmain().thread_id());
        EXPECT_NE(inside, 0u);
        tasklet unbound;
        EXPECT_EQ(unbound.thread_id(), getmain().thread_id());
    });
}

// --- handles and identity ------------------------------------------------------------------

TEST(Tasklet, HandlesCompareAndHashByIdentity) {
    in_fresh_thread([] {
        tasklet a;
        tasklet b;
        tasklet a2 = a;
        EXPECT_TRUE(a == a2);
        EXPECT_FALSE(a == b);
        std::unordered_set<tasklet> set{a, b, a2};
        EXPECT_EQ(set.size(), 2u);
        EXPECT_TRUE(getmain() == getmain());
        EXPECT_TRUE(getcurrent() == getmain());
        tasklet moved = std::move(a2);
        EXPECT_TRUE(moved == a);
        EXPECT_FALSE(static_cast<bool>(a2));  // NOLINT(bugprone-use-after-move)
        b = moved;
        EXPECT_TRUE(b == a);
    });
}

// --- lifetime ------------------------------------------------------------------------------

TEST(Lifetime, DroppingHandlesToScheduledTaskletIsSafe) {
    in_fresh_thread([] {
        events log;
        for (int i = 0; i < 3; ++i) {
            spawn([&log, i] {
                log.push_back("start " + std::to_string(i));
                schedule();
                log.push_back("end " + std::to_string(i));
            });  // handle dropped at once
        }
        stackless::run();
        EXPECT_EQ(log, (events{"start 0", "start 1", "start 2", "end 0", "end 1", "end 2"}));
        expect_idle_scheduler();
    });
}

TEST(Lifetime, DroppingHandlesToBlockedTaskletIsSafe) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        spawn([&] { log.push_back("got " + std::to_string(ch.receive())); });
        stackless::run();
        EXPECT_EQ(ch.balance(), -1);
        EXPECT_TRUE(log.empty());
        ch.send(11);
        EXPECT_EQ(log, (events{"got 11"}));
        EXPECT_EQ(ch.balance(), 0);
    });
}

TEST(Lifetime, DroppingLastHandleToPausedStartedTaskletKillsIt) {
    in_fresh_thread([] {
        events log;
        {
            tasklet t = spawn([&] {
                mark_on_destroy guard(log, "unwound");
                log.push_back("start");
                schedule_remove();
                log.push_back("resumed");  // must never happen
            });
            stackless::run();
            ASSERT_TRUE(t.paused());
            EXPECT_EQ(getruncount(), 1);
        }  // the last handle goes: the tasklet is put back with tasklet_exit pending
        EXPECT_EQ(log, (events{"start"}));
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(log, (events{"start", "unwound"}));
        expect_idle_scheduler();
    });
}

TEST(Lifetime, FunctionObjectIsReleasedWhenTaskletEndsAndHandlesGo) {
    in_fresh_thread([] {
        auto token = std::make_shared<int>(1);
        std::weak_ptr<int> watch = token;
        {
            tasklet t = spawn([token] { (void)token; });
            token.reset();
            EXPECT_FALSE(watch.expired());
            stackless::run();
            EXPECT_FALSE(t.alive());
        }
        EXPECT_TRUE(watch.expired());
    });
}

TEST(Lifetime, UnstartedPausedTaskletIsFreedWithItsLastHandle) {
    in_fresh_thread([] {
        bool ran = false;
        auto token = std::make_shared<int>(1);
        std::weak_ptr<int> watch = token;
        {
            tasklet t;
            t.bind([token, &ran](int) { ran = true; }, 1);  // alive, paused, never started
            token.reset();
            EXPECT_TRUE(t.paused());
        }
        stackless::run();
        EXPECT_FALSE(ran);
        EXPECT_TRUE(watch.expired());
        expect_idle_scheduler();
    });
}

TEST(Lifetime, ThreadExitKillsTaskletsThatAreStillAlive) {
    events log;
    auto never_run_token = std::make_shared<int>(1);
    std::weak_ptr<int> never_run_watch = never_run_token;
    bool never_run_ran = false;
    in_fresh_thread([&] {
        channel<int> ch;
        // blocked on a channel, no handle kept
        spawn([&] {
            mark_on_destroy guard(log, "blocked unwound");
            ch.receive();
            log.push_back("blocked resumed");
        });
        // runnable, started (loops forever)
        spawn([&] {
            mark_on_destroy guard(log, "looping unwound");
            for (;;) schedule();
        });
        // paused, started, its handle held by main until the end of this function
        tasklet paused = spawn([&] {
            mark_on_destroy guard(log, "paused unwound");
            schedule_remove();
            log.push_back("paused resumed");
        });
        schedule();  // runs each of them once; main is back after the looping one yields
        ASSERT_TRUE(paused.paused());
        // runnable, never started
        spawn([token = std::move(never_run_token), &never_run_ran] {
            (void)token;
            never_run_ran = true;
        });
        EXPECT_TRUE(log.empty());
    });
    // The thread has ended: every tasklet it left alive was killed, unwinding its stack.
    std::sort(log.begin(), log.end());
    EXPECT_EQ(log, (events{"blocked unwound", "looping unwound", "paused unwound"}));
    EXPECT_FALSE(never_run_ran);
    EXPECT_TRUE(never_run_watch.expired());
}

// --- hooks ---------------------------------------------------------------------------------

struct hook_counts {
    int in = 0;
    int out = 0;
};
void count_in(void* p) noexcept {
    ++static_cast<hook_counts*>(p)->in;
}
void count_out(void* p) noexcept {
    ++static_cast<hook_counts*>(p)->out;
}
const tasklet_hooks counting_hooks{&count_out, &count_in};

TEST(Tasklet, HooksAreCalledWhenTheTaskletSwitchesInAndOut) {
    in_fresh_thread([] {
        hook_counts counts;
        int in_at_start = -1, out_at_start = -1, in_after_yield = -1, out_after_yield = -1;
        tasklet t = spawn([&] {
            in_at_start = counts.in;
            out_at_start = counts.out;
            schedule();  // main is the only other runnable tasklet
            in_after_yield = counts.in;
            out_after_yield = counts.out;
        });
        t.set_hooks(&counting_hooks, &counts);
        EXPECT_EQ(t.payload(), &counts);
        schedule();
        EXPECT_EQ(in_at_start, 1);
        EXPECT_EQ(out_at_start, 0);
        EXPECT_EQ(counts.out, 1);
        schedule();
        EXPECT_EQ(in_after_yield, 2);
        EXPECT_EQ(out_after_yield, 1);
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(counts.in, 2);
        // Leaving for good may or may not count as switching out, but nothing else does.
        EXPECT_GE(counts.out, 1);
        EXPECT_LE(counts.out, 2);
    });
}

TEST(Tasklet, TaskletsWithoutHooksHaveNullPayload) {
    in_fresh_thread([] {
        tasklet t;
        EXPECT_EQ(t.payload(), nullptr);
        EXPECT_EQ(getmain().payload(), nullptr);
    });
}

// --- misuse --------------------------------------------------------------------------------

TEST(TaskletMisuse, RunOrInsertNeverBoundTaskletIsStateError) {
    in_fresh_thread([] {
        tasklet t;
        EXPECT_THROW(t.insert(), tasklet_state_error);
        EXPECT_THROW(t.run(), tasklet_state_error);
        EXPECT_THROW(t.switch_to(), tasklet_state_error);
        tasklet f([](int) {});  // function bound, arguments not
        EXPECT_THROW(f.insert(), tasklet_state_error);
        EXPECT_THROW(f.run(), tasklet_state_error);
        expect_idle_scheduler();
    });
}

TEST(TaskletMisuse, RunOrInsertDeadTaskletIsStateError) {
    in_fresh_thread([] {
        int runs = 0;
        tasklet t = spawn([&] { ++runs; });
        stackless::run();
        ASSERT_FALSE(t.alive());
        EXPECT_THROW(t.insert(), tasklet_state_error);
        EXPECT_THROW(t.run(), tasklet_state_error);
        EXPECT_THROW(t.switch_to(), tasklet_state_error);
        EXPECT_EQ(runs, 1);
        expect_idle_scheduler();
    });
}

TEST(TaskletMisuse, InsertOrRunBlockedTaskletIsStateError) {
    in_fresh_thread([] {
        channel<int> ch;
        int got = 0;
        tasklet t = spawn([&] { got = ch.receive(); });
        stackless::run();
        ASSERT_TRUE(t.blocked());
        EXPECT_THROW(t.insert(), tasklet_state_error);
        EXPECT_THROW(t.run(), tasklet_state_error);
        EXPECT_TRUE(t.blocked());
        EXPECT_EQ(ch.balance(), -1);
        EXPECT_EQ(getruncount(), 1);
        ch.send(5);
        EXPECT_EQ(got, 5);
    });
}

TEST(TaskletMisuse, RemoveBlockedTaskletIsStateError) {
    // Stackless: "You cannot remove a blocked tasklet."
    in_fresh_thread([] {
        channel<int> ch;
        tasklet t = spawn([&] { ch.receive(); });
        stackless::run();
        ASSERT_TRUE(t.blocked());
        EXPECT_THROW(t.remove(), tasklet_state_error);
        EXPECT_TRUE(t.blocked());
        EXPECT_EQ(ch.balance(), -1);
        ch.send(1);
        EXPECT_FALSE(t.alive());
    });
}

}  // namespace

namespace {

TEST(Tasklet, AbandonDropsAPausedTaskletsStackWithoutUnwindingItAndUnbindsIt) {
    in_fresh_thread([] {
        std::vector<int> log;
        tasklet t = spawn([&log] {
            log.push_back(1);
            schedule_remove();
            log.push_back(2);  // never: its stack is dropped
        });
        run();
        ASSERT_TRUE(t.paused());
        t.abandon();
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(log, std::vector<int>{1});
        t.bind([&log] { log.push_back(3); });
        t.setup();
        run();
        EXPECT_EQ(log, (std::vector<int>{1, 3}));
        EXPECT_THROW(getmain().abandon(), tasklet_state_error);
        tasklet runnable = spawn([] { schedule(); });
        EXPECT_THROW(runnable.abandon(), tasklet_state_error);  // scheduled
        run();
        expect_idle_scheduler();
    });
}

}  // namespace
