// Channels across threads (stackless::across_threads): partners in different threads, threads
// that wait for each other, run(threadblock), and a stress test.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace stackless;
using stackless_test::expect_idle_scheduler;

namespace {

// A wait that another thread using stackless might end is no deadlock. When earlier tests of this
// process left schedulers alive on other threads (the main one), such a wait would never end:
// the checks of deadlocks run only where this thread is the only one (as under ctest).
bool alone() {
    getcurrent();  // (counts this thread)
    return threads_using_stackless() == 1;
}

// Runs `body` on its own thread; a hang (over `limit`) fails the whole test binary at once
// rather than blocking the suite.
void within(std::chrono::seconds limit, std::function<void()> body) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    std::thread worker([body = std::move(body), done] {
        body();
        done->set_value();
    });
    if (finished.wait_for(limit) != std::future_status::ready) {
        std::fprintf(stderr, "shared_channel_test: hung for %llds\n",
                     static_cast<long long>(limit.count()));
        std::_Exit(3);
    }
    worker.join();
}

// Channels for threads made by a thread that ends right after: the thread that makes one counts
// as a possible partner of those that wait on shared channels until it ends.
template <class T>
std::vector<channel<T>> made_by_a_thread_that_ends(int count) {
    std::vector<channel<T>> made;
    std::thread([&] {
        for (int i = 0; i < count; ++i) made.emplace_back(across_threads);
    }).join();
    return made;
}

TEST(SharedChannel, ASendInOneThreadWakesAReceiverOfAnotherWhichRunsInItsOwnThread) {
    within(std::chrono::seconds(60), [] {
        channel<std::string> ch(across_threads);
        std::thread::id ran_in;
        std::string got;
        tasklet receiver = spawn([&] {
            got = ch.receive();
            ran_in = std::this_thread::get_id();
        });
        run();  // it blocks
        ASSERT_TRUE(receiver.blocked());
        std::thread::id sender_thread;
        std::thread([&] {
            sender_thread = std::this_thread::get_id();
            ch.send("hello");  // the receiver waits: this completes without blocking
        }).join();
        EXPECT_TRUE(receiver.scheduled());
        EXPECT_FALSE(receiver.blocked());
        EXPECT_EQ(got, "");  // it runs in its own thread, at this thread's next switch
        run();
        EXPECT_EQ(got, "hello");
        EXPECT_EQ(ran_in, std::this_thread::get_id());
        EXPECT_NE(ran_in, sender_thread);
        expect_idle_scheduler();
    });
}

TEST(SharedChannel, AReceiveTakesTheValueOfASenderBlockedInAnotherThread) {
    within(std::chrono::seconds(60), [] {
        channel<int> ch(across_threads);
        std::atomic<bool> sender_resumed{false};
        getcurrent();  // this thread uses stackless from now on: others may wait for it
        std::thread other([&] {
            tasklet sender = spawn([&] {
                ch.send(7);
                sender_resumed = true;
            });
            run(true);  // waits until another thread takes the value
            EXPECT_FALSE(sender.alive());
        });
        while (ch.balance() != 1) std::this_thread::yield();
        EXPECT_EQ(ch.receive(), 7);
        other.join();
        EXPECT_TRUE(sender_resumed);
        EXPECT_EQ(ch.balance(), 0);
    });
}

