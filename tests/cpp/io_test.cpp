// Tasklets that wait on file descriptors (pipes here; sockets in net_test.cpp): readiness, EOF,
// deadlines, an fd closed while waited on, kills, and what run() does while tasklets wait.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "test_util.hpp"

using namespace std::chrono_literals;
using stackless_test::events;
using stackless_test::in_fresh_thread;

namespace {

struct nonblocking_pipe {
    int read_end = -1;
    int write_end = -1;
    nonblocking_pipe() {
        int fds[2];
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
        read_end = fds[0];
        write_end = fds[1];
    }
    ~nonblocking_pipe() {
        if (read_end >= 0) stackless::close_fd(read_end);
        if (write_end >= 0) stackless::close_fd(write_end);
    }
};

// Reads what is there, waiting for readiness after EAGAIN (the rule of stackless/io.hpp).
std::string read_some(int fd) {
    char buf[256];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n >= 0) return std::string(buf, static_cast<std::size_t>(n));
        if (errno != EAGAIN) throw std::runtime_error(std::strerror(errno));
        stackless::wait_readable(fd);
    }
}

TEST(FdWait, ReaderWaitsWhileOthersRunAndWakesOnData) {
    in_fresh_thread([] {
        nonblocking_pipe p;
        events log;
        stackless::spawn([&] { log.push_back("read " + read_some(p.read_end)); });
        stackless::spawn([&] {
            log.push_back("writer runs");
            stackless::sleep_for(10ms);
            ASSERT_EQ(::write(p.write_end, "hi", 2), 2);
            log.push_back("wrote");
        });
        stackless::run();
        EXPECT_EQ(log, (events{"writer runs", "wrote", "read hi"}));
    });
}

TEST(FdWait, EndOfFileWakesTheReader) {
    in_fresh_thread([] {
        nonblocking_pipe p;
        std::string got = "unset";
        stackless::spawn([&] { got = read_some(p.read_end); });
        stackless::schedule();
        stackless::close_fd(p.write_end);
        p.write_end = -1;
        stackless::run();
        EXPECT_EQ(got, "");  // EOF
    });
}

TEST(FdWait, DeadlinePassesWithoutData) {
    in_fresh_thread([] {
        nonblocking_pipe p;
        char c;
        ASSERT_LT(::read(p.read_end, &c, 1), 0);
        const auto start = stackless::clock::now();
        EXPECT_FALSE(stackless::wait_readable(p.read_end, 20ms));
        EXPECT_GE(stackless::clock::now() - start, 20ms);
        EXPECT_TRUE(stackless::wait_writable(p.write_end, 1s));
    });
}

TEST(FdWait, ClosingAnFdWakesItsWaiterWithAnError) {
    in_fresh_thread([] {
        nonblocking_pipe p;
        std::string error;
        stackless::spawn([&] {
            try {
                stackless::wait_readable(p.read_end);
            } catch (const stackless::io_error& e) {
                error = e.code() == std::errc::bad_file_descriptor ? "EBADF" : e.what();
            }
        });
        stackless::schedule();
        stackless::close_fd(p.read_end);
        p.read_end = -1;
        stackless::run();
        EXPECT_EQ(error, "EBADF");
    });
}

TEST(FdWait, SecondWaiterInTheSameDirectionIsRefused) {
    in_fresh_thread([] {
        nonblocking_pipe p;
        stackless::tasklet first = stackless::spawn([&] { stackless::wait_readable(p.read_end); });
        stackless::schedule();
        EXPECT_THROW(stackless::wait_readable(p.read_end), stackless::error);
        first.kill();
    });
}

