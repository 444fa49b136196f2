// Channels: rendezvous, balance, preference and schedule_all, close/open, iteration,
// send_sequence, send_exception, queue/waiting, block_trap and value types.
#include <gtest/gtest.h>

#include <array>
#include <list>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::events;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;
using stackless_test::mark_on_destroy;

namespace {

// channels.rst, channel.send example: the sender blocks until main receives.
TEST(Channel, SenderBlocksUntilReceiverComes) {
    in_fresh_thread([] {
        channel<int> ch;
        tasklet s = spawn([&] { ch.send(5); });
        EXPECT_EQ(ch.balance(), 0);
        stackless::run();
        EXPECT_EQ(ch.balance(), 1);
        EXPECT_TRUE(s.blocked());
        EXPECT_EQ(ch.receive(), 5);
        EXPECT_EQ(ch.balance(), 0);
        EXPECT_FALSE(s.blocked());
        EXPECT_TRUE(s.scheduled());  // runnable again, not yet run
        EXPECT_TRUE(s.alive());
        stackless::run();
        EXPECT_FALSE(s.alive());
        expect_idle_scheduler();
    });
}

// channels.rst, channel.receive example: the receiver blocks until main sends.
TEST(Channel, ReceiverBlocksUntilSenderComes) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        tasklet r = spawn([&] { log.push_back("got " + std::to_string(ch.receive())); });
        stackless::run();
        EXPECT_EQ(ch.balance(), -1);
        EXPECT_TRUE(r.blocked());
        ch.send(5);
        log.push_back("sent");
        // preference -1: the receiver ran at once; it ended and main continued
        EXPECT_EQ(log, (events{"got 5", "sent"}));
        EXPECT_EQ(ch.balance(), 0);
        EXPECT_FALSE(r.alive());
        expect_idle_scheduler();
    });
}

TEST(Channel, SenderStaysRunnableAndRunsWhenTheReceiverYields) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        spawn([&] {
            log.push_back("R got " + std::to_string(ch.receive()));
            schedule();
            log.push_back("R resumed");
        });
        stackless::run();
        ch.send(1);  // R runs at once; when it yields, main (still in the queue) goes on
        log.push_back("sent");
        EXPECT_EQ(getruncount(), 2);
        stackless::run();
        EXPECT_EQ(log, (events{"R got 1", "sent", "R resumed"}));
    });
}

TEST(Channel, BlockingTaskletLeavesTheRunQueue) {
    in_fresh_thread([] {
        channel<int> ch;
        std::vector<int> counts;
        tasklet t = spawn([&] {
            counts.push_back(getruncount());
            ch.receive();
            counts.push_back(getruncount());
        });
        spawn([&] { counts.push_back(getruncount()); });
        schedule();  // t blocks, the other ends, main is back
        EXPECT_EQ(counts, (std::vector<int>{3, 2}));
        EXPECT_EQ(getruncount(), 1);
        EXPECT_TRUE(t.blocked());
        EXPECT_FALSE(static_cast<bool>(getmain().next() == t));
        ch.send(0);
        EXPECT_EQ(counts, (std::vector<int>{3, 2, 2}));  // t and main
    });
}

TEST(Channel, BalanceCountsWaitingSendersInFifoOrder) {
    in_fresh_thread([] {
        channel<int> ch;
        for (int i = 0; i < 4; ++i) spawn([&ch, i] { ch.send(i * 10); });
        stackless::run();
        EXPECT_EQ(ch.balance(), 4);
        std::vector<int> got;
        for (int expected_balance = 3; expected_balance >= 0; --expected_balance) {
            got.push_back(ch.receive());
            EXPECT_EQ(ch.balance(), expected_balance);
        }
        EXPECT_EQ(got, (std::vector<int>{0, 10, 20, 30}));
        EXPECT_EQ(getruncount(), 5);  // the four senders are runnable again
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(Channel, BalanceCountsWaitingReceiversInFifoOrder) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        for (int i = 0; i < 3; ++i)
            spawn([&log, &ch, i] {
                int v = ch.receive();
                log.push_back("r" + std::to_string(i) + " got " + std::to_string(v));
            });
        stackless::run();
        EXPECT_EQ(ch.balance(), -3);
        for (int v = 1; v <= 3; ++v) {
            ch.send(v);
            log.push_back("sent " + std::to_string(v));
            EXPECT_EQ(ch.balance(), v - 3);
        }
        EXPECT_EQ(log, (events{"r0 got 1", "sent 1", "r1 got 2", "sent 2", "r2 got 3", "sent 3"}));
    });
}

