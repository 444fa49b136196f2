// blocking(): calls run on the process's thread pool while the calling tasklet waits. Results,
// exceptions, the order of the caller's and the other tasklets' events, concurrency, kills and
// thread ends while a call is pending, and the pool's size. Wall times are asserted only within
// generous bounds.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using stackless_test::events;
using stackless_test::in_fresh_thread;

namespace {

// Generous: the test machines are shared, and a busy one delays a wake-up by many milliseconds.
constexpr auto lateness_bound = 250ms;

// A job on a pool thread waits at the gate until the test opens it: the test decides when the
// job ends. Shared (std::shared_ptr) with the job, which may outlive the test's frame.
class gate {
  public:
    void open() {
        {
            std::lock_guard lock(mutex_);
            open_ = true;
        }
        opened_.notify_all();
    }
    // False if it stayed shut that long (a test that forgot to open it fails instead of hanging).
    bool pass(std::chrono::milliseconds limit = 10s) {
        std::unique_lock lock(mutex_);
        return opened_.wait_for(lock, limit, [this] { return open_; });
    }

  private:
    std::mutex mutex_;
    std::condition_variable opened_;
    bool open_ = false;
};

// A job's result that reports when it is destroyed (wherever that happens).
struct token {
    explicit token(std::shared_ptr<std::atomic<bool>> flag) : destroyed(std::move(flag)) {}
    ~token() { destroyed->store(true); }
    std::shared_ptr<std::atomic<bool>> destroyed;
};

// Waits (blocking this thread) until `done()` holds, for at most `limit`.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

int threads_in_process() {
    int n = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/task"))
        ++n;
    return n;
}

struct job_failed : std::runtime_error {
    using std::runtime_error::runtime_error;
};

TEST(Blocking, ReturnsTheResultToTheCallingTasklet) {
    in_fresh_thread([] {
        int answer = 0;
        std::thread::id ran_on;
        stackless::spawn([&] {
            answer = stackless::blocking([] { return 6 * 7; });
            ran_on = stackless::blocking([] { return std::this_thread::get_id(); });
        });
        stackless::run();
        EXPECT_EQ(answer, 42);
        EXPECT_NE(ran_on, std::this_thread::get_id());
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Blocking, RaisesWhatTheFunctionRaisedInTheCallingTasklet) {
    in_fresh_thread([] {
        std::string caught;
        stackless::spawn([&] {
            try {
                stackless::blocking([]() -> int { throw job_failed("disk on fire"); });
            } catch (const job_failed& e) {
                caught = e.what();
            }
        });
        stackless::run();
        EXPECT_EQ(caught, "disk on fire");
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Blocking, OtherTaskletsRunWhileOneWaits) {
    in_fresh_thread([] {
        events log;
        auto g = std::make_shared<gate>();
        stackless::spawn([&log, g] {
            log.push_back("A calls");
            const bool passed = stackless::blocking([g] { return g->pass(); });
            log.push_back(passed ? "A got the result" : "A: the gate stayed shut");
        });
        stackless::spawn([&log, g] {
            log.push_back("B runs");
            stackless::schedule();
            log.push_back("B runs again");
            stackless::sleep_for(10ms);
            log.push_back("B opens the gate");
            g->open();
        });
        stackless::run();
        EXPECT_EQ(log, (events{"A calls", "B runs", "B runs again", "B opens the gate",
                               "A got the result"}));
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Blocking, CallsOfSeveralTaskletsProceedTogether) {
    stackless::set_blocking_threads(std::max(4, stackless::blocking_threads()));
    in_fresh_thread([] {
        const auto start = stackless::clock::now();
        int done = 0;
        for (int i = 0; i < 4; ++i)
            stackless::spawn([&done] {
                stackless::blocking([] { std::this_thread::sleep_for(100ms); });
                ++done;
            });
        stackless::run();
        const auto took = stackless::clock::now() - start;
        EXPECT_EQ(done, 4);
        EXPECT_GE(took, 100ms);
        EXPECT_LT(took, 100ms + lateness_bound);  // not 400 ms
    });
}

TEST(Blocking, AKilledCallerLeavesAtOnceAndTheResultIsDroppedWhenTheJobEnds) {
    in_fresh_thread([] {
        events log;
        auto g = std::make_shared<gate>();
        auto result_destroyed = std::make_shared<std::atomic<bool>>(false);
        stackless::tasklet caller = stackless::spawn([&log, g, result_destroyed] {
            stackless_test::mark_on_destroy unwound(log, "caller unwound");
            log.push_back("caller calls");
            auto result = stackless::blocking([g, result_destroyed] {
                g->pass();
                return std::make_shared<token>(result_destroyed);
            });
            log.push_back("caller got a result");
        });
        stackless::schedule();  // the caller runs until it waits
        ASSERT_TRUE(caller.blocked());
        caller.kill();
        EXPECT_EQ(log, (events{"caller calls", "caller unwound"}));
        EXPECT_FALSE(caller.alive());
        EXPECT_FALSE(result_destroyed->load());  // the job still runs
        // Nothing is left for this thread to wait for: run() returns at once.
        const auto start = stackless::clock::now();
        stackless::run();
        EXPECT_LT(stackless::clock::now() - start, lateness_bound);

        g->open();
        EXPECT_TRUE(eventually([&] { return result_destroyed->load(); }));
        EXPECT_EQ(stackless::blocking([] { return 7; }), 7);  // the pool still works
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Blocking, AnExceptionThrownIntoAWaitingCallerEndsItsWait) {
    in_fresh_thread([] {
        auto g = std::make_shared<gate>();
        std::string caught;
        stackless::tasklet caller = stackless::spawn([&caught, g] {
            try {
                stackless::blocking([g] { g->pass(); });
            } catch (const std::runtime_error& e) {
                caught = e.what();
            }
        });
        stackless::schedule();
        ASSERT_TRUE(caller.blocked());
        caller.raise_exception(std::runtime_error("stop waiting"));
        EXPECT_EQ(caught, "stop waiting");
        EXPECT_FALSE(caller.alive());
        g->open();
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Blocking, AJobMayEndAfterItsCallersThreadEnded) {
    auto g = std::make_shared<gate>();
    auto result_destroyed = std::make_shared<std::atomic<bool>>(false);
    events log;
    in_fresh_thread([&log, g, result_destroyed] {
        stackless::spawn([&log, g, result_destroyed] {
            stackless_test::mark_on_destroy unwound(log, "caller unwound");
            auto result = stackless::blocking([g, result_destroyed] {
                g->pass();
                return std::make_shared<token>(result_destroyed);
            });
            log.push_back("caller got a result");
        });
        stackless::schedule();
        // The thread ends with its tasklet waiting: the tasklet is killed.
    });
    EXPECT_EQ(log, (events{"caller unwound"}));
    EXPECT_FALSE(result_destroyed->load());
    g->open();
    EXPECT_TRUE(eventually([&] { return result_destroyed->load(); }));
    in_fresh_thread([] { EXPECT_EQ(stackless::blocking([] { return 8; }), 8); });
}

TEST(Blocking, TheMainTaskletMayCallAndTheOtherTaskletsRunMeanwhile) {
    in_fresh_thread([] {
        EXPECT_EQ(stackless::blocking([] { return std::string("alone"); }), "alone");

        events log;
        auto g = std::make_shared<gate>();
        stackless::spawn([&log, g] {
            log.push_back("tasklet opens the gate");
            g->open();
        });
        log.push_back("main calls");
        const bool passed = stackless::blocking([g] { return g->pass(); });
        log.push_back(passed ? "main got the result" : "main: the gate stayed shut");
        EXPECT_EQ(log, (events{"main calls", "tasklet opens the gate", "main got the result"}));
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Blocking, AThreadThatUsesNoTaskletsMayCall) {
    int answer = 0;
    std::thread plain([&answer] { answer = stackless::blocking([] { return 99; }); });
    plain.join();
    EXPECT_EQ(answer, 99);
}

TEST(Blocking, TenThousandShortCallsFromAHundredTasklets) {
    in_fresh_thread([] {
        const int threads_before = threads_in_process();
        constexpr int tasklets = 100;
        constexpr int calls = 100;
        std::vector<long> sums(tasklets, 0);
        for (int t = 0; t < tasklets; ++t)
            stackless::spawn([&sums, t] {
                for (int c = 0; c < calls; ++c)
                    sums[t] += stackless::blocking([t, c] { return 1000L * t + c; });
            });
        stackless::run();
        for (int t = 0; t < tasklets; ++t)
            EXPECT_EQ(sums[t], 1000L * t * calls + calls * (calls - 1) / 2) << "tasklet " << t;
        // The pool started no more threads than it may run.
        EXPECT_LE(threads_in_process(), threads_before + stackless::blocking_threads());
        stackless_test::expect_idle_scheduler();
    });
}

TEST(Blocking, MoveOnlyResultsAndFunctions) {
    in_fresh_thread([] {
        std::unique_ptr<std::string> text =
            stackless::blocking([] { return std::make_unique<std::string>("moved"); });
        ASSERT_NE(text, nullptr);
        EXPECT_EQ(*text, "moved");

        auto owned = std::make_unique<int>(5);
        std::unique_ptr<int> back =
            stackless::blocking([p = std::move(owned)]() mutable { return std::move(p); });
        ASSERT_NE(back, nullptr);
        EXPECT_EQ(*back, 5);
    });
}

TEST(Blocking, VoidAndReferenceResults) {
    in_fresh_thread([] {
        auto calls = std::make_shared<std::atomic<int>>(0);
        stackless::blocking([calls] { ++*calls; });
        EXPECT_EQ(calls->load(), 1);

        static int shared_value = 3;
        int& ref = stackless::blocking([]() -> int& { return shared_value; });
        EXPECT_EQ(&ref, &shared_value);
    });
}

TEST(Blocking, AJobThatCallsBlockingRunsTheInnerCallItself) {
    const bool same_thread = stackless::blocking([] {
        const auto outer = std::this_thread::get_id();
        return stackless::blocking([] { return std::this_thread::get_id(); }) == outer;
    });
    EXPECT_TRUE(same_thread);
}

TEST(Blocking, PoolThreadsTakeNoSignals) {
    const bool all_blocked = stackless::blocking([] {
        sigset_t mask;
        pthread_sigmask(SIG_BLOCK, nullptr, &mask);
        return sigismember(&mask, SIGINT) == 1 && sigismember(&mask, SIGTERM) == 1 &&
               sigismember(&mask, SIGCHLD) == 1;
    });
    EXPECT_TRUE(all_blocked);
    sigset_t mine;
    pthread_sigmask(SIG_BLOCK, nullptr, &mine);
    EXPECT_EQ(sigismember(&mine, SIGINT), 0);  // the caller's mask is left as it was
}

TEST(Blocking, ThePoolSizeIsAtLeastOne) {
    EXPECT_THROW(stackless::set_blocking_threads(0), stackless::error);
    const int before = stackless::blocking_threads();
    EXPECT_GE(before, 1);
    stackless::set_blocking_threads(before + 1);
    EXPECT_EQ(stackless::blocking_threads(), before + 1);
    stackless::set_blocking_threads(before);
}

// These run their statement in a new process (gtest re-executes the test binary), where the
// pool has not started yet; the statement exits with 0 when all went as expected.
class BlockingInAFreshProcess : public testing::Test {
  protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// 4 calls of 100 ms, 2 at a time: at least 200 ms.
void four_sleeps_two_at_a_time() {
    if (setenv("STACKLESS_BLOCKING_THREADS", "2", 1) != 0) std::_Exit(10);
    if (stackless::blocking_threads() != 2) std::_Exit(11);
    const auto start = stackless::clock::now();
    for (int i = 0; i < 4; ++i)
        stackless::spawn([] { stackless::blocking([] { std::this_thread::sleep_for(100ms); }); });
    stackless::run();
    if (stackless::clock::now() - start < 200ms) std::_Exit(12);
    std::exit(0);
}

TEST_F(BlockingInAFreshProcess, TheEnvironmentSetsTheLimit) {
    EXPECT_EXIT(four_sleeps_two_at_a_time(), testing::ExitedWithCode(0), "");
}

// A job that is still running does not hold up the exit of the process.
void exit_while_a_job_runs() {
    auto started = std::make_shared<std::atomic<bool>>(false);
    std::thread caller([started] {
        stackless::blocking([started] {
            started->store(true);
            std::this_thread::sleep_for(60s);  // (a failing exit waits this long)
        });
    });
    caller.detach();
    if (!eventually([&] { return started->load(); })) std::_Exit(10);
    std::exit(0);
}

TEST_F(BlockingInAFreshProcess, ExitDoesNotWaitForARunningJob) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EXIT(exit_while_a_job_runs(), testing::ExitedWithCode(0), "");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
}

// A call still queued when the process exits fails in its caller; an atexit handler registered
// before the pool existed runs after the pool stopped and reports it.
std::atomic<bool> queued_call_failed{false};

void report_the_queued_call() {
    if (eventually([] { return queued_call_failed.load(); }, 5s))
        std::fputs("the queued call failed\n", stderr);
}

void exit_with_a_call_queued() {
    std::atexit(report_the_queued_call);
    stackless::set_blocking_threads(1);
    auto started = std::make_shared<std::atomic<bool>>(false);
    std::thread busy([started] {
        stackless::blocking([started] {
            started->store(true);
            std::this_thread::sleep_for(60s);
        });
    });
    busy.detach();
    if (!eventually([&] { return started->load(); })) std::_Exit(10);
    std::thread queued([] {
        try {
            stackless::blocking([] {});
        } catch (const stackless::error& e) {
            if (std::string(e.what()).find("exiting") != std::string::npos)
                queued_call_failed.store(true);
        }
    });
    queued.detach();
    std::this_thread::sleep_for(200ms);  // (it queues its call meanwhile)
    std::exit(0);
}

TEST_F(BlockingInAFreshProcess, ACallStillQueuedAtExitFailsInItsCaller) {
    EXPECT_EXIT(exit_with_a_call_queued(), testing::ExitedWithCode(0), "the queued call failed");
}

}  // namespace