TEST(FdWait, KillingAWaiterUnregistersItAndAnotherCanWait) {
    in_fresh_thread([] {
        nonblocking_pipe p;
        events log;
        stackless::tasklet t = stackless::spawn([&] {
            stackless_test::mark_on_destroy m(log, "unwound");
            stackless::wait_readable(p.read_end);
        });
        stackless::schedule();
        EXPECT_TRUE(t.blocked());
        t.kill();
        EXPECT_EQ(log, (events{"unwound"}));
        stackless::run();  // nothing waits: returns at once
        stackless::spawn([&] { log.push_back("read " + read_some(p.read_end)); });
        stackless::schedule();
        ASSERT_EQ(::write(p.write_end, "x", 1), 1);
        stackless::run();
        EXPECT_EQ(log, (events{"unwound", "read x"}));
    });
}

// A reader that waits after a short read (io.hpp allows it) while data and the end of the stream
// arrive together: one edge reports both, and the wait after the short read must still return
// (the peer's hang-up is a state, not an edge).
TEST(FdWait, HangUpKeepsASocketReadable) {
    in_fresh_thread([] {
        int fds[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
        events log;
        stackless::spawn([&] {
            char buf[64];
            bool wait_first = false;
            for (;;) {
                if (wait_first && !stackless::wait_readable(fds[0], 5s)) {
                    log.push_back("timed out");
                    return;
                }
                ssize_t n = ::read(fds[0], buf, sizeof buf);
                if (n == 0) break;
                if (n > 0) log.push_back(std::string(buf, static_cast<std::size_t>(n)));
                wait_first = true;  // after EAGAIN, or a short read
            }
            log.push_back("end");
        });
        stackless::schedule();  // the reader waits
        ASSERT_EQ(::write(fds[1], "abc", 3), 3);
        ::shutdown(fds[1], SHUT_WR);
        stackless::run();
        EXPECT_EQ(log, (events{"abc", "end"}));
        stackless::close_fd(fds[0]);
        stackless::close_fd(fds[1]);
    });
}

// A wait registers a new fd, which is ready already (a fresh socket is writable, as a connect that
// completed at once is): the event is queued at registration, and the reactor may find it at the
// scheduling point of the very park that waits for it (every busy_tick_period-th one, when its
// busy epoll period has passed). That wake must reach the parking tasklet. A sleeper keeps the
// reactor counting ticks (and ends a lost wait by a deadlock error, at worst); a random number of
// schedule() calls before each wait lands that park on the ticking point in some of the 1,000
// rounds.
TEST(FdWait, ReadinessFoundWhileParkingIsNotLost) {
    in_fresh_thread([] {
        stackless::tasklet sleeper = stackless::spawn([] { stackless::sleep_for(30s); });
        stackless::schedule();
        unsigned random = 12345;
        int late = 0;
        for (int round = 0; round < 1000; ++round) {
            int fds[2];
            ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
            const auto spin_until = stackless::clock::now() + 600us;  // past the busy period
            while (stackless::clock::now() < spin_until) {
            }
            random = random * 1103515245 + 12345;
            for (unsigned i = (random >> 16) % 64; i > 0; --i) stackless::schedule();
            const auto start = stackless::clock::now();
            if (!stackless::wait_writable(fds[0], 2s) || stackless::clock::now() - start > 1s)
                ++late;
            stackless::close_fd(fds[0]);
            stackless::close_fd(fds[1]);
        }
        EXPECT_EQ(late, 0);
        sleeper.kill();
    });
}

TEST(FdWait, BadDescriptorRaises) {
    in_fresh_thread([] {
        EXPECT_THROW(stackless::wait_readable(-1), stackless::io_error);
        int fds[2];
        ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
        ::close(fds[0]);
        ::close(fds[1]);
        EXPECT_THROW(stackless::wait_readable(fds[0]), stackless::io_error);
    });
}

TEST(FdWait, RegularFilesAreAlwaysReady) {
    in_fresh_thread([] {
        int fd = ::open("/proc/self/status", O_RDONLY | O_NONBLOCK);
        ASSERT_GE(fd, 0);
        EXPECT_TRUE(stackless::wait_readable(fd));
        EXPECT_TRUE(stackless::wait_readable(fd));
        stackless::close_fd(fd);
    });
}

}  // namespace
