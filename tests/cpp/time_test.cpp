// Tasklets that wait on time: sleep, deadlines on channel operations, try operations, and what
// run() and blocking operations do while tasklets sleep. Wall times are never asserted exactly:
// order, and lateness within a generous bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <chrono>
#include <random>
#include <thread>

#include "test_util.hpp"

using namespace std::chrono_literals;
using stackless_test::events;
using stackless_test::in_fresh_thread;

namespace {

// Generous: the test machines are shared, and a busy one delays a wake-up by many milliseconds.
constexpr auto lateness_bound = 500ms;
// Time to hand deadlines to thousands of tasklets before the first one is due (a sanitizer
// build switches some ten times slower).
#if defined(__SANITIZE_ADDRESS__)
constexpr auto hand_out_margin = 3s;
#else
constexpr auto hand_out_margin = 300ms;
#endif

TEST(Sleep, SleepersWakeInDeadlineOrderAndRunReturnsAfterTheLast) {
    in_fresh_thread([] {
        events log;
        const auto start = stackless::clock::now();
        for (int ms : {300, 100, 200}) {
            stackless::spawn([&log, start, ms] {
                stackless::sleep_until(start + std::chrono::milliseconds(ms));
                log.push_back(std::to_string(ms));
            });
        }
        stackless::run();
        const auto took = stackless::clock::now() - start;
        EXPECT_EQ(log, (events{"100", "200", "300"}));
        EXPECT_GE(took, 300ms);
        EXPECT_LT(took, 300ms + lateness_bound);
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Sleep, SleepersSleepConcurrently) {
    in_fresh_thread([] {
        const auto start = stackless::clock::now();
        for (int i = 0; i < 3; ++i) stackless::spawn([] { stackless::sleep_for(200ms); });
        stackless::run();
        const auto took = stackless::clock::now() - start;
        EXPECT_GE(took, 200ms);
        EXPECT_LT(took, 200ms + lateness_bound);  // not 600 ms
    });
}

// `count` tasklets, each asleep until the deadline deadline_of(i) that the main tasklet hands
// it once all have started (so that slow starts, under a sanitizer, cannot make one late), each
// logging its index when it wakes. Returns the indexes in waking order; counts early wakes.
std::vector<int> sleep_and_log(int count,
                               const std::function<stackless::clock::time_point(int)>& deadline_of,
                               int& early) {
    std::vector<int> order;
    stackless::channel<stackless::clock::time_point> gate;
    for (int i = 0; i < count; ++i)
        stackless::spawn([&, i] {
            const auto at = gate.receive();
            stackless::sleep_until(at);
            if (stackless::clock::now() < at) ++early;
            order.push_back(i);
        });
    stackless::run();  // all wait at the gate
    for (int i = 0; i < count; ++i) gate.send(deadline_of(i));
    stackless::run();
    return order;
}

TEST(Sleep, EqualDeadlinesFireInTheOrderTheyWereSet) {
    in_fresh_thread([] {
        int early = 0;
        const auto at = stackless::clock::now() + hand_out_margin;
        std::vector<int> order = sleep_and_log(1000, [at](int) { return at; }, early);
        ASSERT_EQ(order.size(), 1000u);
        EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
        EXPECT_EQ(early, 0);
    });
}

TEST(Sleep, ManyRandomTimersFireInOrderAndNeverEarly) {
    in_fresh_thread([] {
        std::mt19937 random(12345);
        std::uniform_int_distribution<int> micros(0, 200'000);
        std::vector<stackless::clock::time_point> deadlines(10'000);
        const auto base = stackless::clock::now() + hand_out_margin;
        for (auto& d : deadlines) d = base + std::chrono::microseconds(micros(random));
        int early = 0;
        std::vector<int> order = sleep_and_log(
            10'000, [&](int i) { return deadlines[static_cast<std::size_t>(i)]; }, early);
        ASSERT_EQ(order.size(), 10'000u);
        EXPECT_EQ(early, 0);
        // Woken in deadline order (those due at the same look at the clock too: the heap yields
        // them earliest first).
        for (std::size_t k = 1; k < order.size(); ++k)
            ASSERT_LE(deadlines[static_cast<std::size_t>(order[k - 1])],
                      deadlines[static_cast<std::size_t>(order[k])])
                << "at position " << k;
    });
}

TEST(Sleep, PastDeadlineLetsTheOthersRunOnce) {
    in_fresh_thread([] {
        events log;
        stackless::spawn([&] { log.push_back("other"); });
        stackless::spawn([&] {
            log.push_back("before");
            stackless::sleep_for(0ms);
            log.push_back("after");
        });
        stackless::spawn([&] { log.push_back("third"); });
        stackless::run();
        EXPECT_EQ(log, (events{"other", "before", "third", "after"}));
    });
}

TEST(Sleep, MainTaskletSleepsWhileOthersRun) {
    in_fresh_thread([] {
        int ticks = 0;
        stackless::spawn([&] {
            for (int i = 0; i < 5; ++i) {
                ++ticks;
                stackless::sleep_for(1ms);
            }
        });
        stackless::sleep_for(100ms);  // main leaves the run queue; the other one runs meanwhile
        EXPECT_EQ(ticks, 5);
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Sleep, SleepingTaskletIsBlockedAndScheduledButCannotBeInserted) {
    in_fresh_thread([] {
        stackless::tasklet t = stackless::spawn([] { stackless::sleep_for(20ms); });
        stackless::schedule();  // t sleeps now
        EXPECT_TRUE(t.alive());
        EXPECT_TRUE(t.blocked());
        EXPECT_TRUE(t.scheduled());
        EXPECT_FALSE(t.paused());
        EXPECT_EQ(t.blocked_on().channel_payload, nullptr);
        EXPECT_THROW(t.insert(), stackless::tasklet_state_error);
        EXPECT_THROW(t.run(), stackless::tasklet_state_error);
        EXPECT_EQ(stackless::getruncount(), 1);
        stackless::run();
        EXPECT_FALSE(t.alive());
    });
}

TEST(Sleep, KillingASleeperCancelsItsTimer) {
    in_fresh_thread([] {
        events log;
        stackless::tasklet t = stackless::spawn([&] {
            stackless_test::mark_on_destroy m(log, "unwound");
            stackless::sleep_for(10s);
            log.push_back("woke");
        });
        stackless::schedule();
        const auto start = stackless::clock::now();
        t.kill();
        EXPECT_EQ(log, (events{"unwound"}));
        EXPECT_FALSE(t.alive());
        stackless::run();  // nothing waits any more: returns at once
        EXPECT_LT(stackless::clock::now() - start, 5s);
    });
}

TEST(Sleep, ExceptionThrownIntoASleeperLeavesTheSleep) {
    in_fresh_thread([] {
        std::string got;
        stackless::tasklet t = stackless::spawn([&] {
            try {
                stackless::sleep_for(10s);
            } catch (const std::runtime_error& e) {
                got = e.what();
            }
        });
        stackless::schedule();
        t.raise_exception(std::runtime_error("wake up"), /*pending=*/true);
        EXPECT_TRUE(t.scheduled());
        EXPECT_FALSE(t.blocked());
        stackless::run();
        EXPECT_EQ(got, "wake up");
    });
}

TEST(Sleep, ThreadExitKillsSleepers) {
    events log;
    in_fresh_thread([&] {
        stackless::spawn([&] {
            stackless_test::mark_on_destroy m(log, "unwound");
            stackless::sleep_for(1h);
        });
        stackless::schedule();
    });
    EXPECT_EQ(log, (events{"unwound"}));
}

TEST(Sleep, BlockingReceiveWaitsForASleepingSender) {
    in_fresh_thread([] {
        stackless::channel<int> ch;
        stackless::spawn([ch]() mutable {
            stackless::sleep_for(20ms);
            ch.send(42);
        });
        EXPECT_EQ(ch.receive(), 42);  // not a deadlock: the sender sleeps
    });
}

TEST(Sleep, AnotherThreadWakesAThreadThatSleepsInItsLoop) {
    in_fresh_thread([] {
        stackless::channel<int> ch(stackless::across_threads);
        std::int64_t slept_ns = 0;
        stackless::spawn([&] {
            const auto start = stackless::clock::now();
            stackless::sleep_for(10s);  // the thread sleeps in its loop until this deadline...
            slept_ns = (stackless::clock::now() - start).count();
        });
        std::thread other([ch]() mutable {
            std::this_thread::sleep_for(50ms);
            ch.send(7);  // ...unless another thread wakes it
        });
        const auto start = stackless::clock::now();
        EXPECT_EQ(ch.receive(), 7);
        EXPECT_LT(stackless::clock::now() - start, 5s);
        other.join();
        // The sleeper still sleeps; kill it rather than wait.
        EXPECT_EQ(slept_ns, 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Deadlines on channel operations

TEST(ChannelDeadline, ReceiveTimesOutWithNothingAndLeavesTheChannelClean) {
    in_fresh_thread([] {
        stackless::channel<int> ch;
        const auto start = stackless::clock::now();
        std::optional<int> got = ch.receive_for(30ms);
        EXPECT_FALSE(got.has_value());
        EXPECT_GE(stackless::clock::now() - start, 30ms);
        EXPECT_EQ(ch.balance(), 0);
        stackless_test::expect_idle_scheduler();
    });
}

TEST(ChannelDeadline, SendTimesOutAndTheValueIsNotDelivered) {
    in_fresh_thread([] {
        stackless::channel<std::string> ch;
        events log;
        stackless::spawn(
            [&] { log.push_back(ch.send_for(std::string("x"), 20ms) ? "sent" : "timeout"); });
        stackless::run();
        EXPECT_EQ(log, (events{"timeout"}));
        EXPECT_EQ(ch.balance(), 0);
        EXPECT_FALSE(ch.try_receive().has_value());
    });
}

TEST(ChannelDeadline, PartnerBeforeTheDeadlineCompletesAndCancelsTheTimer) {
    in_fresh_thread([] {
        stackless::channel<int> ch;
        std::optional<int> got;
        stackless::spawn([&] { got = ch.receive_for(10s); });
        stackless::spawn([&] {
            stackless::sleep_for(10ms);
            ch.send(5);
        });
        const auto start = stackless::clock::now();
        stackless::run();
        EXPECT_EQ(got, 5);
        EXPECT_LT(stackless::clock::now() - start, 5s);  // the 10 s timer did not keep run() busy
    });
}

TEST(ChannelDeadline, ManyTimedReceiversOnOneChannelTimeOutOrReceiveEachOnce) {
    in_fresh_thread([] {
        stackless::channel<int> ch;
        std::vector<int> received;
        int timeouts = 0;
        for (int i = 0; i < 100; ++i)
            stackless::spawn([&, i] {
                if (auto v = ch.receive_for(std::chrono::milliseconds(i % 2 == 0 ? 5 : 2000)))
                    received.push_back(*v);
                else
                    ++timeouts;
            });
        stackless::spawn([&] {
            stackless::sleep_for(100ms);  // the short ones have timed out by now
            for (int v = 0; v < 50; ++v) ch.send(v);
        });
        stackless::run();
        EXPECT_EQ(timeouts, 50);
        std::vector<int> expected(50);
        for (int v = 0; v < 50; ++v) expected[v] = v;
        EXPECT_EQ(received, expected);
        EXPECT_EQ(ch.balance(), 0);
    });
}

TEST(ChannelDeadline, SentExceptionIsRaisedByReceiveFor) {
    in_fresh_thread([] {
        stackless::channel<int> ch;
        stackless::spawn([&] { ch.send_exception(std::runtime_error("boom")); });
        EXPECT_THROW(ch.receive_for(1s), std::runtime_error);
    });
}

TEST(ChannelDeadline, KillingATimedReceiverCancelsItsTimer) {
    in_fresh_thread([] {
        stackless::channel<int> ch;
        stackless::tasklet t = stackless::spawn([&] { ch.receive_for(1h); });
        stackless::schedule();
        EXPECT_EQ(ch.balance(), -1);
        t.kill();
        EXPECT_EQ(ch.balance(), 0);
        const auto start = stackless::clock::now();
        stackless::run();
        EXPECT_LT(stackless::clock::now() - start, 5s);
    });
}

TEST(ChannelDeadline, ClosedChannelRaises) {
    in_fresh_thread([] {
        stackless::channel<int> ch;
        ch.close();
        EXPECT_THROW(ch.receive_for(1s), stackless::channel_closed_error);
        EXPECT_THROW(ch.try_receive(), stackless::channel_closed_error);
        EXPECT_THROW(ch.try_send(1), stackless::channel_closed_error);
    });
}

TEST(ChannelDeadline, DeadlineOnASharedChannelAcrossThreads) {
    in_fresh_thread([] {
        stackless::channel<int> ch(stackless::across_threads);
        EXPECT_FALSE(ch.receive_for(20ms).has_value());
        EXPECT_EQ(ch.balance(), 0);
        std::thread other([ch]() mutable { ch.send(3); });
        EXPECT_EQ(ch.receive_for(10s), 3);
        other.join();
    });
}

TEST(TryOperations, NeverBlockAndCompleteWithAWaitingPartner) {
    in_fresh_thread([] {
        stackless::channel<int> ch;
        EXPECT_FALSE(ch.try_send(1));
        EXPECT_FALSE(ch.try_receive().has_value());
        EXPECT_EQ(ch.balance(), 0);
        stackless::spawn([&] { ch.send(9); });
        stackless::schedule();  // the sender waits now
        EXPECT_EQ(ch.balance(), 1);
        EXPECT_EQ(ch.try_receive(), 9);
        std::optional<int> got;
        stackless::spawn([&] { got = ch.receive(); });
        stackless::schedule();
        EXPECT_TRUE(ch.try_send(4));
        stackless::run();
        EXPECT_EQ(got, 4);
    });
}

}  // namespace

namespace {

TEST(Sleep, BusyTaskletsDoNotStarveASleeper) {
    in_fresh_thread([] {
        bool stop = false;
        std::int64_t late_ns = -1;
        // Two tasklets that never wait: one calls schedule(), two ping-pong over a channel.
        stackless::spawn([&] {
            while (!stop) stackless::schedule();
        });
        stackless::channel<int> ping;
        stackless::spawn([&] {
            while (!stop) ping.send_for(1, 50ms);
        });
        stackless::spawn([&] {
            while (!stop) ping.receive_for(50ms);
        });
        stackless::spawn([&] {
            const auto at = stackless::clock::now() + 20ms;
            stackless::sleep_until(at);
            late_ns = (stackless::clock::now() - at).count();
            stop = true;
        });
        stackless::run();
        ASSERT_GE(late_ns, 0);
        EXPECT_LT(std::chrono::nanoseconds(late_ns), lateness_bound);
    });
}

}  // namespace
