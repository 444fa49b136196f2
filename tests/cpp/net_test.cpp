// Cooperative sockets (stackless/net.hpp) on loopback: endpoints, echo round trips, the end of a
// stream, resets and broken pipes, refused connections, deadlines, sockets closed or tasklets
// killed while they wait, Unix-domain sockets. (Many connections at once: net_load_test.cpp.)
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "net_test_util.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
namespace net = stackless::net;
using net_test::connected_tcp_pair;
using net_test::loopback_listener;
using net_test::open_fd_count;
using stackless_test::events;
using stackless_test::in_fresh_thread;

namespace {

// Echoes what `s` reads until the end of the stream, then closes it.
void echo_until_eof(net::socket s) {
    char buffer[512];
    while (std::size_t got = s.read_some(buffer, sizeof buffer)) s.write_all(buffer, got);
}

std::string read_until_eof(net::socket& s) {
    std::string all;
    char buffer[4096];
    while (std::size_t got = s.read_some(buffer, sizeof buffer, 10s)) all.append(buffer, got);
    return all;
}

// ---------------------------------------------------------------------------------------------
// Endpoints

TEST(NetEndpoint, ParsesAndPrintsIpLiterals) {
    const net::endpoint v4("127.0.0.1", 8080);
    EXPECT_EQ(v4.family(), net::family::ipv4);
    EXPECT_EQ(v4.port(), 8080);
    EXPECT_EQ(v4.address(), "127.0.0.1");
    EXPECT_EQ(v4.to_string(), "127.0.0.1:8080");
    const net::endpoint v6("::1", 443);
    EXPECT_EQ(v6.family(), net::family::ipv6);
    EXPECT_EQ(v6.to_string(), "[::1]:443");
    EXPECT_EQ(net::endpoint::parse("[::1]:443"), v6);
    EXPECT_EQ(net::endpoint::parse("127.0.0.1:8080"), v4);
    EXPECT_EQ(v4.with_port(1).to_string(), "127.0.0.1:1");
    EXPECT_NE(v4, v4.with_port(1));
    EXPECT_EQ(net::endpoint("::ffff:10.0.0.1", 0).to_string(), "[::ffff:10.0.0.1]:0");
    EXPECT_EQ(net::endpoint("fe80::1%1", 7).address().substr(0, 8), "fe80::1%");
    EXPECT_EQ(net::endpoint().family(), net::family::none);
}

TEST(NetEndpoint, RefusesWhatIsNotAnAddress) {
    EXPECT_THROW(net::endpoint("localhost", 1), net::address_error);
    EXPECT_THROW(net::endpoint("1.2.3", 1), net::address_error);
    EXPECT_THROW(net::endpoint("", 1), net::address_error);
    EXPECT_THROW(net::endpoint::parse("127.0.0.1"), net::address_error);
    EXPECT_THROW(net::endpoint::parse("127.0.0.1:65536"), net::address_error);
    EXPECT_THROW(net::endpoint::parse("127.0.0.1:8x"), net::address_error);
    EXPECT_THROW(net::endpoint::parse("::1:80"), net::address_error);
    EXPECT_THROW(net::endpoint::parse("[::1]80"), net::address_error);
    EXPECT_THROW(net::endpoint::unix_path(std::string(200, 'x')), net::address_error);
    EXPECT_THROW(net::endpoint::unix_path(""), net::address_error);
    EXPECT_THROW(net::endpoint::unix_path("/x").with_port(1), net::address_error);
}

TEST(NetEndpoint, UnixPaths) {
    const auto file = net::endpoint::unix_path("/tmp/x.sock");
    EXPECT_EQ(file.family(), net::family::unix_domain);
    EXPECT_EQ(file.to_string(), "/tmp/x.sock");
    EXPECT_EQ(file.port(), 0);
    const auto abstract = net::endpoint::unix_path("@stackless");
    EXPECT_EQ(abstract.to_string(), "@stackless");
    EXPECT_NE(file, abstract);
}

// ---------------------------------------------------------------------------------------------
// Names

TEST(NetResolve, LiteralsNeedNoLookup) {
    in_fresh_thread([] {
        EXPECT_EQ(net::resolve("127.0.0.1", 80), (std::vector{net::endpoint("127.0.0.1", 80)}));
        EXPECT_EQ(net::resolve("::1", 443), (std::vector{net::endpoint("::1", 443)}));
        EXPECT_FALSE(net::endpoint::try_parse_ip("localhost", 1));
        EXPECT_EQ(net::endpoint::try_parse_ip("10.1.2.3", 4)->to_string(), "10.1.2.3:4");
    });
}

TEST(NetResolve, LocalhostIsALoopbackAddress) {
    in_fresh_thread([] {
        const std::vector<net::endpoint> found = net::resolve("localhost", 8080);
        ASSERT_FALSE(found.empty());
        for (const net::endpoint& e : found) {
            EXPECT_TRUE(e.address() == "127.0.0.1" || e.address() == "::1") << e;
            EXPECT_EQ(e.port(), 8080);
        }
    });
}

// (".invalid" is reserved: no resolver knows it. Without a network the lookup may fail another
// way, which is a resolve_error too.)
TEST(NetResolve, UnknownNameIsAResolveError) {
    in_fresh_thread([] {
        EXPECT_THROW(net::resolve("no-such-host.invalid", 1), net::resolve_error);
        EXPECT_THROW(net::connect_tcp("no-such-host.invalid", 1, 10s), net::resolve_error);
    });
}

TEST(NetResolve, ConnectByName) {
    in_fresh_thread([] {
        net::listener server = loopback_listener();
        net::socket client = net::connect_tcp("localhost", server.local_endpoint().port(), 10s);
        net::socket served = server.accept(10s);
        client.write_all("by name");
        char buffer[7];
        ASSERT_TRUE(served.read_exact(buffer, 7, 10s));
        EXPECT_EQ(std::string(buffer, 7), "by name");
    });
}

// ---------------------------------------------------------------------------------------------
// Data

TEST(NetSocket, EchoRoundTripsOverTcp) {
    in_fresh_thread([] {
        net::listener server = loopback_listener();
        EXPECT_EQ(server.local_endpoint().address(), "127.0.0.1");
        EXPECT_NE(server.local_endpoint().port(), 0);
        stackless::spawn([&] { echo_until_eof(server.accept(10s)); });
        net::socket client = net::connect_tcp(server.local_endpoint(), 10s);
        EXPECT_EQ(client.peer_endpoint(), server.local_endpoint());
        EXPECT_EQ(client.local_endpoint().address(), "127.0.0.1");
        for (int round = 0; round < 100; ++round) {
            const std::string message = "message " + std::to_string(round);
            client.write_all(message, 10s);
            std::string back(message.size(), '\0');
            ASSERT_TRUE(client.read_exact(back.data(), back.size(), 10s));
            ASSERT_EQ(back, message);
        }
        client.shutdown(net::shutdown_how::write);
        EXPECT_EQ(read_until_eof(client), "");
        stackless::run();
        stackless_test::expect_idle_scheduler();
    });
}

// Megabytes each way at once: writes that fill the send buffer (short writes, waits for room)
// and reads that empty the receive buffer, with a writer and a reader tasklet on one socket.
TEST(NetSocket, LargeTransfersBothWaysAtOnce) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        stackless::spawn(echo_until_eof, std::move(served));
        std::string sent(8 << 20, '\0');
        for (std::size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>(i * 7 + i / 4099);
        stackless::spawn([&, &client = client] {
            for (std::size_t at = 0; at < sent.size(); at += 100'000)
                client.write_all(sent.data() + at,
                                 std::min<std::size_t>(100'000, sent.size() - at));
            client.shutdown(net::shutdown_how::write);
        });
        std::string received = read_until_eof(client);
        stackless::run();
        EXPECT_EQ(received.size(), sent.size());
        EXPECT_TRUE(received == sent);
    });
}

TEST(NetSocket, EndOfStream) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        client.write_all("last words");
        client.shutdown(net::shutdown_how::write);
        char buffer[64];
        char exact[10];
        ASSERT_TRUE(served.read_exact(exact, sizeof exact, 10s));
        EXPECT_EQ(std::string(exact, sizeof exact), "last words");
        EXPECT_EQ(served.read_some(buffer, sizeof buffer, 10s), 0u);
        EXPECT_EQ(served.read_some(buffer, sizeof buffer, 10s), 0u);  // and stays at its end
        EXPECT_FALSE(served.read_exact(buffer, 4, 10s));              // a clean end
        served.write_all("reply");
        served.close();
        EXPECT_FALSE(served.is_open());
        EXPECT_EQ(read_until_eof(client), "reply");
    });
}

