// One scheduler per OS thread; tasklets and channels touched from the wrong thread.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <latch>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::events;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;

namespace {

TEST(Threads, EachThreadHasItsOwnMainTaskletAndQueue) {
    constexpr int threads = 3;
    std::vector<std::uint64_t> ids(threads, 0);
    std::vector<int> runcounts(threads, -1);
    std::vector<bool> own_main(threads, false);
    tasklet here = spawn([] {});  // this thread's queue now has two runnable tasklets
    std::latch all_started(threads), may_end(1);
    std::vector<std::thread> workers;
    for (int i = 0; i < threads; ++i) {
        workers.emplace_back([&, i] {
            own_main[i] = getmain().is_main() && getmain() == getcurrent() &&
                          !(getmain() == here) && getmain().thread_id() == getcurrent().thread_id();
            ids[i] = getmain().thread_id();
            runcounts[i] = getruncount();
            all_started.count_down();
            may_end.wait();  // all alive at once: their ids must differ
        });
    }
    all_started.wait();
    ids.push_back(getmain().thread_id());
    may_end.count_down();
    for (std::thread& t : workers) t.join();
    EXPECT_EQ(std::set<std::uint64_t>(ids.begin(), ids.end()).size(), ids.size());
    EXPECT_EQ(std::set<std::uint64_t>(ids.begin(), ids.end()).count(0), 0u);
    EXPECT_EQ(runcounts, std::vector<int>(threads, 1));
    EXPECT_EQ(own_main, std::vector<bool>(threads, true));
    EXPECT_EQ(getruncount(), 2);
    stackless::run();
    EXPECT_FALSE(here.alive());
    expect_idle_scheduler();
}

TEST(Threads, SchedulersOfDifferentThreadsRunConcurrentlyAndIndependently) {
    constexpr int threads = 4, tasklets = 100, rounds = 30;
    std::vector<int> ok(threads, 0);
    std::vector<std::thread> workers;
    for (int w = 0; w < threads; ++w) {
        workers.emplace_back([&ok, w] {
            std::vector<std::pair<int, int>> order;
            channel<int> results;
            for (int id = 0; id < tasklets; ++id)
                spawn(
                    [&](int me) {
                        for (int r = 0; r < rounds; ++r) {
                            order.emplace_back(r, me);
                            schedule();
                        }
                        results.send(me);
                    },
                    id);
            stackless::run();
            bool good =
                order.size() == std::size_t(tasklets * rounds) && results.balance() == tasklets;
            for (int r = 0; good && r < rounds; ++r)
                for (int id = 0; good && id < tasklets; ++id)
                    good = order[r * tasklets + id] == std::make_pair(r, id);
            for (int id = 0; good && id < tasklets; ++id) good = results.receive() == id;
            stackless::run();
            ok[w] = good && getruncount() == 1;
        });
    }
    for (std::thread& t : workers) t.join();
    EXPECT_EQ(ok, std::vector<int>(threads, 1));
}

TEST(Threads, TaskletOperationsFromAnotherThreadRaiseWrongThread) {
    in_fresh_thread([] {
        channel<int> ch;
        tasklet blocked = spawn([&] { ch.receive(); });
        tasklet paused = spawn([] { schedule_remove(); });
        stackless::run();
        tasklet runnable = spawn([] {});
        tasklet unbound;
        tasklet no_args([](int) {});
        const std::uint64_t home = getmain().thread_id();
        ASSERT_TRUE(blocked.blocked());
        ASSERT_TRUE(paused.paused());

        std::thread other([&] {
            EXPECT_THROW(runnable.run(), wrong_thread_error);
            EXPECT_THROW(runnable.switch_to(), wrong_thread_error);
            EXPECT_THROW(runnable.remove(), wrong_thread_error);
            EXPECT_THROW(runnable.kill(), wrong_thread_error);
            EXPECT_THROW(paused.insert(), wrong_thread_error);
            EXPECT_THROW(paused.run(), wrong_thread_error);
            EXPECT_THROW(paused.kill(), wrong_thread_error);
            EXPECT_THROW(paused.kill(true), wrong_thread_error);
            EXPECT_THROW(paused.raise_exception(std::runtime_error("x")), wrong_thread_error);
            EXPECT_THROW(paused.raise_exception(std::runtime_error("x"), true), wrong_thread_error);
            EXPECT_THROW(blocked.kill(), wrong_thread_error);
            EXPECT_THROW(no_args.setup(1), wrong_thread_error);
            EXPECT_THROW(unbound.bind([] {}), wrong_thread_error);
            EXPECT_EQ(runnable.thread_id(), home);
            EXPECT_NE(getmain().thread_id(), home);
        });
        other.join();

        // nothing changed here
        EXPECT_TRUE(runnable.scheduled());
        EXPECT_TRUE(paused.paused());
        EXPECT_TRUE(blocked.blocked());
        EXPECT_EQ(ch.balance(), -1);
        EXPECT_FALSE(no_args.alive());
        EXPECT_FALSE(unbound.alive());
        EXPECT_EQ(getruncount(), 2);

        ch.send(1);
        paused.kill();
        stackless::run();
        EXPECT_FALSE(blocked.alive());
        EXPECT_FALSE(paused.alive());
        EXPECT_FALSE(runnable.alive());
        expect_idle_scheduler();
    });
}

// tasklet::*_remote, for a binding whose threads take turns under a lock of its own (the CPython
// binding's GIL; here a mutex that each thread holds while it uses stackless): the operations
// change the run queue of the tasklet's own thread, and the tasklet runs there.
TEST(Threads, RemoteOperationsChangeTheQueueOfTheTaskletsOwnThread) {
    std::mutex lock;  // the binding's lock: held by a thread while it uses stackless
    std::condition_variable cv;
    std::function<void()> job;  // (lock) run by the worker, then cleared
    bool stop = false;
    std::vector<std::string> log;
    // (Empty handles: the worker makes the tasklets, which belong to it.)
    tasklet a = tasklet::adopt(nullptr), b = a, c = a, blocked = a, paused = a;
    channel<int> ch(across_threads);
    std::thread worker([&] {
        std::unique_lock held(lock);
        for (;;) {
            cv.wait(held, [&] { return stop || job; });
            if (stop) break;
            job();
            job = nullptr;
            cv.notify_all();
        }
    });
    auto on_worker = [&](std::function<void()> f) {
        std::unique_lock held(lock);
        job = std::move(f);
        cv.notify_all();
        cv.wait(held, [&] { return !job; });
    };
    on_worker([&] {
        a = tasklet([&](int) { log.push_back("a"); });
        b = tasklet([&](int) { log.push_back("b"); });
        c = tasklet([&](int) { log.push_back("c"); });
        a.bind([&](int) { log.push_back("a"); }, 0);  // alive, paused
        b.bind([&](int) { log.push_back("b"); }, 0);
        c.bind([&](int) { log.push_back("c"); }, 0);
        blocked = spawn([&] { ch.receive(); });
        paused = spawn([&] {
            try {
                schedule_remove();
            } catch (const std::runtime_error& e) {
                log.push_back(std::string("paused got ") + e.what());
            }
        });
        stackless::run();
    });
    {
        std::lock_guard held(lock);                    // this thread's turn
        EXPECT_THROW(a.insert(), wrong_thread_error);  // the same-thread operations refuse
        EXPECT_THROW(blocked.run_remote(), tasklet_state_error);
        EXPECT_THROW(blocked.remove_remote(), tasklet_state_error);
        b.insert_remote();
        c.insert_remote();
        a.run_remote();  // next after the worker's running tasklet, before b and c
        EXPECT_TRUE(a.status_from_any_thread().scheduled);
        EXPECT_TRUE(a.next_from_any_thread() == b);
        c.remove_remote();
        EXPECT_FALSE(c.status_from_any_thread().scheduled);
        paused.throw_remote(std::make_exception_ptr(std::runtime_error("x")));
        blocked.kill_remote();  // off the channel, into its thread's queue, to die there
        EXPECT_FALSE(blocked.status_from_any_thread().blocked);
        EXPECT_EQ(ch.balance(), 0);
        EXPECT_TRUE(log.empty());  // nothing ran here
    }
    on_worker([&] { stackless::run(); });
    EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "paused got x"}));
    {
        std::lock_guard held(lock);
        EXPECT_FALSE(blocked.status_from_any_thread().alive);
        EXPECT_TRUE(c.status_from_any_thread().alive);  // removed before it ran
        c.kill_remote();                                // never started: it just ends
        stop = true;
        cv.notify_all();
    }
    worker.join();
}