TEST(Channel, PingPongBetweenTwoTasklets) {
    in_fresh_thread([] {
        channel<int> ping, pong;
        int last = -1;
        spawn([&] {
            for (int i = 0; i < 1000; ++i) {
                ping.send(i);
                EXPECT_EQ(pong.receive(), i + 1);
            }
        });
        spawn([&] {
            for (int i = 0; i < 1000; ++i) {
                int v = ping.receive();
                last = v;
                pong.send(v + 1);
            }
        });
        stackless::run();
        EXPECT_EQ(last, 999);
        EXPECT_EQ(ping.balance(), 0);
        EXPECT_EQ(pong.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(Channel, ManyProducersAndConsumers) {
    in_fresh_thread([] {
        channel<int> ch;
        long long received_sum = 0;
        int received = 0;
        for (int p = 0; p < 10; ++p)
            spawn([&ch, p] {
                for (int i = 0; i < 100; ++i) {
                    ch.send(p * 100 + i);
                    if (i % 7 == 0) schedule();
                }
            });
        for (int c = 0; c < 10; ++c)
            spawn([&] {
                for (int i = 0; i < 100; ++i) {
                    received_sum += ch.receive();
                    ++received;
                    if (i % 5 == 0) schedule();
                }
            });
        stackless::run();
        EXPECT_EQ(received, 1000);
        EXPECT_EQ(received_sum, 999LL * 1000 / 2);
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

// --- preference and schedule_all ---------------------------------------------------------

struct mode {
    int preference;
    bool schedule_all;
    events send_order;     // main sends to a waiting receiver R while X is runnable
    events receive_order;  // main receives from a waiting sender S while X is runnable
};

std::ostream& operator<<(std::ostream& os, const mode& m) {
    return os << "preference " << m.preference << (m.schedule_all ? " schedule_all" : "");
}

class ChannelPreference : public ::testing::TestWithParam<mode> {};

TEST_P(ChannelPreference, SendToWaitingReceiver) {
    const mode m = GetParam();
    in_fresh_thread([&] {
        events log;
        channel<int> ch;
        ch.set_preference(m.preference);
        ch.set_schedule_all(m.schedule_all);
        spawn([&] {
            int v = ch.receive();
            log.push_back("R got " + std::to_string(v) +
                          (getmain().scheduled() ? " (main runnable)" : " (main not runnable)"));
        });
        stackless::run();  // R blocks
        ASSERT_EQ(ch.balance(), -1);
        spawn([&] { log.push_back("X"); });  // queue: main, X
        ch.send(1);
        log.push_back("sent");
        EXPECT_EQ(ch.balance(), 0);
        stackless::run();
        EXPECT_EQ(log, m.send_order);
        expect_idle_scheduler();
    });
}

TEST_P(ChannelPreference, ReceiveFromWaitingSender) {
    const mode m = GetParam();
    in_fresh_thread([&] {
        events log;
        channel<int> ch;
        ch.set_preference(m.preference);
        ch.set_schedule_all(m.schedule_all);
        spawn([&] {
            ch.send(1);
            log.push_back("S resumed");
        });
        stackless::run();  // S blocks
        ASSERT_EQ(ch.balance(), 1);
        spawn([&] { log.push_back("X"); });  // queue: main, X
        int v = ch.receive();
        log.push_back("got " + std::to_string(v));
        EXPECT_EQ(ch.balance(), 0);
        stackless::run();
        EXPECT_EQ(log, m.receive_order);
        expect_idle_scheduler();
    });
}

INSTANTIATE_TEST_SUITE_P(
    Modes, ChannelPreference,
    ::testing::Values(
        // prefer the receiver: on send, R is put right after main and runs at once, main stays
        // runnable (after X); on receive, main continues and S goes to the end of the queue.
        mode{-1, false, {"R got 1 (main runnable)", "X", "sent"}, {"got 1", "X", "S resumed"}},
        // neither: the caller continues, the woken tasklet goes to the end of the queue (R runs
        // later inside main's run(), when main is out of the queue)
        mode{0, false, {"sent", "X", "R got 1 (main not runnable)"}, {"got 1", "X", "S resumed"}},
        // prefer the sender: on send main continues; on receive S runs at once
        mode{1, false, {"sent", "X", "R got 1 (main not runnable)"}, {"S resumed", "X", "got 1"}},
        // schedule_all: the woken tasklet goes to the end, and the caller switches to its next
        mode{-1, true, {"X", "R got 1 (main runnable)", "sent"}, {"X", "S resumed", "got 1"}},
        mode{1, true, {"X", "R got 1 (main runnable)", "sent"}, {"X", "S resumed", "got 1"}}),
    [](const ::testing::TestParamInfo<mode>& info) {
        std::string name = info.param.preference < 0    ? "PreferReceiver"
                           : info.param.preference == 0 ? "PreferNeither"
                                                        : "PreferSender";
        return name + (info.param.schedule_all ? "ScheduleAll" : "");
    });

TEST(Channel, PreferenceAccessorsAndValidation) {
    in_fresh_thread([] {
        channel<int> ch;
        EXPECT_EQ(ch.preference(), -1);
        EXPECT_FALSE(ch.schedule_all());
        ch.set_preference(1);
        EXPECT_EQ(ch.preference(), 1);
        ch.set_preference(0);
        EXPECT_EQ(ch.preference(), 0);
        EXPECT_THROW(ch.set_preference(2), std::invalid_argument);
        EXPECT_THROW(ch.set_preference(-2), std::invalid_argument);
        EXPECT_EQ(ch.preference(), 0);
        ch.set_schedule_all(true);
        EXPECT_TRUE(ch.schedule_all());
        ch.set_schedule_all(false);
        EXPECT_FALSE(ch.schedule_all());
    });
}

// scheduler.rst, "pumping the scheduler": preference 1 lets a sender wake every waiting
// receiver without blocking.
TEST(Channel, PumpingTheSchedulerWithPreferSender) {
    in_fresh_thread([] {
        channel<int> yield_channel;
        yield_channel.set_preference(1);
        events log;
        for (int i = 0; i < 3; ++i)
            spawn([&, i] {
                for (int step = 0; step < 2; ++step) {
                    log.push_back(std::string("t").append(std::to_string(i)) + " step " +
                                  std::to_string(step));
                    yield_channel.receive();  // custom yield outside the scheduler
                }
            });
        stackless::run();
        EXPECT_EQ(log, (events{"t0 step 0", "t1 step 0", "t2 step 0"}));
        EXPECT_EQ(yield_channel.balance(), -3);
        int woken = 0;
        while (yield_channel.balance() < 0) {
            yield_channel.send(0);  // does not block, does not switch
            ++woken;
        }
        EXPECT_EQ(woken, 3);
        EXPECT_EQ(log.size(), 3u);
        EXPECT_EQ(getruncount(), 4);
        stackless::run();
        EXPECT_EQ(log, (events{"t0 step 0", "t1 step 0", "t2 step 0", "t0 step 1", "t1 step 1",
                               "t2 step 1"}));
        EXPECT_EQ(yield_channel.balance(), -3);
        while (yield_channel.balance() < 0) yield_channel.send(0);
        stackless::run();
        expect_idle_scheduler();
    });
}

// --- close and open --------------------------------------------------------------------------

TEST(ChannelClose, EmptyChannelClosesAtOnce) {
    in_fresh_thread([] {
        channel<int> ch;
        EXPECT_FALSE(ch.closing());
        EXPECT_FALSE(ch.closed());
        ch.close();
        EXPECT_TRUE(ch.closing());
        EXPECT_TRUE(ch.closed());
        EXPECT_THROW(ch.receive(), channel_closed_error);
        EXPECT_THROW(ch.send(1), channel_closed_error);
        EXPECT_THROW(ch.send_exception(std::runtime_error("x")), channel_closed_error);
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(ChannelClose, ClosedChannelErrorComesBeforeDeadlock) {
    // main would otherwise deadlock; closing is checked first, as in Stackless
    in_fresh_thread([] {
        channel<int> ch;
        ch.close();
        try {
            ch.receive();
            ADD_FAILURE() << "receive on a closed channel did not throw";
        } catch (const channel_closed_error&) {
        } catch (const std::exception& e) {
            ADD_FAILURE() << "wrong exception: " << e.what();
        }
    });
}

TEST(ChannelClose, OpenReopens) {
    in_fresh_thread([] {
        channel<int> ch;
        ch.close();
        ch.open();
        EXPECT_FALSE(ch.closing());
        EXPECT_FALSE(ch.closed());
        spawn([&] { ch.send(9); });
        EXPECT_EQ(ch.receive(), 9);
        stackless::run();
    });
}

TEST(ChannelClose, WaitingSendersStillDeliverAfterClose) {
    in_fresh_thread([] {
        channel<int> ch;
        spawn([&] { ch.send(1); });
        spawn([&] { ch.send(2); });
        stackless::run();
        ASSERT_EQ(ch.balance(), 2);
        ch.close();
        EXPECT_TRUE(ch.closing());
        EXPECT_FALSE(ch.closed());
        EXPECT_EQ(ch.receive(), 1);
        EXPECT_FALSE(ch.closed());
        EXPECT_EQ(ch.receive(), 2);
        EXPECT_TRUE(ch.closed());
        EXPECT_THROW(ch.receive(), channel_closed_error);
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(ChannelClose, WaitingReceiversStillGetValuesAfterClose) {
    in_fresh_thread([] {
        channel<int> ch;
        std::vector<int> got;
        spawn([&] { got.push_back(ch.receive()); });
        spawn([&] { got.push_back(ch.receive()); });
        stackless::run();
        ASSERT_EQ(ch.balance(), -2);
        ch.close();
        EXPECT_FALSE(ch.closed());
        // a blocked receiver stays blocked: close() does not wake it
        EXPECT_EQ(ch.balance(), -2);
        EXPECT_TRUE(ch.queue().blocked());
        ch.send(10);
        ch.send(20);
        EXPECT_TRUE(ch.closed());
        EXPECT_THROW(ch.send(30), channel_closed_error);
        EXPECT_EQ(got, (std::vector<int>{10, 20}));
        expect_idle_scheduler();
    });
}

TEST(ChannelClose, TaskletThatWouldBlockOnClosingChannelGetsError) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        ch.close();
        spawn([&] {
            try {
                ch.send(1);
                log.push_back("sent?");
            } catch (const channel_closed_error&) {
                log.push_back("closed");
            }
            log.push_back(getcurrent().scheduled() ? "still scheduled" : "not scheduled");
        });
        stackless::run();
        EXPECT_EQ(log, (events{"closed", "still scheduled"}));
        EXPECT_EQ(ch.balance(), 0);
    });
}

TEST(ChannelClose, RangeForReceivesUntilClosingAndEmpty) {
    in_fresh_thread([] {
        channel<int> ch;
        for (int i = 0; i < 3; ++i) spawn([&ch, i] { ch.send(i); });
        stackless::run();
        ASSERT_EQ(ch.balance(), 3);
        ch.close();
        std::vector<int> got;
        for (int v : ch) got.push_back(v);
        EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
        EXPECT_TRUE(ch.closed());
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(ChannelClose, RangeForOverProducerThatClosesWhenDone) {
    in_fresh_thread([] {
        channel<int> ch;
        ch.set_preference(1);  // the producer keeps running when it wakes the consumer
        std::size_t sent = 0;
        spawn([&] {
            sent = ch.send_sequence(std::vector<int>{1, 2, 3});
            ch.close();
        });
        std::vector<int> got;
        for (int v : ch) got.push_back(v);
        EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
        EXPECT_EQ(sent, 3u);
        EXPECT_TRUE(ch.closed());
        expect_idle_scheduler();
    });
}

// --- send_sequence, send_exception ----------------------------------------------------------

TEST(Channel, SendSequenceSendsInOrderAndReturnsCount) {
    in_fresh_thread([] {
        channel<std::string> ch;
        std::vector<std::string> got;
        spawn([&] {
            for (int i = 0; i < 4; ++i) got.push_back(ch.receive());
        });
        std::size_t n = ch.send_sequence(std::list<std::string>{"a", "b", "c", "d"});
        EXPECT_EQ(n, 4u);
        stackless::run();
        EXPECT_EQ(got, (std::vector<std::string>{"a", "b", "c", "d"}));
        EXPECT_EQ(ch.send_sequence(std::vector<std::string>{}), 0u);
        expect_idle_scheduler();
    });
}

TEST(Channel, SendSequenceFromTaskletToMain) {
    // channels.rst: sender tasklet and receiver tasklet, values printed in order
    in_fresh_thread([] {
        channel<int> ch;
        std::vector<int> sequence{0, 1, 2, 3};
        std::vector<int> got;
        std::size_t count = 0;
        spawn([&] { count = ch.send_sequence(sequence); });
        spawn([&] {
            while (got.size() < sequence.size()) got.push_back(ch.receive());
        });
        stackless::run();
        EXPECT_EQ(got, sequence);
        EXPECT_EQ(count, 4u);
    });
}

TEST(Channel, SendExceptionRaisesInWaitingReceiver) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        spawn([&] {
            try {
                ch.receive();
                log.push_back("no exception");
            } catch (const std::runtime_error& e) {
                log.push_back(std::string("caught ") + e.what());
            }
        });
        stackless::run();
        ch.send_exception(std::runtime_error("xxx"));
        EXPECT_EQ(log, (events{"caught xxx"}));
        EXPECT_EQ(ch.balance(), 0);
    });
}

TEST(Channel, SendExceptionFromBlockedSenderRaisesInReceiver) {
    in_fresh_thread([] {
        channel<int> ch;
        spawn([&] { ch.send_exception(std::make_exception_ptr(std::logic_error("boom"))); });
        stackless::run();
        ASSERT_EQ(ch.balance(), 1);
        try {
            ch.receive();
            ADD_FAILURE() << "receive did not throw";
        } catch (const std::logic_error& e) {
            EXPECT_STREQ(e.what(), "boom");
        }
        EXPECT_EQ(ch.balance(), 0);
        // the channel still works for values afterwards
        spawn([&] { ch.send(3); });
        EXPECT_EQ(ch.receive(), 3);
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(Channel, SendExceptionWithCustomType) {
    struct custom {
        int code;
    };
    in_fresh_thread([] {
        channel<std::string> ch;
        int code = 0;
        spawn([&] {
            try {
                ch.receive();
            } catch (const custom& c) {
                code = c.code;
            }
        });
        stackless::run();
        ch.send_exception(custom{17});
        EXPECT_EQ(code, 17);
    });
}

// --- queue and waiting -----------------------------------------------------------------------

TEST(Channel, QueueAndWaitingListBlockedTaskletsFirstToLast) {
    in_fresh_thread([] {
        channel<int> ch;
        EXPECT_FALSE(static_cast<bool>(ch.queue()));
        EXPECT_TRUE(ch.waiting().empty());
        std::vector<tasklet> receivers;
        for (int i = 0; i < 3; ++i) receivers.push_back(spawn([&] { ch.receive(); }));
        stackless::run();
        ASSERT_EQ(ch.balance(), -3);
        EXPECT_TRUE(ch.queue() == receivers[0]);
        EXPECT_TRUE(ch.queue().next() == receivers[1]);
        EXPECT_TRUE(receivers[1].next() == receivers[2]);
        EXPECT_TRUE(receivers[1].prev() == receivers[0]);
        EXPECT_EQ(ch.waiting(), receivers);
        ch.send(1);
        EXPECT_TRUE(ch.queue() == receivers[1]);
        EXPECT_EQ(ch.waiting(), (std::vector<tasklet>{receivers[1], receivers[2]}));
        ch.send(2);
        ch.send(3);
        EXPECT_FALSE(static_cast<bool>(ch.queue()));
        EXPECT_TRUE(ch.waiting().empty());
    });
}

// --- block_trap ------------------------------------------------------------------------------

TEST(ChannelBlockTrap, TaskletWithBlockTrapGetsErrorInsteadOfBlocking) {
    in_fresh_thread([] {
        events log;
        channel<int> ch;
        tasklet t = spawn([&] {
            getcurrent().set_block_trap(true);
            try {
                ch.receive();
                log.push_back("received?");
            } catch (const deadlock_error&) {
                log.push_back("deadlock_error (wrong)");
            } catch (const stackless::error&) {
                log.push_back("error");
            }
            log.push_back(getcurrent().scheduled() && !getcurrent().blocked() ? "runnable"
                                                                              : "not runnable");
            try {
                ch.send(1);
            } catch (const stackless::error&) {
                log.push_back("error");
            }
        });
        stackless::run();
        EXPECT_EQ(log, (events{"error", "runnable", "error"}));
        EXPECT_TRUE(t.block_trap());
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(ChannelBlockTrap, BlockTrapAllowsOperationsThatDoNotBlock) {
    // channels.rst: "verified receiving without blocking"
    in_fresh_thread([] {
        channel<int> ch;
        for (int i = 1; i <= 3; ++i) spawn([&ch, i] { ch.send(i); });
        stackless::run();
        ASSERT_EQ(ch.balance(), 3);
        tasklet me = getcurrent();
        me.set_block_trap(true);
        EXPECT_TRUE(me.block_trap());
        int total = 0;
        while (ch.balance() > 0) total += ch.receive();
        EXPECT_EQ(total, 6);
        EXPECT_EQ(getruncount(), 4);  // the senders are runnable again
        // Blocking now raises at once, before any switch: not a deadlock, nobody else ran.
        try {
            ch.receive();
            ADD_FAILURE() << "receive() blocked despite block_trap";
        } catch (const deadlock_error&) {
            ADD_FAILURE() << "deadlock_error: main blocked despite block_trap";
        } catch (const stackless::error&) {
        }
        EXPECT_EQ(getruncount(), 4);
        EXPECT_FALSE(getmain().blocked());
        EXPECT_EQ(ch.balance(), 0);
        me.set_block_trap(false);
        EXPECT_FALSE(me.block_trap());
        stackless::run();
        expect_idle_scheduler();
    });
}

// --- value types and handles -----------------------------------------------------------------

TEST(Channel, MoveOnlyValuesBothWays) {
    in_fresh_thread([] {
        channel<std::unique_ptr<int>> ch;
        int got = 0;
        spawn([&] { got = *ch.receive(); });
        stackless::run();
        ch.send(std::make_unique<int>(7));  // receiver waiting
        EXPECT_EQ(got, 7);
        spawn([&] { ch.send(std::make_unique<int>(8)); });
        stackless::run();
        std::unique_ptr<int> p = ch.receive();  // sender waiting
        ASSERT_TRUE(p);
        EXPECT_EQ(*p, 8);
        stackless::run();
    });
}

TEST(Channel, LargeValuesBothWays) {
    in_fresh_thread([] {
        const std::string long_text(1000, 'x');
        std::vector<int> big(500);
        std::iota(big.begin(), big.end(), 0);
        std::array<int, 64> arr{};
        arr[63] = 63;

        channel<std::string> strings;
        channel<std::vector<int>> vectors;
        channel<std::array<int, 64>> arrays;
        std::string got_text;
        std::vector<int> got_big;
        std::array<int, 64> got_arr{};
        spawn([&] {
            got_text = strings.receive();
            got_big = vectors.receive();
            got_arr = arrays.receive();
            strings.send(got_text + "!");
            vectors.send(got_big);
            arrays.send(got_arr);
        });
        stackless::run();
        strings.send(long_text);
        vectors.send(big);
        arrays.send(arr);
        EXPECT_EQ(got_text, long_text);
        EXPECT_EQ(got_big, big);
        EXPECT_EQ(got_arr, arr);
        EXPECT_EQ(strings.receive(), long_text + "!");
        EXPECT_EQ(vectors.receive(), big);
        EXPECT_EQ(arrays.receive(), arr);
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(Channel, ValuesWithoutDefaultConstructor) {
    struct no_default {
        explicit no_default(int v) : value(v) {}
        int value;
    };
    in_fresh_thread([] {
        channel<no_default> ch;
        spawn([&] { ch.send(no_default(3)); });
        EXPECT_EQ(ch.receive().value, 3);
        int got = 0;
        spawn([&] { got = ch.receive().value; });
        stackless::run();
        ch.send(no_default(4));
        EXPECT_EQ(got, 4);
        stackless::run();
    });
}

TEST(Channel, CopiesOfAHandleAreTheSameChannel) {
    in_fresh_thread([] {
        channel<int> a;
        channel<int> b = a;
        channel<int> c;
        EXPECT_TRUE(a == b);
        EXPECT_FALSE(a == c);
        spawn([&] { b.send(4); });
        stackless::run();
        EXPECT_EQ(a.balance(), 1);
        EXPECT_EQ(b.balance(), 1);
        c = a;
        EXPECT_TRUE(c == a);
        EXPECT_EQ(c.receive(), 4);
        stackless::run();
    });
}

TEST(Channel, BlockedTaskletKeepsItsChannelAlive) {
    in_fresh_thread([] {
        events log;
        channel<int>* only_handle = nullptr;
        tasklet t = spawn([&] {
            mark_on_destroy guard(log, "unwound");
            only_handle = new channel<int>;
            only_handle->receive();
            log.push_back("resumed");
        });
        stackless::run();
        ASSERT_TRUE(t.blocked());
        delete only_handle;  // the last handle goes while the tasklet is blocked on the channel
        only_handle = nullptr;
        EXPECT_TRUE(t.blocked());
        t.kill();  // unblocks it (the channel is released with it)
        EXPECT_EQ(log, (events{"unwound"}));
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(Channel, HandleUsedToBlockMayGoAwayWhileBlocked) {
    in_fresh_thread([] {
        channel<int>* first = new channel<int>;
        channel<int> second = *first;
        int got = 0;
        spawn([&] { got = first->receive(); });
        stackless::run();
        ASSERT_EQ(second.balance(), -1);
        delete first;  // the handle the receiver called receive() on
        first = nullptr;
        second.send(42);
        EXPECT_EQ(got, 42);
        EXPECT_EQ(second.balance(), 0);
    });
}

TEST(Channel, ChannelLocalToABlockedTaskletThatIsKilled) {
    in_fresh_thread([] {
        events log;
        tasklet t = spawn([&] {
            channel<int> mine;
            mark_on_destroy guard(log, "unwound");
            mine.receive();
        });
        stackless::run();
        ASSERT_TRUE(t.blocked());
        t.kill();
        EXPECT_EQ(log, (events{"unwound"}));
        expect_idle_scheduler();
    });
}

// A channel handle passed as a tasklet argument (Listing 3 passes `ch` to counter(n, ch)). With
// the current header (channel's move constructor deleted) this does not compile, so the test
// detects that at compile time and fails instead of breaking the build.
template <class Ch>
void pass_channel_as_argument() {
    if constexpr (std::is_move_constructible_v<Ch>) {
        Ch ch;
        spawn([](Ch c, int n) { c.send(n); }, ch, 5);
        tasklet([](Ch c, int n) { c.send(n); })(ch, 6);
        stackless::run();
        EXPECT_EQ(ch.receive(), 5);
        EXPECT_EQ(ch.receive(), 6);
        stackless::run();
    } else {
        ADD_FAILURE() << "stackless::channel<T> is not move-constructible, so a channel cannot "
                         "be passed by value to spawn()/tasklet::setup() (Listing 3's "
                         "counter(n, ch)); see channel.hpp";
    }
}

TEST(Channel, CanBePassedByValueToTaskletFunctions) {
    in_fresh_thread([] { pass_channel_as_argument<channel<int>>(); });
}

}  // namespace

namespace {

// Unpickling support: a tasklet that has not started can be queued on a channel as if it had
// blocked there; its function then finds what a partner delivered.
TEST(ChannelRestore, RestoredReceiverGetsTheValueAPartnerSends) {
    in_fresh_thread([] {
        channel<int> ch;
        std::vector<int> got;
        tasklet t;
        t.bind([&](int) { got.push_back(channel<int>::take_delivered().value_or(-1)); }, 0);
        t.set_function_takes_pending(true);
        ch.restore_waiting(t, -1, 0);
        EXPECT_EQ(ch.balance(), -1);
        EXPECT_TRUE(t.blocked());
        ch.send(42);  // preference -1: the receiver runs at once
        EXPECT_EQ(got, std::vector<int>{42});
        EXPECT_FALSE(t.alive());
        expect_idle_scheduler();
    });
}

TEST(ChannelRestore, RestoredSenderOffersItsValueAndKeepsQueueOrder) {
    in_fresh_thread([] {
        channel<int> ch;
        std::vector<int> ended;
        tasklet a, b;
        a.bind([&](int n) { ended.push_back(n); }, 1);
        b.bind([&](int n) { ended.push_back(n); }, 2);
        ch.restore_waiting(a, +1, 10);
        ch.restore_waiting(b, +1, 20);
        EXPECT_EQ(ch.balance(), 2);
        ASSERT_NE(ch.offered_by(a), nullptr);
        EXPECT_EQ(*ch.offered_by(b), 20);
        int marker = 0;
        ch.set_payload(&marker);
        EXPECT_EQ(b.blocked_on().channel_payload, &marker);
        EXPECT_EQ(b.blocked_on().direction, 1);
        EXPECT_EQ(ch.receive(), 10);
        EXPECT_EQ(ch.receive(), 20);
        stackless::run();
        EXPECT_EQ(ended, (std::vector<int>{1, 2}));
        EXPECT_EQ(b.blocked_on().channel_payload, nullptr);
        expect_idle_scheduler();
    });
}

TEST(ChannelRestore, RefusesTaskletsThatCannotWait) {
    in_fresh_thread([] {
        channel<int> ch;
        tasklet unbound, without_arguments([] {});
        EXPECT_THROW(ch.restore_waiting(unbound, -1, 0), tasklet_state_error);
        EXPECT_THROW(ch.restore_waiting(without_arguments, -1, 0), tasklet_state_error);
        tasklet runnable = spawn([] {});
        EXPECT_THROW(ch.restore_waiting(runnable, -1, 0), tasklet_state_error);
        tasklet t;
        t.bind([](int) {}, 0);
        EXPECT_THROW(ch.restore_waiting(t, 0, 0), std::invalid_argument);
        ch.restore_waiting(t, -1, 0);
        tasklet other;
        other.bind([](int) {}, 0);
        EXPECT_THROW(ch.restore_waiting(other, +1, 0), error);  // receivers are queued
        stackless::run();
        t.kill();
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

// A kill before the restored tasklet ever ran reaches its function, which decides what to do
// with it (the binding raises it in the restored Python frames).
TEST(ChannelRestore, AKillBeforeStartReachesAFunctionThatTakesPending) {
    in_fresh_thread([] {
        channel<int> ch;
        bool saw_exit = false;
        tasklet t;
        t.bind(
            [&](int) {
                std::exception_ptr e = take_pending_exception();
                try {
                    if (e) std::rethrow_exception(e);
                } catch (const tasklet_exit&) {
                    saw_exit = true;
                    throw;
                }
            },
            0);
        t.set_function_takes_pending(true);
        ch.restore_waiting(t, -1, 0);
        t.kill();
        EXPECT_TRUE(saw_exit);
        EXPECT_FALSE(t.alive());
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

}  // namespace