// The data and the end of the stream arrive together, while the reader waits: one edge reports
// both, the reader takes the data with a short read, and its next read (which waits first) must
// see the end at once, though no edge follows.
TEST(NetSocket, EndOfStreamRightAfterDataIsSeenAtOnce) {
    in_fresh_thread([] {
        for (int round = 0; round < 20; ++round) {
            auto [client, served] = connected_tcp_pair();
            std::vector<std::size_t> reads;
            stackless::spawn([&, &served = served] {
                char buffer[64];
                while (std::size_t got = served.read_some(buffer, sizeof buffer, 10s))
                    reads.push_back(got);
                reads.push_back(0);
            });
            stackless::schedule();  // the reader waits
            client.write_all("abc");
            client.shutdown(net::shutdown_how::write);
            const auto start = stackless::clock::now();
            stackless::run();
            EXPECT_LT(stackless::clock::now() - start, 1s);
            EXPECT_EQ(reads, (std::vector<std::size_t>{3, 0}));
        }
    });
}

TEST(NetSocket, EndInTheMiddleOfAMessage) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        client.write_all("abc");
        client.close();
        char buffer[8];
        try {
            (void)served.read_exact(buffer, sizeof buffer, 10s);
            ADD_FAILURE() << "read_exact returned";
        } catch (const net::unexpected_eof_error& e) {
            EXPECT_EQ(e.bytes_read(), 3u);
        }
    });
}