TEST(Threads, ChannelMeetingAWaiterOfAnotherThreadRaisesWrongThread) {
    in_fresh_thread([] {
        channel<int> receivers, senders;
        int got = 0;
        spawn([&] { got = receivers.receive(); });
        spawn([&] { senders.send(5); });
        stackless::run();
        ASSERT_EQ(receivers.balance(), -1);
        ASSERT_EQ(senders.balance(), 1);

        std::thread other([&] {
            EXPECT_THROW(receivers.send(1), wrong_thread_error);
            EXPECT_THROW(receivers.send_exception(std::runtime_error("x")), wrong_thread_error);
            EXPECT_THROW(senders.receive(), wrong_thread_error);
            EXPECT_EQ(receivers.balance(), -1);
            EXPECT_EQ(senders.balance(), 1);
        });
        other.join();

        EXPECT_EQ(receivers.balance(), -1);
        EXPECT_EQ(senders.balance(), 1);
        receivers.send(2);
        EXPECT_EQ(got, 2);
        EXPECT_EQ(senders.receive(), 5);
        stackless::run();
        expect_idle_scheduler();
    });
}

TEST(Threads, ChannelCreatedOnOneThreadWorksOnAnother) {
    channel<std::string> ch;  // created here, used only by the other thread's tasklets
    in_fresh_thread([&] {
        spawn([&] { ch.send("hello"); });
        EXPECT_EQ(ch.receive(), "hello");
        stackless::run();
        expect_idle_scheduler();
    });
    EXPECT_EQ(ch.balance(), 0);
}

