// Sockets in numbers, on loopback in one thread: a thousand connections at once, each served by
// its own tasklet, and a hundred thousand opened and closed with nothing left behind.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "net_test_util.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
namespace net = stackless::net;
using stackless_test::in_fresh_thread;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool address_sanitizer = true;
#else
constexpr bool address_sanitizer = false;
#endif

// Makes sure the process may open `needed` fds (the soft limit, up to the hard one).
bool allow_open_fds(rlim_t needed) {
    rlimit limit;
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
    if (limit.rlim_cur >= needed) return true;
    if (limit.rlim_max < needed) return false;
    limit.rlim_cur = needed;
    return ::setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

// What a connection's server tasklet answers to each 8-byte number.
std::uint64_t answer(std::uint64_t question) {
    return question * 3 + 1;
}

void answer_until_eof(net::socket s) {
    std::uint64_t question;
    while (s.read_exact(&question, sizeof question, 60s)) {
        const std::uint64_t reply = answer(question);
        s.write_all(&reply, sizeof reply, 60s);
    }
}

constexpr int connections = 1000;
constexpr int round_trips = 5;

TEST(NetLoad, ThousandConnectionsEachWithItsServerTasklet) {
    if (!allow_open_fds(2 * connections + 64)) GTEST_SKIP() << "too few fds allowed";
    in_fresh_thread([] {
        net::listener server = net_test::loopback_listener();
        const net::endpoint at = server.local_endpoint();
        stackless::spawn([&] {
            for (int i = 0; i < connections; ++i)
                stackless::spawn(answer_until_eof, server.accept(60s));
        });
        std::vector<int> answered(connections, 0);
        for (int client = 0; client < connections; ++client) {
            stackless::spawn([&, client] {
                net::socket s = net::connect_tcp(at, 60s);
                for (int round = 0; round < round_trips; ++round) {
                    const std::uint64_t question =
                        static_cast<std::uint64_t>(client) * 1000 + round;
                    s.write_all(&question, sizeof question, 60s);
                    std::uint64_t reply = 0;
                    if (!s.read_exact(&reply, sizeof reply, 60s)) return;
                    if (reply != answer(question)) return;
                    ++answered[client];
                }
            });
        }
        stackless::run();
        int complete = 0;
        for (int count : answered) complete += count == round_trips;
        EXPECT_EQ(complete, connections);
        stackless_test::expect_idle_scheduler();
    });
}

// Connections opened and closed in batches: afterwards the process holds as many fds as before,
// and its resident memory has not grown with the count.
//
// TIME_WAIT: the end that closes first keeps the connection's 4-tuple for a minute. If the
// clients closed first, their ephemeral ports (about 28,000) would all be held after that many
// connections, and connect() would fail with EADDRNOTAVAIL. So the server closes first and each
// client closes after it read the end of the stream: the TIME_WAIT entries belong to the
// server's side, which a client's choice of port does not look at, and a new handshake on a
// 4-tuple still in TIME_WAIT there is accepted (its timestamps are newer).
constexpr int batch = 500;
constexpr int batches = 200;

TEST(NetLoad, HundredThousandConnectionsLeaveNothingBehind) {
    if (!allow_open_fds(2 * batch + 64)) GTEST_SKIP() << "too few fds allowed";
    in_fresh_thread([] {
        net::listener server = net_test::loopback_listener();
        const net::endpoint at = server.local_endpoint();
        long completed = 0;
        auto run_batch = [&] {
            stackless::spawn([&] {
                for (int i = 0; i < batch; ++i) {
                    stackless::spawn(
                        [](net::socket s) {
                            char byte;
                            if (s.read_some(&byte, 1, 60s) == 1) s.write_all(&byte, 1, 60s);
                        },  // (and closes first)
                        server.accept(60s));
                }
            });
            for (int i = 0; i < batch; ++i) {
                stackless::spawn([&, i] {
                    net::socket s = net::connect_tcp(at, 60s);
                    const char sent = static_cast<char>(i);
                    s.write_all(&sent, 1, 60s);
                    char buffer[2];
                    if (s.read_some(buffer, 2, 60s) != 1 || buffer[0] != sent) return;
                    if (s.read_some(buffer, 2, 60s) != 0) return;  // the server closed first
                    ++completed;
                });
            }
            stackless::run();
        };
        // A few batches first, so that what the library and the allocator keep for reuse (stack
        // slots, tasklet states, the loop's fd table) is there before measuring.
        for (int i = 0; i < 4; ++i) run_batch();
        const int fds_before = net_test::open_fd_count();
        const long resident_before = net_test::resident_bytes();
        for (int i = 4; i < batches; ++i) run_batch();
        EXPECT_EQ(completed, static_cast<long>(batch) * batches);
        EXPECT_EQ(net_test::open_fd_count(), fds_before);
        const long growth = net_test::resident_bytes() - resident_before;
        // (Under AddressSanitizer freed memory waits in its quarantine, up to 256 MiB, so the
        // resident size says nothing there; its leak checker looks at the heap at exit instead.)
        if (!address_sanitizer) {
            EXPECT_LT(growth, 8L << 20) << "resident memory grew by " << growth << " bytes";
        }
        stackless_test::expect_idle_scheduler();
    });
}

}  // namespace