TEST(NetSocket, PeerResetIsAnIoError) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        int code = 0;
        std::string operation;
        stackless::spawn([&, &served = served] {
            char buffer[16];
            try {
                served.read_some(buffer, sizeof buffer, 10s);
            } catch (const stackless::io_error& e) {
                code = e.code().value();
                operation = e.operation();
            }
        });
        stackless::schedule();  // the reader waits
        net_test::reset_on_close(client);
        client.close();
        stackless::run();
        EXPECT_EQ(code, ECONNRESET);
        EXPECT_EQ(operation, "read");
    });
}

TEST(NetSocket, WriteAfterResetIsAnIoError) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        net_test::reset_on_close(client);
        client.close();
        stackless::sleep_for(20ms);  // the reset arrives
        try {
            served.write_all("x", 10s);
            ADD_FAILURE() << "write_all returned";
        } catch (const stackless::io_error& e) {
            EXPECT_TRUE(e.code().value() == ECONNRESET || e.code().value() == EPIPE) << e.what();
            EXPECT_STREQ(e.operation(), "write");
        }
    });
}

// A peer that closed normally answers the next write with a reset; the write after that gets
// EPIPE, which would be SIGPIPE (and the end of the process) with write().
TEST(NetSocket, BrokenPipeIsAnIoErrorNotASignal) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        client.close();
        int code = 0;
        for (int attempt = 0; attempt < 100 && code == 0; ++attempt) {
            try {
                served.write_all("data", 10s);
                stackless::sleep_for(1ms);
            } catch (const stackless::io_error& e) {
                code = e.code().value();
            }
        }
        EXPECT_EQ(code, EPIPE);
    });
}

