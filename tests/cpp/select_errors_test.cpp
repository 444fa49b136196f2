// select's errors: a deadlock, closing channels, block_trap, channels select does not support,
// and a send and a receive case on one channel. Each leaves the channels as they were.
#include <gtest/gtest.h>

#include <thread>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;

namespace {

TEST(SelectErrors, DeadlockWhenNothingElseCanRun) {
    in_fresh_thread([] {
        channel<int> a, b;
        EXPECT_THROW(stackless::select(on_receive(a), on_send(b, 1)), deadlock_error);
        EXPECT_EQ(a.balance(), 0);
        EXPECT_EQ(b.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(SelectErrors, MainInSelectIsWokenWithDeadlockWhenTheLastTaskletEnds) {
    in_fresh_thread([] {
        channel<int> a;
        spawn([] {});
        EXPECT_THROW(stackless::select(on_receive(a)), deadlock_error);
        EXPECT_EQ(a.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(SelectErrors, ClosingChannelRaisesWhenNoCaseIsReady) {
    in_fresh_thread([] {
        channel<int> open, closing;
        closing.close();
        EXPECT_THROW(stackless::select(on_receive(open), on_receive(closing)),
                     channel_closed_error);
        EXPECT_THROW(try_select(on_receive(open), on_receive(closing)), channel_closed_error);
        EXPECT_EQ(open.balance(), 0);
        // A ready case completes, as a plain operation with a partner waiting does.
        spawn([&] { open.send(1); });
        schedule();
        EXPECT_EQ(stackless::select(on_receive(open), on_receive(closing)), 0);
    });
}

TEST(SelectErrors, BlockTrapRefusesToBlockButAllowsReadyCases) {
    in_fresh_thread([] {
        channel<int> a;
        getcurrent().set_block_trap(true);
        EXPECT_THROW(stackless::select(on_receive(a)), error);
        EXPECT_EQ(try_select(on_receive(a)), no_case_ready);
        getcurrent().set_block_trap(false);
        EXPECT_EQ(a.balance(), 0);
    });
}

TEST(SelectErrors, ChannelsAcrossThreadsAreRefused) {
    in_fresh_thread([] {
        channel<int> local;
        channel<int> shared(across_threads);
        EXPECT_THROW(stackless::select(on_receive(local), on_receive(shared)), error);
        EXPECT_THROW(try_select(on_send(shared, 1)), error);
        EXPECT_EQ(local.balance(), 0);
    });
}

TEST(SelectErrors, SendAndReceiveCasesOnOneChannelAreRefused) {
    in_fresh_thread([] {
        channel<int> a;
        EXPECT_THROW(stackless::select(on_receive(a), on_send(a, 1)), error);
        EXPECT_EQ(a.balance(), 0);
    });
}

TEST(SelectErrors, AChannelOtherThreadsWaitOnIsRefused) {
    channel<int> ch;
    in_fresh_thread([&] {
        spawn([&] { ch.receive(); });
        schedule();
        in_fresh_thread(
            [&] { EXPECT_THROW(stackless::select(on_send(ch, 1)), wrong_thread_error); });
        ch.send(1);
    });
}

}  // namespace