TEST(Threads, TaskletsOfAnEndedThreadHaveThreadIdZero) {
    tasklet unbound, done, left_blocked;
    std::uint64_t id_while_running = 0;
    in_fresh_thread([&] {
        unbound = tasklet();
        done = spawn([] {});
        stackless::run();
        channel<int> ch;
        left_blocked = spawn([ch]() mutable { ch.receive(); });
        stackless::run();
        id_while_running = left_blocked.thread_id();
    });
    EXPECT_NE(id_while_running, 0u);
    EXPECT_EQ(unbound.thread_id(), 0u);
    EXPECT_EQ(done.thread_id(), 0u);
    EXPECT_EQ(left_blocked.thread_id(), 0u);
}

TEST(Threads, ThreadExitKillsBlockedTaskletsOnEveryThread) {
    constexpr int threads = 6, per_thread = 200;
    std::atomic<int> unwound{0};
    struct counter_guard {
        std::atomic<int>* n;
        ~counter_guard() { n->fetch_add(1); }
    };
    std::vector<std::thread> workers;
    for (int w = 0; w < threads; ++w)
        workers.emplace_back([&] {
            channel<int> ch;
            for (int i = 0; i < per_thread; ++i)
                spawn([&unwound, ch]() mutable {
                    counter_guard g{&unwound};
                    ch.receive();
                });
            stackless::run();
        });
    for (std::thread& t : workers) t.join();
    EXPECT_EQ(unwound.load(), threads * per_thread);
}

// The sanitizers' runtimes do not follow a forced unwind: UBSan reports the reference that
// catch (abi::__forced_unwind&) binds (the unwind carries no C++ exception object, so it is
// null, and never used), and ASan's no-return hook reports its own sigaltstack call on the way.
#if defined(__SANITIZE_ADDRESS__)
#define SKIP_UNDER_SANITIZERS() GTEST_SKIP() << "the sanitizers' runtimes misreport forced unwinds"
#else
#define SKIP_UNDER_SANITIZERS() static_cast<void>(0)
#endif

