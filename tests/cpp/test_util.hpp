// Helpers shared by the test files.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "stackless/stackless.hpp"

namespace stackless_test {

// Events recorded in the order they happen; tests compare it with the expected order.
using events = std::vector<std::string>;

// Records `text` into `log` when destroyed: proves that a tasklet's stack was unwound.
struct mark_on_destroy {
    events* log;
    std::string text;
    mark_on_destroy(events& l, std::string t) : log(&l), text(std::move(t)) {}
    mark_on_destroy(const mark_on_destroy&) = delete;
    mark_on_destroy& operator=(const mark_on_destroy&) = delete;
    ~mark_on_destroy() { log->push_back(text); }
};

// Runs `body` on a new std::thread, which has a scheduler and main tasklet of its own (so the
// test starts from a fresh scheduler state), optionally configured first, and joins it.
// gtest assertions work on that thread; an exception escaping `body` is reported as a failure.
inline void in_fresh_thread(std::optional<stackless::scheduler_config> config,
                            const std::function<void()>& body) {
    std::thread worker([&] {
        try {
            if (config) stackless::configure(*config);
            body();
        } catch (const std::exception& e) {
            ADD_FAILURE() << "exception escaped the test thread's main tasklet: " << e.what();
        } catch (const stackless::tasklet_exit&) {
            ADD_FAILURE() << "tasklet_exit escaped the test thread's main tasklet";
        } catch (...) {
            ADD_FAILURE() << "unknown exception escaped the test thread's main tasklet";
        }
    });
    worker.join();
}
inline void in_fresh_thread(const std::function<void()>& body) {
    in_fresh_thread({}, body);
}

// The scheduler of the calling thread is idle: only its main tasklet is runnable and current.
inline void expect_idle_scheduler() {
    EXPECT_EQ(stackless::getruncount(), 1);
    EXPECT_TRUE(stackless::getcurrent() == stackless::getmain());
    EXPECT_TRUE(stackless::getmain().is_current());
    EXPECT_FALSE(stackless::getmain().blocked());
    EXPECT_TRUE(stackless::getmain().scheduled());
}

}  // namespace stackless_test