TEST(SharedChannel, TheMainTaskletWaitsForAPartnerFromAnotherThreadInsteadOfADeadlock) {
    within(std::chrono::seconds(60), [] {
        channel<int> ch(across_threads);
        std::latch started(1);
        std::thread other([&] {
            getcurrent();  // this thread uses stackless from now on: it may wake others
            started.count_down();
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            ch.send(1);
            ch.send(2);
        });
        started.wait();
        EXPECT_EQ(ch.receive(), 1);  // main waits: another thread may still send
        EXPECT_EQ(ch.receive(), 2);
        other.join();
        // Alone now: a wait that nobody can end is a deadlock, as on a private channel.
        if (alone()) {
            EXPECT_THROW(ch.receive(), deadlock_error);
        }
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

// The thread that makes a channel for threads counts as a possible partner from then on: a
// thread it starts may block on the channel at once, as its very first stackless call, and waits
// for the send instead of getting deadlock_error.
TEST(SharedChannel, AThreadWhoseFirstCallBlocksWaitsForTheThreadThatMadeTheChannel) {
    within(std::chrono::seconds(60), [] {
        for (int round = 0; round < 20; ++round) {
            bool deadlocked = false;
            int got = 0;
            std::thread maker([&] {               // a fresh thread each round: no scheduler yet
                channel<int> ch(across_threads);  // its first stackless call
                std::atomic<bool> done{false};
                std::thread receiver([&, ch]() mutable {
                    try {
                        got = ch.receive();  // its first stackless call
                    } catch (const deadlock_error&) {
                        deadlocked = true;
                    }
                    done = true;
                });
                while (ch.balance() != -1 && !done) std::this_thread::yield();
                if (!done) ch.send(round + 1);
                receiver.join();
            });
            maker.join();
            ASSERT_FALSE(deadlocked) << "round " << round;
            ASSERT_EQ(got, round + 1);
        }
    });
}

TEST(SharedChannel, OfTwoThreadsThatWaitForEachOtherTheSecondGetsADeadlockError) {
    within(std::chrono::seconds(60), [] {
        channel<int> a(across_threads), b(across_threads);
        std::latch started(1);
        int got = 0;
        getcurrent();
        std::thread other([&] {
            getcurrent();
            started.count_down();
            got = a.receive();  // waits for the main thread
        });
        started.wait();
        while (a.balance() != -1) std::this_thread::yield();
        if (threads_using_stackless() == 2) {
            EXPECT_THROW(b.receive(), deadlock_error);  // the other thread waits for us
        }
        a.send(5);
        other.join();
        EXPECT_EQ(got, 5);
    });
}

TEST(SharedChannel, APrivateChannelMetFromAnotherThreadSaysHowToShareIt) {
    within(std::chrono::seconds(60), [] {
        channel<int> ch;
        tasklet waiter = spawn([&] { ch.receive(); });
        run();
        std::string message;
        std::thread([&] {
            try {
                ch.send(1);
            } catch (const wrong_thread_error& e) {
                message = e.what();
            }
        }).join();
        EXPECT_NE(message.find("across_threads"), std::string::npos) << message;
        waiter.kill();
        expect_idle_scheduler();
    });
}

TEST(SharedChannel, KillingAWaiterTakesItOffTheSharedChannel) {
    within(std::chrono::seconds(60), [] {
        channel<int> ch(across_threads);
        tasklet a = spawn([&] { ch.receive(); });
        tasklet b = spawn([&] { ch.receive(); });
        run();
        EXPECT_EQ(ch.balance(), -2);
        a.kill();
        EXPECT_EQ(ch.balance(), -1);
        std::thread([&] { ch.send(3); }).join();  // goes to b, not to the killed a
        run();
        EXPECT_FALSE(b.alive());
        EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(SharedChannel, ATaskletCompletedByAnotherThreadCanBeKilledBeforeItRuns) {
    within(std::chrono::seconds(60), [] {
        channel<std::string> ch(across_threads);
        std::vector<std::string> log;
        tasklet receiver = spawn([&] {
            try {
                log.push_back(ch.receive());
            } catch (const tasklet_exit&) {
                log.push_back("killed");
                throw;
            }
        });
        run();
        std::thread([&] { ch.send("value"); }).join();
        EXPECT_TRUE(receiver.scheduled());  // handed over, in this thread's inbox
        EXPECT_FALSE(receiver.blocked());
        receiver.kill();
        EXPECT_EQ(log, (std::vector<std::string>{"killed"}));
        EXPECT_FALSE(receiver.alive());
        tasklet other = spawn([&] { log.push_back(ch.receive()); });
        run();
        std::thread([&] { ch.send("next"); }).join();
        other.remove();  // (in transit: taken into the queue, then out of it)
        EXPECT_FALSE(other.scheduled());
        other.insert();
        run();
        EXPECT_EQ(log.back(), "next");
        expect_idle_scheduler();
    });
}

TEST(SharedChannel, AThreadThatEndsTakesItsWaitersOffSharedChannels) {
    within(std::chrono::seconds(60), [] {
        channel<int> ch(across_threads);
        std::thread([&] {
            spawn([&] { ch.receive(); });
            run();
            EXPECT_EQ(ch.balance(), -1);
        }).join();  // its tasklet is killed at its end
        EXPECT_EQ(ch.balance(), 0);
        if (alone()) {
            EXPECT_THROW(ch.send(1), deadlock_error);  // nobody is left to receive it
        }
    });
}

TEST(SharedChannel, ExceptionsCrossThreads) {
    within(std::chrono::seconds(60), [] {
        channel<int> ch(across_threads);
        std::latch started(1);
        getcurrent();
        std::thread other([&] {
            getcurrent();
            started.count_down();
            ch.send_exception(std::runtime_error("from afar"));
        });
        started.wait();
        EXPECT_THROW(
            {
                try {
                    ch.receive();
                } catch (const std::runtime_error& e) {
                    EXPECT_STREQ(e.what(), "from afar");
                    throw;
                }
            },
            std::runtime_error);
        other.join();
    });
}

// A ring of threads, each with one tasklet that receives a token from its own channel and passes
// it on to the next thread's, the token going round many times, 20 times over. Each thread's
// run(true) must return only once its tasklet has ended: a wake-up from another thread that
// arrives while the thread decides whether to wait must not be lost.
TEST(SharedChannel, ATokenGoesRoundARingOfThreadsWithoutAWakeUpLost) {
    static constexpr int threads = 4, laps = 300, repetitions = 25;
    within(std::chrono::seconds(300), [] {
        for (int rep = 0; rep < repetitions; ++rep) {
            // (Made by a thread that ends at once: the one that made them would count as a
            // partner while it waits for the ring, and then no thread would ever conclude that
            // it must not sleep, which is where a wake-up can get lost.)
            std::vector<channel<int>> inbox = made_by_a_thread_that_ends<int>(threads);
            std::vector<int> received(threads, 0);
            std::vector<int> last_value(threads, -1);
            std::vector<char> ended_in_run(threads, 0);
            std::barrier start(threads);
            std::vector<std::thread> ring;
            for (int i = 0; i < threads; ++i) {
                ring.emplace_back([&, i] {
                    channel<int> mine = inbox[i];
                    channel<int> next = inbox[(i + 1) % threads];
                    tasklet passer = spawn([&, i, mine, next]() mutable {
                        if (i == 0) next.send(1);
                        for (int lap = 0; lap < laps; ++lap) {
                            const int token = mine.receive();
                            ++received[i];
                            last_value[i] = token;
                            if (i != 0 || lap + 1 < laps) next.send(token + 1);
                        }
                    });
                    start.arrive_and_wait();  // every thread counts before any waits
                    run(true);
                    ended_in_run[i] = !passer.alive();
                });
            }
            for (std::thread& t : ring) t.join();
            for (int i = 0; i < threads; ++i) {
                ASSERT_TRUE(ended_in_run[i]) << "repetition " << rep << ": thread " << i
                                             << "'s run(true) returned with its tasklet waiting"
                                             << " after receiving " << received[i];
                ASSERT_EQ(received[i], laps) << "repetition " << rep << ", thread " << i;
            }
            ASSERT_EQ(last_value[0], threads * laps);
            for (auto& ch : inbox) ASSERT_EQ(ch.balance(), 0);
        }
    });
}

// 4 threads x 50 tasklets x 200 messages through one channel, 20 times: every message arrives
// exactly once, and whoever receives a sender's messages sees them in the order it sent them.
TEST(SharedChannel, FourThreadsFiftyTaskletsTwoHundredMessagesEach) {
    constexpr int threads = 4, tasklets = 50, messages = 200, repetitions = 20;
    within(std::chrono::seconds(300), [] {
        channel<std::pair<int, int>> ch(across_threads);
        long crossed = 0;
        for (int rep = 0; rep < repetitions; ++rep) {
            // logs[thread][receiver]: (sender, seq) in the order received
            std::vector<std::vector<std::vector<std::pair<int, int>>>> logs(
                threads, std::vector<std::vector<std::pair<int, int>>>(tasklets));
            std::barrier start(threads);
            std::vector<std::thread> workers;
            for (int w = 0; w < threads; ++w) {
                workers.emplace_back([&, w] {
                    std::vector<tasklet> mine;
                    for (int i = 0; i < tasklets; ++i) {
                        mine.push_back(spawn([&ch, sender = w * tasklets + i] {
                            for (int seq = 0; seq < messages; ++seq) ch.send({sender, seq});
                        }));
                        mine.push_back(spawn([&ch, &log = logs[w][i]] {
                            for (int k = 0; k < messages; ++k) log.push_back(ch.receive());
                        }));
                    }
                    start.arrive_and_wait();
                    auto any_alive = [&] {
                        for (tasklet& t : mine)
                            if (t.alive()) return true;
                        return false;
                    };
                    while (any_alive()) run(true);
                });
            }
            for (std::thread& t : workers) t.join();
            std::map<int, std::vector<int>> seen;  // sender -> seqs, over all receivers
            for (int w = 0; w < threads; ++w) {
                for (const auto& log : logs[w]) {
                    std::map<int, int> last;
                    for (auto [sender, seq] : log) {
                        auto it = last.find(sender);
                        ASSERT_TRUE(it == last.end() || it->second < seq)
                            << "sender " << sender << " out of order";
                        last[sender] = seq;
                        seen[sender].push_back(seq);
                        crossed += sender / tasklets != w;
                    }
                }
            }
            ASSERT_EQ(seen.size(), static_cast<std::size_t>(threads * tasklets));
            for (auto& [sender, seqs] : seen) {
                std::sort(seqs.begin(), seqs.end());
                ASSERT_EQ(seqs.size(), static_cast<std::size_t>(messages)) << sender;
                for (int seq = 0; seq < messages; ++seq) ASSERT_EQ(seqs[seq], seq) << sender;
            }
            ASSERT_EQ(ch.balance(), 0);
        }
        EXPECT_GT(crossed, 0) << "no message crossed threads";
    });
}

// Random traffic with real concurrency (no GIL here): threads whose tasklets send, receive and
// send exceptions on a few shared channels, close and reopen them, while their threads kill
// some of them (waiting, runnable or handed over by another thread) and end with others still
// waiting. Under ASan in make test. Every message is received at most once, and only if sent.
TEST(SharedChannel, RandomTrafficBetweenThreadsKeepsEveryMessageOnce) {
    within(std::chrono::seconds(300), [] {
        // run(true) waits while another thread that used stackless may still wake a tasklet:
        // with a scheduler alive elsewhere (the main thread's, from earlier tests), that wait
        // would not end. (This thread never uses stackless here: it would count too.)
        const bool threadblock = threads_using_stackless() == 0;
        std::size_t total_received = 0;
        for (unsigned seed = 1; seed <= 30; ++seed) {
            // (Made by a thread that ends at once: this one would count as a partner otherwise.)
            std::vector<channel<long>> channels = made_by_a_thread_that_ends<long>(3);
            std::mutex mutex;
            std::set<long> sent;
            std::vector<long> received;
            std::mt19937 rng(seed);
            const int threads = 2 + static_cast<int>(rng() % 3);
            std::barrier start(threads);
            std::vector<std::thread> workers;
            for (int w = 0; w < threads; ++w) {
                const unsigned worker_seed = rng();
                workers.emplace_back([&, w, worker_seed] {
                    std::mt19937 r(worker_seed);
                    std::vector<tasklet> mine;
                    const int count = 1 + static_cast<int>(r() % 30);
                    for (int i = 0; i < count; ++i) {
                        const unsigned tasklet_seed = r();
                        const long base = (static_cast<long>(seed) << 40) |
                                          (static_cast<long>(w) << 32) |
                                          (static_cast<long>(i) << 16);
                        mine.push_back(spawn([&, tasklet_seed, base] {
                            std::mt19937 tr(tasklet_seed);
                            const long steps = static_cast<long>(tr() % 60);
                            for (long step = 0; step < steps; ++step) {
                                channel<long>& ch = channels[tr() % channels.size()];
                                const unsigned op = tr() % 100;
                                try {
                                    if (op < 40) {
                                        {
                                            std::lock_guard lock(mutex);
                                            sent.insert(base | step);
                                        }
                                        ch.send(base | step);
                                    } else if (op < 80) {
                                        long v = ch.receive();
                                        std::lock_guard lock(mutex);
                                        received.push_back(v);
                                    } else if (op < 85) {
                                        ch.send_exception(std::runtime_error("sent"));
                                    } else if (op < 92) {
                                        schedule();
                                    } else if (op < 96) {
                                        ch.close();
                                    } else {
                                        ch.open();
                                    }
                                } catch (const channel_closed_error&) {
                                } catch (const std::runtime_error&) {
                                }
                            }
                        }));
                    }
                    start.arrive_and_wait();
                    for (int round = 0; round < 1 + static_cast<int>(r() % 4); ++round) {
                        run(threadblock && r() % 2 == 0);
                        for (tasklet& t : mine)
                            if (t.alive() && r() % 4 == 0) t.kill();
                    }
                    // The thread ends: its tasklets still waiting are killed and taken off.
                });
            }
            for (std::thread& t : workers) t.join();
            std::set<long> unique(received.begin(), received.end());
            ASSERT_EQ(unique.size(), received.size()) << "seed " << seed << ": received twice";
            for (long v : received) ASSERT_TRUE(sent.count(v)) << "seed " << seed;
            for (auto& ch : channels) ASSERT_EQ(ch.balance(), 0) << "seed " << seed;
            total_received += received.size();
        }
        EXPECT_GT(total_received, 1000u);  // (the seeds make traffic, not only kills)
        std::printf("random traffic: %zu messages received\n", total_received);
    });
}

}  // namespace