// pthread_exit (which CPython calls in a daemon thread that wakes during finalization) and
// pthread_cancel end a thread with a forced unwind, which catch (...) must not swallow (the C
// library aborts the process then). Inside a tasklet it unwinds that tasklet's stack to its
// bottom, where the C library ends the thread; the thread's end drops its other tasklets
// without running them and takes its waiters off shared channels.
TEST(Threads, PthreadExitInsideATaskletEndsTheThreadAfterUnwindingThatTasklet) {
    SKIP_UNDER_SANITIZERS();
    channel<int> ch(across_threads);
    std::vector<std::string> log;
    std::thread([&, ch]() mutable {
        stackless_test::mark_on_destroy thread_frame(log, "thread's own frame");
        spawn([&, ch]() mutable {
            stackless_test::mark_on_destroy waiting(log, "waiting tasklet");
            ch.receive();
        });
        spawn([&] {
            stackless_test::mark_on_destroy exiting(log, "exiting tasklet");
            try {
                pthread_exit(nullptr);
            } catch (...) {
                log.push_back("caught by catch (...)");
                throw;
            }
        });
        try {
            run();
        } catch (...) {
            log.push_back("run() caught something");  // (not the unwind: another stack)
            throw;
        }
        log.push_back("run() returned");
    }).join();
    // The unwind stops at the bottom of the exiting tasklet's stack: the thread's own frames
    // and the waiting tasklet are left as they were, not unwound.
    EXPECT_EQ(log, (std::vector<std::string>{"caught by catch (...)", "exiting tasklet"}));
    EXPECT_EQ(ch.balance(), 0);  // the waiter was taken off when the thread ended
}

TEST(Threads, PthreadCancelOfAThreadWaitingForAnotherEndsItAndTakesItOffTheChannel) {
    SKIP_UNDER_SANITIZERS();
    channel<int> ch(across_threads);
    std::vector<std::string> log;
    std::thread waiter([&, ch]() mutable {
        stackless_test::mark_on_destroy frame(log, "waiting thread's frame");
        try {
            ch.receive();  // main waits for this thread, the one that made the channel
        } catch (...) {
            log.push_back("caught by catch (...)");
            throw;
        }
        log.push_back("received");
    });
    while (ch.balance() != -1) std::this_thread::yield();
    pthread_cancel(waiter.native_handle());
    waiter.join();
    EXPECT_EQ(log, (std::vector<std::string>{"caught by catch (...)", "waiting thread's frame"}));
    EXPECT_EQ(ch.balance(), 0);
}

TEST(Threads, OverlappingThreadsReuseTaskletStatesInsteadOfAllocatingMore) {
    // The second thread of each pair makes its tasklet while the first is still alive, so it
    // cannot use the first one's free states; later pairs must find the ones handed over by
    // ended threads rather than allocate a new chunk at every overlap.
    auto run_a_tasklet = [] {
        spawn([] {});
        stackless::run();
    };
    auto overlapping_pair = [&] {
        std::latch second_done(1);
        std::thread first([&] {
            run_a_tasklet();
            second_done.wait();
        });
        std::thread second([&] {
            run_a_tasklet();
            second_done.count_down();
        });
        second.join();
        first.join();
    };
    for (int i = 0; i < 4; ++i) overlapping_pair();
    std::size_t before = stats().state_chunks;
    for (int i = 0; i < 300; ++i) overlapping_pair();
    EXPECT_LE(stats().state_chunks - before, 2u);  // it was one more chunk per pair
}

}  // namespace

namespace {

// bind_thread for C++: a tasklet made on one thread, not yet started, runs on another.
TEST(Threads, ATaskletThatHasNotStartedMovesToAnotherThreadAndRunsThere) {
    std::mutex m;
    std::condition_variable cv;
    tasklet worker_main, moved;
    bool worker_ready = false, handed_over = false;
    std::thread::id ran_on, worker_id;
    std::thread worker([&] {
        {
            std::lock_guard lock(m);
            worker_main = stackless::getmain();
            worker_id = std::this_thread::get_id();
            worker_ready = true;
        }
        cv.notify_all();
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return handed_over; });
        tasklet t = moved;
        lock.unlock();
        t.insert();  // it belongs to this thread now
        stackless::run();
        EXPECT_FALSE(t.alive());
    });
    {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return worker_ready; });
    }
    tasklet t;
    t.bind([&](int) { ran_on = std::this_thread::get_id(); }, 0);
    tasklet scheduled = spawn([] {});
    EXPECT_THROW(scheduled.move_to_thread_of(worker_main), tasklet_state_error);
    stackless::run();
    {
        std::lock_guard lock(m);
        t.move_to_thread_of(worker_main);
        EXPECT_THROW(t.insert(), wrong_thread_error);  // not ours any more
        moved = t;
        handed_over = true;
    }
    cv.notify_all();
    worker.join();
    EXPECT_EQ(ran_on, worker_id);
}

}  // namespace