TEST(NetSocket, ConnectionRefused) {
    in_fresh_thread([] {
        net::endpoint nobody;
        {
            net::listener closed_again = loopback_listener();
            nobody = closed_again.local_endpoint();
        }
        try {
            net::connect_tcp(nobody, 10s);
            ADD_FAILURE() << "connected";
        } catch (const stackless::io_error& e) {
            EXPECT_EQ(e.code(), std::errc::connection_refused);
            EXPECT_STREQ(e.operation(), "connect");
        }
    });
}

TEST(NetSocket, OperationsOnAClosedSocketRaise) {
    in_fresh_thread([] {
        net::socket nothing;
        char c;
        EXPECT_THROW(nothing.read_some(&c, 1), stackless::io_error);
        EXPECT_THROW(nothing.write_some(&c, 1), stackless::io_error);
        EXPECT_THROW(nothing.shutdown(net::shutdown_how::both), stackless::io_error);
        EXPECT_THROW(nothing.local_endpoint(), stackless::io_error);
        net::listener none;
        EXPECT_THROW(none.accept(), stackless::io_error);
        EXPECT_THROW(net::connect_tcp(net::endpoint::unix_path("/x")), net::address_error);
        EXPECT_THROW(net::listen_tcp(net::endpoint::unix_path("/x")), net::address_error);
    });
}

TEST(NetSocket, NoDelayIsOnForTcpAndInheritedByAcceptedConnections) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        EXPECT_TRUE(net_test::nodelay(client));
        EXPECT_TRUE(net_test::nodelay(served));
        served.set_nodelay(false);
        EXPECT_FALSE(net_test::nodelay(served));
    });
}

TEST(NetSocket, MovingAndReleasing) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        net::socket moved = std::move(client);
        EXPECT_FALSE(client.is_open());
        EXPECT_TRUE(moved.is_open());
        moved.write_all("a");
        char c;
        ASSERT_TRUE(served.read_exact(&c, 1, 10s));
        const int fd = moved.release();
        EXPECT_FALSE(moved.is_open());
        net::socket adopted = net::socket::adopt(fd);
        adopted.write_all("b");
        ASSERT_TRUE(served.read_exact(&c, 1, 10s));
        EXPECT_EQ(c, 'b');
        auto [left, right] = net::socket_pair();
        left.write_all("pair");
        char four[4];
        ASSERT_TRUE(right.read_exact(four, 4, 10s));
        EXPECT_EQ(std::string(four, 4), "pair");
    });
}

// ---------------------------------------------------------------------------------------------
// Deadlines: each raises timeout_error and leaves nothing behind in the loop (run() returns at
// once: no timer and no fd waiter is left), and the object can wait again.

void expect_nothing_waits() {
    const auto start = stackless::clock::now();
    stackless::run();
    EXPECT_LT(stackless::clock::now() - start, 1s);
    stackless_test::expect_idle_scheduler();
}

TEST(NetDeadline, Accept) {
    in_fresh_thread([] {
        net::listener server = loopback_listener();
        const auto start = stackless::clock::now();
        EXPECT_THROW(server.accept(30ms), stackless::timeout_error);
        EXPECT_GE(stackless::clock::now() - start, 30ms);
        EXPECT_THROW(server.accept(stackless::deadline::passed()), stackless::timeout_error);
        expect_nothing_waits();
        net::socket client = net::connect_tcp(server.local_endpoint(), 10s);
        net::socket served = server.accept(10s);
        EXPECT_EQ(served.peer_endpoint(), client.local_endpoint());
    });
}

