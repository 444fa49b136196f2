// select over channel operations: ready cases, blocking on several channels at once, two
// selects meeting, try_select and deadlines, kill and throw, send_exception, channel preference,
// and what a selecting tasklet looks like. The errors: select_errors_test.cpp; fairness and
// scale: select_scale_test.cpp.
#include <gtest/gtest.h>
#include <pthread.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using namespace stackless;
using stackless_test::events;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;
using stackless_test::mark_on_destroy;

namespace {

// Generous: the test machines are shared (time_test.cpp).
constexpr auto lateness_bound = 500ms;

TEST(Select, CompletesTheOnlyReadyCaseAndLeavesTheOthers) {
    in_fresh_thread([] {
        channel<int> a, b;
        channel<std::string> c;
        spawn([&] { b.send(7); });
        schedule();  // the sender waits on b
        int got = 0;
        const int index = stackless::select(on_receive(a, [&](int) { got = -1; }),
                                            on_receive(b, [&](int v) { got = v; }),
                                            on_send(c, std::string("unsent")));
        EXPECT_EQ(index, 1);
        EXPECT_EQ(got, 7);
        EXPECT_EQ(a.balance(), 0);
        EXPECT_EQ(b.balance(), 0);
        EXPECT_EQ(c.balance(), 0);
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(Select, ReadySendCaseDeliversItsValue) {
    in_fresh_thread([] {
        channel<int> a;
        channel<std::string> b;
        std::string got;
        spawn([&] { got = b.receive(); });
        schedule();
        bool handled = false;
        EXPECT_EQ(stackless::select(on_receive(a), on_send(b, "hello", [&] { handled = true; })),
                  1);
        EXPECT_TRUE(handled);
        EXPECT_EQ(got, "hello");  // preference -1: the receiver ran at once
        EXPECT_EQ(a.balance(), 0);
        EXPECT_EQ(b.balance(), 0);
    });
}

TEST(Select, ReceiveHandlerMayTakeNoArgument) {
    in_fresh_thread([] {
        channel<int> a;
        spawn([&] { a.send(1); });
        int calls = 0;
        EXPECT_EQ(stackless::select(on_receive(a, [&] { ++calls; })), 0);
        EXPECT_EQ(calls, 1);
    });
}

// Blocked on every case at once; a partner that comes later on any one case completes it, and
// the tasklet leaves the other channels.
TEST(Select, BlockingSelectIsCompletedByALaterPartnerOnAnyCase) {
    for (int arriving = 0; arriving < 3; ++arriving) {
        in_fresh_thread([arriving] {
            channel<int> a, b;
            channel<std::string> c;
            int index = -2;
            int received = 0;
            tasklet selector = spawn([&] {
                index = stackless::select(on_receive(a, [&](int v) { received = v; }),
                                          on_receive(b, [&](int v) { received = v; }),
                                          on_send(c, std::string("from select")));
            });
            schedule();
            EXPECT_TRUE(selector.blocked());
            EXPECT_EQ(a.balance(), -1);
            EXPECT_EQ(b.balance(), -1);
            EXPECT_EQ(c.balance(), 1);
            std::string sent_on_c;
            if (arriving == 0) a.send(10);
            if (arriving == 1) b.send(20);
            if (arriving == 2) sent_on_c = c.receive();
            stackless::run();
            EXPECT_EQ(index, arriving);
            EXPECT_EQ(received, arriving == 0 ? 10 : arriving == 1 ? 20 : 0);
            EXPECT_EQ(sent_on_c, arriving == 2 ? "from select" : "");
            EXPECT_EQ(a.balance(), 0);
            EXPECT_EQ(b.balance(), 0);
            EXPECT_EQ(c.balance(), 0);
            EXPECT_FALSE(selector.alive());
            // Nothing of the select is left on the channels: a new partner waits for its own.
            spawn([&] { a.send(30); });
            schedule();
            EXPECT_EQ(a.balance(), 1);
            EXPECT_EQ(a.receive(), 30);
            stackless::run();
            expect_idle_scheduler();
        });
    }
}

TEST(Select, TwoSelectingTaskletsCompleteEachOther) {
    in_fresh_thread([] {
        channel<int> shared, only_a, only_b;
        int a_index = -2, b_index = -2, b_got = 0;
        spawn([&] { a_index = stackless::select(on_send(shared, 5), on_receive(only_a)); });
        spawn([&] {
            b_index = stackless::select(on_receive(only_b),
                                        on_receive(shared, [&](int v) { b_got = v; }));
        });
        stackless::run();
        EXPECT_EQ(a_index, 0);
        EXPECT_EQ(b_index, 1);
        EXPECT_EQ(b_got, 5);
        EXPECT_EQ(shared.balance(), 0);
        EXPECT_EQ(only_a.balance(), 0);
        EXPECT_EQ(only_b.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(Select, TwoCasesOnOneChannelInOneDirection) {
    in_fresh_thread([] {
        channel<int> a;
        int index = -2;
        spawn([&] { index = stackless::select(on_receive(a), on_receive(a)); });
        schedule();
        EXPECT_EQ(a.balance(), -2);
        a.send(1);
        EXPECT_EQ(index, 0);  // the first proxy queued is the first partner
        EXPECT_EQ(a.balance(), 0);
    });
}

TEST(Select, SendExceptionToAReceiveCaseIsRaisedFromSelect) {
    in_fresh_thread([] {
        channel<int> a, b;
        // Waiting: the exception arrives while the select blocks.
        std::string waited;
        bool handler_ran = false;
        spawn([&] {
            try {
                stackless::select(on_receive(a), on_receive(b, [&](int) { handler_ran = true; }));
            } catch (const std::runtime_error& e) {
                waited = e.what();
            }
        });
        schedule();
        b.send_exception(std::runtime_error("to the waiting select"));
        stackless::run();
        EXPECT_EQ(waited, "to the waiting select");
        EXPECT_FALSE(handler_ran);
        EXPECT_EQ(a.balance(), 0);
        // Ready: the sender of the exception waits already.
        spawn([&] { a.send_exception(std::runtime_error("to a ready case")); });
        schedule();
        EXPECT_THROW(
            {
                try {
                    stackless::select(on_receive(a, [&](int) { handler_ran = true; }),
                                      on_receive(b));
                } catch (const std::runtime_error& e) {
                    EXPECT_STREQ(e.what(), "to a ready case");
                    throw;
                }
            },
            std::runtime_error);
        EXPECT_FALSE(handler_ran);
        EXPECT_EQ(a.balance(), 0);
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(TrySelect, ReturnsNoCaseReadyWithoutBlockingOrTouchingTheChannels) {
    in_fresh_thread([] {
        channel<int> a, b;
        spawn([&] { a.receive(); });
        schedule();  // a has a receiver, which a receive case cannot use
        EXPECT_EQ(try_select(on_receive(a), on_send(b, 1)), no_case_ready);
        EXPECT_EQ(a.balance(), -1);
        EXPECT_EQ(b.balance(), 0);
        EXPECT_EQ(try_select(on_receive(b), on_send(a, 2)), 1);  // now a case is ready
        EXPECT_EQ(a.balance(), 0);
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(SelectUntil, TimesOutAndLeavesEveryChannel) {
    in_fresh_thread([] {
        channel<int> a, b;
        events log;
        int index = -2;
        auto waited = stackless::clock::duration::zero();
        spawn([&] {
            const auto start = stackless::clock::now();
            index = select_until(30ms, on_receive(a), on_send(b, 1));
            waited = stackless::clock::now() - start;
            log.push_back("select timed out");
        });
        spawn([&] {
            sleep_for(60ms);
            log.push_back("sleeper woke");
        });
        schedule();
        EXPECT_EQ(a.balance(), -1);
        EXPECT_EQ(b.balance(), 1);
        stackless::run();
        EXPECT_EQ(index, no_case_ready);
        EXPECT_EQ(log, (events{"select timed out", "sleeper woke"}));
        EXPECT_GE(waited, 30ms);
        EXPECT_LT(waited, 30ms + lateness_bound);
        EXPECT_EQ(a.balance(), 0);
        EXPECT_EQ(b.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(SelectUntil, ACompletedCaseCancelsTheDeadline) {
    in_fresh_thread([] {
        channel<int> a, b;
        int index = -2;
        spawn([&] { index = select_until(10s, on_receive(a), on_receive(b)); });
        schedule();
        const auto start = stackless::clock::now();
        b.send(1);
        stackless::run();  // no timer left to wait for: returns at once
        EXPECT_EQ(index, 1);
        EXPECT_LT(stackless::clock::now() - start, 5s);
        EXPECT_EQ(a.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(SelectUntil, PassedDeadlineCompletesOnlyAReadyCase) {
    in_fresh_thread([] {
        channel<int> a;
        EXPECT_EQ(select_until(deadline::passed(), on_receive(a)), no_case_ready);
        spawn([&] { a.send(3); });
        schedule();
        int got = 0;
        EXPECT_EQ(select_until(deadline::passed(), on_receive(a, [&](int v) { got = v; })), 0);
        EXPECT_EQ(got, 3);
    });
}

TEST(Select, KillingASelectingTaskletTakesItOffEveryChannel) {
    in_fresh_thread([] {
        channel<int> a, b;
        channel<std::string> c;
        events log;
        tasklet t = spawn([&] {
            mark_on_destroy m(log, "unwound");
            stackless::select(on_receive(a), on_send(b, 1), on_send(c, std::string(100, 'x')));
            log.push_back("completed");
        });
        schedule();
        EXPECT_TRUE(t.blocked());
        t.kill();
        EXPECT_EQ(log, (events{"unwound"}));
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(a.balance(), 0);
        EXPECT_EQ(b.balance(), 0);
        EXPECT_EQ(c.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(Select, KillingASelectWithADeadlineCancelsItsTimer) {
    in_fresh_thread([] {
        channel<int> a;
        tasklet t = spawn([&] { select_until(1h, on_receive(a)); });
        schedule();
        const auto start = stackless::clock::now();
        t.kill();
        stackless::run();  // the timer is gone: returns at once
        EXPECT_LT(stackless::clock::now() - start, 5s);
        EXPECT_EQ(a.balance(), 0);
    });
}

TEST(Select, ExceptionThrownIntoASelectingTaskletLeavesTheSelect) {
    in_fresh_thread([] {
        channel<int> a, b;
        std::string caught;
        int later = 0;
        tasklet t = spawn([&] {
            try {
                stackless::select(on_receive(a), on_receive(b));
            } catch (const std::runtime_error& e) {
                caught = e.what();
            }
            later = a.receive();  // still a working tasklet
        });
        schedule();
        t.raise_exception(std::runtime_error("wake up"), /*pending=*/true);
        EXPECT_FALSE(t.blocked());
        EXPECT_TRUE(t.scheduled());
        EXPECT_EQ(a.balance(), 0);
        EXPECT_EQ(b.balance(), 0);
        schedule();
        EXPECT_EQ(caught, "wake up");
        EXPECT_EQ(a.balance(), -1);
        a.send(9);
        EXPECT_EQ(later, 9);
        expect_idle_scheduler();
    });
}

// The rules of hand_over, whether the partner found waiting is a plain waiter or a select: with
// preference -1 (default) the receiver runs first, with 1 the sender, with 0 whoever was running
// goes on; schedule_all puts the partner last in the run queue and switches to the caller's
// successor.
events who_runs_first(int preference, bool schedule_all, bool waiter_selects, bool waiter_sends) {
    events log;
    in_fresh_thread([&] {
        channel<int> ch, other;
        ch.set_preference(preference);
        ch.set_schedule_all(schedule_all);
        spawn([&] {
            if (waiter_selects && waiter_sends)
                stackless::select(on_receive(other), on_send(ch, 1));
            else if (waiter_selects)
                stackless::select(on_receive(other), on_receive(ch));
            else if (waiter_sends)
                ch.send(1);
            else
                ch.receive();
            log.push_back("waiter");
        });
        schedule();
        if (waiter_sends)
            ch.receive();
        else
            ch.send(1);
        log.push_back("main");
        stackless::run();
    });
    return log;
}

TEST(Select, ChannelPreferenceDecidesWhoRunsFirstAsForAPlainWaiter) {
    const events waiter_first{"waiter", "main"}, main_first{"main", "waiter"};
    struct expectation {
        int preference;
        bool schedule_all;
        events waiter_receives, waiter_sends;
    };
    const expectation expected[] = {
        {-1, false, waiter_first, main_first}, {1, false, main_first, waiter_first},
        {0, false, main_first, main_first},    {-1, true, waiter_first, waiter_first},
        {0, true, waiter_first, waiter_first},
    };
    for (const expectation& e : expected) {
        for (bool sends : {false, true}) {
            const events plain = who_runs_first(e.preference, e.schedule_all, false, sends);
            const events selecting = who_runs_first(e.preference, e.schedule_all, true, sends);
            const events& want = sends ? e.waiter_sends : e.waiter_receives;
            EXPECT_EQ(plain, want) << e.preference << " " << e.schedule_all << " " << sends;
            EXPECT_EQ(selecting, want) << e.preference << " " << e.schedule_all << " " << sends;
        }
    }
}

TEST(Select, ReadyCaseFollowsPreferenceAsAPlainOperation) {
    in_fresh_thread([] {
        channel<int> ch;  // preference -1: a sender hands over to the receiver at once
        events log;
        spawn([&] {
            ch.receive();
            log.push_back("receiver");
        });
        schedule();
        stackless::select(on_send(ch, 1));
        log.push_back("main");
        EXPECT_EQ(log, (events{"receiver", "main"}));
    });
}

TEST(Select, SelectingTaskletIsBlockedAndListedWhereItsCasesWait) {
    in_fresh_thread([] {
        channel<int> a, b;
        tasklet first = spawn([&] { a.receive(); });
        tasklet selector = spawn([&] { stackless::select(on_receive(a), on_receive(b)); });
        tasklet last = spawn([&] { a.receive(); });
        schedule();
        EXPECT_TRUE(selector.blocked());
        EXPECT_TRUE(selector.scheduled());
        EXPECT_FALSE(selector.paused());
        EXPECT_EQ(selector.blocked_on().channel_payload, nullptr);
        EXPECT_EQ(selector.blocked_on().direction, 0);
        EXPECT_TRUE(b.queue() == selector);
        const std::vector<tasklet> on_a = a.waiting();
        ASSERT_EQ(on_a.size(), 3u);
        EXPECT_TRUE(on_a[0] == first);
        EXPECT_TRUE(on_a[1] == selector);
        EXPECT_TRUE(on_a[2] == last);
        EXPECT_TRUE(first.next() == selector);  // never the proxy itself
        EXPECT_TRUE(last.prev() == selector);
        EXPECT_FALSE(selector.next());  // it waits on several channels
        EXPECT_THROW(selector.insert(), tasklet_state_error);
        EXPECT_THROW(selector.run(), tasklet_state_error);
        EXPECT_THROW(selector.remove(), tasklet_state_error);
        for (int i = 0; i < 3; ++i) a.send(i);
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(Select, OfferedByReportsTheValueOfASelectingSendersCase) {
    in_fresh_thread([] {
        channel<int> a;
        channel<std::string> b;
        tasklet t = spawn([&] { stackless::select(on_send(a, 4), on_send(b, "four")); });
        schedule();
        ASSERT_NE(a.offered_by(t), nullptr);
        EXPECT_EQ(*a.offered_by(t), 4);
        ASSERT_NE(b.offered_by(t), nullptr);
        EXPECT_EQ(*b.offered_by(t), "four");
        EXPECT_EQ(b.receive(), "four");
        EXPECT_EQ(a.offered_by(t), nullptr);
        stackless::run();
    });
}

TEST(Select, ALvalueCaseCopiesItsValueAndCanBeUsedAgain) {
    in_fresh_thread([] {
        channel<std::string> ch;
        int sent = 0;
        auto send_hello = on_send(ch, std::string("hello"), [&] { ++sent; });
        std::vector<std::string> got;
        spawn([&] {
            for (int i = 0; i < 3; ++i) got.push_back(ch.receive());
        });
        for (int i = 0; i < 3; ++i) stackless::select(send_hello);
        EXPECT_EQ(sent, 3);
        EXPECT_EQ(got, (std::vector<std::string>{"hello", "hello", "hello"}));
    });
}

TEST(Select, MoveOnlyValues) {
    in_fresh_thread([] {
        channel<std::unique_ptr<int>> in, out;
        std::unique_ptr<int> got;
        spawn([&] {
            stackless::select(on_receive(in, [&](std::unique_ptr<int> p) { got = std::move(p); }),
                              on_send(out, std::make_unique<int>(1)));
        });
        schedule();
        in.send(std::make_unique<int>(2));
        ASSERT_TRUE(got);
        EXPECT_EQ(*got, 2);
        EXPECT_EQ(out.balance(), 0);  // the unsent value was dropped with its case
    });
}

// A channel that only the select's wait keeps alive goes when the select leaves it.
TEST(Select, ChannelKeptOnlyByASelectIsFreedWhenAnotherCaseCompletes) {
    in_fresh_thread([] {
        channel<int> kept;
        auto only_handle = std::make_unique<channel<std::string>>();
        channel<std::string>* dropped = only_handle.get();
        tasklet t = spawn([&kept, dropped] {
            stackless::select(on_receive(kept), on_send(*dropped, std::string(64, 'v')));
        });
        schedule();
        only_handle.reset();  // only the select's wait holds that channel now
        kept.send(1);
        stackless::run();
        EXPECT_FALSE(t.alive());  // (ASan reports the channel if it leaked or was used freed)
    });
}

TEST(Select, ThreadExitKillsASelectingTasklet) {
    events log;
    in_fresh_thread([&] {
        channel<int> a, b;
        spawn([&] {
            mark_on_destroy m(log, "unwound");
            stackless::select(on_receive(a), on_send(b, 1));
        });
        schedule();
    });
    EXPECT_EQ(log, (events{"unwound"}));
}

// A forced unwind (pthread_cancel, pthread_exit) through a waiting select takes it off its
// channels. (Skipped under the sanitizers, whose runtimes misreport forced unwinds:
// threads_test.cpp.)
TEST(Select, PthreadCancelOfAThreadInSelectTakesItOffItsChannels) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "the sanitizers' runtimes misreport forced unwinds";
#endif
    channel<int> a, b;  // private to the waiting thread while it waits
    events log;
    std::thread waiter([&] {
        mark_on_destroy frame(log, "waiting thread's frame");
        try {
            select_until(1h, on_receive(a), on_send(b, 1));  // sleeps in its reactor
        } catch (...) {
            log.push_back("caught by catch (...)");
            throw;
        }
        log.push_back("select returned");
    });
    while (b.balance() != 1) std::this_thread::yield();
    pthread_cancel(waiter.native_handle());
    waiter.join();
    EXPECT_EQ(log, (events{"caught by catch (...)", "waiting thread's frame"}));
    EXPECT_EQ(a.balance(), 0);
    EXPECT_EQ(b.balance(), 0);
}

TEST(Select, HandlerExceptionsPropagate) {
    in_fresh_thread([] {
        channel<int> a;
        spawn([&] { a.send(1); });
        EXPECT_THROW(stackless::select(on_receive(a, [](int) { throw std::logic_error("h"); })),
                     std::logic_error);
        EXPECT_EQ(a.balance(), 0);
    });
}

}  // namespace
