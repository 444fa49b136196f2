// The Boost.Asio peer of the echo benchmark (bench/echo/run.sh): stackful coroutines,
// boost::asio::spawn with a yield_context, one coroutine per connection, each with its own
// 4 KiB buffer (as the Go server's goroutines have), one io_context run on this one thread.
// The coroutines get spawn's default stack (Boost.Coroutine's default size, 105.5 KiB from
// malloc here): what an Asio program gets unless it tunes it; only the pages a coroutine
// touches count in its resident memory.
//
//   echo_asio_server --port P     (P = 0: any free port; `port <n>` is printed either way)
//
// Runs until killed.
#include <sys/resource.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/spawn.hpp>
#include <boost/asio/write.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

void serve(tcp::socket socket, asio::yield_context yield) {
    std::array<char, 4096> buffer;
    boost::system::error_code ec;
    for (;;) {
        std::size_t n = socket.async_read_some(asio::buffer(buffer), yield[ec]);
        if (ec) return;  // end of stream or a reset
        asio::async_write(socket, asio::buffer(buffer.data(), n), yield[ec]);
        if (ec) return;
    }
}

}  // namespace

int main(int argc, char** argv) {
    long port = -1;
    if (argc == 3 && std::strcmp(argv[1], "--port") == 0) port = std::strtol(argv[2], nullptr, 10);
    if (port < 0 || port > 65535) {
        std::fprintf(stderr, "usage: echo_asio_server --port P   (0: any free port)\n");
        return 2;
    }
    rlimit lim;  // 10,000 connections need more than the usual soft limit of 1024
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    try {
        asio::io_context io(1);  // concurrency hint 1: one thread runs it, so Asio need not lock
        tcp::acceptor acceptor(
            io, tcp::endpoint(asio::ip::address_v4::loopback(), static_cast<unsigned short>(port)));
        std::printf("port %d\n", acceptor.local_endpoint().port());
        std::fflush(stdout);
        asio::spawn(io, [&](asio::yield_context yield) {
            for (;;) {
                tcp::socket socket(io);
                acceptor.async_accept(socket, yield);  // throws on error: ends the server
                socket.set_option(tcp::no_delay(true));
                asio::spawn(io, [s = std::move(socket)](asio::yield_context y) mutable {
                    serve(std::move(s), y);
                });
            }
        });
        io.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_asio_server: %s\n", e.what());
        return 1;
    }
    return 1;  // run() returned: the acceptor failed
}