TEST(NetDeadline, Read) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        char buffer[8];
        EXPECT_THROW(served.read_some(buffer, sizeof buffer, 30ms), stackless::timeout_error);
        expect_nothing_waits();
        // Data that is there is read even with a deadline that has passed, after a short read
        // (which makes the next read wait first) too.
        client.write_all("abc");
        stackless::sleep_for(5ms);
        EXPECT_EQ(served.read_some(buffer, sizeof buffer, stackless::deadline::passed()), 3u);
        client.write_all("de");
        stackless::sleep_for(5ms);
        EXPECT_EQ(served.read_some(buffer, sizeof buffer, stackless::deadline::passed()), 2u);
        EXPECT_THROW(served.read_some(buffer, sizeof buffer, stackless::deadline::passed()),
                     stackless::timeout_error);
        stackless::spawn([&, &client = client] {
            stackless::sleep_for(10ms);
            client.write_all("later");
        });
        EXPECT_EQ(served.read_some(buffer, sizeof buffer, 10s), 5u);
        expect_nothing_waits();
    });
}

TEST(NetDeadline, Write) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        // Nobody reads: the buffers fill and a write must wait for room that never comes.
        const std::string block(1 << 16, 'x');
        std::size_t written = 0;
        auto fill = [&, &served = served] {
            for (;;) written += served.write_some(block.data(), block.size(), 50ms);
        };
        EXPECT_THROW(fill(), stackless::timeout_error);
        EXPECT_GT(written, 0u);
        expect_nothing_waits();
    });
}

// A listener with a full accept queue drops new handshakes, so a connection attempt waits.
TEST(NetDeadline, Connect) {
    in_fresh_thread([] {
        connected_tcp_pair();  // (the thread's loop opens its fds at the connection's wait)
        const int fds_before = open_fd_count();
        net::listener server = net::listen_tcp(net::endpoint("127.0.0.1", 0), 0);
        std::vector<net::socket> queued;
        bool timed_out = false;
        for (int attempt = 0; attempt < 16 && !timed_out; ++attempt) {
            try {
                queued.push_back(net::connect_tcp(server.local_endpoint(), 100ms));
            } catch (const stackless::timeout_error&) {
                timed_out = true;
            }
        }
        EXPECT_TRUE(timed_out);
        expect_nothing_waits();
        queued.clear();
        server.close();
        EXPECT_EQ(open_fd_count(), fds_before);  // the attempt's socket was closed
    });
}

// ---------------------------------------------------------------------------------------------
// Waiters interrupted

TEST(NetInterrupt, ClosingASocketWakesItsReaderWithAnError) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        auto shared = std::make_unique<net::socket>(std::move(served));
        std::string outcome;
        stackless::spawn([&] {
            char buffer[8];
            try {
                shared->read_some(buffer, sizeof buffer);
                outcome = "returned";
            } catch (const stackless::io_error& e) {
                outcome = std::string(e.operation()) + " " +
                          (e.code() == std::errc::bad_file_descriptor ? "EBADF" : e.what());
            }
        });
        stackless::schedule();
        shared.reset();  // closed and destroyed while the reader waits in it
        stackless::run();
        EXPECT_EQ(outcome, "read EBADF");
    });
}

TEST(NetInterrupt, ClosingAListenerWakesItsAcceptorWithAnError) {
    in_fresh_thread([] {
        net::listener server = loopback_listener();
        std::string outcome;
        stackless::spawn([&] {
            try {
                server.accept();
                outcome = "returned";
            } catch (const stackless::io_error& e) {
                outcome = std::string(e.operation()) + " " + e.code().message();
            }
        });
        stackless::schedule();
        server.close();
        stackless::run();
        EXPECT_EQ(outcome, "accept " + std::generic_category().message(EBADF));
    });
}

TEST(NetInterrupt, KilledAndThrownIntoWhileWaiting) {
    in_fresh_thread([] {
        net::listener server = loopback_listener();
        events log;
        stackless::tasklet acceptor = stackless::spawn([&] {
            stackless_test::mark_on_destroy unwound(log, "acceptor unwound");
            server.accept();
        });
        stackless::schedule();
        acceptor.kill();
        EXPECT_EQ(log, (events{"acceptor unwound"}));
        expect_nothing_waits();

        auto [client, served] = connected_tcp_pair(server);
        stackless::tasklet reader = stackless::spawn([&, &served = served] {
            char buffer[4];
            try {
                served.read_some(buffer, sizeof buffer);
            } catch (const std::runtime_error& e) {
                log.push_back(std::string("reader caught ") + e.what());
            }
        });
        stackless::schedule();
        reader.raise_exception(std::runtime_error("stop"));
        EXPECT_EQ(log, (events{"acceptor unwound", "reader caught stop"}));
        expect_nothing_waits();

        // Both can wait again.
        stackless::spawn(
            [&] { log.push_back("accepted " + server.accept(10s).peer_endpoint().address()); });
        stackless::spawn([&, &served = served] {
            char buffer[4];
            log.push_back("read " + std::to_string(served.read_some(buffer, sizeof buffer, 10s)));
        });
        stackless::schedule();
        net::socket another = net::connect_tcp(server.local_endpoint(), 10s);
        client.write_all("hey");
        stackless::run();
        EXPECT_EQ(log, (events{"acceptor unwound", "reader caught stop", "accepted 127.0.0.1",
                               "read 3"}));
    });
}

TEST(NetInterrupt, SecondReaderOfASocketIsRefused) {
    in_fresh_thread([] {
        auto [client, served] = connected_tcp_pair();
        stackless::tasklet first = stackless::spawn([&, &served = served] {
            char c;
            served.read_some(&c, 1);
        });
        stackless::schedule();
        char c;
        EXPECT_THROW(served.read_some(&c, 1), stackless::error);
        first.kill();
    });
}

// ---------------------------------------------------------------------------------------------
// Unix-domain sockets

TEST(NetUnix, EchoAndTheSocketFileIsRemovedAtClose) {
    in_fresh_thread([] {
        const std::string path = net_test::temporary_socket_path();
        {
            net::listener server = net::listen_unix(path);
            struct stat info;
            ASSERT_EQ(::stat(path.c_str(), &info), 0);
            EXPECT_TRUE(S_ISSOCK(info.st_mode));
            EXPECT_EQ(server.local_endpoint().to_string(), path);
            EXPECT_THROW(net::listen_unix(path), stackless::io_error);  // EADDRINUSE
            stackless::spawn([&] {
                net::socket s = server.accept(10s);
                EXPECT_EQ(s.peer_endpoint().to_string(), "");  // the client did not bind
                echo_until_eof(std::move(s));
            });
            net::socket client = net::connect_unix(path, 10s);
            for (int round = 0; round < 10; ++round) {
                const std::string message(1 + round * 100, static_cast<char>('a' + round));
                client.write_all(message);
                std::string back(message.size(), '\0');
                ASSERT_TRUE(client.read_exact(back.data(), back.size(), 10s));
                EXPECT_EQ(back, message);
            }
            client.close();
            stackless::run();
        }
        EXPECT_NE(::access(path.c_str(), F_OK), 0);
    });
}

TEST(NetUnix, AbstractNamesAndMissingPaths) {
    in_fresh_thread([] {
        const std::string name = "@stackless-net-test-" + std::to_string(::getpid());
        net::listener server = net::listen_unix(name);
        net::socket client = net::connect_unix(name, 10s);
        net::socket served = server.accept(10s);
        served.write_all("abstract");
        char buffer[8];
        ASSERT_TRUE(client.read_exact(buffer, 8, 10s));
        EXPECT_EQ(std::string(buffer, 8), "abstract");
        try {
            net::connect_unix("/nonexistent/stackless.sock", 10s);
            ADD_FAILURE() << "connected";
        } catch (const stackless::io_error& e) {
            EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        }
    });
}

}  // namespace
